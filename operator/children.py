"""A ModelApp's children: which exist and are its own, applying them when missing or drifted, deleting the ones
it must not have, and repairing them when their own events say they were edited or deleted.

Why a module of its own: the engine (engine.py) decides which pair a ModelApp rolls out and what its status says;
everything here is about objects named like the ModelApp, and one rule runs through all of it: a ModelApp never
adopts, changes, deletes or reports as its own an object it does not control (by uid: `controlled_by`). A name
someone else holds is `NameTaken`, and nothing is written.

What it reads comes from the engine's `store` (cache.py), and whether a name is held at all from `names`
(one listing per kind and namespace, primed on first need), so a new ModelApp's children need no GET.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from modelapp_operator import builders, cache, hosts, kube
from modelapp_operator.names import KIND
from modelapp_operator.settings import OperatorConfig
from modelapp_operator.smokepool import Logger
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, parse_spec


class NameTaken(Exception):
    """A child's name is taken by an object this ModelApp does not control: it is never adopted or changed."""

    def __init__(self, kind: str, namespace: str, name: str, holder: str, *, earlier_self: bool = False) -> None:
        super().__init__(
            f"{kind} {namespace}/{name} already exists and belongs to {holder}, not to this ModelApp: it is left "
            f"untouched and nothing is rolled out. Rename the ModelApp, or delete that {kind} if it is unused."
        )
        self.kind = kind
        #: The holder is an earlier ModelApp of the same name, deleted and re-created: its children are about
        #: to be garbage-collected, so look again soon.
        self.earlier_self = earlier_self


