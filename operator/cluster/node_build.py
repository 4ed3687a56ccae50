"""Builds what the real node runs that no package provides: kubelet, kube-proxy and the pause image.

kubelet and kube-proxy come from k8s.io/kubernetes at the control plane's version, built with
Go through a helper module (see `gomod`) exactly like the control plane, and cached next to its
binaries (`~/.cache/modelapp/bin/k8s-<version>/`), so a second `up` builds nothing. The pause
program (`hack/pause/pause.c`) and the test web server (`hack/pause/hello.c`) are compiled with
`gcc -static` and packaged as single-layer OCI images (`node_image`).

Contract: `ensure_node_binaries()` returns the paths of kubelet and kube-proxy, building them
when missing; `static_binary(source)` returns the path of a compiled program, cached by the
source's hash. Failures raise `ClusterError` with the tail of the build log.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from modelapp_operator.cluster import gomod, versions
from modelapp_operator.cluster.errors import ClusterError

NODE_PACKAGES = (
    ("kubelet", "k8s.io/kubernetes/cmd/kubelet"),
    ("kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy"),
)
HACK_PAUSE = Path(__file__).resolve().parents[2] / "hack" / "pause"
GO_BUILD_TIMEOUT = 3600.0


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_proxy: Path


def node_bin_dir() -> Path:
    """Same folder as the control plane's Kubernetes binaries: one version, one place."""
    return versions.bin_dir(versions.KUBERNETES)


def ensure_node_binaries(*, progress: bool = True) -> NodeBinaries:
    """kubelet and kube-proxy at `versions.KUBERNETES_VERSION`, built once and cached."""
    target = node_bin_dir()
    wanted = {name: target / name for name, _ in NODE_PACKAGES}
    if not all(path.exists() for path in wanted.values()):
        _go_build(target, progress=progress)
    return NodeBinaries(kubelet=wanted["kubelet"], kube_proxy=wanted["kube-proxy"])


def _run(argv: list[str], *, cwd: Path, log: Path, timeout: float, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as out:
        result = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                check=False, env=env)
    if result.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        raise ClusterError(f"{' '.join(argv[:3])} failed (log {log}): {tail}")


def _go_build(target: Path, *, progress: bool) -> None:
    """Write the helper module, `go mod tidy`, `go build` both commands into `target` atomically."""
    go = shutil.which("go")
    if go is None:
        raise ClusterError("Go is needed to build kubelet and kube-proxy; run hack/setup.sh (or install Go 1.24+)")
    recipe = versions.KUBERNETES
    work = versions.build_dir(recipe).with_name(f"{recipe.key}-node")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    log.write_text("")
    started = time.monotonic()
    if progress:
        print(f"building kubelet and kube-proxy {recipe.version} (a few minutes cold; log {log})", flush=True)
    _run([go, "mod", "download", "-json", f"{recipe.module}@{recipe.version}"], cwd=work, log=log, timeout=900,
         env=_go_env(work))
    upstream = _downloaded_go_mod(recipe.module, recipe.version)
    (work / "go.mod").write_text(gomod.helper_go_mod(
        name="modelapp.local/node-build", go_version=gomod.go_directive(upstream), module=recipe.module,
        version=recipe.version, replaced=gomod.local_replacements(upstream), replace_version=recipe.replace_version))
    (work / "tools.go").write_text(gomod.tools_go([pkg for _, pkg in NODE_PACKAGES]))
    _run([go, "mod", "tidy"], cwd=work, log=log, timeout=900)
    staging = work / "bin"
    staging.mkdir(exist_ok=True)
    _run([go, "build", "-trimpath", "-ldflags=-s -w", "-o", f"{staging}/", *[pkg for _, pkg in NODE_PACKAGES]],
         cwd=work, log=log, timeout=GO_BUILD_TIMEOUT, env=_go_env(work, cgo=False))
    target.mkdir(parents=True, exist_ok=True)
    for name, _ in NODE_PACKAGES:
        shutil.copy2(staging / name, target / f".{name}.tmp")
        (target / f".{name}.tmp").replace(target / name)
    if progress:
        print(f"built kubelet and kube-proxy in {time.monotonic() - started:.0f}s", flush=True)


def _go_env(work: Path, *, cgo: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = "-buildvcs=false"
    if not cgo:
        env["CGO_ENABLED"] = "0"
    return env


def _downloaded_go_mod(module: str, version: str) -> str:
    """The go.mod of `module@version` from the module cache (after `go mod download`)."""
    result = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    cache = Path(result.stdout.strip())
    path = cache / "cache" / "download" / module / "@v" / f"{version}.mod"
    if not path.exists():
        raise ClusterError(f"{module}@{version}: go.mod not found in the module cache at {path}")
    return path.read_text()


def static_binary(source: Path) -> Path:
    """`source` (C) compiled with `gcc -static`, cached by the source's sha256 next to the node binaries."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = versions.cache_root() / "bin" / "node-static" / f"{source.stem}-{digest}"
    if out.exists():
        return out
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ClusterError("gcc is needed to build the pause image; run hack/install-node.sh")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    result = subprocess.run([gcc, "-static", "-Os", "-s", "-Wall", "-o", str(tmp), str(source)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"gcc -static {source.name} failed: {result.stderr.strip()[-300:]}")
    tmp.replace(out)
    return out
