"""The ModelApp spec as pydantic models: parsed once at the top of a handler, never re-read as dicts.

Contract: these models and `crds/modelapp.io_modelapps.yaml` describe the same shape — same fields,
required-ness, enums, patterns, bounds and defaults (`tests/unit/test_crd_agreement.py` walks both).
The API server rejects most bad input through the CRD schema; what reaches us from there is parsed
again here because (a) `modelapp render` reads files that never went through an API server and
(b) the CRD may be older than the operator. A `ValidationError` is turned into a Ready=False
condition with reason `InvalidSpec` by the handler layer (`spec_errors()` gives the message).

Models are strict (no "3" -> 3 coercion) and forbid unknown keys, like the structural schema.
Field names are the CRD's camelCase names (aliases); Python attributes are snake_case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from modelapp_operator.policies import PolicyError, compile_tag_filter

# --- patterns shared with the CRD (the agreement test compares them literally) -------------------

#: An image reference: optional registry host[:port]/, lowercase path components, optional tag,
#: optional `@sha256:<64 hex>` digest (the distribution reference grammar, simplified).
IMAGE_PATTERN = (
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
#: A model location (docs/contracts.md): azureblob://container/prefix, s3://bucket/prefix, file:///abs/path.
MODEL_URI_PATTERN = (
    r"^(?:azureblob://[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])?(?:/\S*)?"
    r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/\S*)?|file:///\S*)$"
)
#: A version name (docs/contracts.md).
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: The version digest: sha256 of the manifest's bytes, lowercase hex.
SHA256_PATTERN = r"^[a-f0-9]{64}$"
#: A Secret name (DNS-1123 subdomain).
SECRET_NAME_PATTERN = r"^[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?$"  # noqa: S105 (a name pattern, not a secret)
#: A container environment variable name (what the API server accepts for env[].name).
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
#: `module.path:ClassName` for a user model class (MODELAPP_MODEL_CLASS).
MODEL_CLASS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
#: An update policy: pinned | latest | numeric | semver:<range>.
POLICY_PATTERN = r"^(?:pinned|latest|numeric|semver:\S{1,100})$"
#: A Kubernetes quantity given as a string (integers are accepted as such).
QUANTITY_PATTERN = (
    r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))?$"
)
#: A ModelApp's own name: it names the Deployment, the Service (DNS-1035 label) and label values.
NAME_PATTERN = r"^[a-z](?:[-a-z0-9]*[a-z0-9])?$"
NAME_MAX_LENGTH = 63

#: int-or-string, like Kubernetes' own resource.Quantity; the pattern applies to strings only.
Quantity = int | Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)]


class _Model(BaseModel):
    """Strict, closed, camelCase-aliased, immutable: the common base of every spec model."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


#: Why `version: latest` is refused (the CRD says the same, in a CEL rule): a version that moves by itself
#: would roll out whatever was published last, unreviewed, with no digest pinned before it runs, past the
#: quarantine (which names concrete versions), and would need the operator to read every tenant's store
#: credentials. Following the newest version is the nightly bump's job, which pins the digest it checked.
LATEST_REFUSED = (
    "version 'latest' is not a version: name a concrete one (e.g. \"7\") and set "
    "updates.model.policy: latest so that the nightly bump moves it to the newest complete version "
    "(docs/updates.md)"
)


class ModelSource(_Model):
    """Where the model version lives and how to verify it (see docs/contracts.md)."""

    uri: str = Field(pattern=MODEL_URI_PATTERN, max_length=1024)
    version: str = Field(pattern=VERSION_PATTERN, max_length=128)
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN, max_length=64)
    credentials_secret: str | None = Field(default=None, pattern=SECRET_NAME_PATTERN, max_length=253)

    @field_validator("version")
    @classmethod
    def _concrete(cls, version: str) -> str:
        if version == "latest":
            raise ValueError(LATEST_REFUSED)
        return version


class ServiceSpec(_Model):
    """How the app is exposed: LoadBalancer by default, port -> container port 8080."""

    type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    port: int = Field(default=80, ge=1, le=65535)


class ResourceList(_Model):
    """A closed list of resource names (a typo like `memroy` is an error, not a silently dropped key)."""

    cpu: Quantity | None = None
    memory: Quantity | None = None
    ephemeral_storage: Quantity | None = Field(default=None, alias="ephemeral-storage")
    nvidia_gpu: Quantity | None = Field(default=None, alias="nvidia.com/gpu")
    amd_gpu: Quantity | None = Field(default=None, alias="amd.com/gpu")

    def as_kube(self) -> dict[str, int | str]:
        """The Kubernetes ResourceList: only the names that are set, under their real names."""
        return {k: v for k, v in self.model_dump(by_alias=True, exclude_none=True).items()}


class ResourcesSpec(_Model):
    """Requests and limits of the app container."""

    requests: ResourceList | None = None
    limits: ResourceList | None = None


class EnvVar(_Model):
    """A plain environment variable of the app container (no valueFrom: secrets go through files)."""

    name: str = Field(pattern=ENV_NAME_PATTERN, max_length=256)
    value: str = Field(default="", max_length=32768)


class ModelUpdates(_Model):
    """What the nightly bump may do with the model version."""

    policy: str = Field(default="pinned", pattern=POLICY_PATTERN, max_length=107)


