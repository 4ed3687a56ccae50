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
