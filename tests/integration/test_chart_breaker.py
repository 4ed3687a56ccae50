"""The fleet circuit breaker's chart values, as `helm template` renders them and `modelapp bump` parses them.

Design notes: `bump.maxRollouts`, `bump.rolloutTimeoutSeconds`, `quarantine.scope` and
`quarantine.trustedNamespaces` become arguments of the CronJob's `modelapp bump`; the tests parse them with
the operator's own parser (the chart and the command cannot disagree on a flag's name) in both RBAC modes,
and check that values that cannot work fail with a message naming them. The breaker itself runs against
the real cluster in tests/integration/test_fleet_breaker.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.helm import Rendered

pytestmark = pytest.mark.integration

Render = Callable[..., Rendered]
NAMESPACED = {"rbac.scope": "namespaced", "watchNamespaces": ["team-a", "team-b"]}


def bump_args(rendered: Rendered) -> list[Any]:
    from modelapp_operator.cli import build_parser

    assert not rendered.error, rendered.error
    out = []
    for cronjob in rendered.all("CronJob"):
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        out.append(build_parser().parse_args(container["args"]))
    assert out
    return out


def test_the_default_is_a_capped_run_in_namespace_scope(render_chart: Render) -> None:
    (args,) = bump_args(render_chart({"bump.enabled": True}))
    assert (args.max_rollouts, args.rollout_timeout) == (5, 900.0)
    assert (args.quarantine_scope, args.quarantine_from) == ("namespace", [])
    (off,) = bump_args(render_chart({"bump.enabled": True, "bump.maxRollouts": 0}))
    assert off.max_rollouts == 0  # no cap, no waiting: every app patched at once


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "namespaced"])
def test_cluster_scope_reads_evidence_from_the_trusted_or_every_watched_namespace(
    render_chart: Render, values: dict[str, Any]
) -> None:
    every = bump_args(render_chart({**values, "bump.enabled": True, "quarantine.scope": "cluster"}))
    assert all(a.quarantine_scope == "cluster" for a in every)
    assert all(a.quarantine_from == values.get("watchNamespaces", []) for a in every)
    trusted = bump_args(render_chart({**values, "bump.enabled": True, "quarantine.scope": "cluster",
                                      "quarantine.trustedNamespaces": ["team-a"]}))  # fmt: skip
    assert all(a.quarantine_from == ["team-a"] for a in trusted)


def test_values_that_cannot_work_fail_naming_them(render_chart: Render) -> None:
    short = render_chart({"bump.enabled": True, "bump.activeDeadlineSeconds": 600})
    assert "bump.activeDeadlineSeconds is not above bump.rolloutTimeoutSeconds" in short.error
    outside = render_chart({**NAMESPACED, "bump.enabled": True, "quarantine.scope": "cluster",
                            "quarantine.trustedNamespaces": ["team-c"]})  # fmt: skip
    assert "quarantine.trustedNamespaces names team-c, which is not in watchNamespaces" in outside.error
    assert "quarantine/scope" in render_chart({"quarantine.scope": "galaxy"}).error
