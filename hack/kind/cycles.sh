#!/usr/bin/env bash
# Flake rate and timings of the kind cluster: N create/delete cycles of a cluster of its own
# (`modelapp-cycles`, never the demo's), each timed; a cycle fails when `up` fails or the node is
# not Ready with the control plane, kube-proxy and CoreDNS Running within 120 s of `up` returning.
#   hack/kind/cycles.sh [N=10] [--public-image]      prints one line per cycle, then a summary
set -uo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10}
flags=()
[ "${2:-}" = --public-image ] && flags+=(--public-image)
name=modelapp-cycles
py=.venv/bin/python
kubectl=$($py -c 'from modelapp_devcluster import kind_build; print(kind_build.ensure_kind_binaries().kubectl)')
fails=0 total_up=0
for i in $(seq "$n"); do
  start=$(date +%s.%N)
  if kubeconfig=$($py -m modelapp_devcluster.kind_cluster up --name "$name" "${flags[@]}" 2>/tmp/kind-cycle.err | tail -1); then
    up_s=$(echo "$(date +%s.%N) - $start" | bc)
    ok=false
    for _ in $(seq 60); do
      running=$("$kubectl" --kubeconfig "$kubeconfig" get pods -n kube-system --no-headers 2>/dev/null | grep -c Running)
      ready=$("$kubectl" --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | grep -c ' Ready')
      # etcd, apiserver, controller-manager, scheduler, kube-proxy, 2 x CoreDNS
      if [ "$ready" -ge 1 ] && [ "$running" -ge 7 ]; then ok=true; break; fi
      sleep 2
    done
    ready_s=$(echo "$(date +%s.%N) - $start" | bc)
    if $ok; then
      printf 'cycle %2d: ok   up %5.1fs, all Running %5.1fs\n' "$i" "$up_s" "$ready_s"
      total_up=$(echo "$total_up + $ready_s" | bc)
    else
      printf 'cycle %2d: FAIL up %5.1fs, not all Running after %5.1fs (%s Running)\n' "$i" "$up_s" "$ready_s" "$running"
      fails=$((fails + 1))
    fi
  else
    printf 'cycle %2d: FAIL up: %s\n' "$i" "$(tail -1 /tmp/kind-cycle.err)"
    fails=$((fails + 1))
  fi
  d0=$(date +%s.%N)
  $py -m modelapp_devcluster.kind_cluster down --name "$name" 2>/dev/null || { echo "down failed"; fails=$((fails + 1)); }
  printf '          down %5.1fs\n' "$(echo "$(date +%s.%N) - $d0" | bc)"
done
ok_n=$((n - fails))
avg=$([ "$ok_n" -gt 0 ] && echo "scale=1; $total_up / $ok_n" | bc || echo -)
echo "summary: $fails of $n cycles failed; mean up-to-all-Running ${avg}s"
