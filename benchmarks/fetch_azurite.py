"""Fetch throughput and peak RSS: `modelapp-serving fetch` against a plain azure-storage-blob download.

Starts Azurite on 127.0.0.1 (the test fixture's npm install), publishes one version holding a
single random blob of --size-mib, then runs each downloader in a fresh child process and reads
that child's peak RSS from wait4(). Every downloader writes the whole blob to a local file;
ours also verifies the manifest and the blob's sha256 while streaming.

    .venv/bin/python -m benchmarks.fetch_azurite --size-mib 1024
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fixtures.azurite import ACCOUNT, ACCOUNT_KEY, azurite_binary, free_port, port_open, wait_until

from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store

PLAIN = """
import sys
from azure.storage.blob import BlobClient
client = BlobClient.from_connection_string(sys.argv[1], sys.argv[2], sys.argv[3])
with open(sys.argv[4], "wb") as sink:
    client.download_blob(max_concurrency=int(sys.argv[5])).readinto(sink)
"""


# Runs a module (`-m NAME ARGS`) or a source text (`-c CODE ARGS`) and prints VmHWM, the peak RSS
# of this process image (exec resets it, unlike wait4's ru_maxrss, which also counts the forked
# copy of the parent before exec).
PEAK = """
import runpy, sys
mode, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
try:
    if mode == "-m":
        runpy.run_module(target, run_name="__main__")
    else:
        exec(compile(target, "<downloader>", "exec"))
finally:
    hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
    print("PEAK_KIB", hwm, file=sys.stderr)
"""


def run_child(mode: str, target: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one downloader in a fresh process."""
    started = time.monotonic()
    command = [sys.executable, "-c", PEAK, mode, target, *args]
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{target[:40]} exited {result.returncode}: {result.stderr[-500:]}")
    peak = [line for line in result.stderr.splitlines() if line.startswith("PEAK_KIB")][-1]
    return time.monotonic() - started, int(peak.split()[1]) / 1024


def write_random(path: Path, size_mib: int) -> None:
    with path.open("wb") as sink:
        for _ in range(size_mib):
            sink.write(os.urandom(1024 * 1024))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows the best and worst")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fetch-bench-"))
    port = free_port()
    azurite = subprocess.Popen(
        [str(azurite_binary()), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--skipApiVersionCheck",
         "--inMemoryPersistence", "--silent", "--disableTelemetry"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), timeout=60, what="Azurite")
        conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")  # fmt: skip
        env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": conn}
        store = open_store("azureblob://bench/models", env=env)
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(conn).create_container("bench")
        source = work / "model.onnx"
        write_random(source, args.size_mib)
        publish_version(store, version="1", sources=[source], model_format="onnx", entrypoint=None)
        source.unlink()
        size = args.size_mib * 1024 * 1024
        blob = ["bench", "models/1/model.onnx"]
        runs = {
            "modelapp-serving fetch (verifies sha256; 2 workers x 8 MiB ranges)": (
                "-m", "modelapp_serving.cli",
                ["fetch", "--uri", "azureblob://bench/models", "--version", "1", "--dest", str(work / "dest")]),
            "azure-storage-blob readinto, max_concurrency=1": ("-c", PLAIN, [conn, *blob, str(work / "plain"), "1"]),
            "azure-storage-blob readinto, max_concurrency=4": ("-c", PLAIN, [conn, *blob, str(work / "plain"), "4"]),
        }  # fmt: skip
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(args.rounds):  # interleaved, so a busy neighbour slows every downloader alike
            for name, (mode, target, extra) in runs.items():
                results[name].append(run_child(mode, target, extra, env))
                shutil.rmtree(work / "dest", ignore_errors=True)
                (work / "plain").unlink(missing_ok=True)
        title = f"downloader ({args.size_mib} MiB from Azurite, {args.rounds} rounds)"
        print(f"| {title} | MiB/s best (worst) | peak RSS MiB |")
        print("|---|---|---|")
        for name, timings in results.items():
            fastest, slowest = min(t for t, _ in timings), max(t for t, _ in timings)
            peak = max(rss for _, rss in timings)
            print(f"| {name} | {size / fastest / 2**20:.0f} ({size / slowest / 2**20:.0f}) | {peak:.0f} |")
    finally:
        azurite.terminate()
        azurite.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
