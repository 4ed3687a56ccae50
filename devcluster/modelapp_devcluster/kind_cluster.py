"""A kind cluster for the demo and the e2e tier: up, down, status, and the LoadBalancer allocator.

    python -m modelapp_devcluster.kind_cluster up [--name modelapp] [--public-image] [--workers N]
    python -m modelapp_devcluster.kind_cluster down [--name modelapp]
    python -m modelapp_devcluster.kind_cluster status|kubeconfig|registry|node-image [--name modelapp]
    python -m modelapp_devcluster.kind_cluster load IMAGE [--name modelapp]      (kind load docker-image)

Choices, and why:
- kind is the pinned upstream build (`kind_build`), never patched. Where `--privileged` containers
  cannot start (this machine class: root lacks CAP_SYS_RESOURCE), a `docker` shim first on kind's PATH
  turns kind's `--privileged` into every capability but that one (`data/kind/docker-shim`). A probe
  decides, so on an ordinary machine kind runs exactly as its users run it. A patch to kind would be
  a fork to carry; the shim is 30 lines of shell that upstream kind does not know about.
- Node image: built here (`kind_node`) unless `--public-image` (kind's default `kindest/node`, for users
  with internet: nothing built, kind pulls it).
- Pods: 10.245.0.0/16 (the hand-made node uses 10.244.0.0/16 on the host; kind's pods live in the nodes'
  network namespaces, but distinct ranges rule out any collision). With the built image, containerd's
  bridge network per node and routes between the nodes' ranges (`pod_routes`), since kindnetd is not
  published on the Go module proxy (docs/kind.md).
- Images: the app image must be in a registry the nodes reach (the operator makes pods pull it on every
  start); a registry container on the kind network, published on 127.0.0.1 only, and the nodes'
  containerd told to reach it by name. `kind load docker-image` serves the operator's image.
- LoadBalancer: the dev cluster's own allocator (`loadbalancer.plan`) with a pool (10.247.0.0/24) routed
  from this host to the control-plane node, where kube-proxy answers for the addresses. MetalLB would
  need its CRDs and two more Go builds plus a speaker answering ARP; cloud-provider-kind is not on the
  module proxy and runs Envoy containers that would have to be pulled.

Every failure a user meets is a ClusterError naming its cause and what to do (Docker missing or
stopped, a second `up` while one runs, a stale cluster from a killed run, the registry's port in use).
`down` removes what `up` made: the cluster's containers, the registry, the route, the allocator, and the
`kind` network when `up` created it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modelapp_devcluster import kind_build, kind_node, loadbalancer
from modelapp_devcluster.api import ApiClient
from modelapp_devcluster.errors import ClusterError

DEFAULT_NAME = "modelapp"
POD_SUBNET = "10.245.0.0/16"
SERVICE_SUBNET = "10.96.0.0/16"
"""kind's default service range, set explicitly so that `keep_service_range_in` rejects the same one."""
LB_POOL = "10.247.0.0/24"
REGISTRY_PORT = 5002
"""The registry's port on 127.0.0.1 (the real node's registry has 5001); also the name pods pull by."""
NETWORK = "kind"
PUBLIC_IMAGE_ENV = "MODELAPP_KIND_PUBLIC_IMAGE"
"""With --public-image, the node image kind runs instead of its own default (for kind v0.30.0
`kindest/node:v1.34.0@sha256:7416a61b...`, pulled by kind): a mirror's copy, or the offline stand-in
`hack/kind/public-standin.sh` makes. Unset, kind chooses, as for any kind user."""
CERTS_D = "/etc/containerd/certs.d"
CREATE_TIMEOUT_S = 600