class ImageUpdates(_Model):
    """What the nightly bump may do with the image tag."""

    policy: str = Field(default="pinned", pattern=POLICY_PATTERN, max_length=107)
    tag_filter: str | None = Field(default=None, max_length=256)

    @field_validator("tag_filter")
    @classmethod
    def _tag_filter_runs_in_linear_time(cls, value: str | None) -> str | None:
        """A filter RE2 refuses (backreferences, lookaround, ...) is reported on the ModelApp when it
        is applied, rather than found by the nightly bump; see policies.compile_tag_filter."""
        if value:
            try:
                compile_tag_filter(value)
            except PolicyError as exc:
                raise ValueError(str(exc)) from None
        return value


class UpdatesSpec(_Model):
    """Update policies, carried for `modelapp bump`; the operator itself never changes the spec."""

    model: ModelUpdates = Field(default_factory=ModelUpdates)
    image: ImageUpdates = Field(default_factory=ImageUpdates)


#: The smallest progress deadline: short enough for tests and fast-failing apps, long enough for the
#: Deployment controller (which needs progressDeadlineSeconds > minReadySeconds) to see a pod start.
MIN_PROGRESS_DEADLINE = 10


class SmokeTensor(_Model):
    """One input tensor of the golden request (Open Inference Protocol v2 shape: flat data, row-major)."""

    name: str = Field(default="input", max_length=256)
    datatype: Literal["FP32", "FP64", "INT32", "INT64"] = "FP32"
    shape: list[Annotated[int, Field(ge=0, le=100_000)]] = Field(max_length=8)
    data: list[float] = Field(max_length=4096)


class SmokeExpected(_Model):
    """An expected output: the output of that name (or, without a name, the first one), flattened."""

    name: str | None = Field(default=None, max_length=256)
    data: list[float] = Field(max_length=4096)


class SmokeTest(_Model):
    """A golden request the operator sends to a new revision's ready pods before calling it good.

    `v2` posts `{"inputs": [...]}` to /v2/models/<name>/infer; `v1` posts the first tensor as
    `{"instances": ...}` to /v1/models/<name>:predict; `score` posts it as `{"input": ...}` to /score.
    Every expected number must match within `tolerance` (absolute).
    """

    protocol: Literal["v2", "v1", "score"] = "v2"
    inputs: list[SmokeTensor] = Field(max_length=16)
    expected: list[SmokeExpected] = Field(max_length=16)
    tolerance: float = Field(default=1e-4, ge=0, le=100_000)
    timeout_seconds: int = Field(default=10, ge=1, le=120)


class RolloutSpec(_Model):
    """How a new revision rolls out, when it counts as failed, and what happens then (docs/rollouts.md)."""

    progress_deadline_seconds: int = Field(default=300, ge=MIN_PROGRESS_DEADLINE, le=3600)
    auto_rollback: bool = True
    smoke_test: SmokeTest | None = None


class ModelAppSpec(_Model):
    """`spec` of a ModelApp: the code image, the model version and how to serve them."""

    image: str = Field(pattern=IMAGE_PATTERN, max_length=512)
    model: ModelSource
    replicas: int = Field(default=1, ge=0, le=100)
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    resources: ResourcesSpec | None = None
    env: list[EnvVar] | None = Field(default=None, max_length=100)
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(default=None, max_length=64)
    args: list[Annotated[str, Field(max_length=4096)]] | None = Field(default=None, max_length=64)
    model_class: str | None = Field(default=None, pattern=MODEL_CLASS_PATTERN, max_length=256)
    updates: UpdatesSpec = Field(default_factory=UpdatesSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)


class InvalidSpec(ValueError):
    """The ModelApp cannot be reconciled as written; the message is meant for `kubectl describe`."""


def parse_spec(spec: Mapping[str, Any]) -> ModelAppSpec:
    """Parse a raw `spec` mapping; raise `InvalidSpec` with a one-line, field-by-field message."""
    try:
        return ModelAppSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise InvalidSpec(spec_errors(exc)) from None


def check_name(name: str) -> None:
    """The name becomes a Service name and label values: a DNS-1035 label of at most 63 characters."""
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidSpec(f"metadata.name: {len(name)} characters, at most {NAME_MAX_LENGTH} allowed")
    if not re.match(NAME_PATTERN, name):
        raise InvalidSpec(f"metadata.name: {name!r} must be a DNS-1035 label (lowercase letters, digits, '-')")


#: Pattern errors read better as what was expected than as the regular expression itself.
_PATTERN_HINTS = {
    IMAGE_PATTERN: "not an image reference ([registry[:port]/]name[:tag][@sha256:<64 hex>])",
    MODEL_URI_PATTERN: "not a model location (azureblob://container/prefix, s3://bucket/prefix or file:///path)",
    VERSION_PATTERN: "not a version name (letters, digits, '.', '_', '-'; at most 128)",
    SHA256_PATTERN: "not a sha256 digest (64 lowercase hex characters)",
    SECRET_NAME_PATTERN: "not a Secret name (DNS-1123 subdomain)",
    ENV_NAME_PATTERN: "not an environment variable name",
    MODEL_CLASS_PATTERN: "not a model class (module.path:ClassName)",
    POLICY_PATTERN: "not an update policy (pinned, latest, numeric or semver:<range>)",
    QUANTITY_PATTERN: "not a Kubernetes quantity (e.g. 100m, 256Mi)",
}


def spec_errors(exc: ValidationError, *, limit: int = 5) -> str:
    """Render pydantic errors as `spec.a.b: message; ...` (at most `limit`, then a count)."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in ("spec", *err["loc"]))
        pattern = str((err.get("ctx") or {}).get("pattern"))
        message = _PATTERN_HINTS.get(pattern, err["msg"]) if err["type"] == "string_pattern_mismatch" else err["msg"]
        parts.append(f"{where}: {message}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
