"""scikit-learn models from a joblib file, loaded ONLY when the version digest is pinned.

Unpickling runs arbitrary code, so the loader (`models.loader`) refuses a `sklearn` version unless
`--sha256` pins the manifest digest, and this model re-hashes its file against the pinned manifest
right before `joblib.load`: the bytes unpickled are exactly the bytes the pin names.
Outputs: `predict` (the default) and, for estimators that have it, `predict_proba`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelapp_serving.errors import InferenceError, InvalidInput, ModelConfigError
from modelapp_serving.models.base import Model, Tensors, TensorSpec, match_inputs, select_outputs

_CHUNK = 1024 * 1024


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks (bounded memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class SklearnModel(Model):
    platform = "sklearn"

    def __init__(self, name: str, path: Path, *, expected_sha256: str) -> None:
        super().__init__(name, path)
        self._expected_sha256 = expected_sha256

    def load(self) -> None:
        actual = file_sha256(self.path)
        if actual != self._expected_sha256:
            raise ModelConfigError(f"{self.path.name}: sha256 {actual} differs from the pinned manifest's")
        import joblib

        self._estimator = joblib.load(self.path)
        features = getattr(self._estimator, "n_features_in_", -1)
        self.inputs = [TensorSpec("input-0", "FP64", (-1, int(features)))]
        classes = getattr(self._estimator, "classes_", None)
        label_type = "BYTES" if classes is not None and np.asarray(classes).dtype.kind in "OUS" else "INT64"
        self.outputs = [TensorSpec("predict", label_type if classes is not None else "FP64", (-1,))]
        if hasattr(self._estimator, "predict_proba"):
            self.outputs.append(TensorSpec("predict_proba", "FP64", (-1, -1)))
        self.mark_ready()

    def predict(self, inputs: Tensors, output_names: Sequence[str] | None = None) -> Tensors:
        ((spec, array),) = match_inputs(inputs, self.inputs)
        if array.ndim != 2 or spec.shape[1] not in (-1, array.shape[1]) or array.dtype.kind not in "biuf":
            raise InvalidInput(f"input {spec.name!r}: expected numbers of shape [N, {spec.shape[1]}]")
        names = ["predict"] if output_names is None else list(output_names)
        produced: dict[str, np.ndarray[Any, Any]] = {}
        try:
            for name in names:
                if name in ("predict", "predict_proba") and hasattr(self._estimator, name):
                    produced[name] = np.asarray(getattr(self._estimator, name)(array))
        except ValueError as exc:
            raise InvalidInput(f"the model rejected the input: {exc}") from None
        except Exception as exc:
            raise InferenceError(f"the model failed: {exc}") from None
        return select_outputs(produced, names)

    def framework_version(self) -> str:
        import sklearn

        return f"scikit-learn {sklearn.__version__}"
