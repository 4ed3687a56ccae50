"""The ModelApp resource's names, in one place: API group and version, the labels and annotations the
operator, `modelapp bump` and `modelapp rollback` read and write, condition types, revision outcomes, and
the timestamp format of status and annotations.

Everything else imports these; nothing spells them again. A test (tests/unit/test_names.py) checks them
against the CRD in `crds/`, the one source of the schema.

Why two annotation prefixes: kopf keeps its own progress and diff-base under `modelapp.io/` and leaves every
annotation with that prefix out of its diffs, so an annotation a *user* sets to make the operator act (retry,
rollback) must live elsewhere (`rollout.modelapp.io/`), while annotations the operator and bump write for
bookkeeping (`modelapp.io/...`) never re-trigger a reconcile.
"""

from __future__ import annotations

import datetime
from typing import Final, Literal

# -- the resource ------------------------------------------------------------------------------------
GROUP: Final = "modelapp.io"
VERSION: Final = "v1alpha1"
KIND: Final = "ModelApp"
PLURAL: Final = "modelapps"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# -- who writes: the one field manager of every server-side apply, and the bump's Event source ------------
MANAGER: Final = "modelapp-operator"
BUMP_COMPONENT: Final = "modelapp-bump"

# -- labels of every child and serving pod (the first two form the immutable selector) -------------------
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
#: On a ModelApp (set by the platform team): the operator shard that handles it (`modelapp run --shard`,
#: docs/scaling.md). Changing it moves the ModelApp to another shard.
LABEL_SHARD: Final = "modelapp.io/shard"

# -- pod-template annotations that identify a revision (image + model) ------------------------------------
ANN_IMAGE: Final = "modelapp.io/image"
ANN_MODEL_URI: Final = "modelapp.io/model-uri"
ANN_MODEL_VERSION: Final = "modelapp.io/model-version"
ANN_MODEL_SHA256: Final = "modelapp.io/model-sha256"

# -- ModelApp annotations ------------------------------------------------------------------------------
#: Written by `modelapp bump` in the same patch as the spec change it makes; the operator counts the
#: rollout it starts (`modelapp_bumps_observed_total`).
ANN_BUMPED_AT: Final = "modelapp.io/bumped-at"
ANN_BUMP_REASON: Final = "modelapp.io/bump-reason"
#: Set by a user (or `modelapp rollback`): try a quarantined pair once more, `"<image>,<model version>"`.
ANN_RETRY: Final = "rollout.modelapp.io/retry-quarantined"
#: Left by `modelapp rollback` (`{from, to, reason, at}`); the operator records the pair it left, then removes it.
ANN_ROLLBACK: Final = "rollout.modelapp.io/rollback"
#: Identities (digests, `repository:tag`, `uri@version`) whose failure in this app no longer counts for the fleet
#: quarantine (`modelapp quarantine clear`, docs/rollouts.md); bookkeeping the operator does not react to.
ANN_QUARANTINE_CLEARED: Final = "modelapp.io/quarantine-cleared"

# -- status.conditions types ---------------------------------------------------------------------------
READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"
MODEL_RESOLVED: Final = "ModelResolved"
ROLLED_BACK: Final = "RolledBack"
#: spec.ingress: whether the host is routed (HostNotAllowed, HostTaken, Admitted, NoAddress; hosts.py).
INGRESS_READY: Final = "IngressReady"

# -- status.revisions[].outcome --------------------------------------------------------------------------
Outcome = Literal["Progressing", "Available", "Failed", "RolledBack", "Superseded"]
OUTCOME_PROGRESSING: Final = "Progressing"
OUTCOME_AVAILABLE: Final = "Available"
OUTCOME_FAILED: Final = "Failed"
OUTCOME_ROLLED_BACK: Final = "RolledBack"
OUTCOME_SUPERSEDED: Final = "Superseded"
OUTCOMES: Final = (OUTCOME_PROGRESSING, OUTCOME_AVAILABLE, OUTCOME_FAILED, OUTCOME_ROLLED_BACK, OUTCOME_SUPERSEDED)


def now() -> str:
    """The current time as status and annotations write it: RFC 3339, UTC, whole seconds."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
