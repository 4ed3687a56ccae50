"""The dataplane: what each endpoint does, with no HTTP in it (bytes in, bytes or dicts out).

One served model per process. It is loaded in a background thread right after start so that
liveness answers at once; until `load()` returns, every model call raises `ModelNotReady` at once
(a 503, never a wait), and a failed load stays visible in the readiness error. Order of checks for a
model call: unknown name (404), not ready (503), then the body (400).

Two kinds of ready: a model call needs only THIS process's model (`require_ready`), while the
readiness answers (`/v2/health/ready`, `/v2/models/{name}/ready`) also need every sibling worker
(`others_ready`, see `readiness.py`): a pod must not be sent traffic that a still-loading worker
would refuse. `on_loaded` runs once the model is loaded (a worker announces itself there).
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from modelapp_serving import __version__, codecs
from modelapp_serving.errors import InvalidInput, ModelNotFound, ModelNotReady
from modelapp_serving.models import Model, ModelInfo, Tensors

log = logging.getLogger(__name__)

RUNTIME = f"modelapp-serving {__version__}"


class DataPlane:
    def __init__(
        self,
        model: Model,
        info: ModelInfo,
        *,
        on_inference: Callable[[float], None] | None = None,
        on_loaded: Callable[[], None] | None = None,
        others_ready: Callable[[], bool] | None = None,
    ) -> None:
        self.model = model
        self.info = info
        self._on_inference = on_inference
        self._on_loaded = on_loaded
        self._others_ready = others_ready
        self.load_error: str | None = None
        self.load_seconds: float | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model; a failure is logged and kept for the readiness answer, never raised."""
        started = time.monotonic()
        try:
            self.model.load()
        except Exception as exc:
            self.load_error = f"model failed to load: {type(exc).__name__}: {exc}"
            log.error("%s", self.load_error)
            return
        self.load_seconds = time.monotonic() - started
        log.info("model %s version %s loaded in %.2fs", self.info.name, self.info.version, self.load_seconds)
        if self._on_loaded is not None:
            try:
                self._on_loaded()
            except OSError as exc:  # the server then never counts this worker: not ready, visibly
                self.load_error = f"model loaded, but this worker could not report it: {exc}"
                log.error("%s", self.load_error)

    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="model-loader", daemon=True)
        thread.start()
        return thread

    # --- health and metadata --------------------------------------------------------------------

    def ready(self) -> bool:
        """The whole server can serve: this worker's model is loaded and so is every sibling's."""
        return self.model.ready and self.load_error is None and (self._others_ready is None or self._others_ready())

    def require_ready(self) -> None:
        """This worker can run the model (what a model call needs)."""
        if not self.model.ready:
            raise ModelNotReady(self.load_error or f"model {self.info.name!r} is still loading")

    def require_server_ready(self) -> None:
        """Every worker can run the model (what the readiness answers need)."""
        self.require_ready()
        if not self.ready():
            raise ModelNotReady(self.load_error or f"model {self.info.name!r} is still loading in another worker")

    def _model(self, name: str) -> Model:
        if name != self.info.name:
            raise ModelNotFound(name)
        self.require_ready()
        return self.model

    def model_ready(self, name: str) -> bool:
        if name != self.info.name:
            raise ModelNotFound(name)
        return self.ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelapp-serving", "version": __version__, "extensions": ["binary_tensor_data"]}

    def model_metadata(self, name: str) -> dict[str, Any]:
        model = self._model(name)
        return {
            "name": name,
            "versions": [self.info.version],
            "platform": model.platform,
            "inputs": [spec.as_metadata() for spec in model.inputs],
            "outputs": [spec.as_metadata() for spec in model.outputs],
        }

    def version(self) -> dict[str, Any]:
        return {
            "name": self.info.name,
            "version": self.info.version,
            "sha256": self.info.digest,
            "format": self.info.format,
            "runtime": RUNTIME,
            "framework": self.model.framework_version(),
            "python": platform.python_version(),
            "ready": self.model.ready,
            "provenance": self.info.provenance,
        }

    def card(self, name: str) -> bytes:
        """The version card as published (signature, acceptance examples, provenance): the operator's smoke
        test reads the examples here and checks the bytes against the card sha256 the manifest pins."""
        if name != self.info.name:
            raise ModelNotFound(name)
        if self.info.card is None:
            raise ModelNotFound(f"{name}/card")
        return self.info.card

    # --- inference ------------------------------------------------------------------------------

    def _run(self, model: Model, inputs: Tensors, output_names: Sequence[str] | None = None) -> Tensors:
        started = time.perf_counter()
        outputs = model.predict(inputs, output_names)
        if self._on_inference is not None:
            self._on_inference(time.perf_counter() - started)
        return outputs

    def infer(self, name: str, body: bytes, header_length: int | None = None) -> tuple[bytes, int | None]:
        """OIP v2: returns the response body and, when it carries binary outputs, its JSON header length."""
        model = self._model(name)
        if header_length is None:
            header, binary = codecs.loads(body), b""
        else:
            if not 0 < header_length <= len(body):
                raise InvalidInput(
                    f"Inference-Header-Content-Length {header_length} does not fit a {len(body)} byte body"
                )
            header, binary = codecs.loads(body[:header_length]), body[header_length:]
        request = codecs.decode_infer_request(header, binary)
        names = None if request.outputs is None else [out.name for out in request.outputs]
        outputs = self._run(model, request.inputs, names)
        response, chunks = codecs.encode_infer_response(
            model_name=name, model_version=self.info.version, request=request, outputs=outputs
        )
        encoded = codecs.dumps(response)
        if not chunks:
            return encoded, None
        return encoded + b"".join(chunks), len(encoded)

    def _predict_plain(self, model: Model, body: bytes, key_in: str, key_out: str) -> bytes:
        array = codecs.decode_plain(codecs.loads(body), key_in)
        outputs = self._run(model, {"input-0": array})
        first = next(iter(outputs.values()))
        return codecs.dumps(codecs.encode_plain(first, key_out))

    def predict_v1(self, name: str, body: bytes) -> bytes:
        """KServe v1: `{"instances": [...]}` -> `{"predictions": [...]}` (the model's first output)."""
        return self._predict_plain(self._model(name), body, "instances", "predictions")

    def score(self, body: bytes) -> bytes:
        """The recipe's `/score`: `{"input": [...]}` -> `{"output": [...]}` (the model's first output)."""
        return self._predict_plain(self._model(self.info.name), body, "input", "output")
