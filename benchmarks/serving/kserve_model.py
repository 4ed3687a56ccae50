"""A minimal KServe model server for the benchmark; runs in KServe's own virtualenv, not ours.

KServe's sklearn/onnx servers live in its repository, not on PyPI, so this is the smallest
`kserve.Model` that does what they do: load the file once, decode the OIP request with KServe's
own `get_predict_input`, run it, encode with KServe's `InferOutput`s (every ONNX output, as the
other servers answer) or `get_predict_response` (sklearn `predict`). Workers: KServe's own
`--workers` (uvicorn processes sharing one socket). gRPC is off (we only measure REST), and so is
per-request logging (access log, latency log), as in ours. Its REST server hard-codes 0.0.0.0;
our benchmarks bind to 127.0.0.1 only, so `uvicorn.Config` gets that host.

    venv-kserve/bin/python kserve_model.py --model_name iris --format onnx --path model.onnx \
        --http_port 8080 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import uuid
from typing import Any

import kserve
import uvicorn
from kserve.protocol.infer_type import InferOutput, InferResponse
from kserve.protocol.rest.multiprocess.server import RESTServerProcess
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import get_predict_input, get_predict_response

_config_init = uvicorn.Config.__init__


def _loopback_config(self: Any, *args: Any, **kwargs: Any) -> None:
    kwargs["host"] = "127.0.0.1"
    kwargs["access_log"] = False  # request logging off, as in ours: we measure serving, not logging
    _config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _loopback_config  # type: ignore[method-assign]

# KServe's parent process pings each worker and kills one that does not answer within 5 s, at start
# and while serving. A spawned worker answers only once it has imported KServe's stack, which took
# longer than 5 s at this machine's load (15-25): every worker was killed and restarted, and KServe
# never became ready (runs of 14:02 and 14:29 UTC). 60 s changes nothing in how a request is served.
RESTServerProcess.is_alive.__defaults__ = (60.0,)


class BenchModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, model_format: str, path: str) -> None:
        super().__init__(name)
        self.model_format = model_format
        self.path = path
        self.load()

    def load(self) -> bool:
        if self.model_format == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(self.path, sess_options=options, providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
            self._outputs = [output.name for output in self._session.get_outputs()]
        else:
            import joblib

            self._estimator = joblib.load(self.path)
        self.ready = True
        return True

    def __getstate__(self) -> dict[str, Any]:
        # KServe's --workers spawns processes and pickles the model into each; an onnxruntime
        # session cannot be pickled, so each worker loads its own copy (as ours does after fork).
        return {key: value for key, value in self.__dict__.items() if key not in ("_session", "_estimator")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Runs in each spawned worker, after KServe configured its logging there.
        logging.getLogger("uvicorn.access").disabled = True
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        instances = get_predict_input(payload)
        if self.model_format == "onnx":
            results = self._session.run(self._outputs, {self._input: instances.astype("float32")})
            outputs = []
            for name, value in zip(self._outputs, results, strict=True):
                output = InferOutput(name=name, shape=list(value.shape), datatype=from_np_dtype(value.dtype))
                output.set_data_from_numpy(value, binary_data=False)
                outputs.append(output)
            return InferResponse(
                response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=outputs
            )
        return get_predict_response(payload, self._estimator.predict(instances), self.name)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--format", choices=["onnx", "sklearn"], required=True)
    parser.add_argument("--path", required=True)
    args, _ = parser.parse_known_args()
    model = BenchModel(args.model_name, args.format, args.path)
    server = kserve.ModelServer(
        workers=args.workers, enable_grpc=False, http_port=args.http_port, enable_latency_logging=False
    )
    server.start([model])


if __name__ == "__main__":
    main()
