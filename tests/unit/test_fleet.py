"""The fleet circuit breaker's pure half: what counts as evidence, where it counts, how a rollout ended.

Design notes: no I/O. Each case is a literal ModelApp as the API server returns it; its `status.revisions`
is what the operator writes (the real operator writes them in tests/integration/test_fleet_breaker.py).
The tenancy cases are the point: in `namespace` scope nothing crosses a namespace, in `cluster` scope only
a failure attributable to the digest does (deadline missed, one component changed, a good pair just
before), and only from trusted namespaces when the platform team names them.
"""

from __future__ import annotations

from typing import Any

from modelapp_operator.fleet import (
    ANN_QUARANTINE_CLEARED,
    Fleet,
    evidence_of,
    image_ids,
    model_ids,
    parse_identity,
    rollout_result,
)

REPO = "registry.example.com/team/iris"
GOOD, BAD = f"{REPO}:1.0.0", f"{REPO}:1.1.0"
URI = "azureblob://models/iris"
DIGEST_A = "a" * 64
DIGEST_B = "b" * 64
SETTINGS = "5" * 64  # the digest of the app's settings besides the pair (revisions.settings_digest)


def entry(
    n: int, image: str, model: str, outcome: str, *, sha: str = "", reason: str = "", **more: Any
) -> dict[str, Any]:
    out = {"revision": n, "image": image, "uri": URI, "model": model, "outcome": outcome, "reason": reason,
           "at": f"2026-12-02T10:0{n}:00Z", "message": f"entry {n}", "settings": SETTINGS, **more}  # fmt: skip
    if sha:
        out["sha256"] = sha
    if outcome in ("Available", "Superseded"):
        out["availableAt"] = out["at"]
    return out


def app(namespace: str, name: str, *revisions: dict[str, Any], cleared: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace, "name": name}
    if cleared:
        meta["annotations"] = {ANN_QUARANTINE_CLEARED: cleared}
    return {"metadata": meta, "spec": {}, "status": {"revisions": list(revisions)}}


def image_failed(namespace: str = "team-x", reason: str = "ProgressDeadlineExceeded") -> dict[str, Any]:
    """Good on (GOOD, 7), then the image alone moved to BAD and missed its deadline."""
    return app(namespace, "iris", entry(1, GOOD, "7", "Superseded", sha=DIGEST_A),
               entry(2, BAD, "7", "Failed", sha=DIGEST_A, reason=reason))  # fmt: skip


def test_the_component_that_changed_is_blamed_and_identified_by_what_it_is() -> None:
    (evidence,) = evidence_of(image_failed())
    assert evidence.component == "image" and evidence.ref == BAD and evidence.attributable
    assert evidence.ids == image_ids(BAD) == frozenset({f"image:{REPO}:1.1.0"})
    model_moved = app("team-x", "iris", entry(1, GOOD, "7", "Superseded", sha=DIGEST_A),
                      entry(2, GOOD, "8", "Failed", sha=DIGEST_B, reason="ProgressDeadlineExceeded"))  # fmt: skip
    (evidence,) = evidence_of(model_moved)
    assert evidence.component == "model" and evidence.ids == model_ids(URI, "8", DIGEST_B)
    assert f"model:{DIGEST_B}" in evidence.ids  # the same manifest published elsewhere is the same model


def test_a_digest_pinned_image_is_matched_by_digest_under_any_tag() -> None:
    pinned = f"{REPO}:1.1.0@sha256:{'c' * 64}"
    failed = app("team-x", "iris", entry(1, GOOD, "7", "Superseded"), entry(2, pinned, "7", "Failed",
                 reason="ProgressDeadlineExceeded", imageDigest=f"sha256:{'c' * 64}"))  # fmt: skip
    known = Fleet.of([failed])
    assert known.image_block("team-x", f"{REPO}:1.1.0-retag@sha256:{'c' * 64}") is not None
    assert known.image_block("team-x", f"{REPO}:1.1.0") is not None  # the tag it was pushed as
    assert known.image_block("team-x", GOOD) is None


def test_both_changed_or_no_good_pair_blames_both_and_stays_local() -> None:
    both = app("team-x", "iris", entry(1, GOOD, "7", "Superseded"),
               entry(2, BAD, "8", "Failed", reason="ProgressDeadlineExceeded"))  # fmt: skip
    assert {e.component for e in evidence_of(both)} == {"image", "model"}
    assert all(not e.attributable and "together" in e.why_local for e in evidence_of(both))
    first = app("team-x", "iris", entry(1, BAD, "7", "Failed", reason="ProgressDeadlineExceeded"))
    assert all(not e.attributable and "never had a good pair" in e.why_local for e in evidence_of(first))


