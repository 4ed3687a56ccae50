"""The version card: what a model version says about itself beyond its bytes.

A card is the file `modelapp-card.json` of a version, published with it and listed in its manifest like
any other file, so the version digest covers it (the manifest pins the card's sha256, the digest pins the
manifest). It holds three things (docs/contracts.md, docs/model-versions.md):

- `signature`: the model's inputs and outputs (name, OIP datatype, shape with -1 for "any size"), derived
  by `publish` from an ONNX graph or a scikit-learn estimator, declared (`--signature FILE`) for a user class;
- `examples`: the model owner's acceptance examples (golden inputs, expected outputs, a tolerance), which
  the operator's smoke test runs against a new revision when the ModelApp names no smoke test of its own;
- `provenance`: where the version came from (training run, source commit, dataset digest, free-form
  metadata), shown by `/version` and in the ModelApp's `status.revisions`.

Why a file and not new manifest fields: the manifest is parsed strictly (unknown keys refused) by every
serving runtime already built into app images; a new field would make those images refuse new versions.
A file listed in `files` is fetched and verified by any runtime, old or new, and read only by new ones.

Every field is bounded: a card is read by the bump (the tenant's store is hostile input to it) and
served to the smoke test, so its size and shape are capped here, once, for every reader.
Pure: no I/O except `read_card`, which reads a fetched version folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelapp_serving.manifest import Manifest

CARD_NAME = "modelapp-card.json"
CARD_SCHEMA = "modelapp.io/card/v1"
#: A card is at most this long (its examples are bounded far below; the rest is small).
MAX_CARD_BYTES = 1024 * 1024
#: OIP datatypes a signature may name.
DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES")  # fmt: skip
#: Datatypes an example tensor may carry (numbers: the smoke test compares within a tolerance).
EXAMPLE_DATATYPES = ("FP32", "FP64", "INT32", "INT64")

Text = Annotated[str, Field(max_length=256)]


class CardError(ValueError):
    """A card, a signature or examples file that cannot be used; the message says where and why."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TensorSig(_Closed):
    """One input or output of a model: its name, OIP datatype and shape (-1: any size)."""

    name: str = Field(min_length=1, max_length=256)
    datatype: Literal[DATATYPES]  # type: ignore[valid-type]
    shape: tuple[Annotated[int, Field(ge=-1, le=2**31)], ...] = Field(max_length=16)


class Signature(_Closed):
    """A model's inputs and outputs; names are unique on each side."""

    inputs: tuple[TensorSig, ...] = Field(max_length=64)
    outputs: tuple[TensorSig, ...] = Field(max_length=64)

    @field_validator("inputs", "outputs")
    @classmethod
    def _unique(cls, tensors: tuple[TensorSig, ...]) -> tuple[TensorSig, ...]:
        names = [t.name for t in tensors]
        if len(set(names)) != len(names):
            raise ValueError("a tensor name appears twice")
        return tensors


class ExampleTensor(_Closed):
    """A golden input (Open Inference Protocol v2 shape: flat data, row-major)."""

    name: str = Field(default="input", max_length=256)
    datatype: Literal["FP32", "FP64", "INT32", "INT64"] = "FP32"
    shape: list[Annotated[int, Field(ge=0, le=100_000)]] = Field(max_length=8)
    data: list[float] = Field(max_length=4096)


class ExampleOutput(_Closed):
    """An expected output: the output of that name (or, without a name, the first one), flattened."""

    name: str | None = Field(default=None, max_length=256)
    data: list[float] = Field(max_length=4096)


class Examples(_Closed):
    """Acceptance examples: the same shape as a ModelApp's `spec.rollout.smokeTest` (docs/rollouts.md), so a
    model owner and a platform team write the same thing, and the operator runs both the same way."""

    protocol: Literal["v2", "v1", "score"] = "v2"
    inputs: list[ExampleTensor] = Field(min_length=1, max_length=16)
    expected: list[ExampleOutput] = Field(min_length=1, max_length=16)
    tolerance: float = Field(default=1e-4, ge=0, le=100_000)
    timeout_seconds: int = Field(default=10, ge=1, le=120, alias="timeoutSeconds")


