"""kwok's stage configuration and the fake nodes it manages (pure builders).

Pods on kwok nodes never run; kwok's *stages* write their status instead. Ours:
- `node-initialize`: a new fake node becomes Ready with the capacity it was created with;
- `node-heartbeat`: keeps Ready nodes' conditions fresh (kwok also renews their Leases);
- `pod-ready`: a scheduled pod becomes Running and Ready, init containers Completed;
- `pod-not-ready`: a scheduled pod with any container image ending in `-broken`
  (e.g. `example.com/app:1.0-broken`) becomes Running but never Ready, like an app whose readiness
  probe always fails. Rollback tests rely on this: a Deployment rolling to such an image never
  progresses, its old pods stay;
- `pod-complete`: pods owned by a Job succeed; `pod-delete`: deleted pods go away (no kubelet).

Stage selectors are jq expressions on the object (kwok's own syntax); kwok compares booleans
against the strings "true"/"false".
"""

from __future__ import annotations

from typing import Any

STAGE_API = "kwok.x-k8s.io/v1alpha1"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
BROKEN_SUFFIX = "-broken"
_IS_BROKEN = f'[.spec.containers[]?.image | endswith("{BROKEN_SUFFIX}")] | any'
_READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'

_NODE_STATUS = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
- address: {{ NodeIP | Quote }}
  type: InternalIP
- address: {{ NodeName | Quote }}
  type: Hostname
allocatable:
{{ YAML .status.capacity 1 }}
capacity:
{{ YAML .status.capacity 1 }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  kubeProxyVersion: {{ printf "kwok-%s" Version | Quote }}
  containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
  kernelVersion: {{ printf "kwok-%s" Version | Quote }}
phase: Running
"""

_HEARTBEAT_STATUS = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
"""


_POD_STATUS = """\
{{ $now := Now }}
conditions:
- {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "__CONDITION__", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "__CONDITION__", lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: __READY__
  started: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
{{ $hostNet := or .spec.hostNetwork false }}
{{ $uid := or .metadata.uid "" }}
{{ with PodIPWith .spec.nodeName $hostNet $uid .metadata.name .metadata.namespace }}
podIP: {{ . | Quote }}
podIPs: [{ip: {{ . | Quote }}}]
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""


def _pod_status(*, ready: bool) -> str:
    """Status template of a started pod; `ready` says whether its containers pass readiness."""
    condition, flag = ("True", "true") if ready else ("False", "false")
    return _POD_STATUS.replace("__CONDITION__", condition).replace("__READY__", flag)


def _expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    expr: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        expr["values"] = list(values)
    return expr


def _stage(name: str, kind: str, exprs: list[dict[str, Any]], nxt: dict[str, Any],
           delay_ms: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": exprs},
        "next": nxt,
    }
    if delay_ms is not None:
        spec["delay"] = {"durationMilliseconds": delay_ms, "jitterDurationMilliseconds": delay_ms + 5000}
    return {"apiVersion": STAGE_API, "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def build_stages() -> list[dict[str, Any]]:
    """All Stage documents kwok runs with (one YAML stream, passed with `--config`)."""
    not_deleted = _expr(".metadata.deletionTimestamp", "DoesNotExist")
    pending = _expr(".status.phase", "In", "Pending")
    scheduled = _expr(".spec.nodeName", "Exists")
    return [
        _stage("node-initialize", "Node", [_expr(_READY, "NotIn", "True")], {"statusTemplate": _NODE_STATUS}),
        _stage("node-heartbeat", "Node", [_expr(".status.phase", "In", "Running"), _expr(_READY, "In", "True")],
               {"statusTemplate": _HEARTBEAT_STATUS}, delay_ms=20000),
        _stage("pod-ready", "Pod", [not_deleted, pending, scheduled, _expr(_IS_BROKEN, "In", "false")],
               {"statusTemplate": _pod_status(ready=True)}),
        _stage("pod-not-ready", "Pod", [not_deleted, pending, scheduled, _expr(_IS_BROKEN, "In", "true")],
               {"statusTemplate": _pod_status(ready=False)}),
        _stage("pod-complete", "Pod", [not_deleted, _expr(".status.phase", "In", "Running"),
                                       _expr(".metadata.ownerReferences.[].kind", "In", "Job")],
               {"statusTemplate": "phase: Succeeded\n"}),
        _stage("pod-delete", "Pod", [_expr(".metadata.deletionTimestamp", "Exists")], {"delete": True}),
    ]


def build_node(name: str, *, pods: int, cpu: str, memory: str) -> dict[str, Any]:
    """A fake node for kwok: annotated for kwok, capacity in its status (kwok copies it to allocatable)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "type": "kwok",
            },
        },
        "status": {"capacity": {"cpu": cpu, "memory": memory, "pods": str(pods)}},
    }


def node_names(count: int) -> list[str]:
    return [f"kwok-node-{i}" for i in range(count)]
