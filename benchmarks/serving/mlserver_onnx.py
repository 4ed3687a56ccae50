"""A minimal ONNX runtime for Seldon's MLServer; runs in MLServer's own virtualenv, not ours.

There is no `mlserver-onnx` package on PyPI (MLServer ships sklearn, xgboost, lightgbm... but no
ONNX runtime), so this is the smallest custom `MLModel`, written the way MLServer's own runtimes
are: decode with `NumpyCodec`, run, encode every output with `NumpyCodec`. The benchmark copies
this file next to the model's `model-settings.json`, which MLServer puts on its import path.
"""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [output.name for output in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        array: Any = NumpyCodec.decode_input(payload.inputs[0])
        results = self._session.run(self._outputs, {self._input: array.astype("float32")})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in zip(self._outputs, results, strict=True)],
        )
