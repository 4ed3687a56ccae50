"""The chart's CRDs are the repository's crds/, unchanged.

Design notes: crds/ is the one source, kopf's peering CRDs included; hack/sync-crd.sh copies it
byte for byte into charts/modelapp/files/crds/, and the chart renders those files behind
`crds.install`. Three checks: the copies are identical and the chart has no CRD file of its own
(the cheap, exact ones, with the fix in the failure message), and what helm renders is the same
object as the source apart from the labels and the keep annotation the chart adds (so the template
does not lose or mangle a field on the way).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.helm import CHART, REPO, Rendered

pytestmark = pytest.mark.integration

SOURCE = REPO / "crds"
COPY = CHART / "files" / "crds"


def source_crds() -> dict[str, dict[str, Any]]:
    crds: dict[str, dict[str, Any]] = {}
    for path in sorted(SOURCE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                crds[doc["metadata"]["name"]] = doc
    return crds


def test_sources_exist() -> None:
    """`kubectl apply -f crds/` alone must install every CRD `modelapp run` needs, kopf's peering ones too."""
    assert (SOURCE / "modelapp.io_modelapps.yaml").is_file()
    assert set(source_crds()) == {"modelapps.modelapp.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}


def test_chart_carries_no_crd_of_its_own() -> None:
    """One source: a CRD file only in the chart would be missing from `kubectl apply -f crds/`."""
    only_in_chart = sorted({path.name for path in COPY.glob("*.yaml")} - {path.name for path in SOURCE.glob("*.yaml")})
    assert not only_in_chart, (
        f"{only_in_chart} are in {COPY} but not in {SOURCE}: move them to crds/, then run hack/sync-crd.sh"
    )


@pytest.mark.parametrize("path", sorted(SOURCE.glob("*.yaml")), ids=lambda path: path.name)
def test_chart_copy_is_identical(path: Path) -> None:
    copy = COPY / path.name
    assert copy.is_file(), f"{copy} is missing: run hack/sync-crd.sh"
    assert copy.read_bytes() == path.read_bytes(), f"{copy} differs from {path}: run hack/sync-crd.sh"


def test_sync_script_check_mode_agrees() -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "sync-crd.sh"), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_rendered_crds_equal_their_source(render_chart: Callable[..., Rendered]) -> None:
    rendered = {crd["metadata"]["name"]: crd for crd in render_chart().all("CustomResourceDefinition")}
    for name, source in source_crds().items():
        assert name in rendered, f"{name} is in crds/ but the chart does not install it"
        crd = rendered[name]
        annotations = dict(crd["metadata"].get("annotations") or {})
        assert annotations.pop("helm.sh/resource-policy") == "keep"
        assert annotations == (source["metadata"].get("annotations") or {})
        # The chart adds its labels; the source's own labels are kept as they are.
        assert (source["metadata"].get("labels") or {}).items() <= crd["metadata"]["labels"].items()
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        stripped = {key: value for key, value in crd.items() if key != "metadata"}
        assert stripped == {key: value for key, value in source.items() if key != "metadata"}
        assert crd["metadata"]["name"] == source["metadata"]["name"]


def test_peering_crds_are_kopfs_shape(render_chart: Callable[..., Rendered]) -> None:
    """kopf finds peering objects by group kopf.dev, version v1 and these plural names."""
    rendered = render_chart()
    for name, kind, scope in [
        ("kopfpeerings.kopf.dev", "KopfPeering", "Namespaced"),
        ("clusterkopfpeerings.kopf.dev", "ClusterKopfPeering", "Cluster"),
    ]:
        spec = rendered.only("CustomResourceDefinition", name)["spec"]
        assert (spec["group"], spec["names"]["kind"], spec["scope"]) == ("kopf.dev", kind, scope)
        (version,) = spec["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True
