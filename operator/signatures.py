"""Signature compatibility: does a model version fit the app image that would serve it?

A model version's card (modelapp_serving.card) records the model's signature: its inputs and outputs, each a
name, an OIP datatype and a shape (-1: any size). An app image declares the signatures it accepts in the OCI
label `io.modelapp.signatures` (a JSON list; hack/app-ci.sh writes it from the app's `signatures.json`): the
inputs its code sends and the outputs it reads. A model *fits* an image when it fits one accepted signature:

- every input the image sends is an input of the model (a single input on both sides matches whatever the
  names, as the serving runtime matches it), with the same datatype and a compatible shape (same rank; each
  dimension equal, or -1 on either side);
- every input of the model is sent by the image;
- every output the image reads is an output of the model, same datatype, compatible shape (the model may
  produce more).

An image without the label, or a version without a signature, says nothing, so nothing is checked (images
and versions made before signatures keep working). `fit` names the first field that differs, for the
condition and the bump's plan.

`modelapp bump` reads both (the registry for the label, the store for the card) and records what it read for
the pair it proposes in the annotation `modelapp.io/pair-facts` (`PairFacts`), in the same patch as the spec
change: the operator, which reads no tenant store and no registry, checks the spec's pair against it before
anything is applied, runs the version's examples, and shows its provenance. The annotation is the tenant's
to edit like any other, so it is parsed with bounds and anything unreadable counts as no facts at all.

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelapp_serving.card import Provenance, Signature, TensorSig

#: The OCI label of an app image that lists the signatures it accepts.
LABEL = "io.modelapp.signatures"
#: The ModelApp annotation where `modelapp bump` records the facts of the pair it proposes (bookkeeping
#: under modelapp.io/, so it never triggers a reconcile of its own; it comes with the spec change).
ANN_PAIR_FACTS = "modelapp.io/pair-facts"
#: The label's value is at most this long (a signature is a few hundred bytes).
MAX_LABEL_BYTES = 16 * 1024
#: At most this many signatures in one label.
MAX_ACCEPTED = 16
#: The facts annotation is at most this long (two labels' worth and a card's signature and provenance).
MAX_FACTS_BYTES = 64 * 1024


class SignatureError(ValueError):
    """A label or annotation that cannot be read; the message says why."""


def parse_accepts(text: str) -> tuple[Signature, ...]:
    """The signatures an image label accepts: a JSON list of `{inputs, outputs}` (or one such object)."""
    if len(text.encode()) > MAX_LABEL_BYTES:
        raise SignatureError(f"label {LABEL} is {len(text.encode())} bytes, over the {MAX_LABEL_BYTES} byte limit")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SignatureError(f"label {LABEL} is not valid JSON: {exc}") from None
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_ACCEPTED:
        raise SignatureError(f"label {LABEL} lists {len(items)} signatures, more than {MAX_ACCEPTED}")
    accepted = []
    for index, item in enumerate(items):
        try:
            accepted.append(Signature.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in (index, *first["loc"]))
            raise SignatureError(f"label {LABEL} is invalid at {where}: {first['msg']}") from None
    return tuple(accepted)


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _shapes_fit(a: Sequence[int], b: Sequence[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def _tensor(kind: str, image: TensorSig, model: TensorSig, verb: str) -> str | None:
    if image.datatype != model.datatype:
        return (f"{kind} {model.name!r} datatype: the model {verb} {model.datatype}, the image expects "
                f"{image.datatype}")  # fmt: skip
    if not _shapes_fit(image.shape, model.shape):
        return (f"{kind} {model.name!r} shape: the model {verb} {_shape(model.shape)}, the image expects "
                f"{_shape(image.shape)}")  # fmt: skip
    return None


def problems(model: Signature, accepted: Signature) -> list[str]:
    """Every field where `model` does not fit `accepted`, in order (inputs, then outputs)."""
    found: list[str] = []
    by_name = {t.name: t for t in model.inputs}
    single = len(model.inputs) == 1 and len(accepted.inputs) == 1
    sent: set[str] = set()
    for wanted in accepted.inputs:
        have = model.inputs[0] if single else by_name.get(wanted.name)
        if have is None:
            found.append(f"input {wanted.name!r}: the image sends it, the model has no such input "
                         f"(it takes {[t.name for t in model.inputs]})")  # fmt: skip
            continue
        sent.add(have.name)
        problem = _tensor("input", wanted, have, "takes")
        if problem:
            found.append(problem)
    found += [f"input {t.name!r}: the model requires it, the image does not send it"
              for t in model.inputs if t.name not in sent]  # fmt: skip
    outputs = {t.name: t for t in model.outputs}
    for wanted in accepted.outputs:
        have = outputs.get(wanted.name)
        if have is None:
            found.append(f"output {wanted.name!r}: the image reads it, the model does not produce it "
                         f"(it produces {[t.name for t in model.outputs]})")  # fmt: skip
            continue
        problem = _tensor("output", wanted, have, "produces")
        if problem:
            found.append(problem)
    return found


def fit(model: Signature | None, accepts: Sequence[Signature] | None) -> str | None:
    """None when the model fits one of the accepted signatures (or either side says nothing); else the
    first field that differs from the closest accepted signature."""
    if model is None or accepts is None:
        return None
    if not accepts:
        return f"the image's label {LABEL} lists no signature at all"
    ranked = sorted((problems(model, accepted) for accepted in accepts), key=len)
    if not ranked[0]:
        return None
    more = f" (and {len(ranked[0]) - 1} more difference(s))" if len(ranked[0]) > 1 else ""
    which = f"; the image accepts {len(accepts)} signatures, this is the closest" if len(accepts) > 1 else ""
    return f"{ranked[0][0]}{more}{which}"


# -- the facts the bump records for the pair it proposes --------------------------------------------------


class _Facts(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ModelFacts(_Facts):
    """What the bump read in the version's card (none of it when the version has no card)."""

    uri: str = Field(max_length=1024)
    version: str = Field(max_length=128)
    sha256: str = Field(max_length=64)
    card: str | None = Field(default=None, max_length=64, description="the card file's sha256, as the manifest pins it")
    signature: Signature | None = None
    examples: bool = False
    provenance: Provenance | None = None


