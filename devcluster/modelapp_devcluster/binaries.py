"""Finding the control-plane binaries, and building the missing ones with Go.

Lookup order for each binary: `$KUBEBUILDER_ASSETS` (the envtest convention, an explicit choice),
then our versioned cache, then `PATH`. A binary found outside the cache is used only if its
`--version` matches the pinned minor version (Debian's etcd 3.4, say, is too old for Kubernetes 1.34).

Missing binaries are built one at a time (two cores are shared with other builds) from the Go
module proxy, `-trimpath -ldflags=-s -w`, into the cache, each to a temporary name renamed at the
end, so an interrupted build never leaves a half-written binary. Kubernetes gets its version
stamped in (`-X k8s.io/component-base/version.gitVersion=...`): `go build` alone reports
`v0.0.0-master`, which breaks clients that check the server version (Helm's `kubeVersion`).
While a build runs, progress (binary, elapsed time, an estimate) is reported every few seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modelapp_devcluster import gomod
from modelapp_devcluster.errors import ClusterError
from modelapp_devcluster.versions import (
    EXPECTED_VERSION_PREFIX,
    KUBERNETES,
    RECIPES,
    BuildRecipe,
    bin_dir,
    build_dir,
    cache_root,
)

Report = Callable[[str], None]
PROGRESS_EVERY_S = 10.0
BUILD_TIMEOUT_S = 3600.0
# Measured cold builds on 2 cores (empty Go caches; includes downloading modules). Replaced by the
# last measured time once a build has run on this machine.
COLD_ESTIMATE_S = {"etcd": 85, "kube-apiserver": 220, "kube-controller-manager": 65, "kube-scheduler": 45,
                   "kwok": 150, "traefik": 1500, "metrics-server": 300}


@dataclass(frozen=True)
class Binary:
    """A binary to run and where it was found: KUBEBUILDER_ASSETS, cache, PATH or built."""

    name: str
    path: Path
    source: str


def version_ldflags(recipe: BuildRecipe) -> str:
    """`-ldflags` value: strip symbols, and for Kubernetes stamp the release version in."""
    flags = ["-s", "-w"]
    if recipe.module == KUBERNETES.module:  # also the node's kubelet and kube-proxy (node_build)
        major, minor = recipe.version.lstrip("v").split(".")[:2]
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {pkg}.gitVersion={recipe.version}", f"-X {pkg}.gitMajor={major}",
                      f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean"]
    flags += [f"-X {stamp}" for stamp in recipe.stamps]
    return " ".join(flags)


def _version_ok(path: Path, name: str) -> bool:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = out.stdout + out.stderr
    prefix = EXPECTED_VERSION_PREFIX[name]
    return any(word.startswith(prefix) for word in text.split())


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_binary(name: str, recipe: BuildRecipe, env: dict[str, str]) -> Binary | None:
    """The binary to use for `name`, or None when it has to be built."""
    assets = env.get("KUBEBUILDER_ASSETS")
    if assets and _executable(Path(assets) / name) and _version_ok(Path(assets) / name, name):
        return Binary(name, Path(assets) / name, "KUBEBUILDER_ASSETS")
    cached = bin_dir(recipe, env) / name
    if _executable(cached):
        return Binary(name, cached, "cache")
    on_path = shutil.which(name, path=env.get("PATH"))
    if on_path and _version_ok(Path(on_path), name):
        return Binary(name, Path(on_path), "PATH")
    return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two test sessions never build into the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _timings_file(env: dict[str, str]) -> Path:
    return cache_root(env) / "build-timings.json"


def _last_duration(name: str, env: dict[str, str]) -> float | None:
    """How long the last build of `name` took on this machine, if one ran."""
    try:
        timings = json.loads(_timings_file(env).read_text())
        return float(timings[name])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_timing(name: str, seconds: float, env: dict[str, str]) -> None:
    path = _timings_file(env)
    try:
        timings = json.loads(path.read_text())
    except (OSError, ValueError):
        timings = {}
    timings[name] = round(seconds, 1)
    path.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:])


def _fmt(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_go(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path, label: str, report: Report,
           estimate_s: float | None = None) -> float:
    """Run one go command, appending to `log`, reporting progress; returns its duration.

    Raises ClusterError with the tail of the log when it fails or exceeds BUILD_TIMEOUT_S.
    """
    start = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        while True:
            try:
                proc.wait(timeout=PROGRESS_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - start
                if elapsed > BUILD_TIMEOUT_S:
                    proc.kill()
                    proc.wait()
                    raise ClusterError(f"{label} timed out after {_fmt(elapsed)}; see {log}") from None
                hint = f" of ~{_fmt(estimate_s)}" if estimate_s else ""
                report(f"  {label}: {_fmt(elapsed)} elapsed{hint}")
    if proc.returncode != 0:
        raise ClusterError(f"{label} failed (exit {proc.returncode}): {_tail(log)} (full log: {log})")
    return time.monotonic() - start


def _go_env(env: dict[str, str]) -> dict[str, str]:
    go_env = dict(env)
    go_env.setdefault("GOFLAGS", "-buildvcs=false")
    go_env.pop("GOMAXPROCS", None)  # leave Go's default parallelism
    return go_env


def _prepare_helper(recipe: BuildRecipe, *, work: Path, env: dict[str, str], log: Path, report: Report) -> None:
    """Write the helper module (go.mod + tools.go) derived from the downloaded go.mod, then tidy it."""
    target = f"{recipe.module}@{recipe.version}"
    report(f"  resolving {target} (downloads its go.mod from the module proxy)")
    # Run outside the helper module: a go.mod left broken by an interrupted run must not get in the way.
    out = subprocess.run(["go", "mod", "download", "-json", target], cwd=work.parent, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ClusterError(f"go mod download {target} failed: {(out.stdout + out.stderr).strip()[-300:]}")
    go_mod_text = Path(json.loads(out.stdout)["GoMod"]).read_text()
    replaced = gomod.local_replacements(go_mod_text)
    (work / "go.mod").write_text(gomod.helper_go_mod(
        name=f"modelapp.local/build/{recipe.key}", go_version=gomod.go_directive(go_mod_text),
        module=recipe.module, version=recipe.version, replaced=replaced, replace_version=recipe.replace_version,
        forks=gomod.module_replacements(go_mod_text) if recipe.forks else None,
        excluded=gomod.excludes(go_mod_text) if recipe.forks else None))
    (work / "tools.go").write_text(gomod.tools_go([pkg for _, pkg in recipe.packages]))
    run_go(["go", "mod", "tidy"], cwd=work, env=env, log=log, label=f"go mod tidy ({recipe.key})", report=report)


def build_recipe(recipe: BuildRecipe, names: list[str], *, env: dict[str, str], report: Report) -> None:
    """Build the binaries `names` of `recipe` into its cache folder, one after the other."""
    if shutil.which("go", path=env.get("PATH")) is None:
        raise ClusterError(
            f"Go is not installed and {', '.join(names)} are missing: install Go (>= 1.24) so they can be built "
            "once, or put them on PATH or in KUBEBUILDER_ASSETS")
    work, out_dir = build_dir(recipe, env), bin_dir(recipe, env)
    work.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    go_env = _go_env(env)
    flags = ["-trimpath", f"-ldflags={version_ldflags(recipe)}"]
    if recipe.helper:
        _prepare_helper(recipe, work=work, env=go_env, log=log, report=report)
    for name, pkg in recipe.packages:
        if name not in names:
            continue
        cold = float(COLD_ESTIMATE_S.get(name, 120))
        last = _last_duration(name, env)
        seen = f", last build here {_fmt(last)}" if last is not None else ""
        report(f"building {name} {recipe.version} (a cold build takes ~{_fmt(cold)}{seen}; log {log})")
        estimate = last if last is not None and last > 30 else cold
        tmp = out_dir / f".{name}.partial"
        if recipe.helper:
            argv = ["go", "build", *flags, "-o", str(tmp), pkg]
            took = run_go(argv, cwd=work, env=go_env, log=log, label=f"building {name}", report=report,
                          estimate_s=estimate)
        else:
            gobin = work / "gobin"
            argv = ["go", "install", *flags, f"{pkg}@{recipe.version}"]
            took = run_go(argv, cwd=work, env={**go_env, "GOBIN": str(gobin)}, log=log, label=f"building {name}",
                          report=report, estimate_s=estimate)
            shutil.move(str(gobin / name), str(tmp))
        tmp.replace(out_dir / name)
        _record_timing(name, took, env)
        report(f"built {name} in {_fmt(took)}")


def ensure_recipe(recipe: BuildRecipe, *, env: dict[str, str] | None = None, report: Report = print) -> dict[str, Path]:
    """The binaries of one recipe from its cache folder, built under the build lock when missing (add-ons)."""
    env = dict(os.environ) if env is None else env
    wanted = {name: bin_dir(recipe, env) / name for name in recipe.binaries}
    if not all(_executable(path) for path in wanted.values()):
        with file_lock(build_dir(recipe, env).parent / f"{recipe.key}.lock"):
            still = [name for name, path in wanted.items() if not _executable(path)]
            if still:
                build_recipe(recipe, still, env=env, report=report)
    return wanted


def ensure_binaries(*, env: dict[str, str] | None = None, report: Report = print) -> dict[str, Binary]:
    """Every binary the cluster runs, building what is missing. Keys: binary names."""
    env = dict(os.environ) if env is None else env
    found: dict[str, Binary] = {}
    for recipe in RECIPES:
        missing = []
        for name in recipe.binaries:
            binary = find_binary(name, recipe, env)
            if binary is None:
                missing.append(name)
            else:
                found[name] = binary
        if not missing:
            continue
        with file_lock(build_dir(recipe, env).parent / f"{recipe.key}.lock"):
            still = [n for n in missing if not _executable(bin_dir(recipe, env) / n)]
            if still:
                build_recipe(recipe, still, env=env, report=report)
        for name in missing:
            found[name] = Binary(name, bin_dir(recipe, env) / name, "built")
    return found
