"""ONNX models through onnxruntime: the default and the safe format (an ONNX file is data, not code).

Inputs and outputs are declared by the graph, so requests are checked against them before the run
(rank, fixed dimensions, same-kind casts); only tensor outputs are served (a scikit-learn classifier
must be converted with `zipmap=False` for its probabilities to be a tensor). onnxruntime's own
`InvalidArgument` is still mapped to a 400 as a second line of defence.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from modelapp_serving.errors import InferenceError, InvalidInput, ModelConfigError
from modelapp_serving.models.base import Model, Tensors, TensorSpec, conform, match_inputs

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(arg: Any) -> TensorSpec | None:
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        return None
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape)


def _threads() -> int:
    """Intra-op threads per worker (MODELAPP_ORT_THREADS, default 1): gunicorn workers give the parallelism."""
    value = os.environ.get("MODELAPP_ORT_THREADS", "1")
    if not value.isdigit():
        raise ModelConfigError(f"MODELAPP_ORT_THREADS must be a number, got {value!r}")
    return int(value)


class OnnxModel(Model):
    platform = "onnxruntime_onnx"

    def load(self) -> None:
        # Imported here, in the worker: onnxruntime imported before gunicorn forks aborts workers at exit.
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        self._invalid_argument: type[Exception] = InvalidArgument
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [spec for spec in map(_spec, self._session.get_inputs()) if spec is not None]
        self.outputs = [spec for spec in map(_spec, self._session.get_outputs()) if spec is not None]
        skipped = [arg.name for arg in self._session.get_outputs() if _spec(arg) is None]
        if skipped:
            log.warning("outputs %s are not tensors and will not be served", skipped)
        if len(self.inputs) != len(self._session.get_inputs()):
            raise ModelConfigError("the ONNX model has non-tensor inputs, which cannot be served")
        self.mark_ready()

    def predict(self, inputs: Tensors, output_names: Sequence[str] | None = None) -> Tensors:
        feed = {spec.name: conform(array, spec) for spec, array in match_inputs(inputs, self.inputs)}
        names = [spec.name for spec in self.outputs] if output_names is None else list(output_names)
        unknown = sorted(set(names) - {spec.name for spec in self.outputs})
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; the model produces {[s.name for s in self.outputs]}")
        try:
            results = self._session.run(names, feed)
        except self._invalid_argument as exc:
            raise InvalidInput(f"the model rejected the input: {exc}") from None
        except Exception as exc:
            raise InferenceError(f"the model failed: {exc}") from None
        return dict(zip(names, results, strict=True))

    def framework_version(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"
