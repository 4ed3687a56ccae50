"""Protocol codecs: OIP v2 tensors (JSON and binary), KServe v1, /score.

Design notes: property tests (hypothesis) generate arrays of every OIP datatype and check that
encoding a response and decoding it as a request gives the same array back, flat or nested, JSON
or binary; and that any shape whose element count differs from the data is rejected with
InvalidInput. Example tests pin the messages and the rejections a client meets most often
(NaN/inf, wrong datatype, out-of-range integers, deep nesting). No I/O.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelapp_serving import codecs
from modelapp_serving.errors import InvalidInput

NUMERIC = [name for name in codecs.DATATYPES if name != "BYTES"]


def _finite_arrays(datatype: str) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    dtype = codecs.DATATYPES[datatype]
    elements = None
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5), elements=elements)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray[Any, Any]]:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    if datatype == "BYTES":
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
        items = draw(st.lists(st.text(max_size=8), min_size=math.prod(shape), max_size=math.prod(shape)))
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return datatype, array.reshape(shape)
    return datatype, draw(_finite_arrays(datatype))


def _round_trip(array: np.ndarray[Any, Any], *, binary: bool) -> np.ndarray[Any, Any]:
    request = codecs.InferRequest(None, {}, None, {"binary_data_output": binary}, binary)
    header, chunks = codecs.encode_infer_response(
        model_name="m", model_version="1", request=request, outputs={"x": array}
    )
    wire_header = codecs.loads(codecs.dumps(header))
    (output,) = wire_header["outputs"]
    as_input = {"inputs": [{**output, "name": "x"}]}
    decoded = codecs.decode_infer_request(as_input, b"".join(chunks))
    return decoded.inputs["x"]


@settings(max_examples=150, deadline=None)
@given(tensors(), st.booleans())
def test_response_decodes_back_to_the_same_tensor(tensor: tuple[str, np.ndarray[Any, Any]], binary: bool) -> None:
    datatype, array = tensor
    decoded = _round_trip(array, binary=binary)
    assert decoded.shape == array.shape
    if datatype == "BYTES":
        expected = [item.encode() if binary else item for item in array.flat]
        assert list(decoded.flat) == expected
    else:
        assert decoded.dtype == array.dtype
        np.testing.assert_array_equal(decoded, array)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(NUMERIC).flatmap(lambda datatype: st.tuples(st.just(datatype), _finite_arrays(datatype))))
def test_nested_data_equals_flat_data(tensor: tuple[str, np.ndarray[Any, Any]]) -> None:
    datatype, array = tensor
    shape = list(array.shape)
    flat = codecs.decode_tensor("x", datatype, shape, array.reshape(-1).tolist())
    nested = codecs.decode_tensor("x", datatype, shape, array.tolist())
    np.testing.assert_array_equal(flat, nested)
    np.testing.assert_array_equal(flat, array)
    assert flat.dtype == codecs.DATATYPES[datatype]


@settings(max_examples=150, deadline=None)
@given(
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
)
def test_shape_that_does_not_fit_the_data_is_rejected(declared: tuple[int, ...], actual: tuple[int, ...]) -> None:
    data = np.zeros(actual, dtype=np.float32)
    fits = declared == actual or (math.prod(declared) == data.size and (data.ndim == 1 or data.size == 0))
    if fits:
        assert codecs.decode_tensor("x", "FP32", list(declared), data.tolist()).shape == declared
    else:
        with pytest.raises(InvalidInput, match="shape"):
            codecs.decode_tensor("x", "FP32", list(declared), data.tolist())
    if math.prod(declared) != data.size:
        with pytest.raises(InvalidInput, match="binary bytes"):
            codecs.decode_binary_tensor("x", "FP32", list(declared), data.astype("<f4").tobytes())


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT32", [1.5, 2.0], "does not match datatype INT32"),
        ("INT8", [1, 300], "out of the range of INT8"),
        ("UINT8", [-1], "out of the range of UINT8"),
        ("BOOL", [1, 0], "does not match datatype BOOL"),
        ("FP32", ["1.0", "2.0"], "does not match datatype FP32"),
        ("FP32", [1.0, None], "does not match datatype FP32"),
        ("FP16", [1e10], "NaN or infinite"),
        ("BYTES", [1, 2], "BYTES data must hold strings"),
        ("FP99", [1.0], "unknown datatype"),
        ("FP32", [[1.0], [1.0, 2.0]], "not a regular array"),
    ],
)
def test_data_that_does_not_match_the_datatype_is_rejected(datatype: str, data: list[Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        codecs.decode_tensor("x", datatype, [len(data)], data)


def test_nan_and_infinity_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="malformed JSON"):
        codecs.loads(b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}')
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        codecs.decode_tensor("x", "FP64", [1], [float("inf")])
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        codecs.decode_binary_tensor("x", "FP32", [1], np.array([np.nan], "<f4").tobytes())


def test_too_deep_nesting_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="malformed JSON"):
        codecs.loads(b"[" * 100_000 + b"]" * 100_000)
    deep: Any = [1.0]
    for _ in range(100):
        deep = [deep]
    with pytest.raises(InvalidInput):
        codecs.decode_tensor("x", "FP32", [1], deep)
    with pytest.raises(InvalidInput, match="at most 32"):
        codecs.decode_shape("x", [1] * 33)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({}, "non-empty list"),
        ({"inputs": [1]}, "JSON object with name"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "has no data"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1.0]}]}, "non-negative"),
        ({"id": 5, "inputs": []}, "'id' must be a string"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}] * 2}, "given twice"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": "x"}, "must be a list"),
    ],
)
def test_malformed_requests_are_rejected(body: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        codecs.decode_infer_request(body)


def test_binary_sizes_must_account_for_every_byte() -> None:
    header = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}
    raw = np.array([1.0, 2.0], "<f4").tobytes()
    np.testing.assert_array_equal(codecs.decode_infer_request(header, raw).inputs["x"], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="not claimed"):
        codecs.decode_infer_request(header, raw + b"\0")
    with pytest.raises(InvalidInput, match="past the end"):
        codecs.decode_infer_request(header, raw[:4])


def test_response_echoes_id_and_parameters() -> None:
    request = codecs.decode_infer_request(
        {
            "id": "req-1",
            "parameters": {"trace": "on"},
            "inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [3]}],
        }
    )
    header, chunks = codecs.encode_infer_response(
        model_name="m", model_version="2", request=request, outputs={"y": np.array([[1.5, 2.5]], dtype=np.float32)}
    )
    assert chunks == []
    assert codecs.loads(codecs.dumps(header)) == {
        "id": "req-1",
        "model_name": "m",
        "model_version": "2",
        "parameters": {"trace": "on"},
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}],
    }


def test_v1_and_score_bodies() -> None:
    array = codecs.decode_plain({"instances": [[1, 2], [3, 4]]}, "instances")
    assert array.shape == (2, 2)
    assert codecs.decode_plain({"input": ["a", "b"]}, "input").dtype == object
    assert codecs.loads(codecs.dumps(codecs.encode_plain(np.array([0, 1]), "predictions"))) == {"predictions": [0, 1]}
    with pytest.raises(InvalidInput, match="'instances'"):
        codecs.decode_plain({"input": [1]}, "instances")
    with pytest.raises(InvalidInput, match="regular nested list"):
        codecs.decode_plain({"input": [{"a": 1}]}, "input")
