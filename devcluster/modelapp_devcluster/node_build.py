"""Builds what the real node runs that no package provides: kubelet, kube-proxy and the pause image.

kubelet and kube-proxy come from k8s.io/kubernetes at the control plane's version, built with
Go through the control plane's own helper-module build (`binaries`, `gomod`), and cached next to its
binaries (`~/.cache/modelapp/bin/k8s-<version>/`), so a second `up` builds nothing. The pause
program (`data/pause/pause.c`) and the test web server (`data/pause/hello.c`), package data read
through importlib.resources so that an installed wheel works too, are compiled with `gcc -static`
and packaged as single-layer OCI images (`node_image`).

Contract: `ensure_node_binaries()` returns the paths of kubelet and kube-proxy, building them
when missing; `static_program(name)` returns the path of a packaged C program compiled, cached by
the source's hash. Failures raise `ClusterError` with the tail of the build log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from modelapp_devcluster import binaries, versions
from modelapp_devcluster.binaries import Report
from modelapp_devcluster.errors import ClusterError

NODE_PACKAGES = (
    ("kubelet", "k8s.io/kubernetes/cmd/kubelet"),
    ("kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy"),
)
PROGRAMS = ("pause.c", "hello.c")
"""The C programs shipped as package data under `data/pause/`."""


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_proxy: Path


NODE_RECIPE = dataclasses.replace(versions.KUBERNETES, packages=NODE_PACKAGES)
"""The control plane's Kubernetes recipe, same version, cache folder and helper module, other commands."""


def ensure_node_binaries(*, env: dict[str, str] | None = None, report: Report = print) -> NodeBinaries:
    """kubelet and kube-proxy at `versions.KUBERNETES_VERSION`, built once (under the build lock) and cached.

    The build is the control plane's own (`binaries.build_recipe`: helper module derived from the
    downloaded go.mod, version stamped in with -ldflags), so the node reports the same version.
    """
    env = dict(os.environ) if env is None else env
    target = versions.bin_dir(NODE_RECIPE, env)
    wanted = {name: target / name for name in NODE_RECIPE.binaries}
    missing = [name for name, path in wanted.items() if not _current(path)]
    if missing:
        with binaries.file_lock(versions.build_dir(NODE_RECIPE, env).parent / f"{NODE_RECIPE.key}.lock"):
            still = [name for name in missing if not _current(wanted[name])]
            if still:
                binaries.build_recipe(NODE_RECIPE, still, env=env, report=report)
    return NodeBinaries(kubelet=wanted["kubelet"], kube_proxy=wanted["kube-proxy"])


def _current(path: Path) -> bool:
    """An executable that reports our Kubernetes version (an unstamped build says v0.0.0-master)."""
    if not os.access(path, os.X_OK):
        return False
    result = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    return result.stdout.strip() == f"Kubernetes {NODE_RECIPE.version}"


def static_program(name: str) -> Path:
    """The packaged C program `name` (one of PROGRAMS) compiled with `gcc -static`, cached by its sha256."""
    if name not in PROGRAMS:
        raise ClusterError(f"no packaged program {name!r}; there are {', '.join(PROGRAMS)}")
    source = resources.files("modelapp_devcluster").joinpath("data", "pause", name)
    with resources.as_file(source) as path:  # a real file even when the package is zipped
        return static_binary(path)


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
