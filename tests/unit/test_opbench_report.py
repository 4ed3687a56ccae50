"""The operator benchmark's tables (`benchmarks/operator/report.py`), from results shaped as a run writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.operator import report


def _burst(total: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {"total_s": total, "ready": 300, "load_before": 0.5, "load_after": 2.0, "cpu_s": cpu,
            "milestones": {"applied": {"p50_s": 1.0, "p90_s": 2.0, "last_s": 3.0}},
            "events": {"modelapp-operator RolloutStarted": 300}}  # fmt: skip


def _results(*, baseline_first: bool) -> dict[str, Any]:
    side = {"p95_ms": 100.0, "load": 0.5}
    return {"create": {"operator": side, "baseline": side},
            "fleets": [{"apps": 300, "shards": 1, "baseline_first": baseline_first,
                        "burst_operator": _burst(33.0, {"kube-apiserver": 20.0, "operator": 6.0}),
                        "burst_baseline": _burst(30.0, {"kube-apiserver": 20.0}),
                        "bump": {"operator": side, "baseline": side}, "peak_rss_mib": [120.0],
                        "idle": {"cpu_percent": 0.01, "load": 0.4}, "quiet_after_s": 5.0,
                        "requests_side_by_side": [{"verb": "PATCH", "resource": "modelapps/status",
                                                   "operator": 300, "baseline": 0, "extra": 300}]}]}  # fmt: skip


def test_the_table_gives_the_ratios_and_says_which_burst_came_first() -> None:
    first = report.table(_results(baseline_first=True))
    assert "| 300, baseline first: operator | 300, baseline first: baseline |" in first
    assert "| ratio operator / baseline | 1.10x |  |" in first
    assert "the time ratio follows it) | 26.0 s (1.30x) | 20.0 s |" in first
    assert "| PATCH modelapps/status | 300 | 0 | +1.00 |" in first
    after = report.table(_results(baseline_first=False))
    assert "baseline first" not in after and "| 300: operator | 300: baseline |" in after


def test_the_tables_are_printed_again_from_a_results_file(tmp_path: Path, capsys: Any) -> None:
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(_results(baseline_first=True)))
    assert report.main([str(saved)]) == 0
    assert capsys.readouterr().out.strip() == report.table(_results(baseline_first=True)).strip()
    assert report.main([]) == 2
