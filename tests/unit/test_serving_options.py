"""`serve`'s listeners from its flags and environment: the public port and the metrics port.

Design notes: the command line is parsed by the real parser (`cli.build_parser`) and turned into
options by the real `server.options_from_args`; the environment is set for one test at a time. The
metrics port has a default (9090) so that a pod needs nothing to get it, 0 turns it off, and a port
shared with the public one is refused with the reason (one socket cannot be both).
"""

from __future__ import annotations

import pytest

from modelapp_serving.cli import build_parser
from modelapp_serving.server import options_from_args

BASE = ["serve", "--model-dir", "/models/iris", "--name", "iris"]


def test_the_metrics_port_defaults_to_9090_beside_the_public_port() -> None:
    options = options_from_args(build_parser().parse_args(BASE))
    assert (options.port, options.metrics_port) == (8080, 9090)
    assert options.binds() == ["0.0.0.0:8080", "0.0.0.0:9090"]


def test_the_metrics_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELAPP_METRICS_PORT", "9191")
    assert options_from_args(build_parser().parse_args(BASE)).metrics_port == 9191
    flag = options_from_args(build_parser().parse_args([*BASE, "--metrics-port", "9292"]))
    assert flag.metrics_port == 9292  # the flag wins over the environment


def test_port_zero_means_one_listener() -> None:
    options = options_from_args(build_parser().parse_args([*BASE, "--metrics-port", "0", "--host", "::"]))
    assert options.binds() == ["[::]:8080"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--metrics-port", "8080"], "--metrics-port 8080 is also --port: give /metrics a port of its own"),
        (["--metrics-port", "65536"], "--metrics-port must be a port number (1-65535), or 0 for none; got 65536"),
        (["--metrics-port=-5"], "got -5"),
    ],
)
def test_bad_metrics_ports_are_refused_with_the_reason(flags: list[str], words: str) -> None:
    with pytest.raises(ValueError, match="metrics-port") as caught:
        options_from_args(build_parser().parse_args([*BASE, *flags]))
    assert words in str(caught.value)