@dataclass(frozen=True)
class Paths:
    """Where one kind cluster's own files live: `~/.local/state/modelapp/kind/<name>/`."""

    root: Path

    @classmethod
    def for_name(cls, name: str, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return cls(Path(base) / "modelapp" / "kind" / name)

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def record(self) -> Path:
        return self.root / "state.json"

    @property
    def lock(self) -> Path:
        return self.root / "up.lock"


def registry_name(cluster: str) -> str:
    return f"{cluster}-registry"


def registry_ref(repository: str, tag: str) -> str:
    """How images are named for this cluster: pushed there from the host, pulled by the same name in the nodes."""
    return f"127.0.0.1:{REGISTRY_PORT}/{repository}:{tag}"


def cluster_config(*, name: str, built_image: bool, workers: int, registry: str | None) -> dict[str, Any]:
    """The kind Cluster configuration (pure).

    With the built image: no default CNI (the image's containerd makes each node's bridge network) and
    kubeadm told to use the etcd image the dev cluster builds (its tag differs from kubeadm's default).
    With `registry`, the nodes' containerd reads registries' hosts.toml files from CERTS_D (`up` writes the
    one sending 127.0.0.1:<port> to that container on the kind network).
    """
    config: dict[str, Any] = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": name,
        "networking": {"podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET, "apiServerAddress": "127.0.0.1"},
        "nodes": [{"role": "control-plane"}] + [{"role": "worker"} for _ in range(workers)],
    }
    if built_image:
        config["networking"]["disableDefaultCNI"] = True
        config["kubeadmConfigPatches"] = [yaml.safe_dump({
            "kind": "ClusterConfiguration",
            "etcd": {"local": {"imageTag": kind_node.ETCD_IMAGE_TAG}},
        })]
    if registry:
        # Registries by hosts.toml files (kind's documented way, read at each pull): `up` writes the one for
        # its own registry, and more can be added while the cluster runs (`set_registry_hosts`).
        config["containerdConfigPatches"] = [
            f'[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{CERTS_D}"\n'
        ]
    return config


def registry_hosts_toml(server: str, endpoint: str) -> str:
    """A containerd hosts.toml (pure): pull `server`'s images from `endpoint` (plain HTTP, both)."""
    return f'server = "http://{server}"\n\n[host."http://{endpoint}"]\n  capabilities = ["pull", "resolve"]\n'


# ---------------------------------------------------------------------------------------------- checks

def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ClusterError("Docker is not installed: run hack/install-docker.sh (hack/setup.sh does)") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"docker {args[0]} got no answer in {timeout:.0f}s: is the Docker daemon hung? "
                           "Check `systemctl status docker` (or restart it with hack/install-docker.sh)") from None


def check_docker() -> None:
    """Docker installed and its daemon answering, else a ClusterError saying how to start it."""
    out = _docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if out.returncode != 0:
        raise ClusterError("Docker's daemon is not running (docker info: "
                           f"{out.stderr.strip()[-200:]}): start it with hack/install-docker.sh "
                           "(or `service docker start`), then try again")


def privileged_works(image: str) -> bool:
    """Whether a `--privileged` container starts here (it cannot where root lacks CAP_SYS_RESOURCE)."""
    out = _docker("run", "--rm", "--privileged", "--entrypoint", "true", image, timeout=60)
    return out.returncode == 0


def shim_wanted(image: str) -> bool:
    """MODELAPP_KIND_SHIM=always|never forces the choice; by default (auto) a probe decides."""
    mode = os.environ.get("MODELAPP_KIND_SHIM", "auto")
    if mode not in ("auto", "always", "never"):
        raise ClusterError(f"MODELAPP_KIND_SHIM={mode!r}: use auto, always or never")
    return mode == "always" or (mode == "auto" and not privileged_works(image))


def kind_clusters(kind: Path) -> list[str]:
    out = subprocess.run([str(kind), "get", "clusters"], capture_output=True, text=True, check=False)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def api_answers(kubectl: Path, kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    out = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz",
                          "--request-timeout=5s"], capture_output=True, text=True, check=False)
    return out.returncode == 0


