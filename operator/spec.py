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

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from modelapp_operator.names import LABEL_INSTANCE, LABEL_MANAGED_BY
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
#: A Secret name (DNS-1123 subdomain); ServiceAccount names follow the same rule.
SECRET_NAME_PATTERN = r"^[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?$"  # noqa: S105 (a name pattern, not a secret)
#: A label or annotation key (a Kubernetes qualified name): [DNS-subdomain prefix/]name, the name at most
#: 63 characters. The prefix's own limit (253) is checked apart (`KEY_PREFIX_TOO_LONG_RE2`).
LABEL_KEY_PATTERN = (
    r"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_KEY_MAX_LENGTH = 317  # 253 (prefix) + "/" + 63 (name)
#: A label value: empty, or at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends.
LABEL_VALUE_PATTERN = r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
#: What a key whose prefix is over 253 characters matches.
KEY_PREFIX_TOO_LONG_RE2 = r"^[^/]{254,}/"
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


#: Why a `file://` model takes no credentials Secret (issue 10; the CRD says the same in a CEL rule on `model`):
#: its fetch runs the tenant's own app image, which would then hold every key of whatever Secret of the
#: namespace the ModelApp names, and could print one into the pod's status (FallbackToLogsOnError).
FILE_MODEL_NO_CREDENTIALS = (
    "credentialsSecret cannot be used with a file:// model: a model baked into the image needs no "
    "credentials, and its fetch runs the app's own image, which is never given a Secret; remove credentialsSecret"
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

    @field_validator("credentials_secret")
    @classmethod
    def _no_secret_for_baked_models(cls, secret: str | None, info: ValidationInfo) -> str | None:
        if secret is not None and str(info.data.get("uri", "")).startswith("file://"):
            raise ValueError(FILE_MODEL_NO_CREDENTIALS)
        return secret


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


AUTOSCALING_BOUNDS = "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas"


class AutoscalingSpec(_Model):
    """A HorizontalPodAutoscaler owns the replica count (between min and max) instead of `replicas`."""

    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(ge=1, le=100)
    target_cpu_utilization_percentage: int | None = Field(default=80, ge=1, le=100,
                                                          alias="targetCPUUtilizationPercentage")  # fmt: skip
    target_memory_utilization_percentage: int | None = Field(default=None, ge=1, le=100,
                                                             alias="targetMemoryUtilizationPercentage")  # fmt: skip

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(AUTOSCALING_BOUNDS)
        return self


#: A key of a Secret's data (what the API server accepts: letters, digits, '-', '_', '.').
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 (a key pattern, not a secret)


class AuthSpec(_Model):
    """Bearer-token authentication of the app's endpoints: the token is the value of `key` in the Secret
    `secretName` of the ModelApp's namespace. The kubelet gives it to the app container (env `valueFrom`);
    the operator never reads it (docs/security.md, "Endpoint authentication")."""

    secret_name: str = Field(pattern=SECRET_NAME_PATTERN, max_length=253)
    key: str = Field(default="token", pattern=SECRET_KEY_PATTERN, max_length=253)


#: A host name an Ingress routes: a DNS-1123 subdomain whose last label starts with a letter (so no IP
#: address), no wildcard (a tenant's `*.example.com` would catch every other tenant's subdomain).
HOST_PATTERN = r"^(?:[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$"
HOST_NOT_DNS = (
    "not a DNS name: lowercase labels of letters, digits and '-' (at most 63 each, no '-' at "
    "either end) joined by '.', the last starting with a letter (not an IP address), at most 253 characters; "
    "no wildcard, scheme, port or path"
)
#: An Ingress path prefix: '/' then segments of letters, digits, '-', '_', '~', '.' (none starting with '.',
#: so no '..'), no '//' and no percent-encoding (the API server refuses those for pathType Prefix).
INGRESS_PATH_PATTERN = r"^/(?:[-A-Za-z0-9_~][-A-Za-z0-9_~.]*/?)*$"


class IngressSpec(_Model):
    """A host name for the app: an Ingress (networking.k8s.io/v1) routing `host` + `path` to the Service."""

    host: str = Field(pattern=HOST_PATTERN, max_length=253)
    class_name: str | None = Field(default=None, pattern=SECRET_NAME_PATTERN, max_length=253)
    tls_secret: str | None = Field(default=None, pattern=SECRET_NAME_PATTERN, max_length=253)
    path: str = Field(default="/", pattern=INGRESS_PATH_PATTERN, max_length=256)


class RolloutSpec(_Model):
    """How a new revision rolls out, when it counts as failed, and what happens then (docs/rollouts.md)."""

    progress_deadline_seconds: int = Field(default=300, ge=MIN_PROGRESS_DEADLINE, le=3600)
    auto_rollback: bool = True
    smoke_test: SmokeTest | None = None


# --- where and as whom the pods run (spec.pod) --------------------------------------------------------

#: The labels the operator puts on every pod (builders.labels): the first two are the Deployment's
#: immutable selector, and the status layer finds a revision's pods by them.
OUR_POD_LABELS = (
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    "app.kubernetes.io/name",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
)
#: Keys in the modelapp.io domain (and its subdomains) are the operator's: pod annotations there identify
#: the revision being rolled out (names.ANN_*), and the status layer trusts them.
OUR_DOMAIN_RE2 = r"^(?:[^/]*\.)?modelapp\.io/"

POD_LABELS_RESERVED = (
    "pod.labels cannot set app.kubernetes.io/instance, managed-by, name, component or part-of, nor any key "
    "under modelapp.io/: the operator sets them (they select the pods and identify the revision); choose other keys"
)
POD_ANNOTATIONS_RESERVED = (
    "pod.annotations cannot use the modelapp.io/ prefix (or a subdomain of it): those annotations are the "
    "operator's and identify the revision being rolled out; choose another prefix"
)
BAD_KEYS = (
    "every key must be a Kubernetes label key: [prefix/]name, the name at most 63 letters, digits, '-', '_' or '.' "
    "(alphanumeric at both ends), the optional prefix a lowercase DNS subdomain of at most 253 characters"
)
TOLERATION_EXISTS_VALUE = "a toleration with operator Exists matches any value of its key: remove value, or use Equal"
TOLERATION_SECONDS_NOEXECUTE = (
    "tolerationSeconds applies only to effect NoExecute (how long the pod stays on a node tainted after it "
    "started): set effect: NoExecute or remove tolerationSeconds"
)
TOLERATION_CONTROL_PLANE = "control-plane taints cannot be tolerated: model servers never run on control-plane nodes"
#: Taint keys that mark control-plane nodes (the second is the pre-1.24 name, still set by some installers).
CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
#: Why pod (anti-)affinity terms stay in their own namespace: a namespace is a tenant, and a term that names
#: other namespaces would let one tenant's scheduling probe where another tenant's pods run.
AFFINITY_OTHER_NAMESPACES = (
    "pod (anti-)affinity terms apply to pods of the ModelApp's own namespace only: remove namespaces and "
    "namespaceSelector"
)
#: The CEL rule of every pod (anti-)affinity term (the pydantic side: PodAffinityTerm._own_namespace_only).
_OWN_NAMESPACE_RULE = [("!has(self.namespaces) && !has(self.namespaceSelector)", AFFINITY_OTHER_NAMESPACES)]


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


_KEYS_RULE = f"self.all(k, k.matches(r'{LABEL_KEY_PATTERN}') && !k.matches(r'{KEY_PREFIX_TOO_LONG_RE2}'))"
#: Every CEL rule (`x-kubernetes-validations`) of the CRD's spec, by path, with its message: the same
#: refusals the validators below make. tests/unit/test_crd_agreement.py checks the CRD has exactly these.
#: The CRD's own check of a tagFilter: the API server's CEL compiles it with RE2, as the operator does.
TAG_FILTER_NOT_RE2 = (
    "tagFilter is not a regular expression RE2 can run: no backreferences, lookaround, atomic groups, "
    "possessive quantifiers or conditionals, and no repeat count over 1000"
)

CRD_RULES: dict[str, list[tuple[str, str]]] = {
    "autoscaling": [("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas", AUTOSCALING_BOUNDS)],
    "ingress.host": [(f"self.matches(r'{HOST_PATTERN}')", HOST_NOT_DNS)],
    "updates.image.tagFilter": [("type(''.matches(self)) == bool", TAG_FILTER_NOT_RE2)],
    "model": [(r"!(has(self.credentialsSecret) && self.uri.startsWith('file://'))", FILE_MODEL_NO_CREDENTIALS)],
    "model.version": [("self != 'latest'", LATEST_REFUSED)],
    "pod.nodeSelector": [(_KEYS_RULE, BAD_KEYS)],
    "pod.tolerations[]": [
        ("!(self.key in " + _cel_list(CONTROL_PLANE_TAINTS) + ")", TOLERATION_CONTROL_PLANE),
        (
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            TOLERATION_EXISTS_VALUE,
        ),
        (
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            TOLERATION_SECONDS_NOEXECUTE,
        ),
    ],
    "pod.tolerations[].key": [(f"!self.matches(r'{KEY_PREFIX_TOO_LONG_RE2}')", BAD_KEYS)],
    "pod.labels": [
        (_KEYS_RULE, BAD_KEYS),
        (f"!self.exists(k, k in {_cel_list(OUR_POD_LABELS)} || k.matches(r'{OUR_DOMAIN_RE2}'))", POD_LABELS_RESERVED),
    ],
    "pod.annotations": [
        (_KEYS_RULE, BAD_KEYS),
        (f"!self.exists(k, k.matches(r'{OUR_DOMAIN_RE2}'))", POD_ANNOTATIONS_RESERVED),
    ],
    **{
        f"pod.affinity.{kind}.{when}": _OWN_NAMESPACE_RULE
        for kind in ("podAffinity", "podAntiAffinity")
        for when in (
            "requiredDuringSchedulingIgnoredDuringExecution[]",
            "preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm",
        )
    },
}


def _prefix_fits(key: str) -> str:
    if re.match(KEY_PREFIX_TOO_LONG_RE2, key):
        raise ValueError(BAD_KEYS)
    return key


#: A label or annotation key; a label value; an annotation value (free text, bounded).
LabelKey = Annotated[
    str, Field(pattern=LABEL_KEY_PATTERN, max_length=LABEL_KEY_MAX_LENGTH), AfterValidator(_prefix_fits)
]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]
AnnotationValue = Annotated[str, Field(max_length=4096)]


class Toleration(_Model):
    """A taint the pods tolerate (Kubernetes' Toleration, with a key always named)."""

    key: LabelKey
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = Field(default=None, pattern=LABEL_VALUE_PATTERN, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0, le=31_536_000)

    @field_validator("key")
    @classmethod
    def _not_the_control_plane(cls, key: str) -> str:
        if key in CONTROL_PLANE_TAINTS:
            raise ValueError(TOLERATION_CONTROL_PLANE)
        return key

    @field_validator("value")
    @classmethod
    def _no_value_with_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("operator") == "Exists":
            raise ValueError(TOLERATION_EXISTS_VALUE)
        return value

    @field_validator("toleration_seconds")
    @classmethod
    def _only_for_no_execute(cls, seconds: int | None, info: ValidationInfo) -> int | None:
        if seconds is not None and info.data.get("effect") != "NoExecute":
            raise ValueError(TOLERATION_SECONDS_NOEXECUTE)
        return seconds


# Kubernetes' affinity types (core/v1), typed on both sides: the CRD's structural schema and these models.
# Typed rather than free objects because a free object is JSON of any depth, and the operator must read
# whatever the API server stores (deepjson.py); typed, the API server prunes or refuses (strict) an unknown
# field, and a typo is refused where it is written instead of as a 500 of the Deployment's apply. Lists are
# bounded (the CEL rule below is evaluated per term); label keys and values are left to the API server,
# which checks them when the Deployment is applied.
#: At most this many terms, expressions or values in one list of an affinity (Kubernetes sets none).
AFFINITY_MAX_ITEMS = 32
_AffinityKey = Annotated[str, Field(max_length=LABEL_KEY_MAX_LENGTH)]
_AffinityValue = Annotated[str, Field(max_length=253)]  # a label value, or a node name for matchFields


class NodeSelectorRequirement(_Model):
    """One requirement on a node's labels (matchExpressions) or fields (matchFields)."""

    key: _AffinityKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[_AffinityValue] | None = Field(default=None, max_length=AFFINITY_MAX_ITEMS)


class NodeSelectorTerm(_Model):
    """Requirements a node must all meet."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(default=None, max_length=AFFINITY_MAX_ITEMS)
    match_fields: list[NodeSelectorRequirement] | None = Field(default=None, max_length=AFFINITY_MAX_ITEMS)


class NodeSelector(_Model):
    """Terms of which a node must meet one."""

    node_selector_terms: list[NodeSelectorTerm] = Field(max_length=AFFINITY_MAX_ITEMS)


class PreferredSchedulingTerm(_Model):
    """A node term and how much meeting it weighs."""

    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(_Model):
    """Kubernetes' NodeAffinity."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = Field(
        default=None, max_length=AFFINITY_MAX_ITEMS
    )


