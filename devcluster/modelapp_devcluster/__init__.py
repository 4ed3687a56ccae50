"""The local development cluster (`modelapp-devcluster`): etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, all on 127.0.0.1, started as detached processes from a state folder, and
optionally a real node. A package of its own: neither the operator nor the serving runtime imports it.

Python callers use `LocalCluster(state_dir).up()` / `.down()` / `.kubeconfig`; the command line
is `modelapp-cluster up|down|status|kubeconfig` (`modelapp_devcluster.cli`).
"""

from __future__ import annotations

from modelapp_devcluster.errors import ClusterError
from modelapp_devcluster.layout import default_state_dir
from modelapp_devcluster.local import ClusterStatus, LocalCluster

__all__ = ["ClusterError", "ClusterStatus", "LocalCluster", "default_state_dir"]