def test_a_failure_with_settings_changed_alongside_stays_local() -> None:
    """A tenant that changes its image to another tenant's and, in the same edit, a setting that keeps its pods
    from being ready (tests/integration/test_tenancy_breaker.py) must not quarantine that image elsewhere."""
    changed = app("team-x", "iris", entry(1, GOOD, "7", "Superseded"),
                  entry(2, BAD, "7", "Failed", reason="ProgressDeadlineExceeded", settings="6" * 64))  # fmt: skip
    marked = app("team-x", "iris", entry(1, GOOD, "7", "Superseded"),
                 entry(2, BAD, "7", "Failed", reason="ProgressDeadlineExceeded", settings="changed"))  # fmt: skip
    unknown = app("team-x", "iris", entry(1, GOOD, "7", "Superseded", settings=""),
                  entry(2, BAD, "7", "Failed", reason="ProgressDeadlineExceeded", settings=""))  # fmt: skip
    for case in (changed, marked, unknown):
        (evidence,) = evidence_of(case)
        assert not evidence.attributable and "settings" in evidence.why_local
        assert Fleet.of([case], scope="cluster").image_block("team-y", BAD) is None
        assert Fleet.of([case], scope="cluster").image_block("team-x", BAD) is not None


def test_namespace_scope_never_crosses_a_namespace() -> None:
    known = Fleet.of([image_failed("team-x")], scope="namespace")
    assert known.image_block("team-x", BAD) is not None
    assert known.image_block("team-y", BAD) is None


def test_cluster_scope_carries_only_attributable_failures() -> None:
    deadline = Fleet.of([image_failed("team-x")], scope="cluster")
    hit = deadline.image_block("team-y", BAD)
    assert hit is not None and hit.namespace == "team-x" and "team-x/iris" in hit.describe()
    smoke = Fleet.of([image_failed("team-x", reason="SmokeTestFailed")], scope="cluster")
    assert smoke.image_block("team-y", BAD) is None  # its own expectations: may be the tenant's doing
    assert smoke.image_block("team-x", BAD) is not None  # still holds its own namespace


def test_cluster_scope_with_trusted_namespaces_ignores_every_other_tenant() -> None:
    known = Fleet.of([image_failed("team-x"), image_failed("canary")], scope="cluster", trusted=["canary"])
    assert {e.namespace for e in known.evidence if known.travels(e)} == {"canary"}
    only_x = Fleet.of([image_failed("team-x")], scope="cluster", trusted=["canary"])
    assert only_x.image_block("team-y", BAD) is None  # tenant x cannot block tenant y


def test_the_clear_annotation_drops_exactly_the_named_evidence() -> None:
    failed = image_failed()
    failed["metadata"]["annotations"] = {ANN_QUARANTINE_CLEARED: f"other:1, {BAD}"}
    assert evidence_of(failed) == []
    failed["metadata"]["annotations"] = {ANN_QUARANTINE_CLEARED: f"{REPO}:9.9.9"}
    assert len(evidence_of(failed)) == 1


def test_identities_a_user_types() -> None:
    assert parse_identity(BAD) == image_ids(BAD)
    assert f"model:{DIGEST_B}" in parse_identity(DIGEST_B) and f"model:{DIGEST_B}" in parse_identity(
        f"sha256:{DIGEST_B}"
    )
    assert parse_identity(f"{URI}@8") == model_ids(URI, "8")
    assert parse_identity("  ") == frozenset()


def status(*revisions: dict[str, Any], ready: bool = True, generation: int = 3, image: str = BAD) -> dict[str, Any]:
    cond = {"type": "Ready", "status": "True" if ready else "False", "reason": "Available"}
    return {"observedGeneration": generation, "conditions": [cond], "revisions": list(revisions),
            "effective": {"image": image, "uri": URI, "model": "7"}}  # fmt: skip


def patched(st: dict[str, Any] | None, image: str = BAD) -> dict[str, Any]:
    return {"metadata": {"generation": 3}, "spec": {"image": image, "model": {"uri": URI, "version": "7"}},
            "status": st or {}}  # fmt: skip


def test_a_rollout_is_ready_only_on_the_new_pair_at_the_new_generation() -> None:
    available = entry(2, BAD, "7", "Available")
    result = rollout_result(patched(status(available)), image=BAD, version="7", generation=3)
    assert result is not None and result.verdict == "Ready"
    assert rollout_result(patched(status(available, generation=2)), image=BAD, version="7", generation=3) is None
    rolling = entry(2, BAD, "7", "Progressing")
    assert rollout_result(patched(status(rolling, ready=False)), image=BAD, version="7", generation=3) is None


def test_a_failed_entry_is_a_failed_rollout_and_other_changes_are_not_the_bumps() -> None:
    failed = entry(2, BAD, "7", "Failed", reason="ProgressDeadlineExceeded")
    result = rollout_result(patched(status(failed, image=GOOD)), image=BAD, version="7", generation=3)
    assert result is not None and (result.verdict, result.reason) == ("Failed", "ProgressDeadlineExceeded")
    moved = rollout_result(patched(status(failed), image=GOOD), image=BAD, version="7", generation=3)
    assert moved is not None and moved.verdict == "Changed"
    gone = rollout_result(None, image=BAD, version="7", generation=3)
    assert gone is not None and gone.verdict == "Changed"
    never = rollout_result(patched(None), image=BAD, version="7", generation=3)
    assert never is not None and never.verdict == "Unobserved"
