"""Start the three servers under test, each in its own environment, and wait for readiness.

Why separate virtualenvs: KServe and MLServer pin FastAPI, pydantic, protobuf... differently from
us and from each other, so each lives in `~/.cache/modelapp/bench/venv-<name>` (outside the repo),
created on first use with pinned versions. Same worker count for all: our gunicorn `--workers`,
KServe's `--workers` (uvicorn processes), MLServer's `parallel_workers` (inference processes
behind its one uvicorn front). Everything binds to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.serving.baseline import Baseline
from benchmarks.serving.models import VersionDir

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelapp" / "bench"
BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"
SKLEARN = "scikit-learn==1.9.1"  # the same as ours: a joblib file only loads in the version that wrote it
VENVS: dict[str, list[str]] = {
    "kserve": ["kserve==0.21.0", "kserve-storage==0.21.0", "onnxruntime==1.32.0", SKLEARN, "joblib"],
    # uvloop 0.22+ raises in get_event_loop() without a running loop, which MLServer 1.7.1 workers call.
    "mlserver": [
        "mlserver==1.7.1",
        "mlserver-sklearn==1.7.1",
        "uvloop==0.21.0",
        "onnxruntime==1.32.0",
        SKLEARN,
        "joblib",
    ],
}


def venv_python(name: str) -> Path:
    """The python of competitor `name`'s virtualenv, created (pip install, ~2 min) if missing."""
    folder = CACHE / f"venv-{name}"
    python = folder / "bin" / "python"
    marker = folder / ".modelapp-bench-ready"
    if marker.exists() and marker.read_text() == " ".join(VENVS[name]):
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BASE_PYTHON), "-m", "venv", str(folder)], check=True, timeout=300, cwd=CACHE)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *VENVS[name]], check=True, timeout=1200, cwd=CACHE)
    marker.write_text(" ".join(VENVS[name]))
    return python


GRANIAN = "granian==2.8.7"  # a Rust HTTP server with a WSGI interface, measured as a candidate for `serve`


def granian_path() -> Path:
    """A folder holding granian (pip --target), put on PYTHONPATH beside the project venv, which
    then runs our own app under it: the same packages as `serve`, only the HTTP server differs."""
    folder = CACHE / f"target-{GRANIAN.replace('==', '-')}"
    marker = folder / ".modelapp-bench-ready"
    if marker.exists():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(folder), GRANIAN],
        check=True,
        timeout=600,
        cwd=CACHE,
    )
    marker.write_text(GRANIAN)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server: its base URL, the process, and its log file."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def session(self) -> int:
        """The session id of the server's processes (each server is started in a session of its own)."""
        return self.process.pid

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self, deadline_seconds: float = 120.0) -> float:
        """Poll readiness every 10 ms until the deadline; return seconds since the process started."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}: {self.log_tail()}")
            if self.ready():
                return time.monotonic() - self.started
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} not ready within {deadline_seconds}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        """SIGTERM the server's own process group (it forks workers), then SIGKILL after 20 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


def _start(
    name: str, command: Sequence[str], *, port: int, logs: Path, cwd: Path, env: dict[str, str] | None = None
) -> Server:
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Server(name, f"http://127.0.0.1:{port}", process, log_path)


def start_ours(
    model: VersionDir,
    *,
    workers: int,
    logs: Path,
    tag: str,
    baseline: Baseline | None = None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """`modelapp-serving serve`, pinned (required for sklearn, harmless for ONNX); `baseline`: an earlier
    revision; `extra_env`: settings such as MODELAPP_THREADS for a variant row."""
    port = free_port()
    prefix = [str(Path(sys.executable).parent / "modelapp-serving")] if baseline is None else baseline.command()
    command = [
        *prefix,
        "serve",
        "--model-dir",
        str(model.path),
        "--name",
        "iris",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--sha256",
        model.digest,
    ]
    name = f"ours-{tag}" if baseline is None else f"ours-{baseline.rev}-{tag}"
    # No metrics listener (9090 would clash between servers started side by side); an older revision ignores it.
    env = {**(os.environ if baseline is None else baseline.env()), "MODELAPP_METRICS_PORT": "0", **(extra_env or {})}
    if extra_env:
        name += "-" + "-".join(f"{key}={value}" for key, value in extra_env.items())
    return _start(name, command, port=port, logs=logs, cwd=model.path.parent, env=env)


def start_kserve(model: VersionDir, *, model_format: str, workers: int, logs: Path, tag: str) -> Server:
    port = free_port()
    command = [
        str(venv_python("kserve")),
        str(HERE / "kserve_model.py"),
        "--model_name",
        "iris",
        "--format",
        model_format,
        "--path",
        str(model.entry),
        "--http_port",
        str(port),
        "--workers",
        str(workers),
    ]
    return _start(f"kserve-{tag}", command, port=port, logs=logs, cwd=model.path.parent)


def mlserver_repository(model: VersionDir, *, model_format: str, workers: int, root: Path) -> tuple[Path, int]:
    """An MLServer model repository: settings.json (ports, workers) and one model-settings.json."""
    folder = root / f"mlserver-{model_format}-{model.entry.stem}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "iris").mkdir(parents=True)
    shutil.copy(model.entry, folder / "iris" / model.entry.name)
    implementation = "mlserver_sklearn.SKLearnModel"
    if model_format == "onnx":
        shutil.copy(HERE / "mlserver_onnx.py", folder / "iris" / "mlserver_onnx.py")
        implementation = "mlserver_onnx.OnnxModel"
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": workers,
        "debug": False,
    }
    model_settings = {"name": "iris", "implementation": implementation, "parameters": {"uri": f"./{model.entry.name}"}}
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "iris" / "model-settings.json").write_text(json.dumps(model_settings))
    return folder, port