@contextlib.contextmanager
def up_lock(paths: Paths, name: str) -> Iterator[None]:
    """One `up` per cluster name at a time; a second one fails at once, naming the first one's pid."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ClusterError(f"another `up` of kind cluster {name!r} is running (pid {holder}): wait for it to "
                               f"finish, or stop it and run `down --name {name}`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def explain_kind_failure(stderr: str, name: str) -> str:
    """kind's own failure text, with the cause and the fix for the ones users meet."""
    text = stderr.strip()[-1500:]
    if "already exist for a cluster with the name" in stderr:
        return (f"node containers of an earlier kind cluster {name!r} are still there (a killed run?): run "
                f"`down --name {name}` and try again. kind said: {text[-300:]}")
    if "address already in use" in stderr or "port is already allocated" in stderr:
        return f"a port kind wanted is in use: free it or pick another cluster name. kind said: {text}"
    if "Pool overlaps" in stderr or "networks have overlapping" in stderr:
        return ("the `kind` Docker network could not be made: its subnet overlaps another network's; remove the "
                f"other network (docker network ls) or create `kind` with a free subnet. kind said: {text}")
    if "failed to pull image" in stderr or "Unable to find image" in stderr:
        return ("kind's public node image could not be pulled (no internet or no registry access here?): leave out "
                f"--public-image to build the node image on this machine. kind said: {text[-400:]}")
    if "unable to apply caps" in stderr:
        return ("the node container could not start with the capabilities it asked for; the docker shim should "
                f"have been used (MODELAPP_KIND_SHIM=always forces it). kind said: {text}")
    return f"kind create cluster failed: {text}"


# ----------------------------------------------------------------------------------------------- up

def _shim_dir(env: Mapping[str, str]) -> Path:
    """A folder holding the docker shim as `docker`, and the empty folder it binds as /lib/modules."""
    folder = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelapp" / "kind-shim"
    (folder / "empty").mkdir(parents=True, exist_ok=True)
    source = resources.files("modelapp_devcluster").joinpath("data", "kind", "docker-shim")
    target = folder / "docker"
    target.write_bytes(source.read_bytes())
    target.chmod(0o755)
    return folder


def kind_env(*, use_shim: bool) -> dict[str, str]:
    env = dict(os.environ)
    if use_shim:
        real = shutil.which("docker")
        if real is None:
            raise ClusterError("Docker is not installed: run hack/install-docker.sh (hack/setup.sh does)")
        folder = _shim_dir(env)
        env.update(PATH=f"{folder}:{env.get('PATH', '')}", MODELAPP_REAL_DOCKER=real,
                   MODELAPP_EMPTY_DIR=str(folder / "empty"))
    return env


def _network_exists() -> bool:
    return _docker("network", "inspect", NETWORK).returncode == 0


def _save(paths: Paths, record: dict[str, Any]) -> None:
    paths.record.write_text(json.dumps(record, indent=2) + "\n")


