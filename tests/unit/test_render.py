"""`modelapp render`: ModelApp YAML in, child manifests out, clear one-line errors for bad input.

Design notes: `render_text` is the pure core (text in, text out), tested directly; the examples in
`examples/` are rendered too, so an example that drifts from the schema fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelapp_operator.commands import RenderError, render_text

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
IMAGE = "example.com/modelapp-serving:1"


def _render(text: str) -> list[dict[str, object]]:
    return list(yaml.safe_load_all(render_text(text, source="app.yaml", namespace="ml", serving_image=IMAGE)))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_render(example: Path) -> None:
    docs = _render(example.read_text())
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Deployment" and kinds[-1] == "Service"
    assert all(d["metadata"]["namespace"] == "ml" for d in docs)  # type: ignore[index]


def test_two_apps_and_a_pdb() -> None:
    text = """
apiVersion: modelapp.io/v1alpha1
kind: ModelApp
metadata: {name: a, namespace: team}
spec: {image: x/a:1, model: {uri: "s3://bucket/a", version: "1"}, replicas: 3}
---
apiVersion: modelapp.io/v1alpha1
kind: ModelApp
metadata: {name: b}
spec: {image: x/b:1, model: {uri: "s3://bucket/b", version: "2"}}
"""
    docs = _render(text)
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs] == [  # type: ignore[index]
        ("Deployment", "a", "team"), ("PodDisruptionBudget", "a", "team"), ("Service", "a", "team"),
        ("Deployment", "b", "ml"), ("Service", "b", "ml"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [", "app.yaml: not valid YAML"),
        ("- 1\n- 2", "app.yaml: document 1 is not a mapping"),
        ("kind: Secret\napiVersion: v1", "app.yaml: no ModelApp found"),
        ("kind: ModelApp\napiVersion: modelapp.io/v1", "apiVersion 'modelapp.io/v1', expected 'modelapp.io/v1alpha1'"),
        ("kind: ModelApp\napiVersion: modelapp.io/v1alpha1\nspec: {}", "metadata.name is missing"),
        ("kind: ModelApp\napiVersion: modelapp.io/v1alpha1\nmetadata: {name: Bad}\nspec: {}", "DNS-1035"),
        ("kind: ModelApp\napiVersion: modelapp.io/v1alpha1\nmetadata: {name: a}\nspec: {image: x}",
         "ModelApp 'a': spec.model: Field required"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(text: str, expected: str) -> None:
    with pytest.raises(RenderError) as info:
        render_text(text, source="app.yaml", namespace="ml", serving_image=IMAGE)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