def start_mlserver(model: VersionDir, *, model_format: str, workers: int, logs: Path, tag: str) -> Server:
    folder, port = mlserver_repository(model, model_format=model_format, workers=workers, root=logs)
    command = [str(venv_python("mlserver").parent / "mlserver"), "start", str(folder)]
    return _start(f"mlserver-{tag}", command, port=port, logs=logs, cwd=folder)


def _readiness_env(folder: Path, workers: int) -> dict[str, str]:
    """Readiness across workers as under `serve` (readiness.py): markers in a fresh folder, counted
    for the live children of the worker's parent. Without it a candidate answered ready when one
    worker had loaded, and the first request, landing on the other, got a 503 (granian, sklearn)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return {"MODELAPP_READY_DIR": str(folder), "MODELAPP_READY_WORKERS": str(workers)}


def start_thin(model: VersionDir, *, workers: int, logs: Path, tag: str) -> Server:
    """The thinnest HTTP server around the same dataplane (`thin_server.py`): a floor, not a rival."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.serving.thin_server", "--model-dir", str(model.path)]
    command += ["--sha256", model.digest, "--port", str(port), "--workers", str(workers)]
    # cwd = the repository, for `-m benchmarks...`: never on PYTHONPATH, whose `operator/` would shadow
    # the standard library's `operator` before `site` has imported it (`-m` adds the cwd after that).
    return _start(f"thin-{tag}", command, port=port, logs=logs, cwd=REPO)


def start_granian(model: VersionDir, *, workers: int, logs: Path, tag: str) -> Server:
    """Our own app (`create_app`: fast path, Flask, metrics) under granian's WSGI interface instead of gunicorn."""
    port = free_port()
    metrics_dir = logs / f"granian-metrics-{tag}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--factory", "--no-ws"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--http", "1"]
    command += ["benchmarks.serving.app_factory:app"]
    env = {
        "PYTHONPATH": str(granian_path()),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),  # as under `serve`: samples in files, one per worker
        **_readiness_env(logs / f"granian-ready-{tag}", workers),
        "BENCH_MODEL_DIR": str(model.path),
        "BENCH_MODEL_SHA256": model.digest,
    }
    return _start(f"granian-{tag}", command, port=port, logs=logs, cwd=REPO, env=env)


def start_gunicorn(model: VersionDir, *, worker_class: str, workers: int, logs: Path, tag: str) -> Server:
    """Our app under gunicorn with a stock worker class (`gevent`, `gthread`), shared-socket or not,
    and none of `serve`'s own worker changes: what the field's classes give as they are."""
    port = free_port()
    metrics_dir = logs / f"gunicorn-{worker_class}-metrics-{tag}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    command = [sys.executable, "-m", "gunicorn", "-k", worker_class, "-w", str(workers), "--threads", "4"]
    command += ["--reuse-port", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    command += ["benchmarks.serving.app_factory:app()"]
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **_readiness_env(logs / f"gunicorn-{worker_class}-ready-{tag}", workers),
        "BENCH_MODEL_DIR": str(model.path),
        "BENCH_MODEL_SHA256": model.digest,
    }
    return _start(f"gunicorn-{worker_class}-{tag}", command, port=port, logs=logs, cwd=REPO, env=env)
