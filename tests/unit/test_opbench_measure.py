"""Pure figures of the operator benchmark (`benchmarks/operator/measure.py`).

Design notes: the benchmark's conclusions (which request kind the API server spent its time on) come
from parsing the API server's Prometheus text, so the parser is checked on the exact line shapes the
API server writes, including the kinds it must leave out (WATCH and LIST last by design).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from benchmarks.operator.measure import percentile, request_mix

TEXT = """# HELP apiserver_request_duration_seconds ...
apiserver_request_duration_seconds_bucket{verb="APPLY",resource="services",subresource="",le="0.5"} 1
apiserver_request_duration_seconds_sum{group="",resource="services",subresource="",verb="APPLY"} 12.5
apiserver_request_duration_seconds_count{group="",resource="services",subresource="",verb="APPLY"} 5
apiserver_request_duration_seconds_sum{resource="modelapps",subresource="status",verb="PATCH",version="v1alpha1"} 1
apiserver_request_duration_seconds_count{resource="modelapps",subresource="status",verb="PATCH",version="v1alpha1"} 10
apiserver_request_duration_seconds_sum{resource="modelapps",subresource="status",verb="PATCH",version="v1"} 1
apiserver_request_duration_seconds_count{resource="modelapps",subresource="status",verb="PATCH",version="v1"} 10
apiserver_request_duration_seconds_sum{resource="pods",subresource="",verb="WATCH"} 900
apiserver_request_duration_seconds_count{resource="pods",subresource="",verb="WATCH"} 3
"""


def test_request_mix_sums_versions_orders_by_time_and_skips_watches() -> None:
    rows = request_mix(TEXT)
    assert rows == [
        {"verb": "APPLY", "resource": "services", "count": 5, "total_s": 12.5, "mean_ms": 2500.0},
        {"verb": "PATCH", "resource": "modelapps/status", "count": 20, "total_s": 2.0, "mean_ms": 100.0},
    ]
    assert request_mix(TEXT, top=1) == rows[:1]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.95) == 4.0


def test_delta_is_what_one_phase_cost_per_app() -> None:
    from benchmarks.operator.measure import delta, request_stats, side_by_side

    before = request_stats(TEXT)
    after = request_stats(TEXT.replace("_count{group=\"\",resource=\"services\",subresource=\"\",verb=\"APPLY\"} 5",
                                       "_count{group=\"\",resource=\"services\",subresource=\"\",verb=\"APPLY\"} 25")
                          .replace("verb=\"APPLY\"} 12.5", "verb=\"APPLY\"} 14.5"))  # fmt: skip
    assert ("WATCH", "pods") not in after, "watches last by design: left out"
    rows = delta(before, after, per=10)
    assert rows == [{"verb": "APPLY", "resource": "services", "count": 20, "per_app": 2.0, "total_s": 2.0,
                     "mean_ms": 100.0}]  # fmt: skip
    both = side_by_side(rows, [{"verb": "APPLY", "resource": "services", "count": 10},
                               {"verb": "POST", "resource": "pods", "count": 3}])  # fmt: skip
    assert both == [{"verb": "APPLY", "resource": "services", "operator": 20, "baseline": 10, "extra": 10},
                    {"verb": "POST", "resource": "pods", "operator": 0, "baseline": 3, "extra": -3}]  # fmt: skip


def test_burst_milestones_place_the_time_per_app() -> None:
    from benchmarks.operator.scenarios import Burst

    times = [float(n) for n in range(1, 11)]  # ten apps, one a second
    burst = Burst(12.0, 1.0, 10, {"applied": times, "ready": [t + 0.5 for t in times], "available": []})
    assert burst.milestones() == {
        "applied": {"n": 10, "p50_s": 5.0, "p90_s": 9.0, "last_s": 10.0},
        "ready": {"n": 10, "p50_s": 5.5, "p90_s": 9.5, "last_s": 10.5},
    }  # a milestone nobody reached is left out, not shown as zero


def test_operator_logs_with_errors_are_counted_and_kept(tmp_path: Path) -> None:
    """A run's folder is deleted at its end: a log with an error or a traceback is copied out, a clean one is not."""
    from benchmarks.operator.__main__ import log_findings

    clean, broken = tmp_path / "operator-a.log", tmp_path / "operator-b.log"
    clean.write_text("[2026-12-03 10:00:00] kopf [INFO    ] Handler 'reconcile' succeeded.\n")
    broken.write_text("[2026-12-03 10:00:01] kopf [ERROR   ] failed\nTraceback (most recent call last):\n  ...\n")
    keep = tmp_path / "kept"
    found = log_findings([clean, broken], keep)
    assert (found["tracebacks"], found["errors"]) == (1, 1)
    assert [Path(p).read_text() for p in found["kept"]] == [broken.read_text()]
    assert log_findings([clean], tmp_path / "none") == {"tracebacks": 0, "errors": 0}
    assert not (tmp_path / "none").exists()


def test_a_second_sigterm_cannot_cut_the_cleanup_short() -> None:
    """`timeout` and `pkill -f` both signal the run: once it is ending, SIGTERM is ignored and the alarm off."""
    from benchmarks.operator.__main__ import Terminated, _terminated

    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _terminated)
    signal.alarm(600)
    try:
        with pytest.raises(Terminated):
            _terminated()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.alarm(0) == 0, "the --max-minutes alarm is off"
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.alarm(0)


def test_the_cpu_ratio_sums_every_process_of_each_burst() -> None:
    """The table's CPU row: on shared busy cores the burst's time ratio follows the ratio of all CPU spent, so
    the table shows it beside the time ratio (benchmarks/README.md, 2026-12-04)."""
    from benchmarks.operator.report import _cpu_ratio

    operator = {"cpu_s": {"kube-apiserver": 70.5, "etcd": 10.5, "operator-0": 21.0}}
    baseline = {"cpu_s": {"kube-apiserver": 56.0, "etcd": 8.0}}
    assert _cpu_ratio(operator, baseline) == ("102.0 s (1.59x)", "64.0 s")
    assert _cpu_ratio(operator, {}) == ("-", "-"), "an older JSON without CPU figures"
