"""The embedded local Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, all on 127.0.0.1, started as detached processes from a state folder.

Python callers use `LocalCluster(state_dir).up()` / `.down()` / `.kubeconfig`; the command line
is `modelapp cluster up|down|status|kubeconfig` (`modelapp_operator.cluster.cli`).
"""

from __future__ import annotations

from modelapp_operator.cluster.errors import ClusterError
from modelapp_operator.cluster.layout import default_state_dir
from modelapp_operator.cluster.local import ClusterStatus, LocalCluster

__all__ = ["ClusterError", "ClusterStatus", "LocalCluster", "default_state_dir"]
