"""The benchmark models, laid out as fetched model versions (manifest included).

Why these: the iris classifier is the smallest real model, so a request measures the server
(HTTP, JSON, dispatch), not the maths -- exactly where servers differ. The same fitted estimator
is served as ONNX (skl2onnx, `zipmap=False`) and as a joblib file, so every server runs the same
weights. The 100 MB model is one dense MatMul whose initializer is the weight, for cold start:
its load time is dominated by reading and preparing 100 MB, like a real mid-size model.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelapp_serving.manifest import MANIFEST_NAME, FileEntry, ModelFormat, build_manifest

# One iris row: the request body of every inference benchmark.
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
BIG_SIDE = 5120  # 5120 x 5120 float32 = 100 MiB of weights


@dataclass(frozen=True)
class VersionDir:
    """A fetched model version: the folder, its entry file and the version digest (the pin)."""

    path: Path
    entry: Path
    digest: str
    input_name: str
    features: int


def write_version(
    folder: Path, name: str, data: bytes, *, model_format: ModelFormat, input_name: str, features: int
) -> VersionDir:
    """Write one file and its manifest; the digest is the sha256 of the manifest bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    entry = FileEntry(path=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest = build_manifest(version="1", model_format=model_format, entrypoint=name, files=[entry])
    (folder / MANIFEST_NAME).write_bytes(manifest)
    return VersionDir(folder, folder / name, hashlib.sha256(manifest).hexdigest(), input_name, features)


def iris_estimator() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(features, labels)


def iris_versions(root: Path) -> dict[str, VersionDir]:
    """The iris classifier as an ONNX version and as a scikit-learn (joblib) version."""
    import joblib
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    estimator = iris_estimator()
    onnx_model = convert_sklearn(
        estimator,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(estimator): {"zipmap": False}},
        target_opset=17,
    )
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return {
        "onnx": write_version(
            root / "iris-onnx",
            "model.onnx",
            onnx_model.SerializeToString(),
            model_format="onnx",
            input_name="input",
            features=4,
        ),
        "sklearn": write_version(
            root / "iris-sklearn",
            "model.joblib",
            buffer.getvalue(),
            model_format="sklearn",
            input_name="input-0",
            features=4,
        ),
    }


def big_onnx_version(root: Path, side: int = BIG_SIDE) -> VersionDir:
    """A `side x side` float32 MatMul: input [N, side] -> output [N, side], weights as an initializer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(7).standard_normal((side, side), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "weights"], ["output"])],
        "big-matmul",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, side])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, side])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return write_version(
        root / "big-onnx",
        "model.onnx",
        model.SerializeToString(),
        model_format="onnx",
        input_name="input",
        features=side,
    )
