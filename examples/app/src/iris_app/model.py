"""The user model class the serving runtime loads: `iris_app.model:IrisModel`.

The contract (the runtime's `models/custom.py`): constructed with no arguments; `load(path)` gets
the model version's entrypoint file (`model.json` here; its folder holds the version's other files);
`predict(inputs)` gets one numpy array per request and returns a dict of arrays, one output each;
a `ValueError` is the caller's mistake (HTTP 400). The model file is plain JSON (coefficients of a
logistic regression, exported by tools/export_model.py), so loading it runs no code -- unlike a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from iris_app.processing import FEATURES, label, prepare, softmax, standardise

FORMAT = "iris-app/logistic-regression/v1"


class IrisModel:
    #: predict() reads only what load() set: no lock needed between request threads.
    thread_safe = True
    #: Metadata the runtime publishes at /v2/models/<name>.
    inputs: ClassVar[list[dict[str, Any]]] = [
        {"name": "measurements", "datatype": "FP32", "shape": [-1, len(FEATURES)]}
    ]
    outputs: ClassVar[list[dict[str, Any]]] = [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probability", "datatype": "FP32", "shape": [-1]},
    ]

    def load(self, path: str) -> None:
        spec = json.loads(Path(path).read_text())
        if spec.get("format") != FORMAT:
            raise RuntimeError(f"{path} is not an {FORMAT} model file (format {spec.get('format')!r})")
        if list(spec["features"]) != list(FEATURES):
            raise RuntimeError(f"{path} was trained on features {spec['features']}, this code expects {list(FEATURES)}")
        self.classes = [str(name) for name in spec["classes"]]
        self.mean = np.asarray(spec["mean"], dtype=np.float64)
        self.scale = np.asarray(spec["scale"], dtype=np.float64)
        self.coef = np.asarray(spec["coef"], dtype=np.float64)
        self.intercept = np.asarray(spec["intercept"], dtype=np.float64)
        if self.coef.shape != (len(self.classes), len(FEATURES)) or self.intercept.shape != (len(self.classes),):
            raise RuntimeError(
                f"{path}: coefficients do not match {len(self.classes)} classes x {len(FEATURES)} features"
            )

    def predict(self, inputs: Any) -> dict[str, np.ndarray[Any, Any]]:
        if isinstance(inputs, dict):
            raise ValueError(f"send one input tensor of measurements, not {len(inputs)} tensors")
        rows = standardise(prepare(inputs), self.mean, self.scale)
        return label(softmax(rows @ self.coef.T + self.intercept), self.classes)
