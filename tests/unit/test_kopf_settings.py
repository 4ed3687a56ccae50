"""What the operator sets in kopf at startup (handlers.configure), from its configuration (settings.py).

Design notes: the memory of a burst depends on kopf's per-kind worker limit (docs/scaling.md, "Memory"), so
the default, the environment variable and the way back to kopf's own default (no limit) are each checked on
a real `kopf.OperatorSettings`, as kopf hands it to the startup handler.
"""

from __future__ import annotations

import logging

import kopf
import pytest

from modelapp_operator import handlers
from modelapp_operator.settings import ConfigError, OperatorConfig, from_env


def _configured(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    memo = kopf.Memo(config=config)
    handlers.configure(settings=settings, memo=memo, logger=logging.getLogger("test"))
    return settings


def test_kopf_handles_a_bounded_number_of_objects_per_kind_by_default() -> None:
    config = from_env({})
    assert (config.workers, config.object_workers) == (12, 32)
    settings = _configured(OperatorConfig(standalone=True))
    assert settings.queueing.worker_limit == 32
    assert settings.queueing.idle_timeout == handlers.OBJECT_IDLE_SECONDS == 1.0


def test_the_limit_is_set_by_the_environment_and_zero_lifts_it() -> None:
    assert from_env({"MODELAPP_OBJECT_WORKERS": "64"}).object_workers == 64
    lifted = _configured(OperatorConfig(standalone=True, object_workers=0)).queueing
    assert lifted.worker_limit is None
    assert lifted.idle_timeout == kopf.OperatorSettings().queueing.idle_timeout, "kopf's own, as without the limit"
    with pytest.raises(ConfigError, match="MODELAPP_OBJECT_WORKERS=-1: must be between 0 and 10000"):
        from_env({"MODELAPP_OBJECT_WORKERS": "-1"})
