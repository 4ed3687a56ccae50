"""The chart with `operator.shards`: one operator Deployment per shard, rendered by the real helm.

Design notes: what makes shards safe is in the rendered objects: each Deployment's `modelapp run` arguments
(parsed by the operator's own parser) name its shard and a peering object no other shard uses, the
Deployments' selectors never overlap (a ReplicaSet of one shard must not count another's pods), exactly the
one shard marked `default` takes unlabelled ModelApps, and without shards the chart renders the single
Deployment it always did. Namespace shards (`namespaces` on every entry) watch only their namespaces, carry no
`--shard` label filter, and the chart refuses any split where a namespace would have two shards or none.
The shards' behaviour on a real API server is tests/integration/test_shards.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.helm import CHART, Rendered

pytestmark = pytest.mark.integration

Render = Callable[..., Rendered]
SHARDS = {"operator.shards": [{"name": "a", "default": True}, {"name": "b"}], "operator.replicas": 2}


def _run_args(deployment: dict[str, Any]) -> Any:
    from modelapp_operator.cli import build_parser

    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"
    return parsed


def test_one_deployment_per_shard_each_with_its_own_peering_and_selector(render_chart: Render) -> None:
    deployments = render_chart(SHARDS).all("Deployment")
    assert [d["metadata"]["name"] for d in deployments] == ["ma-modelapp-shard-a", "ma-modelapp-shard-b"]
    runs = {d["metadata"]["name"]: _run_args(d) for d in deployments}
    assert {(r.shard, r.shard_default, r.peering) for r in runs.values()} == {
        ("a", True, "modelapp-shard-a"),
        ("b", None, "modelapp-shard-b"),
    }
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments]
    assert selectors[0] != selectors[1] and all(s["modelapp.io/shard"] in ("a", "b") for s in selectors)
    for deployment, selector in zip(deployments, selectors, strict=True):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), "each Deployment selects its own pods"
        assert deployment["spec"]["replicas"] == 2, "each shard has operator.replicas replicas (one acts)"


def test_without_shards_the_one_deployment_handles_every_modelapp(render_chart: Render) -> None:
    deployment = render_chart().only("Deployment")
    assert deployment["metadata"]["name"] == "ma-modelapp"
    run = _run_args(deployment)
    assert (run.shard, run.peering) == (None, "modelapp")
    assert "modelapp.io/shard" not in deployment["spec"]["selector"]["matchLabels"]


NS_SHARDS = {"rbac.scope": "namespaced", "watchNamespaces": ["team-a", "team-b", "team-c"],
             "operator.shards": [{"name": "a", "namespaces": ["team-a", "team-b"]},
                                 {"name": "b", "namespaces": ["team-c"]}]}  # fmt: skip


def test_namespace_shards_watch_only_their_namespaces(render_chart: Render) -> None:
    deployments = render_chart(NS_SHARDS).all("Deployment")
    runs = {d["metadata"]["name"]: _run_args(d) for d in deployments}
    assert {name: (sorted(r.namespace), r.all_namespaces, r.shard, r.peering) for name, r in runs.items()} == {
        "ma-modelapp-shard-a": (["team-a", "team-b"], False, None, "modelapp-shard-a"),
        "ma-modelapp-shard-b": (["team-c"], False, None, "modelapp-shard-b"),
    }, "no label filter: every ModelApp of its namespaces, and a peering of its own"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**NS_SHARDS, "operator.shards": [{"name": "a", "namespaces": ["team-a", "team-b"]},
                                           {"name": "b", "namespaces": ["team-b", "team-c"]}]},
         "a namespace is listed by two shards"),
        ({**NS_SHARDS, "operator.shards": [{"name": "a", "namespaces": ["team-a", "team-b"]}]},
         "team-c is in no shard's namespaces"),
        ({**NS_SHARDS, "operator.shards": [{"name": "a", "namespaces": ["team-a", "team-b", "team-c", "team-d"]}]},
         "namespace team-d is not in watchNamespaces"),
        ({**NS_SHARDS, "operator.shards": [{"name": "a", "namespaces": ["team-a", "team-b"]}, {"name": "b"}]},
         "give every shard its namespaces"),
        ({**NS_SHARDS, "operator.shards": [{"name": "a", "default": True,
                                            "namespaces": ["team-a", "team-b", "team-c"]}]},
         "default is for label shards"),
        ({"operator.shards": [{"name": "a", "namespaces": ["team-a"]}]}, "need rbac.scope=namespaced"),
    ],
)
def test_bad_namespace_shards_are_refused(render_chart: Render, values: dict[str, Any], message: str) -> None:
    rendered = render_chart(values)
    assert rendered.objects == []
    assert message in rendered.error, rendered.error


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ([{"name": "a"}, {"name": "a"}], "operator.shards names a shard twice"),
        ([{"name": "a", "default": True}, {"name": "b", "default": True}], "more than one shard has default: true"),
        ([{"name": "A"}], "/operator/shards/0/name"),
        ([{"name": "a", "weight": 2}], "additional properties 'weight' not allowed"),
        ([{"default": True}], "missing property 'name'"),
    ],
)
def test_bad_shards_are_refused(render_chart: Render, shards: list[dict[str, Any]], message: str) -> None:
    rendered = render_chart({"operator.shards": shards})
    assert rendered.objects == []
    assert message in rendered.error, rendered.error


def test_lint_strict_with_shards(helm_bin: Path) -> None:
    import json

    sets = [arg for key, value in SHARDS.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    result = subprocess.run([str(helm_bin), "lint", "--strict", str(CHART), *sets], capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
