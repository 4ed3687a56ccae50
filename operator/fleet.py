"""The fleet circuit breaker, pure: which image and model digests are quarantined for which apps, and how
one bump rollout ended. No I/O (the bump and `modelapp quarantine` read the ModelApps and hand them in).

Evidence: a `Failed` entry of a ModelApp's `status.revisions` (written by the operator, never by a tenant:
tenants edit ModelApps, not their status subresource). The entry is compared with the newest earlier pair
of the same app that was fully available; the component that changed is blamed (the image, the model, or
both when both changed at once or the app never had a good pair). A blamed component is identified by
what it is, not by the text the app wrote: an image by its digest when the reference carries one, and by
`registry/repository:tag`; a model by its manifest sha256 when pinned (the bump always pins), and by
`uri@version`.

Scope (the platform team's choice, `--quarantine-scope`, chart `quarantine.scope`):
- `namespace` (default): evidence counts for the apps of its own namespace only. A tenant can only block
  itself, and only its own apps' failures stop its own apps.
- `cluster`: evidence counts for every namespace, but only when it is *attributable* to the digest rather
  than to the failing app's own settings: the rollout missed its progress deadline (pods that never became
  ready; a failed smoke test is judged by the app's own expectations, so it stays local), exactly one
  component changed, and the app had been fully available on the pair just before with the very settings
  the failed pair ran with (`Revision.settings`: a digest of the spec besides the pair and the bump's
  policies, recorded by the operator with each rollout), so its settings, Secrets and node placement were
  proven to work. Without that last check a tenant could change its image to another tenant's and, in the
  same edit, a setting that keeps its pods from ever being ready, and have that image quarantined in every
  namespace (tests/integration/test_tenancy_breaker.py). With `trusted` namespaces (`--quarantine-from`) only those
  namespaces' evidence counts beyond them (e.g. a platform team's canary namespace): a tenant outside
  them cannot block anyone else at all.

Clearing: the annotation `modelapp.io/quarantine-cleared` on the app that holds the evidence lists
identities (digests, `repository:tag`, `uri@version`) whose evidence no longer counts. Who may set it is
who may patch that ModelApp: its own tenant and the platform team, never another tenant. The app's own
pair-level quarantine (`status.revisions`, the retry annotation) is not changed by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modelapp_operator import names
from modelapp_operator.registry import parse_image
from modelapp_operator.revisions import SETTINGS_CHANGED, Revision, parse_revisions

Scope = Literal["namespace", "cluster"]
SCOPES: tuple[Scope, ...] = ("namespace", "cluster")
Component = Literal["image", "model"]
#: The failure that says "its pods never became ready"; anything else may be the app's own doing.
ATTRIBUTABLE_REASONS = frozenset({"ProgressDeadlineExceeded"})
#: On a ModelApp: identities whose evidence in this app no longer counts for the fleet (comma or blank
#: separated), re-exported here for the bump and the quarantine command.
ANN_QUARANTINE_CLEARED = names.ANN_QUARANTINE_CLEARED


def image_ids(reference: str, digest: str = "") -> frozenset[str]:
    """`image:registry/repository:tag` and the digest: a quarantined `repo@sha256:x` also blocks `repo:1.5@sha256:x`."""
    try:
        ref = parse_image(reference)
    except ValueError:
        return frozenset({f"image:{reference}"})
    found = {f"image:{ref.key}:{ref.tag}"} if ref.tag else set()
    return frozenset(found | {d for d in (ref.digest, digest) if d})


def model_ids(uri: str, version: str, sha256: str = "") -> frozenset[str]:
    """`model:uri@version` and the manifest digest (the same bytes published elsewhere are the same model)."""
    found = {f"model:{uri.rstrip('/')}@{version}"}
    return frozenset(found | ({f"model:{sha256.removeprefix('sha256:')}"} if sha256 else set()))


def parse_identity(text: str) -> frozenset[str]:
    """What a user names on the command line or in the clear annotation: a digest, an image, or uri@version."""
    text = text.strip()
    if not text:
        return frozenset()
    if text.startswith("sha256:"):  # an image digest, or a model digest written with its algorithm
        return frozenset({text, f"model:{text.removeprefix('sha256:')}"})
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return frozenset({f"model:{text}", f"sha256:{text}"})
    if "://" in text and "@" in text:
        uri, _, version = text.rpartition("@")
        return model_ids(uri, version)
    return image_ids(text)


@dataclass(frozen=True)
class Evidence:
    """One failed rollout blaming one component of its pair."""

    namespace: str
    app: str
    component: Component
    ids: frozenset[str]
    ref: str  # as the app wrote it, for people
    reason: str
    message: str
    at: str
    attributable: bool
    why_local: str = ""  # when not attributable: why it counts in its own namespace only

    def describe(self) -> str:
        return f"{self.component} {self.ref} failed in {self.namespace}/{self.app} ({self.reason}, {self.at})"


def evidence_of(obj: Mapping[str, Any]) -> list[Evidence]:
    """The evidence one ModelApp holds: its failed entries, each blamed on what changed (see module doc)."""
    meta = obj.get("metadata") or {}
    namespace, app = str(meta.get("namespace", "")), str(meta.get("name", ""))
    cleared = frozenset().union(*(parse_identity(x) for x in _cleared(meta)))
    revisions = parse_revisions(obj.get("status"))
    found: list[Evidence] = []
    for entry in revisions:
        if not entry.quarantined:
            continue
        before = _good_before(revisions, entry)
        image = image_ids(entry.image, entry.image_digest)
        model = model_ids(entry.uri, entry.model, entry.sha256)
        blamed: list[tuple[Component, frozenset[str], str]] = []
        if before is None or image_ids(before.image, before.image_digest).isdisjoint(image):
            blamed.append(("image", image, entry.image))
        if before is None or model_ids(before.uri, before.model, before.sha256).isdisjoint(model):
            blamed.append(("model", model, f"{entry.uri}@{entry.model}"))
        why = ""
        if entry.reason not in ATTRIBUTABLE_REASONS:
            why = f"{entry.reason or 'the failure'} is judged by the app's own settings"
        elif before is None:
            why = "the app never had a good pair, so its own settings may be the cause"
        elif len(blamed) != 1:
            why = "image and model changed together"
        elif not before.settings or before.settings == SETTINGS_CHANGED or entry.settings != before.settings:
            why = "the app's own settings changed with it (or are not known), so they may be the cause"
        for component, ids, ref in blamed:
            if ids & cleared:
                continue
            found.append(Evidence(namespace, app, component, ids, ref, entry.reason or names.OUTCOME_FAILED,
                                  entry.message, entry.at, not why, why))  # fmt: skip
    return found


def _cleared(meta: Mapping[str, Any]) -> list[str]:
    raw = str((meta.get("annotations") or {}).get(ANN_QUARANTINE_CLEARED, ""))
    return [item for item in raw.replace(",", " ").split() if item]


def _good_before(revisions: Sequence[Revision], failed: Revision) -> Revision | None:
    """The newest entry rolled out before `failed` that was fully available (what the app ran well before)."""
    earlier = [e for e in revisions if e.revision < failed.revision and e.available_at and not e.quarantined]
    return max(earlier, key=lambda e: e.revision, default=None)


@dataclass(frozen=True)
class Fleet:
    """Every piece of evidence a run can see, and the rules of which counts where."""

    scope: Scope = "namespace"
    evidence: tuple[Evidence, ...] = ()
    trusted: frozenset[str] = frozenset()  # cluster scope: only these namespaces' evidence travels (empty: all)

    @classmethod
    def of(cls, objs: Iterable[Mapping[str, Any]], *, scope: Scope = "namespace",
           trusted: Iterable[str] = ()) -> Fleet:  # fmt: skip
        return cls(scope, tuple(e for obj in objs for e in evidence_of(obj)), frozenset(trusted))

    def travels(self, evidence: Evidence) -> bool:
        """True when this evidence counts beyond its own namespace."""
        if self.scope != "cluster" or not evidence.attributable:
            return False
        return not self.trusted or evidence.namespace in self.trusted

    def counts_for(self, evidence: Evidence, namespace: str) -> bool:
        return evidence.namespace == namespace or self.travels(evidence)

    def blocking(self, namespace: str, ids: frozenset[str]) -> Evidence | None:
        """The newest evidence that quarantines any of `ids` for apps in `namespace`, if any."""
        hits = [e for e in self.evidence if not e.ids.isdisjoint(ids) and self.counts_for(e, namespace)]
        return max(hits, key=lambda e: e.at, default=None)

    def image_block(self, namespace: str, reference: str, digest: str = "") -> Evidence | None:
        return self.blocking(namespace, image_ids(reference, digest))

    def model_block(self, namespace: str, uri: str, version: str, sha256: str = "") -> Evidence | None:
        return self.blocking(namespace, model_ids(uri, version, sha256))


# -- one bump rollout, as the ModelApp's status tells it --------------------------------------------------

Verdict = Literal["Ready", "Failed", "TimedOut", "Changed", "Unobserved"]


@dataclass(frozen=True)
class RolloutResult:
    verdict: Verdict
    message: str
    reason: str = ""


def rollout_result(obj: Mapping[str, Any] | None, *, image: str, version: str,
                   generation: int) -> RolloutResult | None:  # fmt: skip
    """How the rollout of (`image`, model `version`) the bump started at `generation` ended; None: not yet.

    Ready: the operator observed that generation, the pair is the effective one, its entry is Available and
    Ready is True. Failed: the pair's entry is Failed (rolled back and quarantined, or Degraded without
    autoRollback). Changed: someone else changed the spec (or deleted the app) meanwhile: not the bump's
    verdict to take. Unobserved: the app has no status at all, so no operator watches it.
    """
    if obj is None:
        return RolloutResult("Changed", "the ModelApp was deleted")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    model = spec.get("model") or {}
    if (spec.get("image"), str(model.get("version", ""))) != (image, version):
        return RolloutResult("Changed", f"the spec now names {spec.get('image')} with model {model.get('version')}")
    if not status:
        return RolloutResult("Unobserved", "no operator has written its status")
    entry = next((e for e in parse_revisions(status) if (e.image, e.model) == (image, version)), None)
    if entry is not None and entry.quarantined:
        return RolloutResult("Failed", entry.message, entry.reason or names.OUTCOME_FAILED)
    observed = status.get("observedGeneration")
    effective = status.get("effective") or {}
    ready = any(c.get("type") == names.READY and c.get("status") == "True" for c in status.get("conditions") or [])
    if (isinstance(observed, int) and observed >= generation and ready and entry is not None
            and entry.outcome == names.OUTCOME_AVAILABLE
            and (effective.get("image"), effective.get("model")) == (image, version)):  # fmt: skip
        return RolloutResult("Ready", f"image {image} with model version {version} is Ready")
    return None


__all__ = [
    "ANN_QUARANTINE_CLEARED", "SCOPES", "Evidence", "Fleet", "RolloutResult", "Scope", "evidence_of", "image_ids",
    "model_ids", "parse_identity", "rollout_result",
]  # fmt: skip
