"""hack/wheelhouse.sh with a command: no other build rewrites the wheelhouse while the command reads it.

Design notes: the real script, the real pip, this checkout's .work/wheelhouse (the operator's, the smaller
one). A command stands in for `docker build`: it hashes every file of the wheelhouse, says it is reading,
waits, and hashes again. A second run of the script, started while the first command reads, must wait for it
(the script says so) and rewrite the wheels only after it; the two hashes must be equal. Before the lock, the
second run removed the project wheel at once and rebuilt it (tens of seconds), so the second hash missed it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READER = """
import hashlib, pathlib, sys, time
def digest():
    folder = pathlib.Path(".work/wheelhouse/operator")
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sorted(folder.iterdir()))).hexdigest()
first = digest()
pathlib.Path(sys.argv[1]).touch()
time.sleep(float(sys.argv[2]))
print(first, digest(), time.time())
"""


def test_a_rewrite_waits_for_the_build_that_reads_the_wheelhouse(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    script = str(REPO / "hack" / "wheelhouse.sh")
    reading = tmp_path / "reading"
    reader = subprocess.Popen([script, "operator", sys.executable, "-c", READER, str(reading), "8"], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 900
    while not reading.exists():
        assert reader.poll() is None, f"the reading build ended early: {reader.communicate()}"
        assert time.monotonic() < deadline, "the first build never got to its command"
        time.sleep(0.2)
    writer = subprocess.run([script, "operator"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
                            check=False)  # fmt: skip
    writer_done = time.time()
    out, err = reader.communicate(timeout=900)
    assert reader.returncode == 0, err[-2000:]
    assert writer.returncode == 0, writer.stderr[-2000:]
    before, after, reader_done = out.split()
    assert before == after, "the wheelhouse changed while the command was reading it"
    assert "waiting for another image build" in writer.stderr
    assert writer_done > float(reader_done), "the rewrite finished before the reading command did"
    assert writer.stdout.strip() == ".work/wheelhouse/operator"  # without a command: the folder, as before
