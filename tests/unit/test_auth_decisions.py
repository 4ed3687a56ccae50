"""A missing token Secret is not the pair's fault (issue 12.4, bad input).

Design notes: pure, no I/O. Pods are dicts shaped like what the kubelet reports for a container whose
environment names a Secret (or a key) that does not exist: `state.waiting.reason: CreateContainerConfigError`
with the kubelet's own message. The engine reads them while an app with `auth` rolls out; here the pure
reading (`status.token_secret_problem`), the conditions it gives, and the property that matters: the
Deployment's progress deadline that follows is kept from the rollout decision (`engine._without_failure`),
so the revision stays Progressing, is never quarantined, and the last good pair keeps serving -- while the
same deadline with no Secret problem still fails the pair, as before.
"""

from __future__ import annotations

from typing import Any

from modelapp_operator import builders, rollout, status
from modelapp_operator.engine import _without_failure
from modelapp_operator.names import OUTCOME_AVAILABLE, OUTCOME_FAILED, OUTCOME_PROGRESSING
from modelapp_operator.revisions import Pair, Revision
from modelapp_operator.spec import ModelAppSpec, parse_spec

NOW = "2026-12-02T12:00:00Z"


def _spec(image: str) -> ModelAppSpec:
    return parse_spec({"image": image, "model": {"uri": "file:///m", "version": "1"}, "replicas": 2,
                       "auth": {"secretName": "iris-token", "key": "token"}})  # fmt: skip


def _pod(reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {"name": "iris-7d9f-abcde"}, "status": {"phase": "Pending", "containerStatuses": [
        {"name": "app", "ready": False, "state": {"waiting": {"reason": reason, "message": message}}}]}}  # fmt: skip


def _deployment(spec: ModelAppSpec, *, failed: bool) -> dict[str, Any]:
    conditions = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                   "message": 'ReplicaSet "iris-7d9f" has timed out progressing.'}] if failed else []  # fmt: skip
    return {"metadata": {"generation": 2}, "spec": {"replicas": 2, "template": {"metadata": {
        "annotations": builders.template_annotations(spec)}}}, "status": {"observedGeneration": 2, "replicas": 3,
        "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2, "conditions": conditions}}  # fmt: skip


def test_the_kubelets_messages_are_recognised() -> None:
    missing = _pod("CreateContainerConfigError", 'secret "iris-token" not found')
    no_key = _pod("CreateContainerConfigError", "couldn't find key token in Secret ml/iris-token")
    assert status.token_secret_problem([missing], secret="iris-token") == 'secret "iris-token" not found'
    assert status.token_secret_problem([no_key], secret="iris-token") == no_key["status"]["containerStatuses"][0][
        "state"]["waiting"]["message"]  # fmt: skip
    other_secret = _pod("CreateContainerConfigError", 'secret "blob-credentials" not found')
    prefix_only = _pod("CreateContainerConfigError", 'secret "iris-token-old" not found')
    pulling = _pod("ErrImagePull", 'secret "iris-token" not found')
    others = [other_secret, prefix_only, pulling, {"status": {}}]
    assert status.token_secret_problem(others, secret="iris-token") is None


def test_the_conditions_name_the_secret_the_key_and_what_keeps_running() -> None:
    found = status.token_secret_conditions(secret="iris-token", key="token", namespace="ml",
                                           kubelet='secret "iris-token" not found')  # fmt: skip
    by_type = {c.type: c for c in found}
    assert by_type["Ready"].status == "False" and by_type["Ready"].reason == "TokenSecretMissing"
    assert "Create the Secret ml/iris-token with the key 'token'" in by_type["Ready"].message
    assert "keeps serving" in by_type["Ready"].message and "not quarantined" in by_type["Ready"].message
    assert by_type["Degraded"].status == "True"


def _history() -> list[Revision]:
    good = Pair.from_spec(_spec("example.com/app:1.0"))
    return [Revision.new(1, good, at=NOW, outcome=OUTCOME_AVAILABLE, reason="Available", message="")
            .model_copy(update={"available_at": NOW})]  # fmt: skip


def _decide(spec: ModelAppSpec, deployment: dict[str, Any] | None, revisions: list[Revision]) -> rollout.Decision:
    return rollout.decide(rollout.Observation(spec=spec, revisions=revisions, deployment=deployment, annotations={},
                                              now=NOW))  # fmt: skip


def test_the_deadline_a_missing_secret_causes_does_not_quarantine_the_pair() -> None:
    new = _spec("example.com/app:1.1")
    started = _decide(new, _deployment(_spec("example.com/app:1.0"), failed=False), _history())
    timed_out = _deployment(new, failed=True)
    kept = _decide(new, _without_failure(timed_out), started.revisions)
    outcomes = {r.image: r.outcome for r in kept.revisions}
    assert outcomes["example.com/app:1.1"] == OUTCOME_PROGRESSING, "still waiting for the Secret: no verdict"
    assert kept.source == "Spec" and not any(r.quarantined for r in kept.revisions)
    # The same deadline without a Secret problem is the pair's failure, as before.
    failed = _decide(new, timed_out, started.revisions)
    assert {r.image: r.outcome for r in failed.revisions}["example.com/app:1.1"] == OUTCOME_FAILED
    assert failed.source == "LastGood" and failed.effective.image == "example.com/app:1.0"


def test_without_failure_keeps_everything_else() -> None:
    timed_out = _deployment(_spec("example.com/app:1.1"), failed=True)
    available = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
    timed_out["status"]["conditions"].append(available)
    stripped = _without_failure(timed_out)
    assert stripped is not None and stripped["status"]["conditions"] == [timed_out["status"]["conditions"][1]]
    assert stripped["spec"] == timed_out["spec"] and stripped["status"]["replicas"] == 3
    assert _without_failure(None) is None
