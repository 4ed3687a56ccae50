"""The Flask app and the dataplane through Flask's test client (no sockets).

Design notes: most tests serve the real iris ONNX model (made by the `onnx_model_dir` fixture) and
compare predictions with the scikit-learn estimator it came from. Loading is observed through a
`GatedModel`, a real `Model` whose `load()` waits on an event, so "requests while loading get 503"
is tested without timing guesses. Error tests check both the status and the JSON `error` body,
since "never a 500 for a client's mistake" is the contract.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from modelapp_serving.app import build_app, create_app
from modelapp_serving.dataplane import DataPlane
from modelapp_serving.errors import ModelConfigError
from modelapp_serving.metrics import Metrics
from modelapp_serving.models import Model, ModelInfo, Tensors, TensorSpec, resolve_model
from tests.fixtures.models import Iris, ModelDir

INFER = "/v2/models/iris/infer"


def _loaded_app(model: ModelDir, name: str = "iris", **options: Any) -> Flask:
    app = create_app(model_dir=model.path, name=name, **options)
    return app


@pytest.fixture
def client(onnx_model_dir: ModelDir) -> FlaskClient:
    model, info = resolve_model(onnx_model_dir.path, name="iris", pinned_sha256=None, model_class=None)
    model.load()
    metrics = Metrics(model="iris", version=info.version)
    dataplane = DataPlane(model, info, on_inference=metrics.inference.observe)
    return build_app(dataplane, metrics, max_body_bytes=1 << 20).test_client()


def _tensor(features: np.ndarray[Any, Any], datatype: str = "FP32") -> dict[str, Any]:
    return {"name": "input", "datatype": datatype, "shape": list(features.shape), "data": features.ravel().tolist()}


class GatedModel(Model):
    platform = "test"

    def __init__(self, gate: threading.Event) -> None:
        super().__init__("gated", Path("/nonexistent"))
        self.gate = gate

    def load(self) -> None:
        self.gate.wait(30)
        self.inputs = [TensorSpec("x", "FP64", (-1,))]
        self.outputs = [TensorSpec("y", "FP64", (-1,))]
        self.mark_ready()

    def predict(self, inputs: Tensors, output_names: Sequence[str] | None = None) -> Tensors:
        return {"y": next(iter(inputs.values())) * 2}


def test_predictions_equal_the_scikit_learn_model(client: FlaskClient, iris: Iris) -> None:
    response = client.post(INFER, json={"id": "r1", "inputs": [_tensor(iris.features)]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == "r1"
    assert body["model_name"] == "iris"
    assert body["model_version"] == "7"
    label, probabilities = body["outputs"]
    assert label["name"] == "label"
    assert label["datatype"] == "INT64"
    assert label["shape"] == [150]
    assert label["data"] == iris.estimator.predict(iris.features).tolist()
    assert probabilities["datatype"] == "FP32"
    assert probabilities["shape"] == [150, 3]
    expected = iris.estimator.predict_proba(iris.features)
    np.testing.assert_allclose(np.reshape(probabilities["data"], (150, 3)), expected, atol=1e-4)


def test_requested_outputs_and_versions_path(client: FlaskClient, iris: Iris) -> None:
    body = {"inputs": [_tensor(iris.features[:3], "FP64")], "outputs": [{"name": "probabilities"}]}
    response = client.post("/v2/models/iris/versions/7/infer", json=body)
    assert response.status_code == 200
    assert [out["name"] for out in response.get_json()["outputs"]] == ["probabilities"]
    assert client.post("/v2/models/iris/versions/8/infer", json=body).status_code == 404
    body["outputs"] = [{"name": "nope"}]
    assert client.post(INFER, json=body).get_json()["error"].startswith("unknown output")


def test_v1_score_version_and_metadata(client: FlaskClient, iris: Iris, onnx_model_dir: ModelDir) -> None:
    expected = iris.estimator.predict(iris.features[:5]).tolist()
    assert client.post("/v1/models/iris:predict", json={"instances": iris.features[:5].tolist()}).get_json() == {
        "predictions": expected
    }
    assert client.post("/score", json={"input": iris.features[:5].tolist()}).get_json() == {"output": expected}
    version = client.get("/version").get_json()
    assert (version["name"], version["version"], version["sha256"]) == ("iris", "7", onnx_model_dir.digest)
    assert version["framework"].startswith("onnxruntime ")
    metadata = client.get("/v2/models/iris").get_json()
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get("/v2/models/iris/ready").get_json() == {"name": "iris", "ready": True}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2").get_json()["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "message"),
    [
        (INFER, {"data": b"{not json", "content_type": "application/json"}, 400, "malformed JSON"),
        (INFER, {"data": b"[" * 5000 + b"]" * 5000, "content_type": "application/json"}, 400, "malformed JSON"),
        (
            INFER,
            {"json": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}},
            400,
            "fit",
        ),
        (
            INFER,
            {"json": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2]}]}},
            400,
            "shape",
        ),
        (
            INFER,
            {"json": {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, 4], "data": ["a"] * 4}]}},
            400,
            "cannot be used as FP32",
        ),
        (
            INFER,
            {"json": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": ["x"]}]}},
            400,
            "datatype",
        ),
        (
            INFER,
            {"data": b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[NaN,1,1,1]}]}'},
            400,
            "JSON",
        ),
        ("/v2/models/other/infer", {"json": {"inputs": []}}, 404, "not served"),
        ("/v2/models/iris/nothing", {"json": {}}, 404, "no such endpoint"),
        (INFER, {"data": b"inputs=1", "content_type": "application/x-www-form-urlencoded"}, 415, "content type"),
        (INFER, {"data": b"{}", "headers": {"Content-Encoding": "gzip"}}, 415, "compressed"),
        (INFER, {"data": b" " * (2 << 20), "content_type": "application/json"}, 413, "size limit"),
        ("/score", {"json": {"input": [[1, 2, 3, 4], [1, 2]]}}, 400, "regular array"),
        ("/v1/models/iris:predict", {"data": b'{"instances": [[1e400, 1, 1, 1]]}'}, 400, "JSON"),
    ],
)
def test_client_mistakes_are_4xx_with_a_json_error(
    client: FlaskClient, path: str, kwargs: dict[str, Any], status: int, message: str
) -> None:
    response = client.post(path, **kwargs)
    assert response.status_code == status
    assert response.is_json
    assert message in response.get_json()["error"]


def test_wrong_method_is_405_with_json(client: FlaskClient) -> None:
    response = client.get(INFER)
    assert response.status_code == 405
    assert response.get_json() == {"error": "method not allowed for this endpoint"}


def test_binary_tensor_extension(client: FlaskClient, iris: Iris) -> None:
    raw = iris.features[:2].astype("<f4").tobytes()
    header = (
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[2,4],"parameters":{"binary_data_size":32}}],'
        b'"parameters":{"binary_data_output":true}}'
    )
    response = client.post(
        INFER,
        data=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200
    json_length = int(response.headers["Inference-Header-Content-Length"])
    reply = json.loads(response.data[:json_length])
    label = reply["outputs"][0]
    assert label["parameters"]["binary_data_size"] == 16
    labels = np.frombuffer(response.data[json_length : json_length + 16], dtype="<i8")
    assert labels.tolist() == iris.estimator.predict(iris.features[:2]).tolist()


def test_requests_while_loading_get_503_at_once_then_200() -> None:
    gate = threading.Event()
    info = ModelInfo(name="gated", version="1", digest="0" * 64, format="custom")
    dataplane = DataPlane(GatedModel(gate), info)
    client = build_app(dataplane, Metrics(model="gated", version="1")).test_client()
    loader = dataplane.start_loading()
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]}]}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/gated/ready").status_code == 503
    replies = []
    threads = [
        threading.Thread(target=lambda: replies.append(client.post("/v2/models/gated/infer", json=body)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [reply.status_code for reply in replies] == [503] * 8
    assert "still loading" in replies[0].get_json()["error"]
    gate.set()
    loader.join(10)
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post("/v2/models/gated/infer", json=body).get_json()["outputs"][0]["data"] == [2.0, 4.0]


def test_a_failed_load_keeps_readiness_false_with_the_reason(tmp_path: Path) -> None:
    from tests.fixtures.models import write_version

    broken = write_version(
        tmp_path / "m", {"model.onnx": b"not an onnx file"}, model_format="onnx", entrypoint="model.onnx"
    )
    app = _loaded_app(broken)
    client = app.test_client()
    deadline_reply = None
    for _ in range(200):
        deadline_reply = client.get("/v2/health/ready")
        if "failed to load" in deadline_reply.get_json()["error"]:
            break
        threading.Event().wait(0.05)
    assert deadline_reply is not None
    assert deadline_reply.status_code == 503
    assert "failed to load" in deadline_reply.get_json()["error"]


def test_metrics_count_requests_by_endpoint_code_model_and_version(client: FlaskClient, iris: Iris) -> None:
    client.post(INFER, json={"inputs": [_tensor(iris.features[:1])]})
    client.post(INFER, data=b"{", content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    labels = 'code="200",endpoint="/v2/models/<name>/infer",method="POST",model="iris",version="7"'
    assert f"modelapp_requests_total{{{labels}}} 1.0" in text
    assert 'code="400",endpoint="/v2/models/<name>/infer"' in text
    assert 'modelapp_request_duration_seconds_bucket{endpoint="/v2/models/<name>/infer"' in text
    assert 'modelapp_inference_duration_seconds_count{model="iris",version="7"} 1.0' in text


def test_pickle_without_a_pin_is_refused(sklearn_model_dir: ModelDir) -> None:
    with pytest.raises(ModelConfigError, match="without a pinned digest"):
        resolve_model(sklearn_model_dir.path, name="iris", pinned_sha256=None, model_class=None)
    with pytest.raises(ModelConfigError, match="does not match the manifest digest"):
        resolve_model(sklearn_model_dir.path, name="iris", pinned_sha256="0" * 64, model_class=None)


def test_pinned_sklearn_and_custom_models_serve(
    sklearn_model_dir: ModelDir, custom_model_dir: ModelDir, iris: Iris
) -> None:
    model, info = resolve_model(
        sklearn_model_dir.path, name="iris", pinned_sha256=sklearn_model_dir.digest, model_class=None
    )
    model.load()
    client = build_app(DataPlane(model, info), Metrics(model="iris", version="1")).test_client()
    reply = client.post("/v1/models/iris:predict", json={"instances": iris.features[:4].astype(float).tolist()})
    assert reply.get_json() == {"predictions": iris.estimator.predict(iris.features[:4]).tolist()}
    custom, custom_info = resolve_model(
        custom_model_dir.path, name="doubler", pinned_sha256=None, model_class="tests.fixtures.models:DoublingModel"
    )
    custom.load()
    client = build_app(DataPlane(custom, custom_info), Metrics(model="doubler", version="3")).test_client()
    assert client.post("/score", json={"input": [1, 2]}).get_json() == {"output": [2.5, 5.0]}
    with pytest.raises(ModelConfigError, match="needs --model-class"):
        resolve_model(custom_model_dir.path, name="doubler", pinned_sha256=None, model_class=None)
