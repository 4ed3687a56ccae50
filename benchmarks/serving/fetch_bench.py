"""Fetching a 1 GiB model version from Azurite: ours (now, before, tunings) vs kserve-storage vs azure-storage-blob.

The one fetch benchmark (it replaced the older `benchmarks/fetch_azurite.py`, whose plain-HTTP
comparison with azure-storage-blob it covers, over TLS and the production URL path).
`--baseline REV` adds `ours-before` (that revision's `modelapp-serving fetch`, same virtualenv);
`tunings` add rows of ours with other range sizes and worker counts (`MODELAPP_FETCH_CHUNK_MIB`,
`MODELAPP_FETCH_WORKERS`), which is how the defaults were chosen.

Method: one Azurite (HTTPS, in-memory) holds one version published by `modelapp-serving publish`:
a 1 GiB file of random bytes (incompressible) and its manifest. Each downloader runs as its own
process, one at a time, through the same TLS + CONNECT path (see `tls.py`), into a fresh folder;
wall time is from process start to exit (interpreter start-up included, the same for all), peak
RSS is the kernel's own high-water mark for that process (GNU time, see `timed`; no sampling
gaps). Every result is checked: the downloaded file's sha256 must equal the original's. Rounds are
interleaved (A B C A B C...), so a change in the shared machine's load hits every downloader alike.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.serving.baseline import Baseline
from benchmarks.serving.servers import HERE, venv_python
from benchmarks.serving.tls import ACCOUNT_HOST, ConnectProxy, make_certificate
from tests.fixtures.azurite import ACCOUNT_KEY, azurite_binary
from tests.fixtures.net import free_port, port_open, wait_until

GiB = 1 << 30
CONTAINER, PREFIX, VERSION, FILE = "bench", "models", "1", "model.bin"


@dataclass(frozen=True)
class FetchRun:
    downloader: str
    seconds: float
    mib_per_second: float
    peak_rss_mib: float
    exit_code: int
    tunnels: int  # TLS connections through the proxy: proves the run took the production URL path


def random_file(path: Path, size: int) -> str:
    """`size` random bytes in 16 MiB writes; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as sink:
        for _ in range(0, size, 16 << 20):
            block = os.urandom(min(16 << 20, size - sink.tell()))
            digest.update(block)
            sink.write(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()


def connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};BlobEndpoint={endpoint};"
    )


def timed(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """Run `command` under GNU time; (wall seconds, peak RSS MiB, exit code).

    Why GNU time and not our own `wait4`: the kernel carries the pre-exec image's high-water mark
    into `ru_maxrss`, so a child forked from this (large) harness would report the harness's size.
    `/usr/bin/time` is a small process that forks and execs the command itself.
    """
    rss_file = log.with_suffix(".rss")
    started = time.monotonic()
    with log.open("wb") as sink:
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            timeout=600,
            check=False,
        )
    seconds = time.monotonic() - started
    return seconds, int(rss_file.read_text().split()[-1]) / 1024, done.returncode


class AzuriteTls:
    """Azurite on 127.0.0.1 with TLS and in-memory storage, and the CONNECT proxy in front of it."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.cert, key = make_certificate(scratch)
        self.port = free_port()
        command = [
            str(azurite_binary()),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--skipApiVersionCheck",
            "--inMemoryPersistence",
            "--silent",
            "--cert",
            str(self.cert),
            "--key",
            str(key),
        ]
        with (scratch / "azurite.log").open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=scratch)
        wait_until(lambda: port_open(self.port) or self.process.poll() is not None, timeout=60, what="Azurite")
        self.proxy = ConnectProxy(self.port)
        self.proxy.start()

    def direct_env(self) -> dict[str, str]:
        """Straight to Azurite's path-style URL (publishing: not measured)."""
        endpoint = f"https://127.0.0.1:{self.port}/devstoreaccount1"
        return {
            **os.environ,
            "AZURE_STORAGE_CONNECTION_STRING": connection_string(endpoint),
            "REQUESTS_CA_BUNDLE": str(self.cert),
            "SSL_CERT_FILE": str(self.cert),
        }

    def production_env(self) -> dict[str, str]:
        """The production URL through the proxy: what every measured downloader gets."""
        env = {key: value for key, value in os.environ.items() if key.upper() not in ("NO_PROXY", "HTTP_PROXY")}
        return {
            **env,
            "AZURE_STORAGE_CONNECTION_STRING": connection_string(f"https://{ACCOUNT_HOST}"),
            "AZURE_STORAGE_ACCESS_KEY": ACCOUNT_KEY,
            "HTTPS_PROXY": f"http://127.0.0.1:{self.proxy.port}",
            "https_proxy": f"http://127.0.0.1:{self.proxy.port}",
            "REQUESTS_CA_BUNDLE": str(self.cert),
            "SSL_CERT_FILE": str(self.cert),
        }

    def stop(self) -> None:
        self.proxy.stop()
        self.process.terminate()
        self.process.wait(timeout=30)