class ImageFacts(_Facts):
    """What the bump read in the image's config: the image as the spec names it, and its accepted signatures
    (None: the image has no label)."""

    image: str = Field(max_length=512)
    digest: str = Field(default="", max_length=80)
    accepts: tuple[Signature, ...] | None = Field(default=None, max_length=MAX_ACCEPTED)


class PairFacts(_Facts):
    image: ImageFacts | None = None
    model: ModelFacts | None = None

    def to_annotation(self) -> str:
        text = json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"),
                          sort_keys=True)  # fmt: skip
        if len(text.encode()) > MAX_FACTS_BYTES:
            raise SignatureError(f"the pair's facts are {len(text.encode())} bytes, over {MAX_FACTS_BYTES}")
        return text

    def image_for(self, image: str) -> ImageFacts | None:
        """The image facts when they are about `image` (the spec's), else None."""
        return self.image if self.image is not None and self.image.image == image else None

    def model_for(self, uri: str, version: str, sha256: str | None) -> ModelFacts | None:
        """The model facts when they are about this exact version (same digest), else None."""
        m = self.model
        return m if m is not None and (m.uri, m.version, m.sha256) == (uri, version, sha256 or "") else None


def parse_facts(text: str | None) -> PairFacts:
    """The annotation's facts; empty facts when it is absent, too long or unreadable (a tenant may edit it)."""
    if not text or len(text.encode()) > MAX_FACTS_BYTES:
        return PairFacts()
    try:
        return PairFacts.model_validate(json.loads(text))
    except (ValueError, RecursionError, TypeError):
        return PairFacts()


def mismatch(facts: PairFacts, *, image: str, uri: str, version: str, sha256: str | None) -> str | None:
    """Why the pair (image, model version) must not start, from the recorded facts; None when it may (or
    nothing is known about one half)."""
    img, model = facts.image_for(image), facts.model_for(uri, version, sha256)
    if img is None or model is None:
        return None
    problem = fit(model.signature, img.accepts)
    return None if problem is None else f"image {image} does not accept model version {version}: {problem}"


__all__ = [
    "ANN_PAIR_FACTS", "LABEL", "ImageFacts", "ModelFacts", "PairFacts", "SignatureError", "fit", "mismatch",
    "parse_accepts", "parse_facts", "problems",
]  # fmt: skip
