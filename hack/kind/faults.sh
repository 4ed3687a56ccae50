#!/usr/bin/env bash
# Bad input and faults, each tried for real, with what the user is told (issue 11), then `down` and a
# diff of the machine (hack/kind/snapshot.sh) from before the first attempt to after the last `down`.
#   hack/kind/faults.sh --kind                                 a kind cluster of its own (`modelapp-faults`)
#   flock /tmp/real-node.lock hack/kind/faults.sh --real-node  the README's cluster, in a fresh state folder
# Prints each attempt's exit code and last line of output; an attempt meant to fail that succeeds, or one
# meant to succeed that fails, is marked UNEXPECTED. Root only (bridges, routes, iptables).
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=${1:?usage: hack/kind/faults.sh --kind|--real-node}
py=$(pwd)/.venv/bin/python
out=$(mktemp) before=$(mktemp) after=$(mktemp)
unexpected=0
attempt() {  # attempt WANT(ok|fail) TITLE COMMAND...
  local want=$1 title=$2 code
  shift 2
  "$@" >"$out" 2>&1
  code=$?
  local mark=""
  if { [ "$want" = ok ] && [ "$code" != 0 ]; } || { [ "$want" = fail ] && [ "$code" = 0 ]; }; then
    mark=" UNEXPECTED"; unexpected=$((unexpected + 1))
  fi
  printf '%s%s\n  exit %s: %s\n' "$title" "$mark" "$code" "$(grep -v '^\s*$' "$out" | tail -1 | cut -c1-400)"
}
free_port_holder() { setsid "$py" -c 'import socket,sys,time; s=socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); time.sleep(600)' "$@" >/dev/null 2>&1 & echo $!; }
hack/kind/snapshot.sh >"$before"

case $mode in
  --real-node)
    state=$(mktemp -d /tmp/modelapp-faults.XXXXXX)/cluster
    other=$(dirname "$state")/other
    mc() { .venv/bin/modelapp-cluster "$@"; }
    up() { mc up --real-node --nodes 0 --state-dir "${1:-$state}"; }

    ip link add mafault0 type bridge && ip addr add 10.244.0.77/24 dev mafault0 && ip link set mafault0 up
    attempt fail "a network over the pod subnet (a bridge mafault0 with 10.244.0.77/24)" up
    ip link del mafault0

    holder=$(free_port_holder 127.0.0.1 10248)
    sleep 1
    attempt fail "kubelet's healthz port 127.0.0.1:10248 held by another process (pid $holder)" up
    kill "$holder"
    attempt ok "  ... and after it: nothing of that attempt still runs (status exits 1 when down)" \
      bash -c "! .venv/bin/modelapp-cluster status --state-dir '$state'"

    (env DOCKER_HOST=unix:///nonexistent/docker.sock .venv/bin/modelapp-cluster up --real-node --nodes 0 \
       --state-dir "$state" >"$state.first.log" 2>&1 &)
    sleep 1.5
    attempt fail "a second up on the same state folder while one runs" up
    for _ in $(seq 180); do tail -1 "$state.first.log" | grep -q kubeconfig && break; sleep 1; done
    attempt ok "the first up, run with Docker stopped (DOCKER_HOST to no daemon): the real node needs none" \
      bash -c "tail -1 '$state.first.log' | grep -q kubeconfig && .venv/bin/modelapp-cluster status --state-dir '$state' | tail -1"

    attempt fail "up of another state folder while this one's node runs" up "$other"
    attempt ok "  ... and the other folder's control plane is not left running" \
      bash -c "! .venv/bin/modelapp-cluster status --state-dir '$other'"
    mc down --state-dir "$other" >/dev/null 2>&1

    mc down --state-dir "$state" >/dev/null 2>&1
    setsid bash -c "exec .venv/bin/modelapp-cluster up --real-node --nodes 0 --state-dir '$state'" >/dev/null 2>&1 &
    killer=$!
    sleep 4
    kill -9 -- -"$killer" 2>/dev/null
    attempt ok "up after an up killed (SIGKILL, whole process group) 4 s in" up
    attempt ok "down" mc down --state-dir "$state"
    ;;
  --kind)
    name=modelapp-faults
    kc() { "$py" -m modelapp_devcluster.kind_cluster "$@" --name "$name"; }
    attempt fail "Docker stopped (DOCKER_HOST to no daemon)" env DOCKER_HOST=unix:///nonexistent/docker.sock \
      "$py" -m modelapp_devcluster.kind_cluster up --name "$name"
    attempt fail "Docker missing (no docker on PATH)" env PATH=/nonexistent "$py" -m modelapp_devcluster.kind_cluster up --name "$name"

    holder=$(free_port_holder 127.0.0.1 5002)
    sleep 1
    attempt fail "the registry's port 127.0.0.1:5002 held by another process (pid $holder)" kc up
    kill "$holder"

    ip route add 10.247.0.0/24 dev lo
    attempt fail "a route to the LoadBalancer pool someone else made (10.247.0.0/24 dev lo)" kc up
    attempt ok "  ... and down leaves that route alone" bash -c "'$py' -m modelapp_devcluster.kind_cluster down --name $name >/dev/null 2>&1; ip route show 10.247.0.0/24 | grep -q 'dev lo'"
    ip route del 10.247.0.0/24 dev lo

    setsid bash -c "exec '$py' -m modelapp_devcluster.kind_cluster up --name $name" >/dev/null 2>&1 &
    killer=$!
    sleep 30
    kill -9 -- -"$killer" 2>/dev/null
    attempt fail "up after an up killed (SIGKILL, whole process group, kind create included) 30 s in" kc up
    attempt ok "down after it" kc down

    (kc up >/dev/null 2>&1 &)
    sleep 3
    attempt fail "a second up while one runs" kc up
    for _ in $(seq 120); do kc status >/dev/null 2>&1 && break; sleep 2; done

    docker stop -t 1 "$name-control-plane" >/dev/null
    attempt fail "a stale node container (the control plane stopped, as after a reboot)" kc up
    attempt ok "down" kc down
    ;;
  *) echo "usage: hack/kind/faults.sh --kind|--real-node" >&2; exit 2 ;;
esac
hack/kind/snapshot.sh >"$after"
echo "unexpected outcomes: $unexpected"
echo "on the machine after the last down, not before (others' work included):"
LC_ALL=C comm -13 "$before" "$after" | sed 's/^/  + /'
echo "before the first attempt, gone after the last down:"
LC_ALL=C comm -23 "$before" "$after" | sed 's/^/  - /'
rm -f "$out" "$before" "$after"
