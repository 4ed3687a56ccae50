#!/usr/bin/env bash
# Flake rate and timings of a local cluster: N up/ready/down cycles, each timed, then what the machine
# kept (hack/kind/snapshot.sh before the first cycle and after the last down, diffed).
#   hack/kind/cycles.sh [N=10]                    kind, the node image built here (cluster `modelapp-cycles`)
#   hack/kind/cycles.sh [N=10] --public-image     kind with kind's default (or $MODELAPP_KIND_PUBLIC_IMAGE)
#   flock /tmp/real-node.lock hack/kind/cycles.sh [N=10] --real-node
#                                                 the README's cluster: `modelapp-cluster up --real-node --nodes 0`
#                                                 in a fresh state folder (cycle 1 makes its certificates)
# A cycle fails when `up` fails, when the cluster is not ready within 120 s of `up` returning, or when
# `down` fails. Ready: kind, the node Ready with the control plane, kube-proxy and CoreDNS Running;
# the real node, the node Ready and a pod (its local pause image) Running on it.
set -uo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10}
mode=${2:-kind}
py=.venv/bin/python
err=$(mktemp)
before=$(mktemp) after=$(mktemp)
hack/kind/snapshot.sh >"$before"

case $mode in
  kind | --public-image)
    name=modelapp-cycles
    flags=()
    [ "$mode" = --public-image ] && flags+=(--public-image)
    kubectl=$($py -c 'from modelapp_devcluster import kind_build; print(kind_build.ensure_kind_binaries().kubectl)')
    cluster_up() { $py -m modelapp_devcluster.kind_cluster up --name "$name" "${flags[@]}" 2>"$err" | tail -1; }
    cluster_down() { $py -m modelapp_devcluster.kind_cluster down --name "$name" 2>>"$err" >/dev/null; }
    kind=$($py -c 'from modelapp_devcluster import kind_build; print(kind_build.ensure_kind_binaries().kind)')
    quiet() {  # one kind cluster of ours at a time owns the LoadBalancer route and the registry port
      [ -z "$(ip route show 10.247.0.0/24)" ] && [ -z "$("$kind" get clusters 2>/dev/null | grep -vx "$name")" ]
    }
    cluster_ready() {  # etcd, apiserver, controller-manager, scheduler, kube-proxy, 2 x CoreDNS
      local running ready
      running=$("$kubectl" --kubeconfig "$1" get pods -n kube-system --no-headers 2>/dev/null | grep -c Running)
      ready=$("$kubectl" --kubeconfig "$1" get nodes --no-headers 2>/dev/null | grep -c ' Ready')
      [ "$ready" -ge 1 ] && [ "$running" -ge 7 ]
    }
    ;;
  --real-node)
    state=$(mktemp -d /tmp/modelapp-cycles.XXXXXX)/cluster
    quiet() { true; }  # the caller holds /tmp/real-node.lock
    cluster_up() { .venv/bin/modelapp-cluster up --real-node --nodes 0 --state-dir "$state" 2>"$err" | tail -1; }
    cluster_down() { .venv/bin/modelapp-cluster down --state-dir "$state" 2>>"$err" >/dev/null; }
    cluster_ready() { $py - "$state" 2>/dev/null <<'EOF'
import sys
from pathlib import Path
from modelapp_devcluster.node import ControlPlane
api = ControlPlane.from_state_dir(Path(sys.argv[1])).api()
node = api.get("/api/v1/nodes/modelapp-node") or {}
ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
pod = api.get("/api/v1/namespaces/default/pods/cycle")
if pod is None:
    api.request("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cycle"},
        "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1, "containers": [
            {"name": "pause", "image": "modelapp.local/pause:1", "imagePullPolicy": "Never"}]}})
running = bool(pod) and pod.get("status", {}).get("phase") == "Running"
sys.exit(0 if ready and running else 1)
EOF
    }
    ;;
  *) echo "usage: hack/kind/cycles.sh [N] [--public-image|--real-node]" >&2; exit 2 ;;
esac

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
fails=0 total_ready=0
for i in $(seq "$n"); do
  waited=0
  until quiet; do  # another kind cluster of ours (someone's tests): wait for it, outside the timings
    [ "$waited" = 0 ] && echo "          waiting for another kind cluster of ours to go ($("$kind" get clusters | tr '\n' ' '))"
    waited=$((waited + 5)); sleep 5
  done
  start=$(now)
  if kubeconfig=$(cluster_up) && [ -n "$kubeconfig" ]; then
    up_s=$(since "$start")
    ok=false
    for _ in $(seq 120); do
      if cluster_ready "$kubeconfig"; then ok=true; break; fi
      sleep 1
    done
    ready_s=$(since "$start")
    if $ok; then
      printf 'cycle %2d: ok   up %5.1fs, ready %5.1fs\n' "$i" "$up_s" "$ready_s"
      total_ready=$(echo "$total_ready + $ready_s" | bc)
    else
      printf 'cycle %2d: FAIL up %5.1fs, not ready after %5.1fs\n' "$i" "$up_s" "$ready_s"
      fails=$((fails + 1))
    fi
  else
    printf 'cycle %2d: FAIL up: %s\n' "$i" "$(tail -1 "$err")"
    fails=$((fails + 1))
  fi
  d0=$(now)
  : >"$err"
  if cluster_down; then
    printf '          down %5.1fs %s\n' "$(since "$d0")" "$(grep -h 'host settings put back' "$err" | tail -1)"
  else
    printf '          down FAILED: %s\n' "$(tail -1 "$err")"
    fails=$((fails + 1))
  fi
done
hack/kind/snapshot.sh >"$after"
ok_n=$((n - fails))
avg=$([ "$ok_n" -gt 0 ] && echo "scale=1; $total_ready / $ok_n" | bc || echo -)
echo "summary ($mode): $fails of $n cycles failed; mean up-to-ready ${avg}s"
echo "on the machine after the last down, not before (others' work included):"
LC_ALL=C comm -13 "$before" "$after" | sed 's/^/  + /'
echo "before the first up, gone after the last down:"
LC_ALL=C comm -23 "$before" "$after" | sed 's/^/  - /'
rm -f "$err" "$before" "$after"
