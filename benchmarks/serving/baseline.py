"""An earlier revision of `modelapp_serving`, runnable beside the current one in the same benchmark run.

Why: "before/after" figures taken minutes apart on a shared machine compare two machines, not two
versions. `export(rev, root)` writes `serving/` as of git revision `rev` to `root/modelapp_serving`
(`git archive`, nothing else of the repository), and `command(...)` runs it with
`PYTHONPATH=root`, which puts it ahead of the editable install of the current tree; the working
directory must not be the repository root (its `operator/` folder would shadow the standard
library's `operator`). The same virtualenv, so only our own code differs.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Baseline:
    rev: str
    root: Path  # the PYTHONPATH entry holding `modelapp_serving`

    def command(self, *args: str) -> list[str]:
        """`modelapp-serving ARGS` of this revision (run it with `env()`)."""
        return [sys.executable, "-m", "modelapp_serving.cli", *args]

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.root)}


def export(rev: str, root: Path) -> Baseline:
    """Write `serving/` at `rev` as `root/modelapp_serving`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "serving"], capture_output=True, check=True, timeout=60
    ).stdout
    package = root / "modelapp_serving"
    package.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            relative = Path(member.name).relative_to("serving")
            if member.isfile() and relative.parts:
                extracted = tar.extractfile(member)
                assert extracted is not None
                (package / relative).parent.mkdir(parents=True, exist_ok=True)
                (package / relative).write_bytes(extracted.read())
    return Baseline(rev, root)
