"""Host names: the Ingress of a ModelApp with `spec.ingress`, and who may route which host. Pure, no I/O.

A namespace is a tenant, and an Ingress controller routes by host for the whole cluster: two Ingresses of two
namespaces naming one host are merged or raced by the controller (Traefik makes two routers with the same
rule and one wins by its own ordering; ingress-nginx merges their paths into one server), so a tenant that
names another tenant's host takes some or all of its traffic. Two rules keep a host with its tenant
(docs/security.md, "Host names"):

1. the allow-list (`OperatorConfig.ingress_hosts`, the chart's `operator.ingressHosts`): when it is set, a
   namespace may use only hosts equal to, or under, one of its suffixes; a namespace it does not list, none;
2. first claim wins: a host that an older Ingress of another ModelApp already routes is refused, in
   another namespace whatever the path, in the same namespace for the same path (one namespace may share a
   host between its apps by path, e.g. `/v2/models/iris` and `/v2/models/wine`). Older means created first
   (then namespace/name, so every replica and every pass decides the same way, even after a race).

A refused host gets no Ingress (an existing one of ours is deleted) and an `IngressReady=False` condition
saying why; the Deployment and Service go on as before, so the running revision keeps serving in-cluster.
The operator sees only the Ingresses it manages; hosts routed by other tools are for the allow-list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelapp_operator.spec import IngressSpec

#: The Service port the Ingress sends to (builders.build_service names it so).
SERVICE_PORT_NAME = "http"


def build_ingress(name: str, spec: IngressSpec, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A networking.k8s.io/v1 Ingress: `host` + `path` (Prefix) -> the Service `name`, port `http`;
    TLS from `tlsSecret` (read by the controller, never by the operator)."""
    body: dict[str, Any] = {
        "rules": [{
            "host": spec.host,
            "http": {"paths": [{
                "path": spec.path,
                "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"name": SERVICE_PORT_NAME}}},
            }]},
        }],
    }  # fmt: skip
    if spec.class_name is not None:
        body["ingressClassName"] = spec.class_name
    if spec.tls_secret is not None:
        body["tls"] = [{"hosts": [spec.host], "secretName": spec.tls_secret}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": dict(metadata), "spec": body}


def url(name: str, spec: IngressSpec) -> str:
    """Where app users call the model through the Ingress (https when the Ingress terminates TLS)."""
    scheme = "https" if spec.tls_secret else "http"
    return f"{scheme}://{spec.host}/v2/models/{name}"


def allowed(host: str, suffixes: Iterable[str]) -> bool:
    """`host` is one of `suffixes` or under one of them (`a.example.com` allows `iris.a.example.com`)."""
    return any(host == s or host.endswith("." + s) for s in suffixes)


@dataclass(frozen=True)
class Claim:
    """A host + path routed by an Ingress the operator manages, and when that Ingress was created."""

    namespace: str
    owner: str
    host: str
    path: str
    created: str

    @property
    def order(self) -> tuple[str, str, str]:
        return (self.created, self.namespace, self.owner)


def claims_of(ingress: Mapping[str, Any], owner: str) -> list[Claim]:
    """The (host, path) pairs an Ingress routes, as claims of its owning ModelApp; none when the Ingress is not
    named as that ModelApp. The operator always names its Ingress so; a tenant may make an Ingress with our
    labels and a controller reference to its own ModelApp under another name, which the owner's passes leave
    beside the real one (only the child named as the app is reconciled), and which must not take a host."""
    meta = ingress.get("metadata") or {}
    if meta.get("name") != owner:
        return []
    namespace, created = str(meta.get("namespace", "")), str(meta.get("creationTimestamp", ""))
    return [Claim(namespace=namespace, owner=owner, host=str(rule.get("host", "")), path=str(path.get("path", "/")),
                  created=created)
            for rule in (ingress.get("spec") or {}).get("rules") or []
            for path in (rule.get("http") or {}).get("paths") or []]  # fmt: skip


Allow = Mapping[str, tuple[str, ...]]


def refusal(*, namespace: str, name: str, spec: IngressSpec, created: str | None, allow: Allow | None,
            claims: Iterable[Claim]) -> tuple[str, str] | None:  # fmt: skip
    """(reason, message) when this ModelApp may not route `spec.host`; None when it may.

    `created`: when this ModelApp's own Ingress was created (None: it has none yet, so it is the newest);
    `claims`: the host + path pairs of every Ingress the operator manages (this app's own are skipped)."""
    if allow is not None and not allowed(spec.host, allow.get(namespace, ())):
        suffixes = ", ".join(allow.get(namespace, ())) or "none"
        return ("HostNotAllowed",
                f"host {spec.host} is not allowed in namespace {namespace} (its host suffixes: {suffixes}); no "
                f"Ingress is created. Use a host under one of them, or ask the platform team to add one to the "
                f"operator's ingressHosts setting.")  # fmt: skip
    mine = (created or "\uffff", namespace, name)
    for claim in claims:
        if (claim.namespace, claim.owner) == (namespace, name) or claim.host != spec.host:
            continue
        if allow is not None and not allowed(claim.host, allow.get(claim.namespace, ())):
            continue  # a namespace that may not route the host holds no claim on it (a hand-made Ingress)
        if claim.namespace == namespace and claim.path != spec.path:
            continue  # one tenant shares a host between its apps by path
        if claim.order < mine:
            where = f"namespace {claim.namespace}" if claim.namespace != namespace else f"path {claim.path}"
            return ("HostTaken",
                    f"host {spec.host} is already routed by ModelApp {claim.namespace}/{claim.owner} ({where}); "
                    f"no Ingress is created for this one. Choose another host (or, in the same namespace, "
                    f"another path), or delete that ModelApp's ingress.")  # fmt: skip
    return None
