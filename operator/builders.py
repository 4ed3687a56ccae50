"""Pure builders of a ModelApp's child manifests: spec in, plain dicts out. No I/O, no kopf.

Contract (docs/contracts.md, "The pod the operator builds"): a Deployment whose pod fetches the model
version with an init container `fetch-model` into the `model` emptyDir at /mnt/models, then runs the
app image's `modelapp-serving serve` on port 8080; a Service in front of it; a PodDisruptionBudget
when there is more than one replica. Everything the rollout depends on (image, model uri, version,
sha256) is also written into pod-template annotations, so any change to it changes the template and
the Deployment rolls out a new ReplicaSet — and the status layer can tell whether the Deployment runs
the *current* template by comparing those annotations.

The manifests are the complete desired state for server-side apply under one field manager: a field
we stop sending (e.g. the sha256 annotation after the pin is removed) is removed by the API server.

`spec.pod` (service account, pull Secrets, node selection, extra labels and annotations) is added to the
pod template only when set, so a ModelApp without it keeps the template it had, and an operator upgrade
rolls nothing out. Its labels and annotations never replace ours (the spec refuses those keys, and ours
are written last). A credentials Secret only ever reaches a container running the operator's serving
image, never one running the tenant's app image (docs/identity.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelapp_operator import hosts
from modelapp_operator.names import (
    ANN_IMAGE,
    ANN_MODEL_SHA256,
    ANN_MODEL_URI,
    ANN_MODEL_VERSION,
    API_VERSION,
    KIND,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGER,
)
from modelapp_operator.spec import ModelAppSpec, PodSettings

PORT = 8080
#: The serving runtime's metrics listener (`/metrics` only), a container port named `metrics` that no Service
#: exposes: scraped in the pod network (the chart's PodMonitor), never through the app's load balancer.
METRICS_PORT = 9090
MODEL_MOUNT = "/mnt/models"
MODEL_DIR = f"{MODEL_MOUNT}/model"
UID = 1000
#: The pod's writable scratch space (an emptyDir, the root filesystem is read-only).
TMP_MOUNT = "/tmp"  # noqa: S108

Manifest = dict[str, Any]


@dataclass(frozen=True)
class BuildContext:
    """What the builders need besides the spec: operator configuration, never cluster state."""

    serving_image: str
    revision_history_limit: int = 5
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    #: The operator's smoke-test key (its own Secret, docs/security.md): with it and the ModelApp's uid, a
    #: ModelApp with `auth` gets the SHA-256 of its per-revision smoke token in its pods.
    smoke_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Children:
    """The desired children: manifests to apply, and (kind, name) pairs that must not exist."""

    apply: list[Manifest]
    absent: list[tuple[str, str]]


def labels(name: str) -> dict[str, str]:
    """The `app.kubernetes.io/*` labels of every child and pod; the first two form the selector."""
    return {
        LABEL_INSTANCE: name,
        LABEL_MANAGED_BY: MANAGER,
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "modelapp",
    }


def selector(name: str) -> dict[str, str]:
    """The immutable selector of the Deployment, the Service and the PDB."""
    return {LABEL_INSTANCE: name, LABEL_MANAGED_BY: MANAGER}


def template_annotations(spec: ModelAppSpec) -> dict[str, str]:
    """The pod-template annotations that identify a revision (image + model)."""
    annotations = {
        ANN_IMAGE: spec.image,
        ANN_MODEL_URI: spec.model.uri,
        ANN_MODEL_VERSION: spec.model.version,
    }
    if spec.model.sha256:
        annotations[ANN_MODEL_SHA256] = spec.model.sha256
    return annotations


def _meta(name: str, namespace: str, ctx: BuildContext) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {**ctx.extra_labels, **labels(name)}}


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(spec: ModelAppSpec) -> dict[str, Any]:
    if spec.resources is None:
        return {}
    out: dict[str, Any] = {}
    if spec.resources.requests is not None:
        out["requests"] = spec.resources.requests.as_kube()
    if spec.resources.limits is not None:
        out["limits"] = spec.resources.limits.as_kube()
    return out


def fetch_container(spec: ModelAppSpec, ctx: BuildContext) -> dict[str, Any]:
    """`modelapp-serving fetch` into /mnt/models/model; credentials only here, never in the app.

    A `file://` model is baked into the app image, which the serving image cannot see: then the app
    image (the serving image plus the app's code, so it has `modelapp-serving` too) does the fetch.
    """
    args = ["fetch", "--uri", spec.model.uri, "--version", spec.model.version, "--dest", MODEL_DIR]
    if spec.model.sha256:
        args += ["--sha256", spec.model.sha256]
    image = spec.image if spec.model.uri.startswith("file://") else ctx.serving_image
    container: dict[str, Any] = {
        "name": "fetch-model",
        "image": image,
        **({"imagePullPolicy": "Always"} if image == spec.image else {}),  # the tenant's image: as the app's
        "command": ["modelapp-serving"],
        "args": args,
        # The one-line reason of a failed fetch (e.g. a digest mismatch) lands in the pod's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _container_security(),
        "resources": _resources(spec),
        "volumeMounts": [{"name": "model", "mountPath": MODEL_MOUNT}, {"name": "tmp", "mountPath": TMP_MOUNT}],
    }
    # The spec refuses a Secret with file://, but a spec rebuilt around a last-good pair (revisions.apply_to)
    # skips validation: the tenant's own image must never hold a Secret, whatever the spec says.
    if spec.model.credentials_secret and image == ctx.serving_image:
        container["envFrom"] = [{"secretRef": {"name": spec.model.credentials_secret}}]
    return container


def _app_command(name: str, spec: ModelAppSpec) -> dict[str, list[str]]:
    """Default `modelapp-serving serve ...`; a custom command drops the default args (Kubernetes semantics)."""
    if spec.command is not None:
        return {"command": list(spec.command), **({"args": list(spec.args)} if spec.args is not None else {})}
    if spec.args is not None:
        return {"command": ["modelapp-serving"], "args": list(spec.args)}
    args = ["serve", "--model-dir", MODEL_DIR, "--name", name, "--port", str(PORT)]
    if spec.model.sha256:
        args += ["--sha256", spec.model.sha256]
    return {"command": ["modelapp-serving"], "args": args}


#: The app container's environment for endpoint authentication (docs/security.md, "Endpoint authentication"):
#: the tenant's token from its Secret (by the kubelet: the operator never reads it), and the SHA-256 of the
#: operator's smoke token for this app and revision (never the token itself).
ENV_AUTH_TOKEN = "MODELAPP_AUTH_TOKEN"  # noqa: S105 (a variable's name)
ENV_AUTH_SMOKE_SHA256 = "MODELAPP_AUTH_SMOKE_SHA256"
_SMOKE_CONTEXT = b"modelapp.io/smoke-token/v1"


def smoke_token(key: bytes, *, uid: str, image: str, uri: str, version: str, sha256: str) -> str:
    """The smoke test's bearer token for one ModelApp (by uid) and one revision (its pair): HMAC-SHA256 under
    the operator's key, hex. Stable for the same inputs (a restarted operator derives the same one, so no pod
    template changes); a reader of the ModelApp or its pods, who never sees the key, cannot derive it; another
    app, or another revision of this one, has another."""
    message = b"\0".join(part.encode() for part in (uid, image, uri, version, sha256))
    return hmac.new(key, _SMOKE_CONTEXT + b"\0" + message, hashlib.sha256).hexdigest()


def token_sha256(token: str) -> str:
    """What a pod is given of a token: its SHA-256 (hex), from which the token cannot be found."""
    return hashlib.sha256(token.encode()).hexdigest()


def auth_env(spec: ModelAppSpec, ctx: BuildContext, uid: str) -> list[dict[str, Any]]:
    """The app container's auth variables: none without `spec.auth`; with it, the token by reference and the
    smoke token's digest whenever the key and the uid are known (`modelapp render` has neither). Always, not only
    with `rollout.smokeTest`: a version's own acceptance examples are a smoke test too (issue 14), and adding
    a smoke test then rolls nothing."""
    if spec.auth is None:
        return []
    ref = {"name": spec.auth.secret_name, "key": spec.auth.key}
    env: list[dict[str, Any]] = [{"name": ENV_AUTH_TOKEN, "valueFrom": {"secretKeyRef": ref}}]
    if ctx.smoke_key and uid:
        token = smoke_token(ctx.smoke_key, uid=uid, image=spec.image, uri=spec.model.uri,
                            version=spec.model.version, sha256=spec.model.sha256 or "")  # fmt: skip
        env.append({"name": ENV_AUTH_SMOKE_SHA256, "value": token_sha256(token)})
    return env


DRAIN_SECONDS = 5
"""preStop pause of the app container, longer than kube-proxy's and endpoint controllers' reaction time."""


def app_container(name: str, spec: ModelAppSpec, ctx: BuildContext | None = None, *, uid: str = "") -> dict[str, Any]:
    """The app image serving the model on :8080 and `/metrics` on :9090; probes follow the v2 health endpoints.

    The metrics port is set by the environment, not a flag: an app image built on an older serving
    runtime ignores the variable (and answers `/metrics` on 8080, as it did), where it would refuse a
    flag it does not know and never start.
    """
    env = [
        {"name": "MODELAPP_MODEL_NAME", "value": name},
        {"name": "MODELAPP_MODEL_DIR", "value": MODEL_DIR},
        {"name": "MODELAPP_PORT", "value": str(PORT)},
        {"name": "MODELAPP_METRICS_PORT", "value": str(METRICS_PORT)},
    ]
    if spec.model_class:
        env.append({"name": "MODELAPP_MODEL_CLASS", "value": spec.model_class})
    env += auth_env(spec, ctx, uid) if ctx is not None else []
    env += [{"name": e.name, "value": e.value} for e in spec.env or []]
    return {
        "name": "app",
        "image": spec.image,
        # Always: the kubelet asks the registry (with the pod's pull Secrets) at every pod start, so a pod of
        # another namespace naming a private image already on the node cannot run it without credentials.
        "imagePullPolicy": "Always",
        **_app_command(name, spec),
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": env,
        "readinessProbe": _probe("/v2/health/ready", period=5),
        # A terminating pod keeps answering until kube-proxy has dropped it from the Service's rules:
        # without the pause, gunicorn closes its socket at SIGTERM and requests routed there are refused.
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "livenessProbe": _probe("/v2/health/live", period=10, initial_delay=10),
        "securityContext": _container_security(),
        "resources": _resources(spec),
        "volumeMounts": [
            {"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_MOUNT},
        ],
    }


def _probe(path: str, *, period: int, initial_delay: int = 0) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        **({"initialDelaySeconds": initial_delay} if initial_delay else {}),  # 0 is omitted by the server
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


#: Pod annotations that keep the cloud-identity webhooks from giving the app container the identity's token
#: and variables (Azure Workload Identity's list is `;`-separated, EKS's `,`-separated): only fetch-model
#: needs the store. Written when a serviceAccountName is set; a pod annotation of the same key wins.
IDENTITY_SKIP_APP = {
    "azure.workload.identity/skip-containers": "app",
    "eks.amazonaws.com/skip-containers": "app",
}


def template_metadata(name: str, spec: ModelAppSpec) -> dict[str, Any]:
    """The pod template's labels and annotations: the tenant's (spec.pod) first, ours on top."""
    pod = spec.pod or PodSettings()
    skip = IDENTITY_SKIP_APP if pod.service_account_name else {}
    return {
        "labels": {**(pod.labels or {}), **labels(name)},
        "annotations": {**skip, **(pod.annotations or {}), **template_annotations(spec)},
    }


def _placement(pod: PodSettings | None) -> dict[str, Any]:
    """The pod-spec fields of spec.pod that are set (none at all without it)."""
    if pod is None:
        return {}
    out: dict[str, Any] = {}
    if pod.service_account_name:
        out["serviceAccountName"] = pod.service_account_name
    if pod.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": secret.name} for secret in pod.image_pull_secrets]
    if pod.node_selector:
        out["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        out["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in pod.tolerations]
    if pod.affinity is not None:
        affinity = pod.affinity.model_dump(by_alias=True, exclude_none=True)
        out.update({"affinity": affinity} if affinity else {})
    return out


def pod_spec(name: str, spec: ModelAppSpec, ctx: BuildContext, *, uid: str = "") -> dict[str, Any]:
    """Non-root, read-only, no service-account token (the app never talks to the API server).

    A serviceAccountName does not bring the token back: cloud identities (Azure Workload Identity, IRSA)
    come as their own projected token, which their webhooks add, and no container gets a Kubernetes API token.
    """
    return {
        **_placement(spec.pod),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [fetch_container(spec, ctx)],
        "containers": [app_container(name, spec, ctx, uid=uid)],
        "volumes": [{"name": "model", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }


def build_deployment(name: str, namespace: str, spec: ModelAppSpec, ctx: BuildContext, *, uid: str = "") -> Manifest:
    """maxUnavailable 0 / maxSurge 1: a new revision takes traffic only once ready, one pod at a time.

    With `autoscaling` the manifest has no `replicas`: under server-side apply the field then belongs to the
    HorizontalPodAutoscaler alone, so no reconcile, bump or rollback ever sets it back."""
    replicas = {} if spec.autoscaling is not None else {"replicas": spec.replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, ctx),
        "spec": {
            **replicas,
            "selector": {"matchLabels": selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
            "revisionHistoryLimit": ctx.revision_history_limit,
            "template": {
                "metadata": template_metadata(name, spec),
                "spec": pod_spec(name, spec, ctx, uid=uid),
            },
        },
    }


def build_service(name: str, namespace: str, spec: ModelAppSpec, ctx: BuildContext) -> Manifest:
    """spec.service.port -> the pods' 8080, port named `http`; never the metrics port (in-cluster scrapes only)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, ctx),
        "spec": {
            "type": spec.service.type,
            "selector": selector(name),
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": PORT, "protocol": "TCP"}],
        },
    }


