"""`modelapp-serving serve`: gunicorn around the Flask app factory, with a worker class of our own.

The worker (`inline.py`) answers the plain requests -- complete, small, the model calls and the probes
-- on its event loop thread with one write, and hands everything else to gunicorn's threads, gated
against slow clients (`worker.py`).

Order matters here. PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported, so
this module imports neither the app nor the metrics at the top; it points the variable at a fresh
temporary folder (an emptyDir `/tmp` in the pod, so a restarted container starts from zero), and
MODELAPP_READY_DIR / MODELAPP_READY_WORKERS at a sibling folder where each worker reports its loaded
model (readiness means every worker can serve, see `readiness.py`; the master removes a reaped
worker's marker in `child_exit`), then
checks the model folder and options synchronously (a bad pin, a pickle without a pin, a missing
class exit 2 with a one-line reason), and only then starts gunicorn. Each worker builds its own app
with `create_app` after the fork (no preloading), which starts loading the model in the background.

Two listeners: `--port` (public, behind the ModelApp's Service) and `--metrics-port` (default 9090,
MODELAPP_METRICS_PORT, 0 for none), on the same host and served by the same workers, each worker
with its own sockets on both ports (`SO_REUSEPORT`: the kernel spreads connections over workers); `/metrics` is
answered on the metrics port only (`routes.hidden`), everything else on the public port only.

Settings beyond the command line (environment): MODELAPP_THREADS (threads per worker, default 4),
MODELAPP_MAX_BODY_BYTES (default 16 MiB), MODELAPP_ORT_THREADS (onnxruntime intra-op threads, 1),
MODELAPP_AUTH_TOKEN and MODELAPP_AUTH_SMOKE_SHA256 (bearer-token authentication, `auth.py`),
MODELAPP_TIMEOUT (gunicorn worker timeout in seconds, default 120), MODELAPP_HEADER_TIMEOUT (seconds
a connection may take to send its request head, default 10), MODELAPP_READ_TIMEOUT (seconds a
worker thread waits for the rest of a request and for a client to take its response, default 30).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

log = logging.getLogger("modelapp_serving")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    model_dir: Path
    name: str
    host: str
    port: int
    workers: int
    threads: int
    sha256: str | None
    model_class: str | None
    max_body_bytes: int
    timeout: int
    header_timeout: int = 10
    read_timeout: int = 30
    metrics_port: int = 0  # 0: no metrics listener

    def binds(self) -> list[str]:
        """gunicorn's `bind`: the public address, then the metrics address when there is one."""
        ports = [self.port] + ([self.metrics_port] if self.metrics_port else [])
        host = f"[{self.host}]" if ":" in self.host else self.host
        return [f"{host}:{port}" for port in ports]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """The serve options from the parsed command line and the environment."""
    from modelapp_serving.app import DEFAULT_MAX_BODY_BYTES

    if args.workers <= 0:
        raise ValueError(f"--workers must be positive, got {args.workers}")
    if not 0 <= args.metrics_port <= 65535:
        raise ValueError(f"--metrics-port must be a port number (1-65535), or 0 for none; got {args.metrics_port}")
    if args.metrics_port and args.metrics_port == args.port:
        raise ValueError(
            f"--metrics-port {args.metrics_port} is also --port: give /metrics a port of its own (or 0 for none)"
        )
    return ServeOptions(
        model_dir=Path(args.model_dir),
        name=args.name,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=_env_int("MODELAPP_THREADS", 4),
        sha256=args.sha256,
        model_class=args.model_class,
        max_body_bytes=_env_int("MODELAPP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        timeout=_env_int("MODELAPP_TIMEOUT", 120),
        header_timeout=_env_int("MODELAPP_HEADER_TIMEOUT", 10),
        read_timeout=_env_int("MODELAPP_READ_TIMEOUT", 30),
        metrics_port=args.metrics_port,
    )


def check_ports_free(options: ServeOptions) -> None:
    """Raise ValueError naming a port that another process holds.

    Why here: with `reuse_port` the workers bind, not the master, and a worker that cannot bind
    exits and is started again, forever. A test bind without SO_REUSEPORT fails if anything else
    listens there (even a process that allowed sharing), so that case stops `serve` at once.
    """
    for port in [options.port] + ([options.metrics_port] if options.metrics_port else []):
        family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((options.host, port))
            except OSError as exc:
                raise ValueError(
                    f"cannot listen on {options.host}:{port}: {exc.strerror}; another process holds that port "
                    "(stop it, or choose another --port / --metrics-port)"
                ) from None


def _child_exit(server: Any, worker: Any) -> None:
    """In the master, for every reaped worker: it no longer counts as ready; its live gauges go."""
    from modelapp_serving.metrics import worker_exited
    from modelapp_serving.readiness import WorkerReadiness

    readiness = WorkerReadiness.from_env(os.environ)
    if readiness is not None:
        readiness.clear(worker.pid)
    worker_exited(worker.pid)


class ServingApplication(BaseApplication):  # type: ignore[misc]
    """gunicorn's programmatic entry: settings from ServeOptions, the app from the factory."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        from modelapp_serving.inline import inline_worker

        worker_class = inline_worker(header_timeout=self.options.header_timeout, read_timeout=self.options.read_timeout)
        settings: dict[str, Any] = {
            "bind": self.options.binds(),
            "workers": self.options.workers,
            "worker_class": worker_class,
            "threads": self.options.threads,
            "timeout": self.options.timeout,
            "graceful_timeout": 30,
            "keepalive": 5,
            "preload_app": False,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": f"modelapp-serving[{self.options.name}]",
            "child_exit": _child_exit,
            "control_socket_disable": True,
            # Each worker binds its own sockets (SO_REUSEPORT) and the kernel spreads connections
            # over them: with one shared socket, the worker that woke first took ~15 of 16 (issue 13).
            "reuse_port": True,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from modelapp_serving.app import create_app

        return create_app(
            model_dir=self.options.model_dir,
            name=self.options.name,
            sha256=self.options.sha256,
            model_class=self.options.model_class,
            max_body_bytes=self.options.max_body_bytes,
            metrics_port=self.options.metrics_port,
        )


def main(args: argparse.Namespace) -> int:
    """Run `serve` until gunicorn stops; 2 with a one-line reason when the model cannot be served."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    master_pid = os.getpid()
    state_dir = Path(tempfile.mkdtemp(prefix="modelapp-serve-"))
    (state_dir / "metrics").mkdir()
    (state_dir / "ready").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(state_dir / "metrics")
    os.environ["MODELAPP_READY_DIR"] = str(state_dir / "ready")
    try:
        from modelapp_serving.auth import Authenticator
        from modelapp_serving.errors import ModelConfigError
        from modelapp_serving.models import resolve_model

        try:
            options = options_from_args(args)
            check_ports_free(options)
            auth = Authenticator.from_env(os.environ)
            resolve_model(
                options.model_dir, name=options.name, pinned_sha256=options.sha256, model_class=options.model_class
            )
        except (ModelConfigError, ValueError) as exc:
            print(f"modelapp-serving serve: {exc}", file=sys.stderr)
            return 2
        os.environ["MODELAPP_READY_WORKERS"] = str(options.workers)
        log.info(
            "serving %s from %s on %s:%d, /metrics on %s",
            options.name,
            options.model_dir,
            options.host,
            options.port,
            f"port {options.metrics_port}" if options.metrics_port else "no port (--metrics-port 0)",
        )
        if auth is not None:
            log.info("bearer-token authentication on: every route but /v2/health/* needs the token (%d accepted)",
                     len(auth.digests))  # fmt: skip
        ServingApplication(options).run()
        return 0
    finally:
        # Forked workers unwind through this frame too (gunicorn exits them with SystemExit).
        if os.getpid() == master_pid:
            shutil.rmtree(state_dir, ignore_errors=True)