def publish(azurite: AzuriteTls, source: Path) -> None:
    """Create the container, then `modelapp-serving publish` the file (straight to Azurite, not timed)."""
    from azure.storage.blob import BlobServiceClient

    env = azurite.direct_env()
    service = BlobServiceClient.from_connection_string(
        env["AZURE_STORAGE_CONNECTION_STRING"], connection_verify=str(azurite.cert)
    )
    service.create_container(CONTAINER)
    cli = str(Path(sys.executable).parent / "modelapp-serving")
    done = subprocess.run(
        [cli, "publish", "--uri", f"azureblob://{CONTAINER}/{PREFIX}", "--version", VERSION, str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=azurite.scratch,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"publish failed: {done.stderr}")


Downloader = tuple[list[str], Path, dict[str, str]]  # command, where the copy lands, extra environment


def commands(out: Path, *, baseline: Baseline | None = None, tunings: Sequence[str] = ()) -> dict[str, Downloader]:
    """Each downloader's command, where its copy of the file lands, and its extra environment.

    A tuning is `CHUNK_MIBxWORKERS` (e.g. `16x4`): ours with those transfer settings.
    """
    fetch_args = ["fetch", "--uri", f"azureblob://{CONTAINER}/{PREFIX}", "--version", VERSION, "--dest"]
    ours = [str(Path(sys.executable).parent / "modelapp-serving"), *fetch_args, str(out / "ours")]
    plain = [
        sys.executable,
        str(HERE / "downloaders.py"),
        "plain",
        CONTAINER,
        f"{PREFIX}/{VERSION}/{FILE}",
        str(out / "plain.bin"),
    ]
    kserve = [
        str(venv_python("kserve")),
        str(HERE / "downloaders.py"),
        "kserve",
        f"https://{ACCOUNT_HOST}/{CONTAINER}/{PREFIX}/{VERSION}",
        str(out / "kserve"),
    ]
    found: dict[str, Downloader] = {"ours": (ours, out / "ours" / FILE, {})}
    if baseline is not None:
        found["ours-before"] = (
            [*baseline.command(*fetch_args), str(out / "before")],
            out / "before" / FILE,
            baseline.env(),
        )
    for tuning in tunings:
        chunk, _, workers = tuning.partition("x")
        env = {"MODELAPP_FETCH_CHUNK_MIB": chunk, "MODELAPP_FETCH_WORKERS": workers}
        found[f"ours {chunk} MiB x {workers}"] = ([*ours[:-1], str(out / tuning)], out / tuning / FILE, env)
    found["kserve-storage"] = (kserve, out / "kserve" / FILE, {})
    found["azure-storage-blob"] = (plain, out / "plain.bin", {})
    return found


def run_fetch(
    scratch: Path, *, size: int = GiB, repeats: int = 1, baseline: Baseline | None = None, tunings: Sequence[str] = ()
) -> list[FetchRun]:
    """Publish `size` random bytes, then time each downloader `repeats` times (interleaved)."""
    scratch.mkdir(parents=True, exist_ok=True)
    source = scratch / FILE
    expected = random_file(source, size)
    azurite = AzuriteTls(scratch)
    runs: list[FetchRun] = []
    try:
        publish(azurite, source)
        source.unlink()
        for _ in range(repeats):
            for name, (command, landed, extra) in commands(scratch / "out", baseline=baseline, tunings=tunings).items():
                shutil.rmtree(scratch / "out", ignore_errors=True)
                (scratch / "out").mkdir()
                before = azurite.proxy.tunnels
                env = {**azurite.production_env(), **extra}
                seconds, rss, code = timed(command, env, scratch / f"fetch-{name.replace(' ', '_')}.log")
                ok = code == 0 and landed.exists() and file_sha256(landed) == expected
                rate = size / seconds / (1 << 20) if ok else 0.0
                run = FetchRun(name, seconds, rate, rss, code if ok else code or -1, azurite.proxy.tunnels - before)
                print(
                    f"  fetch {name:22} {seconds:6.2f} s  {rate:7.1f} MiB/s  peak RSS {rss:6.1f} MiB  "
                    f"{run.tunnels} tunnels  {'ok' if ok else 'FAILED'}",
                    flush=True,
                )
                runs.append(run)
    finally:
        azurite.stop()
        shutil.rmtree(scratch / "out", ignore_errors=True)
    return runs


def as_rows(runs: list[FetchRun]) -> list[dict[str, Any]]:
    return [asdict(run) for run in runs]
