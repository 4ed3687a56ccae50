"""Status from observations: Ready only when true, Degraded with the Deployment's reason, url source.

Design notes: status is a pure function of (spec, generation, Deployment, Service, old status, now), so
each test builds the Deployment the way the Deployment controller reports it and checks the conditions.
The trickiest cases are the ones where counts look fine but the revision is not current (old template,
unobserved generation, old pods still around): Ready must stay False there.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelapp_operator import status as st
from modelapp_operator.builders import BuildContext, build_deployment
from modelapp_operator.spec import ModelAppSpec, parse_spec

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def _spec(**overrides: Any) -> ModelAppSpec:
    raw: dict[str, Any] = {"image": "example.com/iris:1", "model": {"uri": "file:///m", "version": "7"}, "replicas": 2}
    raw.update(overrides)
    return parse_spec(raw)


def _deployment(spec: ModelAppSpec, *, generation: int = 1, observed: int = 1, **status: Any) -> dict[str, Any]:
    dep = build_deployment("iris", "ml", spec, BuildContext(serving_image="example.com/serving:1"))
    dep["metadata"]["generation"] = generation
    dep["status"] = {"observedGeneration": observed, **status}
    return dep


def _status(spec: ModelAppSpec, deployment: dict[str, Any] | None, service: dict[str, Any] | None = None,
            old: dict[str, Any] | None = None, now: str = NOW) -> dict[str, Any]:  # fmt: skip
    return st.compute_status(
        name="iris", namespace="ml", generation=3, spec=spec, deployment=deployment, service=service,
        old=old or {}, now=now,
    )  # fmt: skip


def _cond(status: dict[str, Any], kind: str) -> tuple[str, str]:
    found = st.condition(status, kind)
    assert found is not None
    return found["status"], found["reason"]


FULL = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}


def test_ready_when_the_current_revision_is_fully_available() -> None:
    spec = _spec()
    status = _status(spec, _deployment(spec, **FULL))
    assert _cond(status, "Ready") == ("True", "Available")
    assert _cond(status, "Progressing") == ("False", "Complete")
    assert _cond(status, "Degraded") == ("False", "AsExpected")
    assert _cond(status, "ModelResolved") == ("True", "Specified")
    assert status["model"] == {"version": "7"} and status["image"] == {"ref": "example.com/iris:1"}
    assert (status["observedGeneration"], status["readyReplicas"], status["replicas"]) == (3, 2, 2)
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


@pytest.mark.parametrize(
    ("deployment_kwargs", "why"),
    [
        ({"generation": 2, "observed": 1, **FULL}, "controller has not seen the latest generation"),
        ({**FULL, "replicas": 3}, "an old pod is still around"),
        ({**FULL, "availableReplicas": 1}, "one pod not available"),
        ({**FULL, "updatedReplicas": 1}, "one pod of the old revision"),
    ],
)
def test_not_ready_while_rolling_out(deployment_kwargs: dict[str, Any], why: str) -> None:
    spec = _spec()
    status = _status(spec, _deployment(spec, **deployment_kwargs))
    assert _cond(status, "Ready") == ("False", "RollingOut"), why
    assert _cond(status, "Progressing") == ("True", "RollingOut"), why
    assert "model" not in status


def test_not_ready_when_the_deployment_runs_an_older_template() -> None:
    old_spec, new_spec = _spec(), _spec(model={"uri": "file:///m", "version": "8"})
    status = _status(new_spec, _deployment(old_spec, **FULL), old={"model": {"version": "7"}})
    assert _cond(status, "Ready") == ("False", "RollingOut")
    assert status["model"] == {"version": "7"}  # still what is served


def test_degraded_with_the_deployment_reason() -> None:
    spec = _spec()
    failed = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
               "message": 'ReplicaSet "iris-1" has timed out progressing.'}]  # fmt: skip
    status = _status(spec, _deployment(spec, replicas=3, updatedReplicas=1, conditions=failed))
    assert _cond(status, "Degraded") == ("True", "ProgressDeadlineExceeded")
    assert _cond(status, "Ready") == ("False", "ProgressDeadlineExceeded")
    ready = st.condition(status, "Ready")
    assert ready is not None and "timed out" in ready["message"]


def test_missing_deployment_is_creating() -> None:
    status = _status(_spec(), None)
    assert _cond(status, "Ready") == ("False", "Creating")
    assert status["readyReplicas"] == 0


def test_scaled_to_zero_is_ready() -> None:
    spec = _spec(replicas=0)
    status = _status(spec, _deployment(spec, replicas=0))
    assert _cond(status, "Ready") == ("True", "Available")


@pytest.mark.parametrize(
    ("service_type", "ingress", "port", "url", "source"),
    [
        ("LoadBalancer", [{"ip": "10.0.0.5"}], 80, "http://10.0.0.5/v2/models/iris", "LoadBalancer"),
        ("LoadBalancer", [{"hostname": "lb.example.com"}], 8000, "http://lb.example.com:8000/v2/models/iris",
         "LoadBalancer"),
        ("LoadBalancer", [], 80, "http://iris.ml.svc:80/v2/models/iris", "ClusterDNS"),
        ("ClusterIP", [{"ip": "10.0.0.5"}], 81, "http://iris.ml.svc:81/v2/models/iris", "ClusterDNS"),
    ],
)  # fmt: skip
def test_url(service_type: str, ingress: list[dict[str, str]], port: int, url: str, source: str) -> None:
    spec = _spec(service={"type": service_type, "port": port})
    service = {"status": {"loadBalancer": {"ingress": ingress}}}
    status = _status(spec, _deployment(spec, **FULL), service)
    assert (status["url"], status["urlSource"]) == (url, source)
    ready = st.condition(status, "Ready")
    assert ready is not None and ("LoadBalancer ingress" in ready["message"]) is (source == "LoadBalancer")


def test_transition_times_are_kept_and_unchanged_state_needs_no_patch() -> None:
    spec = _spec()
    first = _status(spec, _deployment(spec, **FULL))
    second = _status(spec, _deployment(spec, **FULL), old=first, now=LATER)
    assert second == first
    assert st.status_patch(first, second) is None
    third = _status(spec, _deployment(spec, **{**FULL, "availableReplicas": 1}), old=second, now=LATER)
    ready, resolved = st.condition(third, "Ready"), st.condition(third, "ModelResolved")
    assert ready is not None and ready["lastTransitionTime"] == LATER
    assert resolved is not None and resolved["lastTransitionTime"] == NOW
    patch = st.status_patch(second, third)
    assert patch is not None and set(patch) == {"conditions"}


def test_invalid_spec_status_keeps_what_is_served() -> None:
    old = {"model": {"version": "7"}, "image": {"ref": "x:1"}, "url": "http://u", "urlSource": "ClusterDNS",
           "conditions": [{"type": "RolledBack", "status": "False", "reason": "None", "message": ""}]}  # fmt: skip
    status = st.invalid_status(generation=4, message="spec.image: not an image reference", old=old, now=NOW)
    assert _cond(status, "Ready") == ("False", "InvalidSpec")
    assert _cond(status, "Degraded") == ("True", "InvalidSpec")
    assert _cond(status, "RolledBack") == ("False", "None")
    ready = st.condition(status, "Ready")
    assert ready is not None and ready["message"] == "spec.image: not an image reference"
    assert status["model"] == old["model"] and status["observedGeneration"] == 4
