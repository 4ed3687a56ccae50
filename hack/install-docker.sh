#!/usr/bin/env bash
# Make a working Docker engine available, idempotently: install Debian's `docker.io` when dockerd
# is missing, and start dockerd in the background when nothing answers on its socket.
#
# Why this shape: CI machines here are containers/VMs without systemd, and no public registry is
# reachable, so we only need the engine itself (images are built from a local base image, see
# hack/base-image.sh). Debian's docker.io (20.10) has no buildx plugin: builds use the classic
# builder (DOCKER_BUILDKIT=0), which the Dockerfiles are written for.
#
# Environment: DOCKERD_LOG (default /var/log/modelapp-dockerd.log), DOCKERD_EXTRA_ARGS (e.g.
# "--iptables=false --storage-driver=vfs" where overlay2 or iptables are not available).
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/modelapp-dockerd.log}
sock=/var/run/docker.sock

say() { echo "install-docker: $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { say "dockerd is missing and we are not root: install docker.io first"; exit 1; }
  say "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq docker.io >/dev/null
fi

if docker info >/dev/null 2>&1; then
  say "dockerd is running ($(docker version --format '{{.Server.Version}}'))"
  exit 0
fi

[ "$(id -u)" = 0 ] || { say "dockerd is not running and we are not root: start it first"; exit 1; }

# A stale pid file from a dead daemon makes dockerd refuse to start.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi

start_dockerd() {
  say "starting dockerd $* (log: $log)"
  # setsid: the daemon outlives this script and the CI step that ran it. Every descriptor but 0-2 is
  # closed first: one inherited from a caller under `flock /tmp/real-node.lock ...` would keep that
  # lock held for as long as dockerd runs (seen: every later `flock` on it waited for ever).
  # shellcheck disable=SC2086
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec setsid dockerd --host "unix://$sock" $DOCKERD_EXTRA_ARGS "$@" >>"$log" 2>&1 < /dev/null
  ) &
  dockerd_pid=$!
  local deadline=$(( $(date +%s) + 60 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if docker info >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then return 1; fi
    sleep 1
  done
  return 1
}

DOCKERD_EXTRA_ARGS=${DOCKERD_EXTRA_ARGS:-}
dockerd_pid=
# overlay2 with iptables is what works on our CI machines; fall back to the most permissive setup
# (vfs storage, no iptables) on hosts whose kernel lacks overlayfs or netfilter.
if ! start_dockerd; then
  say "dockerd did not come up with defaults; retrying with --iptables=false --storage-driver=vfs"
  # Stop only the daemon this script started, and wait for it to let go of its socket.
  kill "$dockerd_pid" 2>/dev/null || true
  while kill -0 "$dockerd_pid" 2>/dev/null; do sleep 1; done
  start_dockerd --iptables=false --storage-driver=vfs || {
    say "dockerd failed to start; last lines of $log:"; tail -20 "$log" >&2; exit 1; }
fi
say "dockerd is running ($(docker version --format '{{.Server.Version}}'), $(docker info --format '{{.Driver}}'))"
