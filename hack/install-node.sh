#!/usr/bin/env bash
# Install what the embedded cluster's real node runs besides kubelet and kube-proxy (which are
# built with Go by `modelapp_devcluster.node_build`), idempotently, from Debian:
#   containerd 1.6 (CRI plugin built in), runc, the CNI plugins (bridge, host-local, loopback,
#   portmap in /usr/lib/cni), iptables, conntrack, iproute2, docker-registry, and gcc + libc6-dev
#   for the statically linked pause program (no public registry is reachable, so the sandbox
#   image is compiled here).
# Nothing is started and no system service is enabled: the node runs containerd with its own
# config, state and socket under the cluster's state folder.
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins iptables conntrack iproute2 docker-registry gcc libc6-dev kmod)

say() { echo "install-node: $*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { say "missing ${missing[*]} and not root: install them first"; exit 1; }
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian starts containerd as a system service when it can; the node never uses that instance
# (its socket is /run/containerd/containerd.sock, ours lives in the state folder), so it is left alone.
say "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), CNI in /usr/lib/cni"
