"""The bump CronJob's ways to reach private registries and model stores, as `helm template` renders them.

Design notes: these values carry the CronJob's access: `bump.registryCredentialsSecret` (a
dockerconfigjson Secret mounted read-only, its one key at the path passed as `--docker-config`),
`bump.storeCredentialsSecret` (the bump's own store credentials as environment), usable only under
`bump.trustedStores` (`--trusted-store`), and `bump.podLabels`/`podAnnotations` with
`bump.serviceAccount.annotations` (workload identity). The
tests parse the rendered arguments with the operator's own parser, so the path the chart passes is
the path the command reads, in both RBAC modes; and check that bad values fail with a message naming
the value. That the rendered CronJob really runs, pulls its credentials and bumps is proven on the
real node (tests/e2e/test_cronjob.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.helm import CHART, Rendered

pytestmark = pytest.mark.integration

NAMESPACED = {"rbac.scope": "namespaced", "watchNamespaces": ["team-a", "team-b"]}
ACCESS = {
    "bump.enabled": True,
    "bump.registryCredentialsSecret": "registry-credentials",
    "bump.storeCredentialsSecret": "store-credentials",
    "bump.trustedStores": ["azureblob://shared-models", "s3://team-models/iris"],
    "bump.podLabels": {"azure.workload.identity/use": "true"},
    "bump.podAnnotations": {"example.com/note": "nightly"},
    "bump.serviceAccount.annotations": {"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"},
}
Render = Callable[..., Rendered]


def pod_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def bump_container(cronjob: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(cronjob)["containers"]
    assert container["name"] == "bump"
    return dict(container)


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "namespaced"])
def test_registry_secret_is_mounted_read_only_at_the_docker_config_path(
    render_chart: Render, values: dict[str, Any]
) -> None:
    from modelapp_operator.cli import build_parser

    rendered = render_chart({**values, **ACCESS})
    assert not rendered.error, rendered.error
    cronjobs = rendered.all("CronJob")
    assert len(cronjobs) == (1 if values == {} else 2)
    for cronjob in cronjobs:
        container = bump_container(cronjob)
        args = build_parser().parse_args(container["args"])
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "registry-credentials"]
        assert mount["readOnly"] is True
        (volume,) = [v for v in pod_spec(cronjob)["volumes"] if v["name"] == "registry-credentials"]
        secret = volume["secret"]
        assert secret["secretName"] == "registry-credentials"
        assert secret["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]
        assert secret["defaultMode"] == 0o440  # the pod's fsGroup reads it, nobody else
        # What the command reads is the one file the Secret puts in the mount.
        assert args.docker_config == Path(mount["mountPath"]) / "config.json"
        assert args.trusted_store == ["azureblob://shared-models", "s3://team-models/iris"]


def test_store_secret_and_workload_identity_reach_the_pod(render_chart: Render) -> None:
    rendered = render_chart({**ACCESS, "bump.envFrom": [{"configMapRef": {"name": "store-settings"}}]})
    cronjob = rendered.only("CronJob")
    assert bump_container(cronjob)["envFrom"] == [
        {"secretRef": {"name": "store-credentials"}},
        {"configMapRef": {"name": "store-settings"}},
    ]
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "bump"
    assert template["metadata"]["annotations"] == {"example.com/note": "nightly"}
    account = rendered.only("ServiceAccount", "ma-modelapp-bump")
    assert account["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"
    }
    assert pod_spec(cronjob)["serviceAccountName"] == "ma-modelapp-bump"


def test_without_access_values_the_pod_has_no_credentials(render_chart: Render) -> None:
    cronjob = render_chart({"bump.enabled": True}).only("CronJob")
    container = bump_container(cronjob)
    assert not any(arg.startswith("--docker-config") for arg in container["args"])
    assert "envFrom" not in container
    assert [v["name"] for v in pod_spec(cronjob)["volumes"]] == ["tmp"]
    assert "annotations" not in cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]


def test_lint_strict_with_every_access_value(helm_bin: Path) -> None:
    sets = [arg for key, value in ACCESS.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    result = subprocess.run(
        [str(helm_bin), "lint", "--strict", str(CHART), *sets], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bump.registryCredentials": "x"}, "additional properties 'registryCredentials' not allowed"),
        ({"bump.registryCredentialsSecret": "Bad_Name"}, "/bump/registryCredentialsSecret"),
        ({"bump.storeCredentialsSecret": "a/b"}, "/bump/storeCredentialsSecret"),
        ({"bump.podLabels": {"azure.workload.identity/use": True}}, "/bump/podLabels"),
        ({"bump.podAnnotations": []}, "/bump/podAnnotations"),
        ({"bump.trustedStores": ["file:///srv/models"]}, "/bump/trustedStores/0"),
        ({"bump.trustedStores": ["azureblob://models?sv=secret"]}, "/bump/trustedStores/0"),
        ({"bump.trustedStores": ["s3://a", "s3://a"]}, "/bump/trustedStores"),
        (
            {"bump.registryCredentialsSecret": "regcred", "bump.extraArgs": ["--docker-config=/x"]},
            "bump.extraArgs has --docker-config and bump.registryCredentialsSecret is set: keep one",
        ),
        (
            {"bump.podLabels": {"app.kubernetes.io/component": "other"}},
            "bump.podLabels sets app.kubernetes.io/component, a label the chart sets itself",
        ),
    ],
)
def test_bad_access_values_are_refused(render_chart: Render, values: dict[str, Any], message: str) -> None:
    rendered = render_chart({"bump.enabled": True, **values})
    assert rendered.objects == []
    assert message in rendered.error, rendered.error
