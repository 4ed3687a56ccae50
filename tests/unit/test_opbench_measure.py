"""Pure figures of the operator benchmark (`benchmarks/operator/measure.py`).

Design notes: the benchmark's conclusions (which request kind the API server spent its time on) come
from parsing the API server's Prometheus text, so the parser is checked on the exact line shapes the
API server writes, including the kinds it must leave out (WATCH and LIST last by design).
"""

from __future__ import annotations

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
