"""A status write the API server refuses is tried again until the refusal is lifted (operator/engine.py
`Engine.converge`, `Engine._timed_pass`).

Design notes: a new ModelApp's first status is held a moment (pacing.py) and written by a timer's pass. A refusal
of that write (a 4xx: an RBAC rule, a quota, a platform's admission policy) was raised into a thread's future that
no one read: not a line in the log, and the status stayed unwritten until the ModelApp's next event, which for an
app whose pods wait may never come. Here the refusal is the real API server's: a ValidatingAdmissionPolicy that
denies status writes of ModelApps in the test's namespace with reason Forbidden (a 403, as a missing RBAC rule
gives), and only there. The pods go nowhere (a nodeSelector no node has), so the Deployment falls quiet after its
first few events and only the operator's own retries can write the status once the binding is deleted.
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


@pytest.fixture
def status_writes_refused(namespace: str) -> Iterator[str]:
    """A policy and its binding that refuse (403) every status write of a ModelApp in `namespace`; yields the
    binding's path (the test deletes it to lift the refusal). Both are deleted afterwards."""
    name = f"refuse-status-{uuid.uuid4().hex[:8]}"
    kube._call("POST", f"{ADMISSION}/validatingadmissionpolicies", content_type="application/json", body={
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{
                     "apiGroups": ["modelapp.io"], "apiVersions": ["*"], "operations": ["UPDATE"],
                     "resources": ["modelapps/status"]}]},
                 "validations": [{"expression": "false", "message": PAUSED, "reason": "Forbidden"}]}})  # fmt: skip
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
