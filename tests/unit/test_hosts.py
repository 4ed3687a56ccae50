"""spec.ingress: the Ingress manifest, the URL, bad hosts, and who may route which host.

Design notes: `hosts` is pure, so the tenancy rules (docs/security.md, "Host names") are tested here with
claims written by hand: the allow-list per namespace, first claim wins across namespaces whatever the path,
sharing a host by path inside one namespace, and the same answer from both sides of a race (the decision
orders claims by creation time, then namespace/name). The CRD's refusal of the same hosts, with the same
words, is in tests/integration/test_ingress.py against the real API server.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelapp_operator import hosts, settings, status
from modelapp_operator.names import INGRESS_READY
from modelapp_operator.spec import HOST_NOT_DNS, IngressSpec, InvalidSpec, parse_spec

BASE = {"image": "registry.example.com/iris:1.0.0", "model": {"uri": "azureblob://models/iris", "version": "1"}}


def test_ingress_routes_host_and_path_to_the_service_port() -> None:
    spec = IngressSpec(host="iris.ml.example.com", class_name="traefik", tls_secret="iris-tls", path="/v2/models/iris")
    ingress = hosts.build_ingress("iris", spec, {"name": "iris", "namespace": "ml"})
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["spec"] == {
        "ingressClassName": "traefik",
        "tls": [{"hosts": ["iris.ml.example.com"], "secretName": "iris-tls"}],
        "rules": [{"host": "iris.ml.example.com", "http": {"paths": [{
            "path": "/v2/models/iris", "pathType": "Prefix",
            "backend": {"service": {"name": "iris", "port": {"name": "http"}}}}]}}],
    }  # fmt: skip
    assert hosts.url("iris", spec) == "https://iris.ml.example.com/v2/models/iris"


def test_without_class_or_tls_the_cluster_default_and_http() -> None:
    spec = parse_spec({**BASE, "ingress": {"host": "iris.example.com"}}).ingress
    assert spec is not None and spec.path == "/"
    ingress = hosts.build_ingress("iris", spec, {"name": "iris"})
    assert "ingressClassName" not in ingress["spec"] and "tls" not in ingress["spec"]
    assert hosts.url("iris", spec) == "http://iris.example.com/v2/models/iris"


@pytest.mark.parametrize("host", ["*.example.com", "Iris.example.com", "10.0.0.1", "iris.example.com:443",
                                  "https://iris.example.com", "iris_app.example.com", "-iris.example.com",
                                  "iris..example.com", "a" * 64 + ".example.com", ""])  # fmt: skip
def test_a_host_that_is_not_a_dns_name_is_refused_with_the_crd_words(host: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_spec({**BASE, "ingress": {"host": host}})
    assert f"spec.ingress.host: {HOST_NOT_DNS}" in str(err.value) or "at most 253" in str(err.value)


@pytest.mark.parametrize("path", ["v2", "//", "/a/../b", "/a%2Fb", "/a b"])
def test_a_bad_path_is_refused(path: str) -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.ingress\.path: not a path prefix"):
        parse_spec({**BASE, "ingress": {"host": "iris.example.com", "path": path}})


def test_the_allow_list_keeps_a_namespace_to_its_suffixes() -> None:
    allow = {"team-a": ("a.example.com",)}
    spec = IngressSpec(host="iris.a.example.com")
    assert hosts.refusal(namespace="team-a", name="iris", spec=spec, created=None, allow=allow, claims=[]) is None
    assert hosts.refusal(namespace="team-a", name="iris", spec=IngressSpec(host="a.example.com"), created=None,
                         allow=allow, claims=[]) is None  # fmt: skip
    refused = hosts.refusal(namespace="team-a", name="iris", spec=IngressSpec(host="iris.evil-a.example.com"),
                            created=None, allow=allow, claims=[])  # fmt: skip
    assert refused is not None and refused[0] == "HostNotAllowed" and "a.example.com" in refused[1]
    # a namespace the list does not name may use no host at all
    refused = hosts.refusal(namespace="team-b", name="iris", spec=spec, created=None, allow=allow, claims=[])
    assert refused is not None and "suffixes: none" in refused[1]
    # no list: every host is allowed (first claim still wins)
    assert hosts.refusal(namespace="team-b", name="iris", spec=spec, created=None, allow=None, claims=[]) is None


def _claim(namespace: str, owner: str, host: str, path: str = "/",
           created: str = "2026-12-02T10:00:00Z") -> hosts.Claim:  # fmt: skip
    return hosts.Claim(namespace=namespace, owner=owner, host=host, path=path, created=created)


def test_another_namespace_cannot_take_a_routed_host_whatever_the_path() -> None:
    victim = _claim("team-y", "iris", "iris.example.com", "/")
    for path in ("/", "/v2/models/iris", "/v2"):
        refused = hosts.refusal(namespace="team-x", name="thief", spec=IngressSpec(host="iris.example.com", path=path),
                                created=None, allow=None, claims=[victim])  # fmt: skip
        assert refused is not None and refused[0] == "HostTaken" and "team-y/iris" in refused[1]


def test_one_namespace_shares_a_host_by_path() -> None:
    iris = _claim("ml", "iris", "api.example.com", "/v2/models/iris")
    wine = IngressSpec(host="api.example.com", path="/v2/models/wine")
    assert hosts.refusal(namespace="ml", name="wine", spec=wine, created=None, allow=None, claims=[iris]) is None
    same = IngressSpec(host="api.example.com", path="/v2/models/iris")
    assert hosts.refusal(namespace="ml", name="wine", spec=same, created=None, allow=None, claims=[iris]) is not None


def test_a_race_is_decided_the_same_way_from_both_sides() -> None:
    """Both Ingresses were written before either saw the other: the older keeps the host, the newer yields."""
    old = _claim("team-y", "iris", "iris.example.com", created="2026-12-02T10:00:00Z")
    new = _claim("team-x", "thief", "iris.example.com", created="2026-12-02T10:00:01Z")
    spec = IngressSpec(host="iris.example.com")
    both = [old, new]
    assert hosts.refusal(namespace="team-y", name="iris", spec=spec, created=old.created, allow=None,
                         claims=both) is None  # fmt: skip
    assert hosts.refusal(namespace="team-x", name="thief", spec=spec, created=new.created, allow=None,
                         claims=both) is not None  # fmt: skip
    # same second: namespace/name decides, the same on both sides
    tie = _claim("team-x", "thief", "iris.example.com", created=old.created)
    assert hosts.refusal(namespace="team-x", name="thief", spec=spec, created=tie.created, allow=None,
                         claims=[old, tie]) is None  # fmt: skip
    assert hosts.refusal(namespace="team-y", name="iris", spec=spec, created=old.created, allow=None,
                         claims=[old, tie]) is not None  # fmt: skip


def test_claims_are_read_from_an_ingress() -> None:
    ingress = hosts.build_ingress("iris", IngressSpec(host="iris.example.com", path="/v2/models/iris"),
                                  {"name": "iris", "namespace": "ml", "creationTimestamp": "2026-12-02T10:00:00Z"})
    assert hosts.claims_of(ingress, "iris") == [_claim("ml", "iris", "iris.example.com", "/v2/models/iris")]
    # An Ingress not named as its controller is not one the operator wrote (a tenant's hand-made one): no claim.
    assert hosts.claims_of(ingress, "decoy") == []


def test_a_namespace_that_may_not_route_a_host_holds_no_claim_on_it() -> None:
    forged = _claim("team-x", "decoy", "shop.team-y.example.com", created="2026-12-02T09:00:00Z")
    spec = IngressSpec(host="shop.team-y.example.com")
    allow = {"team-x": ("team-x.example.com",), "team-y": ("team-y.example.com",)}
    assert hosts.refusal(namespace="team-y", name="shop", spec=spec, created=None, allow=allow,
                         claims=[forged]) is None  # fmt: skip
    refused = hosts.refusal(namespace="team-y", name="shop", spec=spec, created=None, allow=None, claims=[forged])
    assert refused is not None and refused[0] == "HostTaken"  # without the allow-list, first claim wins


def _status(spec_extra: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    spec = parse_spec({**BASE, **spec_extra})
    return status.compute_status(name="iris", namespace="ml", generation=1, spec=spec, deployment=None,
                                 service=None, old=kwargs.pop("old", {}), now="2026-12-02T10:00:00Z",
                                 **kwargs)  # fmt: skip


def _ingress_ready(st: dict[str, Any]) -> dict[str, Any] | None:
    return status.condition(st, INGRESS_READY)


def test_status_url_uses_the_host_and_says_whether_a_controller_routes_it() -> None:
    ing = {"ingress": {"host": "iris.example.com", "tlsSecret": "iris-tls"}}
    created = _status(ing)
    assert (created["url"], created["urlSource"]) == ("https://iris.example.com/v2/models/iris", "Ingress")
    assert (_ingress_ready(created) or {})["reason"] == "Creating"
    live = {"metadata": {"name": "iris"}, "spec": {}}
    pending = _ingress_ready(_status(ing, ingress=live)) or {}
    assert (pending["status"], pending["reason"]) == ("Unknown", "NoAddress")
    admitted = {**live, "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}
    ready = _ingress_ready(_status(ing, ingress=admitted)) or {}
    assert (ready["status"], ready["reason"]) == ("True", "Admitted") and "127.0.0.1" in ready["message"]


def test_a_missing_tls_secret_is_named_whatever_the_controller_says() -> None:
    ing = {"ingress": {"host": "iris.example.com", "tlsSecret": "iris-tls"}}
    admitted = {"metadata": {"name": "iris"}, "spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}
    missing = _ingress_ready(_status(ing, ingress=admitted, tls_missing=True)) or {}
    assert (missing["status"], missing["reason"]) == ("False", "TLSSecretMissing")
    assert "ml/iris-tls" in missing["message"] and "never reads" in missing["message"]
    # Nothing to say before the Ingress exists, or without TLS.
    assert (_ingress_ready(_status(ing, tls_missing=True)) or {})["reason"] == "Creating"
    plain = _ingress_ready(_status({"ingress": {"host": "iris.example.com"}}, ingress=admitted, tls_missing=True))
    assert (plain or {})["reason"] == "Admitted"


def test_a_refused_host_keeps_the_service_url_and_says_why() -> None:
    st = _status({"ingress": {"host": "iris.example.com"}}, ingress_refused=("HostTaken", "host ... is routed"))
    assert st["urlSource"] == "ClusterDNS" and st["url"] == "http://iris.ml.svc:80/v2/models/iris"
    assert (_ingress_ready(st) or {})["reason"] == "HostTaken"


def test_removing_the_ingress_turns_a_leftover_condition_off() -> None:
    before = _status({"ingress": {"host": "iris.example.com"}})
    after = _status({}, old=before)
    assert (_ingress_ready(after) or {})["reason"] == "NotRequested"
    assert _ingress_ready(_status({})) is None, "never had one: no condition at all"


def test_the_allow_list_setting_is_parsed_or_refused_with_its_name() -> None:
    assert settings.ingress_hosts(None) is None and settings.ingress_hosts("") is None
    assert settings.ingress_hosts('{"team-a": ["a.example.com"]}') == {"team-a": ("a.example.com",)}
    for bad in ('["a.example.com"]', '{"team-a": "a.example.com"}', '{"team-a": ["*.a.example.com"]}', "{"):
        with pytest.raises(settings.ConfigError, match="MODELAPP_INGRESS_HOSTS"):
            settings.ingress_hosts(bad)
    config = settings.from_env({"MODELAPP_INGRESS_HOSTS": '{"ml": ["ml.example.com"]}'})
    assert config.ingress_hosts == {"ml": ("ml.example.com",)}
