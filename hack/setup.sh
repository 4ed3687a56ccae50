#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh machine, and nothing twice:
# Debian packages, the Python environment (.venv), and the tools each part's own script installs
# (Docker's engine, Helm, Azurite, the local cluster's binaries). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker.io debootstrap docker-registry apache2-utils iproute2 procps curl ca-certificates)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python environment: reinstalled only when pyproject.toml or devcluster/pyproject.toml changes.
stamp=.venv/.installed-$(cat pyproject.toml devcluster/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  .venv/bin/pip install -q -e ./devcluster   # modelapp-cluster: the dev cluster, a package of its own
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Each part's own installer (each is idempotent and caches outside the repo).
hack/install-docker.sh                        # Docker's engine (Debian's docker.io), started if not running
hack/install-helm.sh >/dev/null               # helm, built from the Go module proxy
hack/install-node-semver.sh >/dev/null        # npm's semver, the reference the policy tests compare with
hack/base-image.sh >/dev/null                 # the local Debian base image (debootstrap + docker import)
hack/install-node.sh                          # the real node's containerd, runc, CNI plugins (Debian)
.venv/bin/modelapp-cluster build --addons >/dev/null  # etcd, kube-apiserver, -controller-manager, -scheduler, kwok;
                                              # the add-ons: Traefik (Ingress) and metrics-server (all Go)
.venv/bin/modelapp-cluster node build >/dev/null  # the real node's kubelet and kube-proxy (Go)
