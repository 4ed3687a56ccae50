"""The kind node image, built on this machine with no registry: `modelapp/kind-node:<k8s>-<inputs hash>`.

Why not `kind build node-image`: its `url`/`release` types download from the Kubernetes release site,
`source` needs builder images, and `file` still pulls pause, etcd, CoreDNS, kindnetd and
local-path-provisioner from registry.k8s.io and runs `ctr info` (absent from Debian's containerd 1.6).

What is built instead (`data/kind/Dockerfile.node`): the local Debian base (`hack/base-image.sh`) with
Debian's systemd, containerd, runc and CNI plugins, kind's own base files for the pinned kind version
(entrypoint, systemd units, containerd config: read from the kind module, so they move with
`kind_build.KIND_VERSION`), kubeadm/kubelet/kubectl/crictl built here. Then every image kubeadm runs is
made from the binaries the dev cluster already builds and imported into the node's containerd in a
build container (`ctr images import --no-unpack`, as kind does), which is committed:

| image (inside the node)                      | made from                                      |
|----------------------------------------------|------------------------------------------------|
| registry.k8s.io/kube-{apiserver,controller-manager,scheduler}:<k8s> | base + the dev cluster's binaries |
| registry.k8s.io/kube-proxy:<k8s>             | base + iptables/conntrack (Debian) + kube-proxy |
| registry.k8s.io/etcd:<etcd>-0                | base + the dev cluster's etcd (kubeadm is told its tag) |
| registry.k8s.io/coredns/coredns:v1.12.1      | CoreDNS built with Go, one static file          |
| registry.k8s.io/pause:3.10.1                 | the real node's static pause (`node_build`)     |

Pod networking is containerd's: a bridge CNI config rendered per node from the node's podCIDR
(`data/kind/cni-template.json`), so no CNI image is needed; `kind_cluster` adds the routes between
nodes' ranges (docs/kind.md says what it does not do that kindnetd would).

Caching: the tag carries a hash of every input (binaries, data files, kind's base files, the base image
id), so the image is rebuilt only when one of them changes; `ensure_node_image()` returns at once when
the tag exists. Host-wide settings: nothing here changes any; the node's own guard is
`data/kind/modelapp-node-init`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from modelapp_devcluster import binaries, kind_build, node_build, node_image, versions
from modelapp_devcluster.binaries import Report
from modelapp_devcluster.errors import ClusterError

RECIPE = 1
"""Bump when the build below changes in a way the hashed inputs do not show."""
IMAGE_REPOSITORY = "modelapp/kind-node"
DATA_FILES = ("Dockerfile.node", "Dockerfile.component", "Dockerfile.kube-proxy", "kube-proxy-wrapper",
              "modelapp-node-init", "cni-template.json")
ETCD_IMAGE_TAG = versions.ETCD_VERSION.lstrip("v") + "-0"
K8S = versions.KUBERNETES_VERSION
COMPONENT_IMAGES = {  # binary -> image name inside the node
    "kube-apiserver": f"registry.k8s.io/kube-apiserver:{K8S}",
    "kube-controller-manager": f"registry.k8s.io/kube-controller-manager:{K8S}",
    "kube-scheduler": f"registry.k8s.io/kube-scheduler:{K8S}",
    "etcd": f"registry.k8s.io/etcd:{ETCD_IMAGE_TAG}",
}
KUBE_PROXY_IMAGE = f"registry.k8s.io/kube-proxy:{K8S}"
COREDNS_IMAGE = f"registry.k8s.io/coredns/coredns:{kind_build.COREDNS_VERSION}"
PAUSE_IMAGE = f"registry.k8s.io/pause:{kind_build.PAUSE_VERSION}"
BASE_IMAGE = "modelapp/base:bookworm"
LABEL = "io.modelapp.kind.inputs"


def _run(argv: list[str], *, what: str, log: Path | None = None, timeout: float = 1800,
         input_bytes: bytes | None = None) -> str:
    """Run a command; on failure raise ClusterError naming `what`, the tail of its output and the log."""
    try:
        out = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, input=input_bytes)
    except FileNotFoundError as err:
        raise ClusterError(f"{what}: {argv[0]} is not installed ({err}); run hack/setup.sh") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{what}: no answer after {timeout:.0f}s ({' '.join(argv[:4])} ...)") from None
    text = (out.stdout + out.stderr).decode(errors="replace")
    if log is not None:
        with log.open("a") as handle:
            handle.write(f"\n$ {' '.join(argv)}\n{text}")
    if out.returncode != 0:
        where = f" (full log: {log})" if log else ""
        raise ClusterError(f"{what} failed (exit {out.returncode}): {text.strip()[-600:]}{where}")
    return out.stdout.decode(errors="replace")


def kind_module_dir(env: Mapping[str, str]) -> Path:
    """The kind module's source at the pinned version (from the Go module cache; downloaded if absent)."""
    target = f"{kind_build.KIND.module}@{kind_build.KIND_VERSION}"
    out = subprocess.run(["go", "mod", "download", "-json", target], capture_output=True, text=True,
                         env={**env, "GOFLAGS": "-mod=mod"}, cwd=tempfile.gettempdir(), check=False)
    if out.returncode != 0:
        raise ClusterError(f"go mod download {target} failed: {(out.stdout + out.stderr).strip()[-300:]}")
    return Path(json.loads(out.stdout)["Dir"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inputs_digest(files: Mapping[str, Path], *, base_image_id: str) -> str:
    """sha256 over every input file (by its logical name) and the base image's id: the cache key."""
    digest = hashlib.sha256(f"recipe={RECIPE}\nbase={base_image_id}\nkind={kind_build.KIND_VERSION}\n".encode())
    for name in sorted(files):
        digest.update(f"{name}={_sha256(files[name])}\n".encode())
    return digest.hexdigest()


def image_tag(digest: str) -> str:
    return f"{IMAGE_REPOSITORY}:{K8S}-{digest[:12]}"


def _control_plane_binaries(env: dict[str, str], report: Report) -> dict[str, Path]:
    """etcd and the control plane, found or built like `binaries.ensure_binaries` (kwok is not needed)."""
    found: dict[str, Path] = {}
    for recipe in (versions.ETCD, versions.KUBERNETES):
        missing = [name for name in recipe.binaries if binaries.find_binary(name, recipe, env) is None]
        if missing:
            with binaries.file_lock(versions.build_dir(recipe, env).parent / f"{recipe.key}.lock"):
                still = [n for n in missing if not os.access(versions.bin_dir(recipe, env) / n, os.X_OK)]
                if still:
                    binaries.build_recipe(recipe, still, env=env, report=report)
        for name in recipe.binaries:
            binary = binaries.find_binary(name, recipe, env)
            if binary is None:
                raise ClusterError(f"{name} is missing after its build; see {versions.build_dir(recipe, env)}")
            found[name] = binary.path
    return found


def _inputs(env: dict[str, str], report: Report) -> tuple[dict[str, Path], Path]:
    """Every file the image is made of, by the name it has in the build context; and kind's base files."""
    control = _control_plane_binaries(env, report)
    node = node_build.ensure_node_binaries(env=env, report=report)
    kind = kind_build.ensure_kind_binaries(env=env, report=report)
    files: dict[str, Path] = {
        "bin/kubeadm": kind.kubeadm, "bin/kubectl": kind.kubectl, "bin/crictl": kind.crictl,
        "bin/kubelet": node.kubelet, "bin/kube-proxy": node.kube_proxy, "bin/coredns": kind.coredns,
        "bin/pause": node_build.static_program("pause.c"),
    }
    for name in COMPONENT_IMAGES:
        files[f"bin/{name}"] = control[name]
    data = resources.files("modelapp_devcluster").joinpath("data", "kind")
    for name in DATA_FILES:
        files[name] = Path(str(data.joinpath(name)))
    base_files = kind_module_dir(env) / "images" / "base" / "files"
    for path in sorted(base_files.rglob("*")):
        if path.is_file():
            files[f"kind-base/{path.relative_to(base_files)}"] = path
    return files, base_files


def _image_id(ref: str) -> str | None:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_base_image() -> str:
    """The id of the local Debian base image, or a ClusterError naming the script that makes it."""
    image_id = _image_id(BASE_IMAGE)
    if image_id is None:
        raise ClusterError(f"the base image {BASE_IMAGE} is missing: run hack/base-image.sh (hack/setup.sh does)")
    return image_id


def ensure_node_image(*, env: dict[str, str] | None = None, report: Report = print) -> str:
    """The node image's tag, built when no image with the current inputs' hash exists."""
    env = dict(os.environ) if env is None else env
    files, _ = _inputs(env, report)
    tag = image_tag(inputs_digest(files, base_image_id=ensure_base_image()))
    if _image_id(tag) is not None:
        return tag
    work = versions.cache_root(env) / "build" / "kind-node"
    with binaries.file_lock(work / "build.lock"):
        if _image_id(tag) is None:
            build_node_image(tag, files, work=work, report=report)
    return tag


def _context(files: Mapping[str, Path], folder: Path) -> None:
    """Hard-link (or copy) the inputs into a build context folder."""
    for name, source in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    for script in ("modelapp-node-init", "kube-proxy-wrapper"):
        (folder / script).chmod(0o755)


def build_node_image(tag: str, files: Mapping[str, Path], *, work: Path, report: Report) -> None:
    """Build the component images, the node's file system, import the images into it, commit as `tag`."""
    start = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    log.write_text(f"building {tag}\n")
    report(f"building the kind node image {tag} (a few minutes the first time; log {log})")
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        ctx = Path(tmp)
        _context(files, ctx)
        build = ["docker", "build", "--quiet", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
        images: list[str] = []
        for binary, ref in COMPONENT_IMAGES.items():
            report(f"  image {ref}")
            _docker_build([*build, "--build-arg", f"BINARY={binary}", "-f", str(ctx / "Dockerfile.component"),
                           "-t", ref, str(ctx / "bin")], what=f"building {ref}", log=log)
            images.append(ref)
        report(f"  image {KUBE_PROXY_IMAGE} (with Debian's iptables)")
        proxy_ctx = ctx / "proxy"
        proxy_ctx.mkdir()
        shutil.copy2(ctx / "bin" / "kube-proxy", proxy_ctx / "kube-proxy")
        shutil.copy2(ctx / "kube-proxy-wrapper", proxy_ctx / "kube-proxy-wrapper")
        _docker_build([*build, "-f", str(ctx / "Dockerfile.kube-proxy"), "-t", KUBE_PROXY_IMAGE, str(proxy_ctx)],
                      what=f"building {KUBE_PROXY_IMAGE}", log=log)
        images.append(KUBE_PROXY_IMAGE)
        report("  saving the component images for the node")
        _run(["docker", "save", "-o", str(ctx / "images.tar"), *images], what="docker save", log=log)
        for ref, binary, entry in ((COREDNS_IMAGE, "coredns", "/coredns"), (PAUSE_IMAGE, "pause", "/pause")):
            image = node_image.build_image([node_image.ImageFile(entry, (ctx / "bin" / binary).read_bytes())],
                                           entrypoint=[entry])
            (ctx / f"{binary}.oci.tar").write_bytes(node_image.oci_layout_tar(image, ref=ref))

        report("  node file system (Debian packages, kind's base files, Kubernetes binaries)")
        stage = f"{IMAGE_REPOSITORY}:stage-{tag.rsplit('-', 1)[1]}"
        _docker_build([*build, "--build-arg", f"PAUSE_IMAGE={PAUSE_IMAGE}", "--build-arg", f"KUBERNETES_VERSION={K8S}",
                       "-f", str(ctx / "Dockerfile.node"), "-t", stage, str(ctx)], what="building the node file system",
                      log=log)
        report("  importing the images into the node's containerd")
        _import_and_commit(stage, tag, ctx, log=log)
        _run(["docker", "rmi", stage], what="removing the stage image", log=log)
    report(f"built {tag} in {time.monotonic() - start:.0f}s")


def _docker_build(argv: list[str], *, what: str, log: Path) -> None:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800, check=False)
    except FileNotFoundError:
        raise ClusterError("docker is not installed: run hack/install-docker.sh (hack/setup.sh does)") from None
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(argv)}\n{out.stdout}{out.stderr}")
    if out.returncode != 0:
        raise ClusterError(f"{what} failed: {out.stderr.strip()[-600:]} (full log: {log})")


IMPORT_SCRIPT = r"""
set -e
containerd --config /etc/containerd/config.toml >/tmp/containerd.log 2>&1 &
for i in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
ctr version >/dev/null || { tail -20 /tmp/containerd.log; exit 1; }
for f in /images/*.tar; do
  ctr -n k8s.io images import --no-unpack --all-platforms "$f" >/dev/null
done
ctr -n k8s.io images ls -q | grep -v '^sha256:'
kill %1; wait || true
rm -rf /tmp/* /var/lib/containerd/io.containerd.runtime.v2.task /run/containerd
"""


def _import_and_commit(stage: str, tag: str, ctx: Path, *, log: Path) -> None:
    """Start containerd in a plain container of the stage image, import the image tarballs, commit as `tag`."""
    name = f"modelapp-kind-build-{tag.rsplit('-', 1)[1]}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)  # a killed run's leftover
    images = ctx / "images"
    images.mkdir()
    for tarball in ("images.tar", "coredns.oci.tar", "pause.oci.tar"):
        os.replace(ctx / tarball, images / tarball)
    _run(["docker", "run", "-d", "--name", name, "--entrypoint", "sleep", "-v", f"{images}:/images:ro", stage,
          "infinity"], what="starting the build container", log=log)
    try:
        listed = _run(["docker", "exec", name, "bash", "-c", IMPORT_SCRIPT], what="importing images into the node",
                      log=log)
        wanted = {*COMPONENT_IMAGES.values(), KUBE_PROXY_IMAGE, COREDNS_IMAGE, PAUSE_IMAGE}
        have = {line.strip() for line in listed.splitlines()}
        missing = wanted - have
        if missing:
            raise ClusterError(f"the node's containerd lacks {', '.join(sorted(missing))} after import; see {log}")
        _run(["docker", "stop", "-t", "2", name], what="stopping the build container", log=log)
        _run(["docker", "commit",
              "--change", 'ENTRYPOINT ["/usr/local/bin/modelapp-node-init", "/usr/local/bin/entrypoint", "/sbin/init"]',
              "--change", "CMD []", "--change", f"LABEL {LABEL}={tag.rsplit('-', 1)[1]}",
              name, tag], what="committing the node image", log=log)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def main() -> int:
    """`python -m modelapp_devcluster.kind_node`: build (or find) the node image, print its tag."""
    try:
        print(ensure_node_image(report=lambda line: print(line, file=sys.stderr, flush=True)))
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