class Provenance(_Closed):
    """Where a version came from. Every field optional, free text (bounded)."""

    training_run: Text | None = Field(default=None, alias="trainingRun")
    source_commit: Text | None = Field(default=None, alias="sourceCommit")
    dataset_digest: Text | None = Field(default=None, alias="datasetDigest")
    meta: dict[Annotated[str, Field(min_length=1, max_length=63)], Text] = Field(default_factory=dict, max_length=32)

    def as_json(self) -> dict[str, Any]:
        """The camelCase JSON form, empty fields left out (what /version and status.revisions show)."""
        out = self.model_dump(by_alias=True, exclude_none=True)
        if not out.get("meta"):
            out.pop("meta", None)
        return out

    @property
    def empty(self) -> bool:
        return not self.as_json()


class Card(_Closed):
    schema_: Literal["modelapp.io/card/v1"] = Field(default="modelapp.io/card/v1", alias="schema")
    signature: Signature | None = None
    examples: Examples | None = None
    provenance: Provenance = Field(default_factory=Provenance)


def _first_error(exc: ValidationError, what: str) -> CardError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or what
    return CardError(f"{what} is invalid at {where}: {first['msg']}")


def _json(data: bytes, what: str, limit: int = MAX_CARD_BYTES) -> Any:
    if len(data) > limit:
        raise CardError(f"{what} is {len(data)} bytes, over the {limit} byte limit")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CardError(f"{what} is not valid JSON: {exc}") from None


def parse_card(data: bytes) -> Card:
    """Parse and validate card bytes; CardError with a one-line reason."""
    try:
        return Card.model_validate(_json(data, "the version card"))
    except ValidationError as exc:
        raise _first_error(exc, "the version card") from None


def parse_signature(data: bytes, what: str = "the signature") -> Signature:
    """A declared signature (`publish --signature FILE`): `{"inputs": [...], "outputs": [...]}`."""
    try:
        return Signature.model_validate(_json(data, what))
    except ValidationError as exc:
        raise _first_error(exc, what) from None


def parse_examples(data: bytes, what: str = "the examples") -> Examples:
    """Acceptance examples (`publish --examples FILE`)."""
    try:
        return Examples.model_validate(_json(data, what))
    except ValidationError as exc:
        raise _first_error(exc, what) from None


def build_card(*, signature: Signature | None, examples: Examples | None, provenance: Provenance) -> bytes:
    """Render card bytes deterministically (sorted keys, two-space indent, trailing newline)."""
    body: dict[str, Any] = {"schema": CARD_SCHEMA}
    if signature is not None:
        body["signature"] = signature.model_dump(mode="json")
    if examples is not None:
        body["examples"] = examples.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["provenance"] = provenance.as_json()
    data = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
    parse_card(data)
    return data


def card_entry_sha256(manifest: Manifest) -> str | None:
    """The card's sha256 as the manifest pins it, or None when the version has no card."""
    return next((entry.sha256 for entry in manifest.files if entry.path == CARD_NAME), None)


def read_card(model_dir: Path, manifest: Manifest) -> tuple[bytes, Card] | None:
    """The card of a fetched version (bytes as published, parsed), or None when it has none. `fetch` has
    already checked its sha256 against the manifest, as for every file."""
    if card_entry_sha256(manifest) is None:
        return None
    path = model_dir / CARD_NAME
    if path.stat().st_size > MAX_CARD_BYTES:
        raise CardError(f"{path} is over the {MAX_CARD_BYTES} byte limit of a version card")
    data = path.read_bytes()
    return data, parse_card(data)


__all__ = [
    "CARD_NAME", "Card", "CardError", "Examples", "Provenance", "Signature", "TensorSig", "build_card",
    "card_entry_sha256", "parse_card", "parse_examples", "parse_signature", "read_card",
]  # fmt: skip
