#!/usr/bin/env bash
# A stand-in for kind's public node image, made offline from the node image built here, so that the
# `--public-image` path (hack/demo.sh --kind --public-image, kind_cluster up --public-image) can run on a
# machine with no registry: tagged under the public repository and tag kind v0.30.0 names
# (kindest/node:v1.34.0), found locally by kind, nothing pulled. Prints the reference; use it as
#   MODELAPP_KIND_PUBLIC_IMAGE=$(hack/kind/public-standin.sh | tail -1) hack/demo.sh --kind --public-image
#
# kind's own default carries a digest (kindest/node:v1.34.0@sha256:7416a61b...), which only a pull from
# Docker Hub can give an image: that is why the path takes MODELAPP_KIND_PUBLIC_IMAGE at all.
#
# What the public path asks of an image, and what the stand-in adds to the built one for it:
# - kind's default CNI: kind reads /kind/manifests/default-cni.yaml from the node and applies it (the
#   public image's kindnetd). Here: a ConfigMap saying so; pods keep the built image's containerd
#   bridge network, enough for one node (no routes between nodes: use the built image for workers).
# - kubeadm's default etcd tag (the public path sets none): the built image's etcd, tagged in the node's
#   containerd under the tag `kubeadm config images list` names (3.6.4 answering as 3.6.5-0, say).
# Everything else (entrypoint, the node init guarding host-wide settings, the docker shim where
# --privileged fails) is the built image's. Rebuilt only when the built image changes (label).
set -euo pipefail
cd "$(dirname "$0")/../.."
ref=${1:-kindest/node:v1.34.0}
built=$(.venv/bin/python -m modelapp_devcluster.kind_cluster node-image | tail -1)
[ -n "$built" ] || { echo "no built node image" >&2; exit 1; }
made_from=$(docker image inspect -f '{{index .Config.Labels "io.modelapp.kind.standin-of"}}' "$ref" 2>/dev/null || true)
if [ "$made_from" = "$built" ]; then echo "$ref"; exit 0; fi

name=modelapp-kind-standin
docker rm -f "$name" >/dev/null 2>&1 || true
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$name" --entrypoint sleep "$built" infinity >/dev/null
docker exec -i "$name" bash -s <<'EOF'
set -euo pipefail
containerd --config /etc/containerd/config.toml >/tmp/containerd.log 2>&1 &
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
want=$(kubeadm config images list --kubernetes-version "$(cat /kind/version)" 2>/dev/null | grep '/etcd:')
have=$(ctr -n k8s.io images ls -q | grep '/etcd:' | head -1)
[ -n "$want" ] && [ -n "$have" ] || { echo "etcd: kubeadm wants '$want', the node has '$have'" >&2; exit 1; }
[ "$want" = "$have" ] || ctr -n k8s.io images tag "$have" "$want" >/dev/null
echo "etcd: $have also tagged $want" >&2
mkdir -p /kind/manifests
cat >/kind/manifests/default-cni.yaml <<'YAML'
# kind applies this file as its default CNI. In this stand-in for kindest/node (hack/kind/public-standin.sh)
# pods are networked by the node's containerd (a bridge per node from its podCIDR), so there is nothing to run.
apiVersion: v1
kind: ConfigMap
metadata:
  name: modelapp-standin-cni
  namespace: kube-system
data:
  cni: containerd bridge from the node's podCIDR (one node; no routes between nodes)
YAML
kill %1
wait || true
rm -rf /tmp/* /var/lib/containerd/io.containerd.runtime.v2.task /run/containerd
EOF
docker stop -t 2 "$name" >/dev/null
docker commit \
  --change 'ENTRYPOINT ["/usr/local/bin/modelapp-node-init", "/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'CMD []' --change "LABEL io.modelapp.kind.standin-of=$built" "$name" "$ref" >/dev/null
echo "stand-in $ref made from $built" >&2
echo "$ref"
