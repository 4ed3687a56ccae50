"""Our app (`modelapp_serving.app.create_app`) as a factory for other WSGI servers (benchmark only).

granian (`--factory benchmarks.serving.app_factory:app`) and gunicorn's stock worker classes
(`benchmarks.serving.app_factory:app()`) import this in each worker and call `app()`: the model
folder and pin come from BENCH_MODEL_DIR and BENCH_MODEL_SHA256; no metrics listener.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def app() -> Any:
    from modelapp_serving.app import create_app

    return create_app(
        model_dir=Path(os.environ["BENCH_MODEL_DIR"]),
        name="iris",
        sha256=os.environ.get("BENCH_MODEL_SHA256"),
        metrics_port=0,
    )
