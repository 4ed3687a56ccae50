#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh machine, and nothing twice:
# Debian packages, the Python environment (.venv), and the tools each part's own script installs
# (Docker's engine, Helm, Azurite, the local cluster's binaries). Safe to run again.
#   hack/setup.sh            what the demo and the unit and integration tiers need
#   hack/setup.sh --extras   also what only the e2e and kind tiers need: the add-ons (Traefik,
#                            metrics-server) and kind with its node image; hack/test.sh builds these
#                            in the background while the first tiers run
#   hack/setup.sh --only-extras   just those (what hack/test.sh runs in the background)
#
# On a cold 2-core machine the Go builds take most of the time and use both cores; the steps that
# mostly wait on the network or the disk (pip, debootstrap, npm, Debian's containerd) run beside
# them. Each background step writes its own log; a failed step is named with the end of its log.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=no
case "${1:-}" in
  "") ;;
  --extras) extras=yes ;;
  --only-extras) extras=only ;;
  *) echo "setup: unknown argument '$1' (use --extras or --only-extras)" >&2; exit 2 ;;
esac

LOGS=${XDG_CACHE_HOME:-$HOME/.cache}/modelapp/setup-logs
mkdir -p "$LOGS"
say() { printf 'setup: %s [%s]\n' "$*" "$(date +%H:%M:%S)"; }

declare -A PIDS=()
background() {  # background NAME COMMAND...: run COMMAND with its output in $LOGS/NAME.log
  local name=$1; shift
  ( "$@" ) >"$LOGS/$name.log" 2>&1 &
  PIDS[$name]=$!
}
await() {  # await NAME: wait for a background step; on failure name it, show its log's end, stop
  local name=$1 status=0
  wait "${PIDS[$name]}" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "setup: step '$name' failed (exit $status); the end of its log, $LOGS/$name.log:" >&2
    tail -n 25 "$LOGS/$name.log" >&2
    echo "setup: fix the cause above and run hack/setup.sh again (finished steps are cached and skipped)" >&2
    exit 1
  fi
}
trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT

extras() {
  # Only the e2e tier (Ingress, autoscaling) and the kind tier use these; ~25 min of Go builds when cold.
  .venv/bin/modelapp-cluster build --addons >/dev/null  # Traefik (Ingress) and metrics-server (all Go)
  .venv/bin/python -m modelapp_devcluster.kind_cluster node-image >/dev/null  # kind, kubeadm, ...; the node image
}

if [ "$extras" = only ]; then
  extras
  exit 0
fi

APT_PACKAGES=(docker.io debootstrap docker-registry apache2-utils iproute2 procps curl ca-certificates)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python_env() {
  # Reinstalled only when pyproject.toml or devcluster/pyproject.toml changes.
  local stamp
  stamp=.venv/.installed-$(cat pyproject.toml devcluster/pyproject.toml | sha256sum | cut -c1-16)
  if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    .venv/bin/pip install -q -e ./devcluster   # modelapp-cluster: the dev cluster, a package of its own
    rm -f .venv/.installed-*
    touch "$stamp"
  fi
}
docker_and_base() {
  hack/install-docker.sh                      # Docker's engine (Debian's docker.io), started if not running
  hack/base-image.sh                          # the local Debian base image (debootstrap + docker import)
}

say "starting the Python environment, Docker and the base image, npm's semver and the real node's Debian packages in the background (logs in $LOGS)"
background python-env python_env
background docker-base-image docker_and_base
background node-semver hack/install-node-semver.sh   # npm's semver, the reference the policy tests compare with
background node-packages hack/install-node.sh        # the real node's containerd, runc, CNI plugins (Debian)

say "helm (built once from the Go module proxy)"
hack/install-helm.sh >/dev/null               # helm, built from the Go module proxy
await python-env
say "the local cluster's binaries: etcd, the control plane, kwok, the real node's kubelet (built once)"
.venv/bin/modelapp-cluster build >/dev/null   # etcd, kube-apiserver, -controller-manager, -scheduler, kwok (Go)
await node-packages
.venv/bin/modelapp-cluster node build >/dev/null  # the real node's kubelet and kube-proxy (Go)
await node-semver
await docker-base-image
grep -h "^install-docker:\|^install-node:\|^base-image:" "$LOGS/docker-base-image.log" "$LOGS/node-packages.log" || true

if [ "$extras" = yes ]; then
  say "building the e2e and kind tiers' extras"
  extras
fi
say "done"
