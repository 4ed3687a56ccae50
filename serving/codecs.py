"""Wire codecs: JSON bodies <-> numpy arrays, for the three protocols a serving pod speaks.

- Open Inference Protocol v2 (`/v2/models/{name}/infer`): typed tensors `{name, datatype, shape,
  data}`, data flat in row-major order or nested to the shape; `id` is echoed, `parameters` kept.
  The binary tensor extension (what tritonclient sends by default) is understood too: the body is a
  JSON header of `Inference-Header-Content-Length` bytes followed by raw little-endian tensors, each
  announced by `parameters.binary_data_size`; outputs are returned the same way when the request
  asks for it (`parameters.binary_data_output` or per-output `parameters.binary_data`).
- KServe v1 (`/v1/models/{name}:predict`): `{"instances": [...]}` -> `{"predictions": [...]}`.
- The recipe's `/score`: `{"input": ...}` -> `{"output": ...}`.

Pure functions; every client mistake raises `InvalidInput` with a message naming what is wrong.
The hot path avoids per-element Python work: JSON is parsed by orjson (which also rejects NaN,
Infinity and nesting deeper than 1024), lists become arrays in one `np.asarray` call, and numpy
arrays are serialised by orjson directly.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelapp_serving.errors import InferenceError, InvalidInput

MAX_DIMS = 32
# A shape's non-zero dimensions multiply to at most this: far beyond any body, within what numpy can
# describe (an empty [0, 10**30] tensor otherwise fails inside numpy, after every check has passed).
MAX_SHAPE_ELEMENTS = 1 << 40
# Parsed JSON costs far more memory than its text: 16 MiB of `[],` is 5.6 million Python lists,
# ~470 MB in a worker. Bodies over PRECHECK_BYTES are counted (a C-speed byte count) before parsing.
PRECHECK_BYTES = 64 * 1024
MAX_JSON_CONTAINERS = 1 << 18  # lists and objects (nested rows included)
MAX_JSON_ELEMENTS = 1 << 22  # commas + 1: values in all lists and objects together
_LENGTH_PREFIX = struct.Struct("<I")

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_DATATYPE_OF: dict[np.dtype[Any], str] = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}
# Which kinds of parsed JSON numbers a datatype accepts: no silent float->int or number->bool.
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded OIP v2 request: inputs by name, in request order."""

    id: str | None
    inputs: dict[str, np.ndarray[Any, Any]]
    outputs: tuple[RequestedOutput, ...] | None
    parameters: dict[str, Any]
    binary_output: bool


# --- JSON ---------------------------------------------------------------------------------------


def json_precheck(data: bytes) -> None:
    """Refuse a large body whose parse would cost many times its size, before parsing it (400).

    Counts `[`, `{` and `,` bytes, strings included, so it can only over-count: a legitimate tensor
    is sent flat (one list per tensor) or as binary tensors and stays far below both bounds.
    """
    if len(data) <= PRECHECK_BYTES:
        return
    containers = data.count(b"[") + data.count(b"{")
    if containers > MAX_JSON_CONTAINERS:
        raise InvalidInput(
            f"the JSON body holds too many lists and objects ({containers}, at most {MAX_JSON_CONTAINERS}); "
            "send tensor data flat in row-major order with its shape, or as binary tensors"
        )
    elements = data.count(b",") + 1
    if elements > MAX_JSON_ELEMENTS:
        raise InvalidInput(
            f"the JSON body holds too many values ({elements}, at most {MAX_JSON_ELEMENTS}); "
            "send large tensors with the binary tensor extension"
        )


def loads(data: bytes) -> Any:
    """Parse a JSON body; malformed JSON, NaN/Infinity literals, nesting over 1024 and bodies too
    costly to parse (`json_precheck`) are a 400."""
    json_precheck(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None


def dumps(obj: Any) -> bytes:
    """Serialise a response; numpy arrays go through orjson's native path (NaN becomes null)."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    raise TypeError(f"cannot serialise {type(obj).__name__}")


# --- datatypes and shapes -----------------------------------------------------------------------


def datatype_of(array: np.ndarray[Any, Any]) -> str:
    """The OIP datatype naming a numpy array's dtype (strings and objects are BYTES)."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    try:
        return _DATATYPE_OF[array.dtype]
    except KeyError:
        raise InferenceError(f"the model produced an array of dtype {array.dtype}, which has no OIP datatype") from None


def _dtype(name: str, datatype: Any) -> np.dtype[Any]:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}")
    return DATATYPES[datatype]


