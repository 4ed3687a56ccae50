"""Pairs and revision entries: the typed form of `status.revisions`, with its one parser.

A *pair* is what a revision is made of: (image, model uri, model version, model sha256). `status.revisions`
records every pair deployed, oldest first, with its outcome (see rollout.py for how outcomes move). The
operator (rollout decisions), `modelapp bump` (quarantine) and `modelapp rollback` (choosing a target) all
read the history through `parse_revisions`, so they cannot disagree on what an entry means; entries are
written back with `Revision.to_status`. The model's fields and constraints are those of the CRD's
`status.revisions` items (tests/unit/test_names.py compares them).

Pure: no I/O, no kopf.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelapp_operator import names
from modelapp_operator.spec import ModelAppSpec


@dataclass(frozen=True)
class Pair:
    """One (image, model) pair; equality is identity of a revision."""

    image: str
    uri: str
    version: str
    sha256: str = ""

    @classmethod
    def from_spec(cls, spec: ModelAppSpec) -> Pair:
        return cls(spec.image, spec.model.uri, spec.model.version, spec.model.sha256 or "")

    @classmethod
    def from_template(cls, deployment: Mapping[str, Any] | None) -> Pair | None:
        """The pair a Deployment's pod template runs (its revision annotations), if it has them."""
        template = ((deployment or {}).get("spec") or {}).get("template") or {}
        ann = (template.get("metadata") or {}).get("annotations") or {}
        if names.ANN_IMAGE not in ann or names.ANN_MODEL_VERSION not in ann:
            return None
        return cls(ann[names.ANN_IMAGE], ann.get(names.ANN_MODEL_URI, ""), ann[names.ANN_MODEL_VERSION],
                   ann.get(names.ANN_MODEL_SHA256, ""))  # fmt: skip

    @property
    def handle(self) -> str:
        """`<image>,<model version>`: how a user names the pair (retry annotation, messages)."""
        return f"{self.image},{self.version}"

    def describe(self) -> str:
        return f"image {self.image} with model version {self.version}"

    def apply_to(self, spec: ModelAppSpec) -> ModelAppSpec:
        """The spec with this pair in place of its own (every other setting is the spec's)."""
        model = spec.model.model_copy(update={"uri": self.uri, "version": self.version, "sha256": self.sha256 or None})
        return spec.model_copy(update={"image": self.image, "model": model})


class Revision(BaseModel):
    """One entry of `status.revisions` (mutable: a rollout decision moves its outcome forward)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    revision: int = Field(description="A number that grows with every pair deployed.")
    image: str = Field(description="The image reference.")
    image_digest: str = Field("", alias="imageDigest", description="The image digest, when the reference has one.")
    uri: str = Field("", description="The model location.")
    model: str = Field(description="The model version.")
    sha256: str = Field("", description="The model version digest, when pinned.")
    at: str = Field("", description="When this pair was (last) rolled out.")
    available_at: str = Field("", alias="availableAt", description="When this pair was first fully available.")
    outcome: names.Outcome = Field(description="How the pair's rollout ended (or that it is rolling).")
    reason: str = Field("", max_length=128, description="A CamelCase reason for the outcome.")
    message: str = Field("", max_length=1024, description="A human-readable explanation.")
    smoke_test: Literal["Passed", "Failed"] | None = Field(None, alias="smokeTest", description="The smoke verdict.")
    provenance: dict[str, Any] | None = Field(None, description="Where the model version came from (its card).")
    settings: str = Field("", max_length=64, description=(
        "The digest of every spec setting besides the pair the entry rolled out with (`settings_digest`), or "
        "`changed` when they changed while it rolled out."))

    @classmethod
    def new(cls, revision: int, pair: Pair, *, at: str, outcome: names.Outcome, reason: str, message: str,
            settings: str = "") -> Revision:  # fmt: skip
        digest = pair.image.rsplit("@", 1)[1] if "@sha256:" in pair.image else ""
        return cls(revision=revision, image=pair.image, image_digest=digest, uri=pair.uri, model=pair.version,
                   sha256=pair.sha256, at=at, outcome=outcome, reason=reason, message=message,
                   settings=settings)  # fmt: skip

    @property
    def pair(self) -> Pair:
        return Pair(self.image, self.uri, self.model, self.sha256)

    @property
    def quarantined(self) -> bool:
        """A pair that failed a rollout: neither the operator nor bump deploys it again (docs/rollouts.md)."""
        return self.outcome == names.OUTCOME_FAILED

    def settle(self, outcome: names.Outcome, reason: str, message: str) -> None:
        """Record an outcome, its reason and message (bounded as the CRD bounds them)."""
        self.outcome, self.reason, self.message = outcome, reason[:128], message[:1024]

    def to_status(self) -> dict[str, Any]:
        """The entry as `status.revisions` stores it: empty optional fields left out."""
        out: dict[str, Any] = {"revision": self.revision, "image": self.image, "uri": self.uri, "model": self.model}
        if self.sha256:
            out["sha256"] = self.sha256
        if self.image_digest:
            out["imageDigest"] = self.image_digest
        out.update(at=self.at, outcome=self.outcome, reason=self.reason, message=self.message)
        if self.available_at:
            out["availableAt"] = self.available_at
        if self.smoke_test:
            out["smokeTest"] = self.smoke_test
        if self.provenance:
            out["provenance"] = self.provenance
        if self.settings:
            out["settings"] = self.settings
        return out


#: `Revision.settings` of an entry whose settings changed while it rolled out: it matches no digest.
SETTINGS_CHANGED = "changed"


def settings_digest(spec: ModelAppSpec) -> str:
    """SHA-256 (hex) of every setting of `spec` that shapes its pods besides the pair: replicas, resources, env,
    command, pod placement, the rollout's deadline... (`updates`, the bump's policies, are left out). Recorded
    with each revision entry, so that a failure can be told apart from a change of the app's own settings: the
    fleet circuit breaker lets a failure travel beyond its namespace only when the settings it ran with are
    the ones the app's previous good pair ran with (fleet.evidence_of)."""
    pair: dict[str, Any] = {"image": True, "updates": True, "model": {"uri", "version", "sha256"}}
    settings = spec.model_dump(mode="json", by_alias=True, exclude=pair)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_revisions(status: Mapping[str, Any] | None) -> list[Revision]:
    """The history in `status` (a ModelApp's status, or None), oldest first.

    The API server validates status against the CRD, so every stored entry parses; an entry that does not
    (written by hand through another schema version) is left out rather than guessed at.
    """
    raw = (status or {}).get("revisions")
    entries: list[Revision] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            entries.append(Revision.model_validate(item))
        except ValidationError:
            continue
    return entries


def find(revisions: Sequence[Revision], pair: Pair) -> int | None:
    """Index of the entry of `pair`, if recorded."""
    return next((i for i, e in enumerate(revisions) if e.pair == pair), None)


def last_good(revisions: Sequence[Revision], *, besides: Pair) -> Pair | None:
    """The newest pair other than `besides` that was fully available and is not quarantined."""
    for entry in reversed(revisions):
        if entry.pair != besides and entry.available_at and not entry.quarantined:
            return entry.pair
    return None


__all__ = ["SETTINGS_CHANGED", "Pair", "Revision", "find", "last_good", "parse_revisions", "settings_digest"]
