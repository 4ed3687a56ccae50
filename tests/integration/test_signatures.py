"""Version cards (signature, examples, provenance) from `publish` to the bump's plan, against real components.

Design notes: models are real ONNX graphs (scikit-learn's LogisticRegression on iris through skl2onnx), one
taking 4 features and one taking 5, so their derived signatures differ in one field (the input's shape).
Versions are published into Azurite with `publish_version` and read back with `fetch_version`; app images are
pushed to Debian's docker-registry (fixture) with the label `io.modelapp.signatures` in their config, as
`docker build --label` (hack/app-ci.sh) writes it; the bump's `plan_app` reads both through the same catalogs
as a real run. No API server is needed for the plan (test_signatures_operator.py covers the operator).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelapp_operator.bump import plan_app
from modelapp_operator.discovery import ModelCatalog, TagCatalog
from modelapp_operator.registry import RegistryClient
from modelapp_operator.signatures import ANN_PAIR_FACTS, LABEL, parse_facts
from modelapp_serving.card import CARD_NAME, Examples, Provenance, parse_card, read_card
from modelapp_serving.fetch import fetch_version
from modelapp_serving.manifest import read_manifest
from modelapp_serving.publish import PublishError, publish_version
from modelapp_serving.stores import IntegrityError, Store, open_store
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.registry import Registry

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Made:
    path: Path
    features: np.ndarray[Any, Any]
    labels: list[float]

    def examples(self, *, shift: float = 0.0) -> Examples:
        rows = self.features[:3].astype(np.float32)
        return Examples.model_validate({
            "inputs": [{"name": "input", "shape": list(rows.shape), "data": [float(x) for x in rows.flatten()]}],
            "expected": [{"name": "label", "data": [x + shift for x in self.labels[:3]]}],
        })  # fmt: skip


def onnx_model(folder: Path, features: int) -> Made:
    """A real ONNX classifier over `features` columns of iris (the 5th a copy of the 1st)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = np.hstack([x, x[:, :1]])[:, :features]
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    graph = convert_sklearn(estimator, initial_types=[("input", FloatTensorType([None, features]))],
                            options={id(estimator): {"zipmap": False}})  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(graph.SerializeToString())
    labels = [float(v) for v in estimator.predict(x[:3].astype(np.float32))]
    return Made(path, x, labels)


def accepts(features: int) -> str:
    """The label an app image that sends `features` numbers and reads `label` carries."""
    return json.dumps([{"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, features]}],
                        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]}])  # fmt: skip


def store_of(container: AzureContainer) -> Store:
    return open_store(container.uri("iris"), env=container.env)


def catalogs(container: AzureContainer) -> tuple[TagCatalog, ModelCatalog]:
    return TagCatalog(RegistryClient()), ModelCatalog(lambda key: open_store(key.uri, env=container.env))


def app(image: str, uri: str, version: str) -> dict[str, Any]:
    spec = {"image": image, "model": {"uri": uri, "version": version},
            "updates": {"image": {"policy": "semver:^1"}, "model": {"policy": "numeric"}}}  # fmt: skip
    return {"metadata": {"namespace": "ml", "name": "iris", "resourceVersion": "7"}, "spec": spec}


def test_publish_stores_the_card_and_fetch_verifies_it(azure_container: AzureContainer, tmp_path: Path) -> None:
    made = onnx_model(tmp_path / "m4", 4)
    provenance = Provenance.model_validate({"trainingRun": "mlflow:run-42", "sourceCommit": "3f2a9c1",
                                            "datasetDigest": "sha256:" + "d" * 64,
                                            "meta": {"team": "fraud"}})  # fmt: skip
    store = store_of(azure_container)
    digest = publish_version(store, version="1", sources=[made.path], model_format="onnx", entrypoint=None,
                             examples=made.examples(), provenance=provenance)  # fmt: skip
    fetched = fetch_version(store_of(azure_container), version="1", dest=tmp_path / "out", pinned=digest)
    assert fetched.digest == digest
    manifest, _ = read_manifest(tmp_path / "out")
    assert [entry.path for entry in manifest.files] == ["model.onnx", CARD_NAME]
    found = read_card(tmp_path / "out", manifest)
    assert found is not None
    card = found[1]
    assert card.signature is not None and card.examples == made.examples() and card.provenance == provenance
    assert [(t.name, t.datatype, t.shape) for t in card.signature.inputs] == [("input", "FP32", (-1, 4))]
    assert ("label", "INT64", (-1,)) in [(t.name, t.datatype, t.shape) for t in card.signature.outputs]
    # The digest covers the card: a card changed in the store fails the fetch, as a changed model would.
    tampered = json.loads(found[0])
    tampered["provenance"]["trainingRun"] = "someone-else"
    azure_container.client.upload_blob(f"iris/1/{CARD_NAME}", json.dumps(tampered).encode(), overwrite=True)
    with pytest.raises(IntegrityError, match=CARD_NAME):
        fetch_version(store_of(azure_container), version="1", dest=tmp_path / "again", pinned=digest)


def test_a_model_that_fails_its_own_examples_is_never_published(azure_container: AzureContainer,
                                                                tmp_path: Path) -> None:  # fmt: skip
    made = onnx_model(tmp_path / "m4", 4)
    store = store_of(azure_container)
    with pytest.raises(PublishError, match=r"label: element 0 is .*, expected .*nothing was published"):
        publish_version(store, version="1", sources=[made.path], model_format="onnx", entrypoint=None,
                        examples=made.examples(shift=1.0))  # fmt: skip
    assert not store.exists("1") and store.list_versions() == []