def build_pdb(name: str, namespace: str, spec: ModelAppSpec, ctx: BuildContext) -> Manifest | None:
    """A PDB only with more than one replica, as `maxUnavailable: 1`.

    maxUnavailable 1 (rather than minAvailable 1) keeps all but one pod up whatever the replica count,
    and never blocks a drain outright; with a single replica any PDB either protects nothing
    (maxUnavailable 1) or blocks every drain forever (minAvailable 1), so there is none.
    `unhealthyPodEvictionPolicy: AlwaysAllow` lets a drain evict pods of a broken revision.
    """
    most = spec.autoscaling.max_replicas if spec.autoscaling is not None else spec.replicas
    if most <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, namespace, ctx),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_hpa(name: str, namespace: str, spec: ModelAppSpec, ctx: BuildContext) -> Manifest | None:
    """An autoscaling/v2 HorizontalPodAutoscaler on the Deployment, when `spec.autoscaling` is set.

    Utilization targets are percentages of the containers' requests, so `resources.requests` should be set
    for the resources it targets (the autoscaler reports a condition on itself otherwise)."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    targets = (("cpu", scaling.target_cpu_utilization_percentage),
               ("memory", scaling.target_memory_utilization_percentage))  # fmt: skip
    metrics = [{"type": "Resource", "resource": {"name": resource, "target": {"type": "Utilization",
                                                                              "averageUtilization": percent}}}
               for resource, percent in targets if percent is not None]  # fmt: skip
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, namespace, ctx),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": metrics,
        },
    }


def build_ingress(name: str, namespace: str, spec: ModelAppSpec, ctx: BuildContext) -> Manifest | None:
    """The Ingress of `spec.ingress` (hosts.build_ingress); whether the host may be routed is the engine's
    question (hosts.refusal needs the other Ingresses)."""
    return None if spec.ingress is None else hosts.build_ingress(name, spec.ingress, _meta(name, namespace, ctx))


def build_children(name: str, namespace: str, spec: ModelAppSpec, ctx: BuildContext, *, uid: str = "") -> Children:
    """All children of one ModelApp, in apply order (the Service last: it selects the Deployment's pods).
    `uid` (the ModelApp's) names the app in its smoke token; without it (render) no smoke digest is written."""
    manifests = [build_deployment(name, namespace, spec, ctx, uid=uid)]
    absent: list[tuple[str, str]] = []
    for kind, optional in (("PodDisruptionBudget", build_pdb(name, namespace, spec, ctx)),
                           ("HorizontalPodAutoscaler", build_hpa(name, namespace, spec, ctx))):  # fmt: skip
        if optional is None:
            absent.append((kind, name))
        else:
            manifests.append(optional)
    manifests.append(build_service(name, namespace, spec, ctx))
    ingress = build_ingress(name, namespace, spec, ctx)
    if ingress is None:
        absent.append(("Ingress", name))
    else:
        manifests.append(ingress)
    return Children(apply=manifests, absent=absent)


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """The controller reference that lets the garbage collector delete children with their ModelApp."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def with_owner(manifest: Manifest, *, name: str, uid: str) -> Manifest:
    """A copy of `manifest` owned by the ModelApp `name`/`uid`."""
    metadata = {**manifest["metadata"], "ownerReferences": [owner_reference(name, uid)]}
    return {**manifest, "metadata": metadata}


def drifted(desired: Any, actual: Any) -> bool:
    """True when something we send is not (or no longer) in the live object.

    Fields the server adds (defaults, status) are fine; zero values it omits count as equal; scalars
    compare also as text (the server may turn 8080 into "8080" in some int-or-string fields).
    """
    if isinstance(desired, Mapping):
        if not desired and actual is None:
            return False
        return not isinstance(actual, Mapping) or any(drifted(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (not isinstance(actual, list) or len(actual) != len(desired)
                or any(drifted(d, a) for d, a in zip(desired, actual, strict=True)))  # fmt: skip
    if actual is None:
        return desired not in (0, False, "")  # the server omits zero values
    return bool(desired != actual and str(desired) != str(actual))