def decode_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A request's shape: at most 32 non-negative integers whose non-zero ones multiply to at most 2**40."""
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise InvalidInput(f"input {name!r}: shape must be a list of at most {MAX_DIMS} integers")
    elements = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise InvalidInput(f"input {name!r}: shape {shape!r} must hold non-negative integers")
        elements *= max(dim, 1)
        if elements > MAX_SHAPE_ELEMENTS:
            raise InvalidInput(
                f"input {name!r}: shape {shape!r} is too large (its non-zero dimensions multiply past 2**40)"
            )
    return tuple(shape)


def _fit_shape(name: str, array: np.ndarray[Any, Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    if array.shape == shape:
        return array
    expected = math.prod(shape)
    if array.size == expected and (array.ndim == 1 or expected == 0):
        return array.reshape(shape)
    raise InvalidInput(
        f"input {name!r}: shape {list(shape)} needs {expected} elements, "
        f"but data holds {array.size} (nested as {list(array.shape)})"
    )


def _require_finite(name: str, array: np.ndarray[Any, Any]) -> None:
    if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
        raise InvalidInput(
            f"input {name!r}: NaN or infinite values are not allowed (or a value overflows the datatype)"
        )


def _cast_numbers(name: str, parsed: np.ndarray[Any, Any], datatype: str, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    if parsed.size == 0:
        return parsed.astype(dtype)
    if parsed.dtype.kind not in _ACCEPTED_KINDS[dtype.kind]:
        raise InvalidInput(f"input {name!r}: data does not match datatype {datatype}")
    if dtype.kind in "iu" and parsed.dtype != dtype:
        info = np.iinfo(dtype)
        if parsed.min() < info.min or parsed.max() > info.max:
            raise InvalidInput(f"input {name!r}: a value is out of the range of {datatype}")
    with np.errstate(over="ignore"):
        array = parsed.astype(dtype, copy=False)
    _require_finite(name, array)
    return array


def _strings(name: str, data: list[Any]) -> np.ndarray[Any, Any]:
    try:
        array = np.asarray(data, dtype=object)
    except ValueError as exc:
        raise InvalidInput(f"input {name!r}: data is not a regular nested list ({exc})") from None
    for item in array.flat:
        if type(item) is not str:
            raise InvalidInput(f"input {name!r}: BYTES data must hold strings")
    return array


def decode_tensor(name: str, datatype: Any, shape: Any, data: Any) -> np.ndarray[Any, Any]:
    """One JSON tensor -> a numpy array of the declared datatype and shape."""
    dtype = _dtype(name, datatype)
    dims = decode_shape(name, shape)
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: data must be a list")
    if dtype.kind == "O":
        return _fit_shape(name, _strings(name, data), dims)
    try:
        parsed = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"input {name!r}: data is not a regular array ({exc})") from None
    if dtype.kind in "iu" and parsed.dtype.kind in "fO":
        return _fit_shape(name, _exact_integers(name, data, datatype, dtype), dims)
    return _fit_shape(name, _cast_numbers(name, parsed, datatype, dtype), dims)


def _exact_integers(name: str, data: list[Any], datatype: str, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """The slow path for integers numpy would widen to float (beyond int64): check each one."""
    try:
        objects = np.asarray(data, dtype=object)
    except ValueError as exc:
        raise InvalidInput(f"input {name!r}: data is not a regular array ({exc})") from None
    if not all(type(item) is int for item in objects.flat):
        raise InvalidInput(f"input {name!r}: data does not match datatype {datatype}")
    try:
        return objects.astype(dtype)
    except OverflowError:
        raise InvalidInput(f"input {name!r}: a value is out of the range of {datatype}") from None


def decode_binary_tensor(name: str, datatype: Any, shape: Any, raw: bytes) -> np.ndarray[Any, Any]:
    """One tensor of the binary extension: raw little-endian row-major bytes (BYTES: length-prefixed)."""
    dtype = _dtype(name, datatype)
    dims = decode_shape(name, shape)
    count = math.prod(dims)
    if dtype.kind == "O":
        return _fit_shape(name, _split_length_prefixed(name, raw), dims)
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(f"input {name!r}: {len(raw)} binary bytes do not hold {count} {datatype} values")
    array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(dims)
    _require_finite(name, array)
    return array


def _split_length_prefixed(name: str, raw: bytes) -> np.ndarray[Any, Any]:
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {name!r}: truncated BYTES element length")
        (length,) = _LENGTH_PREFIX.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"input {name!r}: truncated BYTES element")
        items.append(raw[offset : offset + length])
        offset += length
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


# --- Open Inference Protocol v2 -----------------------------------------------------------------


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} parameters must be a JSON object")
    return value


def _tensor_header(item: Any) -> tuple[str, Any, Any, dict[str, Any]]:
    if not isinstance(item, dict):
        raise InvalidInput("each input must be a JSON object with name, datatype, shape and data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("each input needs a non-empty string name")
    return name, item.get("datatype"), item.get("shape"), _parameters(item.get("parameters"), f"input {name!r}")


def _binary_size(name: str, params: Mapping[str, Any]) -> int | None:
    size = params.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
    return size


def _decode_inputs(raw_inputs: Any, binary: bytes) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for item in raw_inputs:
        name, datatype, shape, params = _tensor_header(item)
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        size = _binary_size(name, params)
        if size is None:
            if "data" not in item:
                raise InvalidInput(f"input {name!r} has no data")
            inputs[name] = decode_tensor(name, datatype, shape, item["data"])
            continue
        if offset + size > len(binary):
            raise InvalidInput(f"input {name!r}: binary_data_size runs past the end of the body")
        inputs[name] = decode_binary_tensor(name, datatype, shape, binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    return inputs


def _requested_outputs(value: Any, binary_default: bool) -> tuple[RequestedOutput, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list")
    requested: list[RequestedOutput] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("each requested output must be a JSON object with a string name")
        params = _parameters(item.get("parameters"), f"output {item['name']!r}")
        requested.append(RequestedOutput(item["name"], params.get("binary_data", binary_default) is True))
    return tuple(requested)


def decode_infer_request(body: Any, binary: bytes = b"") -> InferRequest:
    """An OIP v2 inference request (already parsed JSON header, plus binary tensor bytes if any)."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    parameters = _parameters(body.get("parameters"), "request")
    binary_output = parameters.get("binary_data_output") is True
    return InferRequest(
        id=request_id,
        inputs=_decode_inputs(body.get("inputs"), binary),
        outputs=_requested_outputs(body.get("outputs"), binary_output),
        parameters=parameters,
        binary_output=binary_output,
    )


def _json_data(array: np.ndarray[Any, Any], datatype: str) -> Any:
    if datatype == "BYTES":
        return [item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item) for item in array.flat]
    return np.ascontiguousarray(array).reshape(-1)


def _binary_data(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in array.flat:
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(_LENGTH_PREFIX.pack(len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: Mapping[str, np.ndarray[Any, Any]],
) -> tuple[dict[str, Any], list[bytes]]:
    """An OIP v2 response: the JSON header and, for binary outputs, the raw chunks in output order."""
    binary_names = {out.name for out in request.outputs or () if out.binary}
    chunks: list[bytes] = []
    encoded: list[dict[str, Any]] = []
    for name, array in outputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary_names or (request.outputs is None and request.binary_output):
            raw = _binary_data(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(array, datatype)
        encoded.append(entry)
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": encoded}
    if request.id is not None:
        header["id"] = request.id
    if request.parameters:
        header["parameters"] = {k: v for k, v in request.parameters.items() if k != "binary_data_output"}
    return header, chunks


# --- KServe v1 and the recipe's /score ----------------------------------------------------------


def decode_plain(body: Any, key: str) -> np.ndarray[Any, Any]:
    """`{key: <nested list>}` -> an array: numbers keep their JSON kind, strings become objects."""
    if not isinstance(body, dict) or key not in body:
        raise InvalidInput(f"the request body must be a JSON object with {key!r}")
    value = body[key]
    if not isinstance(value, list):
        raise InvalidInput(f"{key!r} must be a list")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"{key!r} is not a regular array ({exc})") from None
    if array.dtype.kind == "U":
        return array.astype(object)
    if array.dtype.kind not in "biuf" or array.ndim > MAX_DIMS:
        raise InvalidInput(f"{key!r} must be a regular nested list of numbers, booleans or strings")
    _require_finite(key, array)
    return array


def encode_plain(array: np.ndarray[Any, Any], key: str) -> dict[str, Any]:
    """An array -> `{key: <nested list>}`."""
    if array.dtype.kind in "OUS":
        return {key: _default(array)}
    return {key: np.ascontiguousarray(array)}