def controller_of(obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(kind, name, uid) of the object's controller, if it has one."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("kind", "")), str(ref.get("name", "")), str(ref.get("uid", ""))
    return None


def controlled_by(obj: Mapping[str, Any], app: Mapping[str, Any]) -> bool:
    """`obj`'s controller is this very ModelApp (by uid: a reference by name alone can be written by anyone who may
    edit the object, and names come back after a delete)."""
    holder = controller_of(obj)
    return holder is not None and holder[0] == KIND and holder[2] == app["metadata"]["uid"]


class Children:
    """The children of the ModelApps one engine serves. `context`: the build context for a spec (the smoke key
    when its pods need one); `forget`: drop a deleted child from what the engine knows."""

    def __init__(self, config: OperatorConfig, store: cache.Store, names: cache.Names, *,
                 context: Callable[[ModelAppSpec], builders.BuildContext],
                 forget: Callable[[str, str, str], None]) -> None:  # fmt: skip
        self.config = config
        self.store = store
        self.names = names
        self._context = context
        self._forget = forget
        self._priming = threading.Lock()

    def owned(self, app: Mapping[str, Any], child: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """`child` when this ModelApp controls it (or it does not exist); NameTaken otherwise."""
        if child is None:
            return None
        holder = controller_of(child)
        if holder is not None and holder[0] == KIND and holder[2] == app["metadata"]["uid"]:
            return child
        meta = child["metadata"]
        earlier = holder is not None and holder[:2] == (KIND, app["metadata"]["name"])
        raise NameTaken(child.get("kind") or "object", meta.get("namespace", ""), meta.get("name", ""),
                        f"{holder[0]} {holder[1]}" if holder else "no controller", earlier_self=earlier)  # fmt: skip

    def get(self, app: Mapping[str, Any], kind: str, *, miss: bool = True) -> Mapping[str, Any] | None:
        """The live child of `kind` (children are named as their ModelApp) from the store, or on a miss from
        the API server when `miss`; None when it does not exist. One that exists and is not controlled by
        this ModelApp (a Service of another app with the same name) raises NameTaken: a ModelApp never
        adopts, redirects or reports as its own what it does not own."""
        meta = app["metadata"]
        known = self.store.get(kind, meta["namespace"], meta["name"])
        if known is not None:
            return self.owned(app, known)
        if not miss or self.name_free(kind, meta["namespace"], meta["name"]):
            return None
        # Kept only once known to be ours: the watches see only our labelled children, so a foreign object kept
        # in the store would never be forgotten when it is deleted.
        ours = self.owned(app, kube.get(kind, meta["name"], meta["namespace"]))
        return self.store.put(kind, ours) if ours is not None else None

    def name_free(self, kind: str, namespace: str, name: str) -> bool:
        """Nobody holds this name (`cache.Names`, primed by one listing per kind and namespace): no GET needed."""
        free = self.names.free(kind, namespace, name)
        if free is None:
            with self._priming:
                if self.names.free(kind, namespace, name) is None:
                    self.names.prime(kind, namespace, kube.list_names(kind, namespace))
            free = self.names.free(kind, namespace, name)
        return bool(free)

    def ensure(self, manifest: Mapping[str, Any], current: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """The child as stored: applied only when it is missing or has drifted (no-op detection)."""
        if current is not None and not builders.drifted({k: manifest[k] for k in ("metadata", "spec")}, current):
            return current
        return self.store.put(manifest["kind"], kube.apply(manifest))

    def ingress_refusal(self, app: Mapping[str, Any], spec: ModelAppSpec) -> tuple[str, str] | None:
        """(reason, message) when this ModelApp may not route its host (hosts.refusal: the namespace's allowed
        suffixes, then first claim wins among the Ingresses the operator manages); None when it may."""
        if spec.ingress is None:
            return None
        meta = app["metadata"]
        own = self.store.get("Ingress", meta["namespace"], meta["name"])
        claims = [claim for ingress in self.store.of_kind("Ingress")
                  if (holder := controller_of(ingress)) is not None and holder[0] == KIND
                  for claim in hosts.claims_of(ingress, holder[1])]  # fmt: skip
        created = (own.get("metadata") or {}).get("creationTimestamp") if own is not None else None
        return hosts.refusal(namespace=meta["namespace"], name=meta["name"], spec=spec.ingress, created=created,
                             allow=self.config.ingress_hosts, claims=claims)  # fmt: skip

    def build(self, app: Mapping[str, Any], spec: ModelAppSpec, *, refused: bool) -> builders.Children:
        """The children of `spec`; without the Ingress (which must then not exist) when its host is refused."""
        meta = app["metadata"]
        children = builders.build_children(meta["name"], meta["namespace"], spec, self._context(spec),
                                           uid=meta["uid"])  # fmt: skip
        if not refused:
            return children
        return builders.Children(apply=[m for m in children.apply if m["kind"] != "Ingress"],
                                 absent=[*children.absent, ("Ingress", meta["name"])])  # fmt: skip

    def apply(self, app: Mapping[str, Any], spec: ModelAppSpec, *, everything: bool, resumed: bool,
              refused: bool = False) -> dict[str, Mapping[str, Any]]:  # fmt: skip
        """Ensure the children of `spec` (every one, or only the Deployment); the children as stored, by kind.

        A child that must not exist (a PDB for one replica, the Ingress of a refused host) is deleted when it
        is known, or on resume (the watch may not have listed it yet); otherwise its own watch event deletes
        it (`repair`)."""
        meta = app["metadata"]
        children = self.build(app, spec, refused=refused)
        wanted = [builders.with_owner(m, name=meta["name"], uid=meta["uid"]) for m in children.apply]
        targets = [m for m in wanted if everything or m["kind"] == "Deployment"]
        current = [self.get(app, m["kind"]) for m in targets]  # every name checked before anything is written
        stored = {m["kind"]: self.ensure(m, live) for m, live in zip(targets, current, strict=True)}
        for kind, child in children.absent if everything else []:
            known = self.store.get(kind, meta["namespace"], child)
            if known is None and resumed and not self.name_free(kind, meta["namespace"], child):
                known = kube.get(kind, child, meta["namespace"])  # held: by this ModelApp, or by someone else
            # Only what this ModelApp controls: an object of its name that is another team's (whoever may create
            # a ModelApp but not delete that PDB, HPA or Ingress) is left alone (test_tenancy_deletes.py).
            if known is not None and controlled_by(known, app):
                kube.delete(kind, child, meta["namespace"])
                self._forget(kind, meta["namespace"], child)
        return stored

    def repair(self, *, kind: str, event: str, body: Mapping[str, Any], app: Mapping[str, Any],
               logger: Logger) -> None:  # fmt: skip
        """Re-apply a deleted or edited Service/PDB/Ingress; an unwanted one is deleted. Invalid specs are left alone.

        The pair does not matter to these children, so the spec is built as written."""
        meta = app["metadata"]
        try:
            parsed = parse_spec(app.get("spec") or {})
        except InvalidSpec:
            return
        refused = kind == "Ingress" and self.ingress_refusal(app, parsed) is not None
        wanted = {m["kind"]: m for m in self.build(app, parsed, refused=refused).apply}
        if kind not in wanted:
            if event != "DELETED" and controlled_by(body, app):
                kube.delete(kind, body["metadata"]["name"], meta["namespace"])
            return
        desired = builders.with_owner(wanted[kind], name=meta["name"], uid=meta["uid"])
        if event == "DELETED" and kube.get(KIND, meta["name"], meta["namespace"]) is None:
            return  # the owner is being deleted: the garbage collector is at work
        if event == "DELETED" or builders.drifted({k: desired[k] for k in ("metadata", "spec")}, body):
            logger.info(f"Repairing {kind} {meta['namespace']}/{meta['name']} ({event.lower()}).")
            # Not kept from the answer: a repair runs outside the ModelApp's turn, from the ModelApp as it was when
            # the event came, so its echo must be checked again against the ModelApp as it is then (a spec change
            # applied meanwhile would otherwise be undone for good: `handlers.child_event` skips kept versions).
            kube.apply(desired)


__all__ = ["Children", "NameTaken", "controlled_by", "controller_of"]
