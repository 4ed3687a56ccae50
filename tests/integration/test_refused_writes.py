"""A status write the API server refuses is tried again until the refusal is lifted (operator/engine.py
`Engine.converge`, `Engine._timed_pass`).

Design notes: a new ModelApp's first status is held a moment (pacing.py) and written by a timer's pass. A refusal
of that write (a 4xx: an RBAC rule, a quota, a platform's admission policy) was raised into a thread's future that
no one read: not a line in the log, and the status stayed unwritten until the ModelApp's next event, which for an
app whose pods wait may never come. Here the refusal is the real API server's: a ValidatingAdmissionPolicy that
denies status writes of ModelApps in the test's namespace with reason Forbidden (a 403, as a missing RBAC rule
gives), and only there. The pods go nowhere (a nodeSelector no node has), so the Deployment falls quiet after its
first few events and only the operator's own retries can write the status once the binding is deleted. The same
holds for a drift repair: a deleted Service whose re-creation a policy refuses is re-created by a retry once the
policy is lifted (before, kopf's event handler logged the refusal and ignored it).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelapp_operator import kube
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.integration.test_operator import _app

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
PAUSED = "status writes are paused in this namespace"
NO_SERVICES = "no new Services in this namespace"


@contextlib.contextmanager
def _refused(namespace: str, rule: dict[str, Any], message: str) -> Iterator[str]:
    """A policy and its binding that refuse (403) what `rule` matches in `namespace`; yields the binding's path
    (a test deletes it to lift the refusal). Both are deleted afterwards."""
    name = f"refuse-{uuid.uuid4().hex[:8]}"
    kube._call("POST", f"{ADMISSION}/validatingadmissionpolicies", content_type="application/json", body={
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [rule]},
                 "validations": [{"expression": "false", "message": message, "reason": "Forbidden"}]}})  # fmt: skip
    binding = f"{ADMISSION}/validatingadmissionpolicybindings/{name}"
    kube._call("POST", f"{ADMISSION}/validatingadmissionpolicybindings", content_type="application/json", body={
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": namespace}}}}})  # fmt: skip
    try:
        yield binding
    finally:
        for path in (binding, f"{ADMISSION}/validatingadmissionpolicies/{name}"):
            with contextlib.suppress(kube.Gone):
                kube._call("DELETE", path)


@pytest.fixture
def status_writes_refused(namespace: str) -> Iterator[str]:
    """Every status write of a ModelApp in `namespace` refused; yields the binding's path."""
    with _refused(namespace, {"apiGroups": ["modelapp.io"], "apiVersions": ["*"], "operations": ["UPDATE"],
                              "resources": ["modelapps/status"]}, PAUSED) as binding:  # fmt: skip
        yield binding


def _status_write_refused(name: str, namespace: str) -> bool:
    """Whether the API server refuses a status write of this ModelApp now (a dry run: nothing is written)."""
    try:
        kube._call("PATCH", f"/apis/modelapp.io/v1alpha1/namespaces/{namespace}/modelapps/{name}/status",
                   query={"dryRun": "All"}, body={"status": {"observedGeneration": 0}},
                   content_type="application/merge-patch+json")  # fmt: skip
    except kube.ApiError as exc:
        return exc.status == 403 and PAUSED in str(exc)
    return False


def _refusals(op: OperatorProcess, name: str, namespace: str) -> list[str]:
    return [line for line in op.text().splitlines()
            if f"A pass of ModelApp {namespace}/{name} stopped: the API server refused a request" in line]  # fmt: skip


def _status(name: str, namespace: str) -> dict[str, Any]:
    return dict((kube.get("ModelApp", name, namespace) or {}).get("status") or {})


def test_a_refused_first_status_is_written_once_the_refusal_is_lifted_with_no_event_to_prompt_it(
        run_operator: RunOperator, namespace: str, status_writes_refused: str) -> None:  # fmt: skip
    kube.apply(_app("iris", namespace, pod={"nodeSelector": {"modelapp.io/test": "nowhere"}}))
    wait_for("the policy to refuse status writes", lambda: _status_write_refused("iris", namespace), timeout=30)
    op = run_operator(namespace)
    wait_for("the Deployment", lambda: kube.get("Deployment", "iris", namespace))

    # The held first status's write is refused, said as an error that names the refusal, and tried again: a
    # second refusal comes from a retry (the Deployment has no more to say after its first few events).
    refusals = wait_for("two refusals in the log", lambda: (lines := _refusals(op, "iris", namespace))[1:] and lines,
                        timeout=45)  # fmt: skip
    assert all(PAUSED in line and "403" in line and "trying again in" in line for line in refusals), refusals
    assert all("[ERROR" in line for line in refusals), "an error (kopf's log format), not a busy server's warning"
    assert not _status("iris", namespace), "nothing was written while the policy refused"

    kube._call("DELETE", status_writes_refused)
    wait_for("the policy to let status writes through", lambda: not _status_write_refused("iris", namespace),
             timeout=30)  # fmt: skip
    status = wait_for("the status, written by a retry", lambda: _status("iris", namespace), timeout=90)
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["status"] == "True", status
    assert "Traceback" not in op.text()


def _service_create_refused(namespace: str) -> bool:
    """Whether the API server refuses a Service create in `namespace` now (a dry run: nothing is created)."""
    probe = {"metadata": {"name": "probe"}, "spec": {"ports": [{"port": 80}]}}
    try:
        kube._call("POST", f"/api/v1/namespaces/{namespace}/services", query={"dryRun": "All"}, body=probe,
                   content_type="application/json")  # fmt: skip
    except kube.ApiError as exc:
        return exc.status == 403 and NO_SERVICES in str(exc)
    return False


def test_a_refused_repair_is_tried_again_and_done_once_the_refusal_is_lifted(
        run_operator: RunOperator, namespace: str) -> None:  # fmt: skip
    """A deleted Service's re-creation refused (a create is what server-side apply of a missing object is admitted
    as): before, the refusal went to kopf's event handler as a traceback and nothing tried again, so the Service
    stayed gone until the ModelApp's next event."""
    op = run_operator(namespace)
    kube.apply(_app("iris", namespace, pod={"nodeSelector": {"modelapp.io/test": "nowhere"}}))
    wait_for("the Service", lambda: kube.get("Service", "iris", namespace))
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["services"]}
    with _refused(namespace, rule, NO_SERVICES) as binding:
        wait_for("the policy to refuse Service creates", lambda: _service_create_refused(namespace), timeout=30)
        kube.delete("Service", "iris", namespace)
        refusal = f"Cannot repair Service {namespace}/iris: the API server refused a request"
        lines = wait_for("two refusals of the repair", lambda: (found := [
            line for line in op.text().splitlines() if refusal in line])[1:] and found, timeout=45)  # fmt: skip
        assert all("[ERROR" in line and "403" in line and NO_SERVICES in line for line in lines), lines
        assert kube.get("Service", "iris", namespace) is None
        kube._call("DELETE", binding)
        wait_for("Service creates let through", lambda: not _service_create_refused(namespace), timeout=30)
        wait_for("the Service, re-created by a retry", lambda: kube.get("Service", "iris", namespace), timeout=90)
    assert "Traceback" not in op.text()