def test_the_bump_moves_both_halves_together_when_only_the_pair_fits(
    azure_container: AzureContainer, registry_anonymous: Registry, tmp_path: Path
) -> None:
    old, new = onnx_model(tmp_path / "m4", 4), onnx_model(tmp_path / "m5", 5)
    store = store_of(azure_container)
    publish_version(store, version="1", sources=[old.path], model_format="onnx", entrypoint=None)
    digest2 = publish_version(store, version="2", sources=[new.path], model_format="onnx", entrypoint=None,
                              examples=new.examples(), provenance=Provenance(training_run="run-2"))  # fmt: skip
    repository = registry_anonymous.fresh_repository()
    registry_anonymous.push(repository, "1.0.0", labels={LABEL: accepts(4)})
    image_digest = registry_anonymous.push(repository, "1.1.0", labels={LABEL: accepts(5)})
    name = f"{registry_anonymous.host}/{repository}"
    tags, models = catalogs(azure_container)
    plan = plan_app(app(f"{name}:1.0.0", azure_container.uri("iris"), "1"), tags=tags, models=models)
    assert [(row.field, row.new, row.result) for row in plan.rows] == [
        ("image", f"{name}:1.1.0", "planned"), ("model", "2", "planned")]  # fmt: skip
    assert plan.patch is not None
    facts = parse_facts(plan.patch["metadata"]["annotations"][ANN_PAIR_FACTS])
    assert facts.image is not None and facts.image.image == f"{name}:1.1.0" and facts.image.digest == image_digest
    assert facts.model is not None and (facts.model.version, facts.model.sha256) == ("2", digest2)
    assert facts.model.examples and facts.model.provenance == Provenance(training_run="run-2")
    card = parse_card(store.read_small_file("2", CARD_NAME, limit=1 << 20))
    assert facts.model.signature == card.signature


def test_the_bump_holds_a_half_that_fits_nothing_and_names_the_field(
    azure_container: AzureContainer, registry_anonymous: Registry, tmp_path: Path
) -> None:
    old = onnx_model(tmp_path / "m4", 4)
    store = store_of(azure_container)
    publish_version(store, version="1", sources=[old.path], model_format="onnx", entrypoint=None)
    repository = registry_anonymous.fresh_repository()
    registry_anonymous.push(repository, "1.0.0", labels={LABEL: accepts(4)})
    registry_anonymous.push(repository, "1.1.0", labels={LABEL: accepts(5)})  # waits for a 5-feature model
    name = f"{registry_anonymous.host}/{repository}"
    tags, models = catalogs(azure_container)
    plan = plan_app(app(f"{name}:1.0.0", azure_container.uri("iris"), "1"), tags=tags, models=models)
    image = plan.rows[0]
    assert (image.new, image.result) == ("", "held")
    assert image.reason == (f"held: signatures do not fit: image {name}:1.1.0 with model version 1: input 'input' "
                            "shape: the model takes [-1, 4], the image expects [-1, 5]")  # fmt: skip
    assert plan.patch is None  # nothing is proposed: the running pair stays


@pytest.mark.parametrize(
    ("label", "reason"),
    [("{not json", "is not valid JSON"), ("[" + "{}," * 10_000 + "{}]", "over the 16384 byte limit"),
     (json.dumps([{"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}], "outputs": []}]),
      "invalid at 0.inputs.0.datatype")],
)  # fmt: skip
def test_a_hostile_label_fails_that_row_with_the_reason(
    azure_container: AzureContainer, registry_anonymous: Registry, tmp_path: Path, label: str, reason: str
) -> None:
    store = store_of(azure_container)
    publish_version(store, version="1", sources=[onnx_model(tmp_path / "m4", 4).path], model_format="onnx",
                    entrypoint=None)  # fmt: skip
    repository = registry_anonymous.fresh_repository()
    registry_anonymous.push(repository, "1.0.0", labels={LABEL: accepts(4)})
    registry_anonymous.push(repository, "1.1.0", labels={LABEL: label})
    name = f"{registry_anonymous.host}/{repository}"
    tags, models = catalogs(azure_container)
    plan = plan_app(app(f"{name}:1.0.0", azure_container.uri("iris"), "1"), tags=tags, models=models)
    assert plan.rows[0].result == "failed" and reason in plan.rows[0].reason
    assert plan.rows[0].reason.startswith("cannot check signatures: ")
    assert plan.patch is None


def test_images_and_versions_without_signatures_move_as_before(
    azure_container: AzureContainer, registry_anonymous: Registry, tmp_path: Path
) -> None:
    store = store_of(azure_container)
    for version, features in (("1", 4), ("2", 5)):
        made = onnx_model(tmp_path / f"m{version}", features)
        publish_version(store, version=version, sources=[made.path], model_format="onnx", entrypoint=None)
    repository = registry_anonymous.fresh_repository()
    for tag in ("1.0.0", "1.1.0"):
        registry_anonymous.push(repository, tag)  # no label: the image says nothing
    name = f"{registry_anonymous.host}/{repository}"
    tags, models = catalogs(azure_container)
    plan = plan_app(app(f"{name}:1.0.0", azure_container.uri("iris"), "1"), tags=tags, models=models)
    assert [row.result for row in plan.rows] == ["planned", "planned"]
    assert plan.patch is not None
    facts = parse_facts(plan.patch["metadata"]["annotations"][ANN_PAIR_FACTS])
    assert facts.image is not None and facts.image.accepts is None  # recorded: the version's card says something