def _load(paths: Paths) -> dict[str, Any]:
    try:
        data = json.loads(paths.record.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def up(*, name: str, public_image: bool, workers: int, report: Any = print) -> Paths:
    """Bring the cluster up (or find it up), its registry and LoadBalancer allocator; returns its paths."""
    check_docker()
    paths = Paths.for_name(name)
    tools = kind_build.ensure_kind_binaries(report=report)
    with up_lock(paths, name):
        record = _load(paths)
        if name in kind_clusters(tools.kind):
            if not api_answers(tools.kubectl, paths.kubeconfig):
                raise ClusterError(
                    f"kind cluster {name!r} exists but its API server does not answer (node containers left by a "
                    f"killed run, or Docker restarted): run `down --name {name}`, then `up` again")
            report(f"kind cluster {name!r} is up")
        else:
            check_route_free(record.get("via"))
            check_registry_port_free(name)
            built = None if public_image else kind_node.ensure_node_image(report=report)
            image = built or os.environ.get(PUBLIC_IMAGE_ENV) or None
            record.setdefault("created_network", not _network_exists())
            _save(paths, record)
            use_shim = shim_wanted(built or kind_node.BASE_IMAGE)
            if use_shim:
                report("--privileged containers cannot start here: kind runs through the docker shim")
            record["shim"] = use_shim
            _save(paths, record)
            config = cluster_config(name=name, built_image=built is not None, workers=workers,
                                    registry=registry_name(name))
            config_file = paths.root / "kind-config.yaml"
            config_file.write_text(yaml.safe_dump(config, sort_keys=False))
            argv = [str(tools.kind), "create", "cluster", "--name", name, "--config", str(config_file),
                    "--kubeconfig", str(paths.kubeconfig), "--wait", "300s"]
            if image:
                argv += ["--image", image]
            report(f"kind create cluster --name {name}" + (f" --image {image}" if image else ""))
            start = time.monotonic()
            try:
                out = subprocess.run(argv, capture_output=True, text=True, env=kind_env(use_shim=use_shim),
                                     timeout=CREATE_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                raise ClusterError(f"kind create cluster took over {CREATE_TIMEOUT_S}s: see `docker logs "
                                   f"{name}-control-plane`; `down --name {name}` cleans up") from None
            (paths.root / "create.log").write_text(out.stdout + out.stderr)
            if out.returncode != 0:
                raise ClusterError(explain_kind_failure(out.stderr, name) + f" (log {paths.root / 'create.log'})")
            report(f"cluster up in {time.monotonic() - start:.0f}s")
        if not public_image:
            route_pod_ranges(name, tools.kubectl, paths.kubeconfig, report=report)
        keep_service_range_in(name, report=report)
        record.update(start_registry(name, report=report))
        host = f"127.0.0.1:{REGISTRY_PORT}"
        set_registry_hosts(name, host, registry_hosts_toml(host, f"{registry_name(name)}:5000"))
        record.update(start_allocator(name, paths, tools.kubectl, report=report))
        _save(paths, record)
    return paths


def pod_routes(nodes: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """For each node, a (podCIDR, via) route to every other node's pod range (pure; what kindnetd would add).

    The built image's bridge CNI gives each node its own range; packets to another node's range must
    be sent to that node's address on the kind network.
    """
    ranges: dict[str, tuple[str, str]] = {}
    for node in nodes:
        address = next((a["address"] for a in node.get("status", {}).get("addresses", [])
                        if a.get("type") == "InternalIP"), None)
        cidr = node.get("spec", {}).get("podCIDR")
        if address and cidr:
            ranges[node["metadata"]["name"]] = (cidr, address)
    return {name: [ranges[other] for other in sorted(ranges) if other != name] for name in sorted(ranges)}


def route_pod_ranges(name: str, kubectl: Path, kubeconfig: Path, *, report: Any) -> None:
    """Add the routes between nodes' pod ranges inside each node (several nodes only; idempotent)."""
    deadline = time.monotonic() + 120
    while True:  # a worker gets its podCIDR a moment after it registers
        out = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json"],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise ClusterError(f"cannot list the nodes of {name!r}: {out.stderr.strip()[-300:]}")
        nodes = json.loads(out.stdout).get("items", [])
        if all(node.get("spec", {}).get("podCIDR") for node in nodes) or time.monotonic() > deadline:
            break
        time.sleep(2)
    for node, routes in pod_routes(nodes).items():
        for cidr, via in routes:
            added = _docker("exec", node, "ip", "route", "replace", cidr, "via", via)
            if added.returncode != 0:
                raise ClusterError(f"cannot route {cidr} via {via} in {node}: {added.stderr.strip()}")
            report(f"{node}: pods {cidr} via {via}")


def keep_service_range_in(name: str, *, report: Any) -> None:
    """In each node, reject what leaves for the service range without kube-proxy's DNAT (idempotent).

    A connection to a ClusterIP made before kube-proxy has the Service's rule (the API server's first
    check of an APIService just created, a pod's first call) would otherwise follow the node's default
    route out of the machine, and keep going there for as long as the connection lives: on these
    machines something outside answered 404, for good (docs/kind.md). Rejected, the client retries on a
    new connection, which kube-proxy's rule by then sends to the endpoints. nat runs before filter, so
    the appended rules see only the packets kube-proxy did not translate."""
    for node in node_names(name):
        for chain in ("OUTPUT", "FORWARD"):
            rule = [chain, "-o", "eth0", "-d", SERVICE_SUBNET, "-j", "REJECT"]
            if _docker("exec", node, "iptables", "-C", *rule).returncode == 0:
                continue
            added = _docker("exec", node, "iptables", "-A", *rule)
            if added.returncode != 0:
                raise ClusterError(f"cannot keep {SERVICE_SUBNET} inside {node} ({chain}): {added.stderr.strip()}")
        report(f"{node}: {SERVICE_SUBNET} without kube-proxy's translation is rejected, not routed out")


def node_names(name: str) -> list[str]:
    """The cluster's node containers (kind labels them with the cluster's name)."""
    out = _docker("ps", "--filter", f"label=io.x-k8s.kind.cluster={name}", "--format", "{{.Names}}")
    return sorted(out.stdout.split())


def set_registry_hosts(name: str, host: str, toml: str | None) -> None:
    """Write (or with None remove) `host`'s hosts.toml in every node: how containerd reaches that registry.

    containerd reads the folder at each pull, so this takes effect without a restart."""
    folder = f"{CERTS_D}/{host}"
    script = (f"mkdir -p '{folder}' && cat > '{folder}/hosts.toml'" if toml is not None else f"rm -rf '{folder}'")
    for node in node_names(name):
        out = subprocess.run(["docker", "exec", "-i", node, "sh", "-c", script], input=toml or "",
                             capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise ClusterError(f"cannot write {folder}/hosts.toml in {node}: {out.stderr.strip()[-300:]}")


def gateway() -> str:
    """This host's address on the kind network (its gateway): what pods reach of this host, and nothing else does."""
    out = _docker("network", "inspect", NETWORK, "-f", "{{range .IPAM.Config}}{{println .Gateway}}{{end}}")
    found = [line for line in out.stdout.split() if line.count(".") == 3]
    if out.returncode != 0 or not found:
        raise ClusterError(f"no IPv4 gateway on the Docker network {NETWORK!r}: is a kind cluster up?")
    return found[0]


def run_kind(name: str, args: list[str], *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `kind ARGS` for the cluster `name` the way `up` ran it (through the docker shim when `up` did):
    `kind load` and `kind export logs` exec into the nodes with --privileged, which fails here too."""
    record = _load(Paths.for_name(name))
    kind = kind_build.ensure_kind_binaries().kind
    use_shim = bool(record.get("shim")) if "shim" in record else shim_wanted(kind_node.BASE_IMAGE)
    return subprocess.run([str(kind), *args], capture_output=True, text=True, env=kind_env(use_shim=use_shim),
                          timeout=timeout, check=False)


def load_image(name: str, image: str) -> None:
    """`kind load docker-image IMAGE --name NAME`, or a ClusterError with kind's words."""
    out = run_kind(name, ["load", "docker-image", "--name", name, image])
    if out.returncode != 0:
        raise ClusterError(f"kind load docker-image {image} failed: {out.stderr.strip()[-400:]} (is the image built? "
                           f"`docker image inspect {image}`)")


def start_registry(name: str, *, report: Any) -> dict[str, Any]:
    """The registry container on the kind network, published on 127.0.0.1:REGISTRY_PORT only."""
    container = registry_name(name)
    state = _docker("inspect", "-f", "{{.State.Running}}", container)
    if state.returncode == 0 and state.stdout.strip() == "true":
        return {"registry": container}
    _docker("rm", "-f", container)
    data = resources.files("modelapp_devcluster").joinpath("data", "kind")
    files = {name: data.joinpath(name).read_bytes() for name in ("Dockerfile.registry", "registry-config.yml")}
    digest = hashlib.sha256(b"".join(files[name] for name in sorted(files))).hexdigest()[:12]
    image = f"modelapp/kind-registry:{digest}"
    if _docker("image", "inspect", image).returncode != 0:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "Dockerfile").write_bytes(files["Dockerfile.registry"])
            (Path(tmp) / "registry-config.yml").write_bytes(files["registry-config.yml"])
            out = subprocess.run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={kind_node.BASE_IMAGE}",
                                  "-t", image, tmp], capture_output=True, text=True,
                                 env={**os.environ, "DOCKER_BUILDKIT": "0"}, check=False)
        if out.returncode != 0:
            raise ClusterError(f"building the registry image failed: {out.stderr.strip()[-400:]}")
    out = _docker("run", "-d", "--restart=no", "--name", container, "--network", NETWORK,
                  "-p", f"127.0.0.1:{REGISTRY_PORT}:5000", image)
    if out.returncode != 0:
        _docker("rm", "-f", container)
        if "address already in use" in out.stderr or "port is already allocated" in out.stderr:
            raise ClusterError(f"127.0.0.1:{REGISTRY_PORT} is in use, so the cluster's registry cannot start: stop "
                               f"what listens there (ss -ltnp | grep {REGISTRY_PORT})")
        raise ClusterError(f"starting the registry container failed: {out.stderr.strip()[-300:]}")
    report(f"registry {container} on the kind network, pushed to as 127.0.0.1:{REGISTRY_PORT}")
    return {"registry": container}


# ------------------------------------------------------------------------------------- LoadBalancer

def lb_pool() -> tuple[str, ...]:
    return tuple(str(ip) for ip in ipaddress.ip_network(LB_POOL).hosts())


def node_address(name: str) -> str:
    out = _docker("inspect", "-f", "{{(index .NetworkSettings.Networks \"kind\").IPAddress}}", f"{name}-control-plane")
    if out.returncode != 0 or not out.stdout.strip():
        raise ClusterError(f"no address for {name}-control-plane on the kind network: is the cluster up?")
    return out.stdout.strip()


def _route(action: str, via: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "route", action, LB_POOL] + (["via", via] if via else [])
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def route_holder() -> str | None:
    """Where LB_POOL is routed on this host, if it is: the gateway's address, or the route as `ip` says it
    when it has none (`dev lo scope link`: someone else's, never ours)."""
    words = _route("show").stdout.split()
    if "via" in words:
        return words[words.index("via") + 1]
    return " ".join(words[1:]) or None


def check_route_free(ours: str | None) -> None:
    """LB_POOL must be unrouted or routed to our own node (`ours`): one kind cluster of ours gets it at a time."""
    holder = route_holder()
    if holder and holder != ours:
        raise ClusterError(f"{LB_POOL} (LoadBalancer addresses) is routed to {holder}: another kind cluster of ours is "
                           "up, or a killed one left the route; run `down --name <that cluster>` (or `ip route del "
                           f"{LB_POOL}`) first")


def check_registry_port_free(name: str) -> None:
    """127.0.0.1:REGISTRY_PORT must be free unless our own registry container holds it."""
    if _docker("inspect", registry_name(name)).returncode == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free, as the servers bind
        try:
            probe.bind(("127.0.0.1", REGISTRY_PORT))
        except OSError:
            raise ClusterError(f"127.0.0.1:{REGISTRY_PORT} is in use, so the cluster's registry cannot start: stop "
                               f"what listens there (ss -ltnp | grep {REGISTRY_PORT}; another kind cluster of "
                               "ours?)") from None


def start_allocator(name: str, paths: Paths, kubectl: Path, *, report: Any) -> dict[str, Any]:
    """Route the pool to the control-plane node and start the allocator process (unless it runs)."""
    via = node_address(name)
    check_route_free(via)
    out = _route("replace", via)
    if out.returncode != 0:
        raise ClusterError(f"cannot route {LB_POOL} to the node {via} ({out.stderr.strip()}): `up` needs root "
                           "for this route (LoadBalancer addresses); run it as root")
    pid_file = paths.root / "allocator.pid"
    if _alive(pid_file):
        return {"route": LB_POOL, "via": via}
    log = (paths.root / "allocator.log").open("a")
    proc = subprocess.Popen([sys.executable, "-m", "modelapp_devcluster.kind_cluster", "allocate", "--name", name],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    report(f"LoadBalancer addresses from {LB_POOL}, routed to {via} (allocator pid {proc.pid})")
    return {"route": LB_POOL, "via": via}


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return "modelapp_devcluster.kind_cluster" in cmdline


def _client(kubeconfig: Path, folder: Path) -> ApiClient:
    """An ApiClient from kind's kubeconfig (embedded certificates written to files beside it)."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    files = {}
    for key, field in (("ca", cluster["certificate-authority-data"]), ("cert", user["client-certificate-data"]),
                       ("key", user["client-key-data"])):
        path = folder / f"allocator-{key}.pem"
        path.write_bytes(base64.b64decode(field))
        path.chmod(0o600)
        files[key] = path
    return ApiClient(cluster["server"], ca=files["ca"], cert=files["cert"], key=files["key"])


def allocate_forever(name: str, *, interval: float = 1.0) -> None:
    """Write LoadBalancer addresses from LB_POOL into Services' status, as `loadbalancer.run` does."""
    paths = Paths.for_name(name)
    api = _client(paths.kubeconfig, paths.root)
    pool = lb_pool()
    while True:
        try:
            listing = api.get("/api/v1/services") or {}
            for (namespace, svc), ip in loadbalancer.plan(listing.get("items", []), pool).items():
                path = f"/api/v1/namespaces/{namespace}/services/{svc}/status"
                service = api.get(path)
                if service is None or (service.get("status") or {}).get("loadBalancer", {}).get("ingress"):
                    continue
                service.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
                if api.request("PUT", path, service).status < 300:
                    print(f"{namespace}/{svc}: {ip}", flush=True)
        except (OSError, ValueError) as err:
            print(f"pass failed: {err}", flush=True)
        time.sleep(interval)


# --------------------------------------------------------------------------------------------- down

def down(*, name: str, report: Any = print) -> None:
    """Remove everything `up` made; safe to run twice, and after a killed `up`."""
    paths = Paths.for_name(name)
    record = _load(paths)
    pid_file = paths.root / "allocator.pid"
    if _alive(pid_file):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        report("allocator stopped")
    pid_file.unlink(missing_ok=True)
    if record.get("route") and route_holder() == record.get("via"):  # ours only, never a route someone else made
        _route("del")
        report(f"route to {LB_POOL} removed")
    kind = kind_build.ensure_kind_binaries(report=report).kind
    # kind deletes by label, so node containers left by a killed `up` go too.
    out = subprocess.run([str(kind), "delete", "cluster", "--name", name], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise ClusterError(f"kind delete cluster --name {name} failed: {out.stderr.strip()[-300:]}")
    report(f"kind cluster {name!r} deleted")
    if _docker("rm", "-f", registry_name(name)).returncode == 0:
        report(f"registry {registry_name(name)} removed")
    if record.get("created_network") and _network_exists():
        users = _docker("network", "inspect", "-f", "{{len .Containers}}", NETWORK).stdout.strip()
        if users == "0" and _docker("network", "rm", NETWORK).returncode == 0:
            report(f"Docker network {NETWORK!r} removed (up created it)")
    for leftover in ("kubeconfig", "state.json", "kind-config.yaml", "allocator-ca.pem", "allocator-cert.pem",
                     "allocator-key.pem"):
        (paths.root / leftover).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelapp_devcluster.kind_cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("up", "down", "status", "kubeconfig", "registry", "allocate", "node-image", "load"):
        cmd = sub.add_parser(command)
        cmd.add_argument("--name", default=DEFAULT_NAME)
        if command == "load":
            cmd.add_argument("image", help="a local Docker image to put into every node (kind load docker-image)")
        if command == "up":
            cmd.add_argument("--public-image", action="store_true",
                             help="kind's own node image (pulled from the internet); nothing is built")
            cmd.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    report = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    paths = Paths.for_name(args.name)
    try:
        if args.command == "up":
            up(name=args.name, public_image=args.public_image, workers=args.workers, report=report)
            print(paths.kubeconfig)
        elif args.command == "down":
            down(name=args.name, report=report)
        elif args.command == "kubeconfig":
            print(paths.kubeconfig)
        elif args.command == "load":
            load_image(args.name, args.image)
        elif args.command == "registry":
            print(f"127.0.0.1:{REGISTRY_PORT}")
        elif args.command == "node-image":
            print(kind_node.ensure_node_image(report=report))
        elif args.command == "allocate":
            allocate_forever(args.name)
        else:
            tools = kind_build.ensure_kind_binaries(report=report)
            up_now = args.name in kind_clusters(tools.kind)
            answers = api_answers(tools.kubectl, paths.kubeconfig)
            print(json.dumps({"name": args.name, "exists": up_now, "api": answers, **_load(paths)}, indent=2))
            return 0 if answers else 1
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
