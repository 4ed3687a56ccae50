#!/usr/bin/env bash
# What a local cluster could leave on this machine, one sorted line each, so that two snapshots diff:
# Docker containers, networks and volumes, network links, routes and policy rules, iptables rules
# (IPv4 and IPv6, counters dropped), mounts, and the kernel settings a node could change.
#   hack/kind/snapshot.sh > before; ...; hack/kind/snapshot.sh > after; comm -13 before after  (left behind)
# Other engineers' work shows up too (the machine is shared): read the diff, do not only count it.
set -uo pipefail
{
  if docker info >/dev/null 2>&1; then
    docker ps -a --format 'container {{.Names}} {{.Image}}'
    docker network ls --format 'network {{.Name}}'
    docker volume ls -q | sed 's/^/volume /'
  fi
  # veth names come and go with every container anyone starts: count them, list everything else.
  ip -o link show | awk '{sub(/@.*/, "", $2); sub(/:$/, "", $2); print $2}' | grep -v '^veth' | sed 's/^/link /'
  echo "link veth* x$(ip -o link show | grep -c ': veth')"
  ip route show table all | grep -v ' dev veth' | sed -e 's/ linkdown//' -e 's/^/route /'
  ip rule show | sed 's/^/rule /'
  for cmd in iptables-save ip6tables-save; do
    command -v "$cmd" >/dev/null || continue
    "$cmd" 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//' | sed "s/^/$cmd /"
  done
  awk '{print "mount " $2 " " $3}' /proc/mounts
  # kubelet's kernel tunables (it writes them unless protectKernelDefaults), kube-proxy's and the node's own.
  for key in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys \
             kernel/keys/root_maxbytes fs/protected_regular fs/inotify/max_user_watches net/ipv4/ip_forward \
             net/bridge/bridge-nf-call-iptables net/ipv4/conf/all/route_localnet net/netfilter/nf_conntrack_max \
             net/netfilter/nf_conntrack_tcp_timeout_established net/netfilter/nf_conntrack_tcp_timeout_close_wait; do
    [ -e "/proc/sys/$key" ] && echo "sysctl $key=$(cat "/proc/sys/$key")"
  done
} | LC_ALL=C sort -u
