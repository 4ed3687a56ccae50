"""What each distribution ships: the operator's wheel carries no dev cluster, the dev cluster's carries its C sources.

Design notes: the wheels are built the way a release would build them (`pip wheel --no-deps
--no-build-isolation`, offline), from a copy of the sources in a temporary folder, so that a
stale `build/` in the working tree can neither hide nor add a file. The local development
cluster is tooling (issue 8): it must not reach a product's wheel, and since it is installed
from a wheel too, its package data (pause.c, hello.c) must be in that wheel and readable through
importlib.resources, not from a path next to the repository. The operator's `modelapp cluster`
stays as a signpost; run as a user would, it must say where the command went.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "operator", "serving", "devcluster")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", "dist")


def _wheel(project: Path, out: Path) -> list[str]:
    """Build `project`'s wheel into `out` offline; returns the names of the files inside it."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-q", "-w", str(out), str(project)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"pip wheel {project.name} failed:\n{result.stderr[-3000:]}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}, found {wheels}"
    with zipfile.ZipFile(wheels[0]) as archive:
        return archive.namelist()


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=SKIP)
        else:
            shutil.copy2(source, copy / name)
    return copy


def test_the_operator_wheel_carries_no_dev_cluster(source_copy: Path, tmp_path: Path) -> None:
    names = _wheel(source_copy, tmp_path)
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"modelapp_operator", "modelapp_serving"}, f"unexpected top-level packages: {packages}"
    cluster_files = [n for n in names if "devcluster" in n or n.startswith("modelapp_operator/cluster/")
                     or n.endswith(".c")]
    assert cluster_files == [], f"the operator's wheel ships dev-cluster files: {cluster_files}"
    assert "modelapp_operator/cli.py" in names


def test_the_dev_cluster_wheel_carries_its_package_data(source_copy: Path, tmp_path: Path) -> None:
    names = _wheel(source_copy / "devcluster", tmp_path)
    for wanted in ("modelapp_devcluster/cli.py", "modelapp_devcluster/local.py", "modelapp_devcluster/py.typed",
                   "modelapp_devcluster/data/pause/pause.c", "modelapp_devcluster/data/pause/hello.c"):
        assert wanted in names, f"{wanted} is missing from the dev cluster's wheel"
    assert not [n for n in names if n.startswith(("modelapp_operator", "modelapp_serving"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    wheel = next(tmp_path.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        scripts = archive.read(entry_points).decode()
    assert "modelapp-cluster = modelapp_devcluster.cli:main" in scripts


def test_the_installed_dev_cluster_finds_its_c_sources(source_copy: Path, tmp_path: Path) -> None:
    """Installed from its wheel, away from this repository, the pause source is still found (no `hack/`)."""
    _wheel(source_copy / "devcluster", tmp_path / "wheel")
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                              str(target), str(next((tmp_path / "wheel").glob("*.whl")))],
                             capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stderr
    code = ("import modelapp_devcluster, sys; from importlib import resources; "
            "print(modelapp_devcluster.__file__); "
            "print(len(resources.files('modelapp_devcluster').joinpath('data', 'pause', 'pause.c').read_text()))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    location, size = run.stdout.split()
    assert Path(location).is_relative_to(target), f"imported from {location}, not from the installed wheel"
    assert int(size) > 0


def test_the_dev_cluster_never_imports_a_product() -> None:
    """A static check of every module: the dev cluster takes what it needs as parameters or its own constants."""
    offenders = []
    for module in sorted((ROOT / "devcluster" / "modelapp_devcluster").glob("*.py")):
        for number, line in enumerate(module.read_text().splitlines(), 1):
            if line.lstrip().startswith(("import modelapp_operator", "from modelapp_operator",
                                         "import modelapp_serving", "from modelapp_serving")):
                offenders.append(f"{module.name}:{number}: {line.strip()}")
    assert offenders == []


def test_the_packaged_pause_source_is_read_through_importlib_resources() -> None:
    from importlib import resources

    source = resources.files("modelapp_devcluster").joinpath("data", "pause", "pause.c").read_text()
    assert "SIGTERM" in source


def test_modelapp_cluster_says_where_the_command_went() -> None:
    modelapp = Path(sys.executable).parent / "modelapp"
    result = subprocess.run([str(modelapp), "cluster", "--help"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert "moved: use `modelapp-cluster --help`" in result.stderr
    assert "pip install modelapp-devcluster" in result.stderr
    # The dev cluster is installed here, so the alias runs it: its own help follows.
    assert result.returncode == 0, result.stderr
    assert "usage: modelapp-cluster" in result.stdout


def test_modelapp_cluster_without_the_dev_cluster_only_says_where_it_went(tmp_path: Path) -> None:
    """The operator image has no modelapp_devcluster: the alias must say so, not fail with argparse noise."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'modelapp_devcluster':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Hide())\n")
    # `status` on an empty folder: harmless even if the hiding failed and the real command ran.
    code = ("import sys; from modelapp_operator.cli import main; "
            "sys.exit(main(['cluster', 'status', '--state-dir', 'x']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert result.stderr.strip() == ("moved: use `modelapp-cluster status --state-dir x` "
                                     "(pip install modelapp-devcluster, or hack/setup.sh); "
                                     "`modelapp cluster` is only an alias for it")