class LabelSelectorRequirement(_Model):
    """One requirement on a pod's labels."""

    key: _AffinityKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[_AffinityValue] | None = Field(default=None, max_length=AFFINITY_MAX_ITEMS)


class LabelSelector(_Model):
    """Kubernetes' LabelSelector."""

    match_labels: dict[_AffinityKey, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=AFFINITY_MAX_ITEMS
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(default=None, max_length=AFFINITY_MAX_ITEMS)


class PodAffinityTerm(_Model):
    """Pods (of the ModelApp's namespace) near or away from which the pods run, by topology domain.

    `namespaces` and `namespaceSelector` are Kubernetes' fields, declared so that using them is refused with
    the reason (`AFFINITY_OTHER_NAMESPACES`, also the CRD's rule) rather than pruned without a word."""

    label_selector: LabelSelector | None = None
    topology_key: _AffinityKey
    match_label_keys: list[_AffinityKey] | None = Field(default=None, max_length=AFFINITY_MAX_ITEMS)
    mismatch_label_keys: list[_AffinityKey] | None = Field(default=None, max_length=AFFINITY_MAX_ITEMS)
    namespaces: list[_AffinityValue] | None = Field(default=None, max_length=AFFINITY_MAX_ITEMS)
    namespace_selector: LabelSelector | None = None

    @model_validator(mode="after")
    def _own_namespace_only(self) -> PodAffinityTerm:
        if self.namespaces is not None or self.namespace_selector is not None:
            raise ValueError(AFFINITY_OTHER_NAMESPACES)
        return self


class WeightedPodAffinityTerm(_Model):
    """A pod term and how much meeting it weighs."""

    weight: int = Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(_Model):
    """Kubernetes' PodAffinity, and PodAntiAffinity (the same shape)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        default=None, max_length=AFFINITY_MAX_ITEMS
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = Field(
        default=None, max_length=AFFINITY_MAX_ITEMS
    )


class Affinity(_Model):
    """Kubernetes' Affinity, typed: unknown fields (a typo) and terms reaching other namespaces are refused."""

    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


def _reserved_labels(labels: dict[str, str] | None) -> dict[str, str] | None:
    if labels and any(k in OUR_POD_LABELS or re.match(OUR_DOMAIN_RE2, k) for k in labels):
        raise ValueError(POD_LABELS_RESERVED)
    return labels


def _reserved_annotations(annotations: dict[str, str] | None) -> dict[str, str] | None:
    if annotations and any(re.match(OUR_DOMAIN_RE2, k) for k in annotations):
        raise ValueError(POD_ANNOTATIONS_RESERVED)
    return annotations


class SecretReference(_Model):
    """A Secret of the namespace by name: Kubernetes' own `{name: ...}` shape, so a pod's list pastes as is."""

    name: str = Field(pattern=SECRET_NAME_PATTERN, max_length=253)


class PodSettings(_Model):
    """Where and as whom the serving pods run: what a platform team sets per cluster, apart from what is
    served. Every field goes into the pod template, so changing one rolls out a new ReplicaSet.

    One section rather than top-level fields: these are the PodSpec's own names and shapes (a pod's
    `imagePullSecrets` or `tolerations` paste as they are), they say where and as whom the pods run rather
    than what is served, and `labels`/`annotations` here cannot be mistaken for the ModelApp's own."""

    service_account_name: str | None = Field(default=None, pattern=SECRET_NAME_PATTERN, max_length=253)
    image_pull_secrets: list[SecretReference] | None = Field(default=None, max_length=16)
    node_selector: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=32)
    tolerations: list[Toleration] | None = Field(default=None, max_length=32)
    affinity: Affinity | None = None
    labels: Annotated[dict[LabelKey, LabelValue] | None, AfterValidator(_reserved_labels)] = Field(
        default=None, max_length=32
    )
    annotations: Annotated[dict[LabelKey, AnnotationValue] | None, AfterValidator(_reserved_annotations)] = Field(
        default=None, max_length=32
    )


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
    pod: PodSettings | None = None
    autoscaling: AutoscalingSpec | None = None
    auth: AuthSpec | None = None
    ingress: IngressSpec | None = None


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
    SECRET_NAME_PATTERN: "not a valid name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.')",
    SECRET_KEY_PATTERN: "not a Secret key (letters, digits, '-', '_' and '.')",
    LABEL_KEY_PATTERN: BAD_KEYS,
    LABEL_VALUE_PATTERN: "not a label value (at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends)",
    ENV_NAME_PATTERN: "not an environment variable name",
    MODEL_CLASS_PATTERN: "not a model class (module.path:ClassName)",
    POLICY_PATTERN: "not an update policy (pinned, latest, numeric or semver:<range>)",
    QUANTITY_PATTERN: "not a Kubernetes quantity (e.g. 100m, 256Mi)",
    HOST_PATTERN: HOST_NOT_DNS,
    INGRESS_PATH_PATTERN: (
        "not a path prefix ('/' then segments of letters, digits, '-', '_', '~', '.'; no '..', '//' or '%')"
    ),
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
