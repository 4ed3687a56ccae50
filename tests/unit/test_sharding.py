"""Shards: which replica handles which ModelApp, decided from its `modelapp.io/shard` label alone.

Design notes: the decision is `OperatorConfig.owns` (pure), used by kopf's `when` filter on the ModelApp
handlers (`handlers.in_shard`), by the event handler that forgets a ModelApp leaving the shard, and by the
engine at the start of every pass (`Engine.owns`) and when it remembers what the API server answered. A
ModelApp of another shard is never kept in the store, so child events of it end before any pass. The
handover on the real API server (two shards, a relabel in the middle of a rollout) is
tests/integration/test_shards.py; here: the rule, the flags and their errors, and the store.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from modelapp_operator import commands
from modelapp_operator.engine import Engine
from modelapp_operator.names import KIND, LABEL_SHARD
from modelapp_operator.settings import ConfigError, OperatorConfig, check_shard, from_env, shard_peering


def app(shard: str | None, rv: str = "5") -> dict[str, Any]:
    labels = {LABEL_SHARD: shard} if shard is not None else {}
    return {"kind": KIND, "metadata": {"name": "iris", "namespace": "ml", "resourceVersion": rv, "labels": labels}}


@pytest.mark.parametrize(
    ("shard", "default", "label", "owned"),
    [
        (None, False, None, True),  # no shard: every ModelApp, labelled or not
        (None, False, "b", True),
        ("a", False, "a", True),
        ("a", False, "b", False),
        ("a", False, None, False),  # unlabelled ModelApps belong to the default shard only
        ("a", True, None, True),
        ("a", True, "b", False),  # the default shard never takes another shard's ModelApps
    ],
)
def test_owns(shard: str | None, default: bool, label: str | None, owned: bool) -> None:
    assert OperatorConfig(shard=shard, shard_default=default).owns(label) is owned


def test_shard_names_are_dns_labels_and_name_the_peering() -> None:
    assert check_shard("eu-1") == "eu-1"
    assert shard_peering("eu-1") == "modelapp-shard-eu-1"
    for bad in ("", "EU", "-a", "a-", "a_b", "a" * 41):
        with pytest.raises(ConfigError, match="shard name is 1-40 lower-case letters"):
            check_shard(bad)


def test_environment() -> None:
    config = from_env({"MODELAPP_SHARD": "b", "MODELAPP_SHARD_DEFAULT": "true"})
    assert (config.shard, config.shard_default) == ("b", True)
    assert from_env({}).shard is None
    with pytest.raises(ConfigError, match="'B'"):
        from_env({"MODELAPP_SHARD": "B"})


def test_the_engine_keeps_only_its_shards_modelapps() -> None:
    engine = Engine(OperatorConfig(shard="a"))
    assert engine.remember(KIND, app("a")) is not None
    assert engine.store.get(KIND, "ml", "iris") is not None
    engine.forget(KIND, "ml", "iris")
    returned = engine.remember(KIND, app("b", rv="6"))  # e.g. the answer to a status patch after a move
    assert returned is not None and returned["metadata"]["labels"] == {LABEL_SHARD: "b"}
    assert engine.store.get(KIND, "ml", "iris") is None, "another shard's ModelApp is never kept"
    child = {"kind": "Deployment", "metadata": {"name": "iris", "namespace": "ml", "resourceVersion": "7"}}
    assert engine.remember("Deployment", child) is not None, "children are kept whoever owns them"


def _run_args(**overrides: Any) -> argparse.Namespace:
    values = {"namespace": ["ml"], "all_namespaces": False, "peering": None, "standalone": False, "priority": 1,
              "liveness": None, "metrics_port": 0, "metrics_address": "0.0.0.0", "verbose": False, "shard": None,
              "shard_default": None}  # fmt: skip
    return argparse.Namespace(**(values | overrides))


def test_run_refuses_bad_shard_flags_before_kopf_starts(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("MODELAPP_SHARD", raising=False)
    monkeypatch.delenv("MODELAPP_SHARD_DEFAULT", raising=False)
    assert commands.run_main(_run_args(shard="Blue")) == 2
    assert "shard 'Blue': a shard name is 1-40 lower-case letters" in capsys.readouterr().err
    assert commands.run_main(_run_args(shard_default=True)) == 2
    assert "--shard-default needs --shard NAME" in capsys.readouterr().err


def test_run_gives_each_shard_its_own_peering(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(commands, "_missing_peering_crd", lambda config: seen.update(config=config) or "stop here")
    assert commands.run_main(_run_args(shard="a", shard_default=True)) == 2
    config = seen["config"]
    assert (config.shard, config.shard_default, config.peering) == ("a", True, "modelapp-shard-a")
    assert commands.run_main(_run_args(shard="a", peering="mine")) == 2
    assert seen["config"].peering == "mine", "an explicit --peering wins"
