"""The operator benchmark's profile summary (`benchmarks/operator/profile.py`): py-spy's collapsed stacks in,
shares per area and per frame out.

Design notes: an area is decided by the innermost frame that any rule matches (a json.loads under kopf's
watch loop is json, not kopf); thread and process pseudo-frames (py-spy --threads) are not frames; shares
add up to the whole.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from benchmarks.operator import profile

STACKS = [
    ('process 1:"python";thread (0x1);run (asyncio/base_events.py:600);'
     "watch_objs (kopf/_cogs/clients/watching.py:290);loads (json/__init__.py:346)", 30),
    ('process 1:"python";thread (0x1);process_resource_event (kopf/_core/reactor/processing.py:60);'
     "build (kopf/_cogs/configs/diffbase.py:56);deepcopy (copy.py:128)", 50),
    ('process 1:"python";thread (0x2);_pass (modelapp_operator/engine.py:170);'
     "compute_status (modelapp_operator/status.py:190)", 20),
    ('process 1:"python";thread (0x3);_worker (concurrent/futures/thread.py:83);'
     "SSLSocket.read (ssl.py:1167)", 40),
]
RAW = "".join(f"{stack} {count}\n" for stack, count in STACKS)


def test_areas_take_the_innermost_matching_frame(tmp_path: Path) -> None:
    path = tmp_path / "operator.txt"
    path.write_text(RAW)
    stacks = profile.read([path])
    assert sum(stacks.values()) == 140
    del stacks[next(s for s in stacks if s[-1].startswith("SSLSocket.read"))]
    areas = Counter({profile.area(stack): n for stack, n in stacks.items()})
    assert areas == Counter({"json decode/encode": 30, "deepcopy (kopf's essence, ours)": 50,
                             "our engine: status": 20})  # fmt: skip
    text = profile.summary(stacks)
    assert "| deepcopy (kopf's essence, ours) | 50.0 % |" in text
    assert "| `deepcopy (copy.py:128)` | 50.0 % |" in text, "self time of the innermost frame"
    assert "thread (0x1)" not in text, "pseudo-frames are not frames"


def test_blocked_threads_are_not_cpu(tmp_path: Path) -> None:
    path = tmp_path / "operator.txt"
    path.write_text(RAW)
    text = profile.summary(profile.read([path]))
    assert text.startswith("100 samples running, 40 more of threads blocked (left out)")
    assert "| json decode/encode | 30.0 % |" in text


def test_apiserver_profile_groups_each_stack_once_in_its_first_group() -> None:
    from benchmarks.operator.apiserver_profile import grouped, table, traces

    sep = "-----------+-------------------------------------------------------"
    text = "\n".join([
        "File: kube-apiserver", sep,
        "     20ms   encoding/json.Marshal",
        "            k8s.io/apiserver/pkg/endpoints/handlers.UpdateResource.func1",
        "            k8s.io/apiextensions-apiserver/pkg/registry/customresource.(*StatusREST).Update", sep,
        "      1.5s   runtime.gcDrain",
        "            runtime.gcBgMarkWorker", sep,
        "     10ms   net/http.(*conn).serve", sep,
    ])  # fmt: skip
    stacks = traces(text)
    assert [round(s, 3) for s, _ in stacks] == [0.02, 1.5, 0.01]
    sums = grouped(stacks)
    assert sums["ModelApp status PATCH (`customresource.(*StatusREST).Update`)"] == 0.02, "not the generic update's"
    assert sums["built-in updates, patches, applies"] == 0
    assert sums["Go heap GC"] == 1.5 and sums["the rest"] == 0.01 and round(sums["total"], 3) == 1.53
    assert "| Go heap GC | 1.50 s | 0.00 s | +1.50 s |" in table(sums, {})
