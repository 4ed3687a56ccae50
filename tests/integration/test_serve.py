"""`modelapp-serving serve` as a real process: gunicorn workers on 127.0.0.1, real HTTP clients.

Design notes: each test starts the real command line (`python -m modelapp_serving.cli serve`) on a
free loopback port with a model folder made by the fixtures, waits for readiness with a deadline,
and talks to it with `requests` and with tritonclient's HTTP client (a real OIP client, used with
its defaults, i.e. the binary tensor extension). Predictions are compared with the scikit-learn
estimator the ONNX model was converted from. "Loading" is held open by a user model that waits for
a gate file, so the 503-while-loading check does not depend on timing.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.fixtures.models import Iris, ModelDir, ServeProcess, write_version

pytestmark = pytest.mark.integration

Start = Callable[..., ServeProcess]


@pytest.fixture
def iris_server(serve_process: Start, onnx_model_dir: ModelDir) -> Iterator[ServeProcess]:
    server = serve_process(onnx_model_dir, "iris", ["--workers", "2"])
    server.wait_ready()
    yield server


def test_every_endpoint_answers(iris_server: ServeProcess, iris: Iris, onnx_model_dir: ModelDir) -> None:
    url = iris_server.url
    expected = iris.estimator.predict(iris.features).tolist()
    assert requests.get(f"{url}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{url}/v2/health/ready", timeout=5).json() == {"ready": True}
    assert requests.get(f"{url}/v2/models/iris/ready", timeout=5).status_code == 200
    assert requests.get(f"{url}/v2/models/iris", timeout=5).json()["versions"] == ["7"]
    body = {
        "id": "x",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [150, 4], "data": iris.features.tolist()}],
    }
    reply = requests.post(f"{url}/v2/models/iris/infer", json=body, timeout=10).json()
    assert reply["id"] == "x"
    assert reply["outputs"][0]["data"] == expected
    instances = {"instances": iris.features.tolist()}
    assert requests.post(f"{url}/v1/models/iris:predict", json=instances, timeout=10).json() == {
        "predictions": expected
    }
    score = requests.post(f"{url}/score", json={"input": iris.features.tolist()}, timeout=10).json()
    assert score == {"output": expected}
    version = requests.get(f"{url}/version", timeout=5).json()
    assert (version["version"], version["sha256"]) == ("7", onnx_model_dir.digest)


def test_metrics_add_up_across_workers(iris_server: ServeProcess, iris: Iris) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": iris.features[0].tolist()}]}
    with requests.Session() as session:
        for _ in range(20):
            assert session.post(f"{iris_server.url}/v2/models/iris/infer", json=body, timeout=10).status_code == 200
    counts = set()
    for _ in range(4):
        text = requests.get(f"{iris_server.metrics_url}/metrics", timeout=5).text
        line = next(
            line for line in text.splitlines() if line.startswith("modelapp_requests_total{") and "infer" in line
        )
        counts.add(float(line.rsplit(" ", 1)[1]))
    assert counts == {20.0}
    assert 'modelapp_request_duration_seconds_bucket{endpoint="/v2/models/<name>/infer"' in text


def test_tritonclient_works_unchanged(iris_server: ServeProcess, iris: Iris) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=iris_server.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_model_ready("iris")
    assert client.get_model_metadata("iris")["platform"] == "onnxruntime_onnx"
    tensor = httpclient.InferInput("input", [150, 4], "FP32")
    tensor.set_data_from_numpy(iris.features)
    result = client.infer("iris", [tensor])
    np.testing.assert_array_equal(result.as_numpy("label"), iris.estimator.predict(iris.features))
    np.testing.assert_allclose(result.as_numpy("probabilities"), iris.estimator.predict_proba(iris.features), atol=1e-4)
    json_tensor = httpclient.InferInput("input", [2, 4], "FP32")
    json_tensor.set_data_from_numpy(iris.features[:2], binary_data=False)
    output = httpclient.InferRequestedOutput("label", binary_data=False)
    labels = client.infer("iris", [json_tensor], outputs=[output]).as_numpy("label")
    assert labels is not None
    assert labels.tolist() == iris.estimator.predict(iris.features[:2]).tolist()
    client.close()


def test_bad_input_is_4xx_never_500(iris_server: ServeProcess) -> None:
    infer = f"{iris_server.url}/v2/models/iris/infer"
    headers = {"Content-Type": "application/json"}
    cases = [
        (requests.post(infer, data=b"{oops", headers=headers, timeout=10), 400),
        (requests.post(infer, data=b"[" * 200_000 + b"]" * 200_000, headers=headers, timeout=10), 400),
        (
            requests.post(
                infer,
                data=b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[NaN,0,0,0]}]}',
                headers=headers,
                timeout=10,
            ),
            400,
        ),
        (
            requests.post(
                infer,
                json={"inputs": [{"name": "input", "datatype": "INT8", "shape": [1, 4], "data": [1.5] * 4}]},
                timeout=10,
            ),
            400,
        ),
        (
            requests.post(
                infer,
                json={"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [1.0] * 4}]},
                timeout=10,
            ),
            400,
        ),
        (requests.post(f"{iris_server.url}/v2/models/nope/infer", json={}, timeout=10), 404),
        (requests.post(infer, data=b"a=b", headers={"Content-Type": "text/plain"}, timeout=10), 415),
        (requests.put(infer, json={}, timeout=10), 405),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert "error" in response.json()


def test_a_100_mb_body_is_refused_with_413(iris_server: ServeProcess) -> None:
    body = b"[" + b"0," * (50 * 1024 * 1024) + b"0]"
    response = requests.post(
        f"{iris_server.url}/v2/models/iris/infer", data=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert response.status_code == 413
    assert response.json() == {"error": "request body is over the size limit"}
    assert requests.get(f"{iris_server.url}/v2/health/ready", timeout=5).status_code == 200


def test_concurrent_requests_while_loading_get_503(serve_process: Start, tmp_path: Path) -> None:
    model = write_version(tmp_path / "model", {"factor.txt": b"2"}, model_format="custom", entrypoint="factor.txt")
    server = serve_process(model, "slow", ["--model-class", "tests.fixtures.models:GatedFileModel", "--workers", "2"])
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 3.0]}]}
    assert _wait_live(server)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(
                lambda _: requests.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=5).status_code,
                range(32),
            )
        )
    assert statuses == [503] * 32
    assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 503
    (model.path / "factor.txt.go").touch()
    server.wait_ready()
    reply = requests.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=5).json()
    assert reply["outputs"] == [{"name": "scaled", "datatype": "FP64", "shape": [2], "data": [2.0, 6.0]}]


def _wait_live(server: ServeProcess, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log()
        try:
            if requests.get(f"{server.url}/v2/health/live", timeout=2).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    return False


def test_serve_refuses_a_pickle_without_a_pin(serve_process: Start, sklearn_model_dir: ModelDir) -> None:
    server = serve_process(sklearn_model_dir, "iris")
    assert server.process.wait(timeout=60) == 2
    assert "without a pinned digest" in server.log()


def test_pinned_sklearn_model_serves(serve_process: Start, sklearn_model_dir: ModelDir, iris: Iris) -> None:
    server = serve_process(sklearn_model_dir, "iris", ["--sha256", sklearn_model_dir.digest])
    server.wait_ready()
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [3, 4], "data": iris.features[:3].tolist()}]}
    reply = requests.post(f"{server.url}/v2/models/iris/infer", json=body, timeout=10).json()
    assert reply["outputs"][0]["data"] == iris.estimator.predict(iris.features[:3]).tolist()
