"""ModelApp status computed from what the cluster reports: pure functions, no I/O, no kopf.

The contract is "status always tells the truth":
- `Ready` is True only when the Deployment runs the *current* template (its pod-template annotations
  match the spec's image and model, its controller has observed its latest generation) and
  updatedReplicas == replicas == availableReplicas, with no pod of an older revision left.
- `Progressing` is True while a revision is being rolled out; `Degraded` carries the Deployment's own
  reason (ProgressDeadlineExceeded, ReplicaFailure) or InvalidSpec; `ModelResolved` says which
  model version the spec names (resolution of moving versions is `modelapp bump`'s job).
- `model` and `image` name what is actually served: they move to the new pair only once it is Ready.
- `url` is the Ingress host with `spec.ingress` (unless the host is refused), else the LoadBalancer
  ingress when one is assigned, else the in-cluster DNS name; `urlSource` says which. `IngressReady`
  says whether the host is routed: refused (HostNotAllowed, HostTaken), Admitted (the controller published
  an address), or NoAddress (Unknown: no controller has published one, which some never do), or
  TLSSecretMissing (False: the TLS Secret it names does not exist; the controller would serve its default
  certificate).
A condition keeps its lastTransitionTime while its status does not change, so an unchanged state
produces an identical status and `status_patch()` returns None (no write, no event loop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelapp_operator import hosts
from modelapp_operator.builders import selector, template_annotations
from modelapp_operator.names import DEGRADED, INGRESS_READY, MODEL_RESOLVED, PROGRESSING, READY, ROLLED_BACK
from modelapp_operator.spec import IngressSpec, ModelAppSpec

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Condition:
    """One condition before it gets a lastTransitionTime."""

    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class Rollout:
    """What the Deployment says about the current revision (pure reading of one object)."""

    current: bool
    replicas: int
    updated: int
    ready: int
    available: int
    total: int
    failure: tuple[str, str] | None  # (reason, message) of a failed rollout

    @property
    def complete(self) -> bool:
        """The current revision, fully available, nothing older left."""
        return self.current and self.updated == self.replicas == self.available and self.total == self.replicas


def _get(obj: Obj | None, *path: str) -> Any:
    """Walk nested mappings; None as soon as a key is missing (cluster objects are sparse)."""
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def read_rollout(deployment: Obj, spec: ModelAppSpec) -> Rollout:
    """Interpret a Deployment against the spec it should implement."""
    annotations = _get(deployment, "spec", "template", "metadata", "annotations") or {}
    wanted = template_annotations(spec)
    observed = _get(deployment, "status", "observedGeneration") or 0
    # With autoscaling the HorizontalPodAutoscaler owns the count: the Deployment's own is the one to reach.
    replicas = spec.replicas if spec.autoscaling is None else (_get(deployment, "spec", "replicas") or 0)
    current = (
        all(annotations.get(k) == v for k, v in wanted.items())
        and observed >= (_get(deployment, "metadata", "generation") or 0)
        and _get(deployment, "spec", "replicas") == replicas
    )
    return Rollout(
        current=current,
        replicas=replicas,
        updated=_get(deployment, "status", "updatedReplicas") or 0,
        ready=_get(deployment, "status", "readyReplicas") or 0,
        available=_get(deployment, "status", "availableReplicas") or 0,
        total=_get(deployment, "status", "replicas") or 0,
        failure=_failure(_get(deployment, "status", "conditions") or []),
    )


def _failure(conditions: Sequence[Obj]) -> tuple[str, str] | None:
    for cond in conditions:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "ProgressDeadlineExceeded", str(cond.get("message", ""))
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return str(cond.get("reason") or "ReplicaFailure"), str(cond.get("message", ""))
    return None


def service_url(name: str, namespace: str, spec: ModelAppSpec, service: Obj | None) -> tuple[str, str]:
    """(url, source): the LoadBalancer ingress when assigned, else the in-cluster DNS name."""
    ingress = _get(service, "status", "loadBalancer", "ingress") or []
    port = spec.service.port
    host = next((i.get("hostname") or i.get("ip") for i in ingress if i.get("hostname") or i.get("ip")), None)
    if spec.service.type == "LoadBalancer" and host:
        authority = host if port == 80 else f"{host}:{port}"
        return f"http://{authority}/v2/models/{name}", "LoadBalancer"
    return f"http://{name}.{namespace}.svc:{port}/v2/models/{name}", "ClusterDNS"


def tls_secret_missing_message(spec: IngressSpec, namespace: str) -> str:
    """What IngressReady says while the TLS Secret an Ingress names does not exist."""
    return (f"the TLS Secret {namespace}/{spec.tls_secret} does not exist: the Ingress controller serves its own "
            f"default certificate for {spec.host}, which clients refuse. Create a kubernetes.io/tls Secret "
            f"{spec.tls_secret} with tls.crt and tls.key for {spec.host} in namespace {namespace} (the operator "
            f"only asks whether the name exists; it never reads the Secret)")


def ingress_condition(spec: ModelAppSpec, ingress: Obj | None, refused: tuple[str, str] | None,
                      old: Obj, *, namespace: str = "", tls_missing: bool = False) -> Condition | None:  # fmt: skip
    """IngressReady for `spec.ingress`; without it, only a leftover one is turned off (conditions persist).
    `tls_missing`: the TLS Secret it names does not exist (engine: a dry-run create, never a read)."""
    if spec.ingress is None:
        had = any(c.get("type") == INGRESS_READY for c in old.get("conditions") or [])
        return Condition(INGRESS_READY, "False", "NotRequested", "spec.ingress is not set: no Ingress") if had else None
    if refused is not None:
        return Condition(INGRESS_READY, "False", *refused)
    where = hosts.url("", spec.ingress).rsplit("/v2/models/", 1)[0] + spec.ingress.path
    if ingress is None:
        return Condition(INGRESS_READY, "Unknown", "Creating", f"the Ingress for {where} is being created")
    if tls_missing and spec.ingress.tls_secret:
        missing = tls_secret_missing_message(spec.ingress, namespace)
        return Condition(INGRESS_READY, "False", "TLSSecretMissing", missing)
    published = _get(ingress, "status", "loadBalancer", "ingress") or []
    address = next((i.get("hostname") or i.get("ip") for i in published if i.get("hostname") or i.get("ip")), None)
    if address:
        return Condition(INGRESS_READY, "True", "Admitted", f"{where} is routed by the Ingress controller at {address}")
    how = f"IngressClass {spec.ingress.class_name}" if spec.ingress.class_name else "the default IngressClass"
    return Condition(INGRESS_READY, "Unknown", "NoAddress",
                     f"the Ingress for {where} exists; no Ingress controller has published an address for it (is one "
                     f"running for {how}? some never publish one)")  # fmt: skip


def rollout_conditions(spec: ModelAppSpec, rollout: Rollout | None, url_note: str) -> list[Condition]:
    """Progressing / Ready / Degraded for one observation of the Deployment."""
    if rollout is None:
        return [
            Condition(PROGRESSING, "True", "Creating", "the Deployment is being created"),
            Condition(READY, "False", "Creating", "the Deployment does not exist yet"),
            Condition(DEGRADED, "False", "AsExpected", ""),
        ]
    counts = f"{rollout.available}/{rollout.replicas} available, {rollout.updated} updated, {rollout.total} total"
    if rollout.failure and not rollout.complete:
        reason, message = rollout.failure
        return [
            Condition(PROGRESSING, "False", reason, message),
            Condition(READY, "False", reason, f"{counts}: {message}"),
            Condition(DEGRADED, "True", reason, message),
        ]
    if rollout.complete:
        what = f"image {spec.image} with model version {spec.model.version}"
        return [
            Condition(PROGRESSING, "False", "Complete", f"{what} is rolled out"),
            Condition(READY, "True", "Available", f"{counts}; {what}; {url_note}"),
            Condition(DEGRADED, "False", "AsExpected", ""),
        ]
    waiting = "waiting for the Deployment controller" if not rollout.current else "rolling out"
    return [
        Condition(PROGRESSING, "True", "RollingOut", f"{waiting}: {counts}"),
        Condition(READY, "False", "RollingOut", f"{waiting}: {counts}"),
        Condition(DEGRADED, "False", "AsExpected", ""),
    ]


def model_condition(spec: ModelAppSpec) -> Condition:
    """The spec names a concrete version; a pinned digest is verified by the init container."""
    pin = f" pinned to sha256 {spec.model.sha256}" if spec.model.sha256 else " (no sha256 pin)"
    return Condition(MODEL_RESOLVED, "True", "Specified", f"{spec.model.uri} version {spec.model.version}{pin}")


def compute_status(
    *,
    name: str,
    namespace: str,
    generation: int,
    spec: ModelAppSpec,
    deployment: Obj | None,
    service: Obj | None,
    old: Obj,
    now: str,
    overrides: Sequence[Condition] = (),
    extra: Mapping[str, Any] | None = None,
    ingress: Obj | None = None,
    ingress_refused: tuple[str, str] | None = None,
    tls_missing: bool = False,
) -> dict[str, Any]:
    """The whole status for one observation; `old` is the current status (kept parts, transition times).

    `spec` is the spec *as applied* (with the effective pair, see `rollout.py`); `overrides` replace the
    conditions of the same type computed from the Deployment (rollback, quarantine, smoke test), and
    `extra` adds fields (`revisions`, `effective`).
    """
    url, source = service_url(name, namespace, spec, service)
    note = "url from the LoadBalancer ingress" if source == "LoadBalancer" else "url is the in-cluster DNS name"
    if spec.ingress is not None and ingress_refused is None:
        url, source, note = hosts.url(name, spec.ingress), "Ingress", "url from the Ingress host"
    rollout = read_rollout(deployment, spec) if deployment is not None else None
    replaced = {c.type: c for c in overrides}
    routed = ingress_condition(spec, ingress, ingress_refused, old, namespace=namespace, tls_missing=tls_missing)
    computed = [model_condition(spec), *rollout_conditions(spec, rollout, note), *([routed] if routed else [])]
    conditions = [replaced.pop(c.type, c) for c in computed] + list(replaced.values())
    status: dict[str, Any] = {
        **(extra or {}),
        "observedGeneration": generation,
        "conditions": merge_conditions(old.get("conditions") or [], conditions, generation=generation, now=now),
        "url": url,
        "urlSource": source,
        "replicas": rollout.total if rollout else 0,
        "selector": ",".join(f"{k}={v}" for k, v in selector(name).items()),
        "readyReplicas": rollout.ready if rollout else 0,
        "updatedReplicas": rollout.updated if rollout else 0,
    }
    if rollout is not None and rollout.complete:
        status["model"] = {
            "version": spec.model.version,
            **({"sha256": spec.model.sha256} if spec.model.sha256 else {}),
        }
        status["image"] = {"ref": spec.image}
    else:
        status.update({k: old[k] for k in ("model", "image") if k in old})
    return status


def invalid_status(*, generation: int, message: str, old: Obj, now: str) -> dict[str, Any]:
    """An unusable spec: Ready False/InvalidSpec; what runs keeps running and `model`/`image` say so."""
    return blocked_status(generation=generation, reason="InvalidSpec", message=message, old=old, now=now,
                          resolved="the spec cannot be read")  # fmt: skip


def blocked_status(*, generation: int, reason: str, message: str, old: Obj, now: str,
                   resolved: str = "") -> dict[str, Any]:  # fmt: skip
    """Nothing can be rolled out until something outside the operator changes (an invalid spec, a child's
    name taken by an object this ModelApp does not own): Ready False with `reason`; what runs keeps
    running, and `model`/`image`/`url` keep saying what it is."""
    conditions = [
        Condition(MODEL_RESOLVED, "Unknown", reason, resolved or message),
        Condition(READY, "False", reason, message),
        Condition(PROGRESSING, "False", reason, "nothing is rolled out until this is fixed"),
        Condition(DEGRADED, "True", reason, message),
    ]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(old.get("conditions") or [], conditions, generation=generation, now=now),
    }
    status.update({k: old[k] for k in ("model", "image", "url", "urlSource") if k in old})
    return status


def merge_conditions(
    old: Sequence[Obj], new: Sequence[Condition], *, generation: int, now: str
) -> list[dict[str, Any]]:
    """New conditions, keeping lastTransitionTime where the status did not change; others kept as they were."""
    previous = {c.get("type"): c for c in old}
    merged = []
    for cond in new:
        before = previous.pop(cond.type, None)
        unchanged = before is not None and before.get("status") == cond.status
        since = before.get("lastTransitionTime") if unchanged and before is not None else now
        merged.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message[:4096],
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    merged += [dict(c) for c in previous.values()]
    return merged


#: The status fields that change as pods come up: replica counts, and conditions' messages ("0/1 available").
PROGRESS_FIELDS = frozenset({"conditions", "replicas", "readyReplicas", "updatedReplicas"})


def progress_only(old: Obj, patch: Mapping[str, Any]) -> bool:
    """The patch only counts progress: replica numbers and condition messages change, and no condition changes
    its status, reason or generation (no transition, nothing a reader or `kubectl wait` decides on). Such a
    write may wait a moment (pacing.py, `STATUS_PROGRESS_SECONDS`), as may a first status that is only `under_way`."""
    if not old.get("conditions") or set(patch) - PROGRESS_FIELDS:
        return False

    def shape(conditions: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "message"} for c in conditions or []]

    return "conditions" not in patch or shape(old.get("conditions")) == shape(patch["conditions"])


def under_way(new: Obj) -> bool:
    """The status says only that a rollout is under way and nothing is amiss: Progressing True, Degraded and
    RolledBack not True, every other condition (ModelResolved, the Ingress's) True; Ready may be False. A new
    ModelApp's first status saying only this may wait a moment (pacing.py); any other never does."""
    conditions = {c.get("type"): c.get("status") for c in new.get("conditions") or []}
    if conditions.get(PROGRESSING) != "True" or "True" in (conditions.get(DEGRADED), conditions.get(ROLLED_BACK)):
        return False
    return all(value == "True" for kind, value in conditions.items()
               if kind not in (READY, PROGRESSING, DEGRADED, ROLLED_BACK))  # fmt: skip


def status_patch(old: Obj, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning `old` into `new` for the keys we own, or None when nothing changes."""
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    return changed or None


def condition(status: Obj, kind: str) -> Obj | None:
    """The condition of `kind` in a status, if any."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


#: Why nothing of a revision starts when `spec.auth` names a Secret (or key) that does not exist: the kubelet
#: cannot build the app container's environment and says so in the container's waiting state.
CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
TOKEN_SECRET_MISSING = "TokenSecretMissing"  # noqa: S105 (a condition reason)


def token_secret_problem(pods: Sequence[Obj], *, secret: str) -> str | None:
    """The kubelet's message when a pod's container waits in CreateContainerConfigError over the auth token's
    Secret `secret` (`secret "x" not found`, `couldn't find key k in Secret ns/x`); None when no pod does.

    Not the (image, model) pair's fault, so the caller keeps the revision out of quarantine (engine.py)."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            message = str(waiting.get("message") or "")
            names_it = f'"{secret}"' in message or message.rstrip().endswith(f"/{secret}")
            if waiting.get("reason") == CONTAINER_CONFIG_ERROR and names_it:
                return message[:512]
    return None


def token_secret_conditions(*, secret: str, key: str, namespace: str, kubelet: str) -> list[Condition]:
    """Ready False, Progressing True and Degraded True, all saying which Secret and key to create."""
    message = (f"the app container cannot start: {kubelet}. Create the Secret {namespace}/{secret} with the key "
               f"{key!r} (spec.auth), or fix spec.auth; the running revision keeps serving, and this pair is not "
               f"quarantined for it (it is not the pair's fault)")  # fmt: skip
    return [
        Condition(READY, "False", TOKEN_SECRET_MISSING, message),
        Condition(PROGRESSING, "True", TOKEN_SECRET_MISSING, f"waiting for Secret {namespace}/{secret}"),
        Condition(DEGRADED, "True", TOKEN_SECRET_MISSING, message),
    ]
