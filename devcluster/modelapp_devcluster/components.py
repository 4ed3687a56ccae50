"""Pure command lines of the control-plane processes: (layout, ports, settings) in, argv out.

Everything binds to 127.0.0.1, except the API server on a cluster with a real node, which binds to the
bridge address (`Settings.bind_address`, on this machine only) so that pods can reach it. Choices that matter:
- etcd runs without TLS on loopback and with `--unsafe-no-fsync`: the cluster is disposable and
  fsync on a shared CI disk would dominate the latency of every write.
- kube-apiserver: RBAC on (`Node,RBAC`), client-certificate auth against the local CA, service
  account tokens signed by `sa.key`; the aggregation layer (front-proxy CA and client certificate, pki.py)
  routes to an aggregated API's endpoints, so metrics-server on the real node serves metrics.k8s.io.
  With a loopback advertise address the `kubernetes` Service cannot get endpoints (the API rejects
  loopback endpoint IPs), so the endpoint reconciler is off.
- kube-controller-manager: all default controllers, one service-account credential per
  controller, the root CA published in every namespace, CSRs signed by the local CA.
- Single instances: leader election off, so components act at once after a restart.
"""

from __future__ import annotations

from pathlib import Path

from modelapp_devcluster.layout import Layout, Settings

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def etcd_args(binary: str, layout: Layout, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd_client']}"
    peer = f"http://127.0.0.1:{ports['etcd_peer']}"
    return [
        binary,
        "--name=modelapp",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=modelapp={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--quota-backend-bytes=8589934592",
        "--log-level=warn",
    ]


def apiserver_args(binary: str, layout: Layout, ports: dict[str, int], settings: Settings) -> list[str]:
    reconciler = "none" if settings.advertise_address.startswith("127.") else "lease"
    return [
        binary,
        f"--etcd-servers=http://127.0.0.1:{ports['etcd_client']}",
        f"--bind-address={settings.bind_address}",
        f"--advertise-address={settings.advertise_address}",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={layout.pki / 'apiserver-generated'}",
        f"--tls-cert-file={layout.cert('apiserver')}",
        f"--tls-private-key-file={layout.key('apiserver')}",
        f"--client-ca-file={layout.cert('ca')}",
        f"--requestheader-client-ca-file={layout.cert('front-proxy-ca')}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={layout.cert('front-proxy-client')}",
        f"--proxy-client-key-file={layout.key('front-proxy-client')}",
        # Aggregated APIs (metrics-server's metrics.k8s.io) are called at their endpoints' pod IPs, which the
        # host reaches on the bridge, rather than through a ClusterIP that only the node's kube-proxy routes.
        "--enable-aggregator-routing=true",
        "--authorization-mode=Node,RBAC",
        "--anonymous-auth=false",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={layout.root / 'pki' / 'sa.pub'}",
        f"--service-account-signing-key-file={layout.root / 'pki' / 'sa.key'}",
        f"--service-cluster-ip-range={settings.service_cidr}",
        f"--endpoint-reconciler-type={reconciler}",
        "--allow-privileged=true",
        # Logs, exec and port-forward reach kubelet at the node's IP: its name resolves nowhere here. The
        # API server logs in with a client certificate of the cluster CA, which the kubelet trusts (without
        # one, `kubectl logs` answered "You must be logged in to the server").
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--kubelet-client-certificate={layout.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={layout.key('apiserver-kubelet-client')}",
        f"--profiling={'true' if settings.profiling else 'false'}",
        "--max-requests-inflight=800",
        "--max-mutating-requests-inflight=400",
    ]


def controller_manager_args(binary: str, layout: Layout, ports: dict[str, int], settings: Settings) -> list[str]:
    kubeconfig = layout.kubeconfig_for("controller-manager")
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['controller_manager']}",
        f"--cert-dir={layout.pki / 'controller-manager-generated'}",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={layout.root / 'pki' / 'sa.key'}",
        f"--root-ca-file={layout.cert('ca')}",
        f"--cluster-signing-cert-file={layout.cert('ca')}",
        f"--cluster-signing-key-file={layout.key('ca')}",
        f"--service-cluster-ip-range={settings.service_cidr}",
        "--leader-elect=false",
        "--profiling=false",
        # Client-side rate limit: at 100 QPS the Deployment/ReplicaSet controllers alone (a ReplicaSet,
        # a pod, about five status writes and two Events per app) need ~80 s for 1,000 apps.
        "--kube-api-qps=400",
        "--kube-api-burst=800",
        "--concurrent-deployment-syncs=20",
        "--concurrent-replicaset-syncs=20",
    ]


def scheduler_args(binary: str, layout: Layout, ports: dict[str, int]) -> list[str]:
    kubeconfig = layout.kubeconfig_for("scheduler")
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['scheduler']}",
        f"--cert-dir={layout.pki / 'scheduler-generated'}",
        "--leader-elect=false",
        "--profiling=false",
        # Default 50 QPS: a binding and an Event per pod cap scheduling at ~25 pods/s (deprecated flags,
        # honoured while no --config file is given).
        "--kube-api-qps=200",
        "--kube-api-burst=400",
    ]


def kwok_args(binary: str, layout: Layout, stages: Path, settings: Settings) -> list[str]:
    """kwok manages only nodes annotated `kwok.x-k8s.io/node=fake`, so real nodes (later) are left alone."""
    return [
        binary,
        f"--config={stages}",
        f"--kubeconfig={layout.kubeconfig_for('kwok')}",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--cidr={settings.pod_cidr}",
        "--node-ip=127.0.0.1",
        "--node-lease-duration-seconds=40",
    ]
