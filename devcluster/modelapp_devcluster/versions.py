"""Pinned versions of the binaries and where their builds are cached.

The cache lives outside the repository, keyed by version, so a rebuild happens only when a
version here changes: `${XDG_CACHE_HOME:-~/.cache}/modelapp/bin/<name>-<version>/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
# The etcd that Kubernetes 1.34 is released and tested with (its go.mod requires the v3.6.4 client).
ETCD_VERSION = "v3.6.4"
KWOK_VERSION = "v0.8.0"


@dataclass(frozen=True)
class BuildRecipe:
    """How one group of binaries is built from the Go module proxy.

    `module`@`version` is required by a helper module; its local-path `replace` directives are
    turned into versioned ones (`replace_version`). `packages` maps each binary name to its Go
    package. `helper` is False when `go install module@version` works as is (kwok).
    """

    key: str
    module: str
    version: str
    replace_version: str
    packages: tuple[tuple[str, str], ...]
    helper: bool = True
    forks: bool = False
    """Repeat the main module's module-to-module `replace` and its `exclude` lines (Traefik's forks)."""
    stamps: tuple[str, ...] = ()
    """Extra `-X pkg.var=value` link flags (a version an add-on reports)."""

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.packages)


def go_binary(name: str, module: str, version: str, package: str = "", *, helper: bool = False, forks: bool = False,
              stamps: tuple[str, ...] = ()) -> BuildRecipe:  # fmt: skip
    """The recipe of one binary `name` (package `package`, default the module's root) from `module`@`version`,
    cached under `<name>-<version>`; its `replace` directives, if any, pinned to the same version."""
    return BuildRecipe(key=f"{name}-{version}", module=module, version=version, replace_version=version,
                       packages=((name, package or module),), helper=helper, forks=forks, stamps=stamps)  # fmt: skip


def staging_version(kubernetes_version: str) -> str:
    """k8s.io/kubernetes v1.X.Y publishes its staging modules (k8s.io/api, ...) as v0.X.Y."""
    major, rest = kubernetes_version.lstrip("v").split(".", 1)
    if major != "1":
        raise ValueError(f"unexpected Kubernetes version {kubernetes_version!r}")
    return f"v0.{rest}"


KUBERNETES = BuildRecipe(
    key=f"k8s-{KUBERNETES_VERSION}",
    module="k8s.io/kubernetes",
    version=KUBERNETES_VERSION,
    replace_version=staging_version(KUBERNETES_VERSION),
    packages=(
        ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
        ("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"),
        ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
    ),
)
# One binary each: name, module, version, package (default the module's root); `helper` when its go.mod has
# local `replace` directives that a helper module must pin (etcd); without, `go install module@version` builds it.
ETCD = go_binary("etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION, helper=True)
KWOK = go_binary("kwok", "sigs.k8s.io/kwok", KWOK_VERSION, "sigs.k8s.io/kwok/cmd/kwok")
RECIPES = (ETCD, KUBERNETES, KWOK)

# Add-ons the real node runs as pods (`addons`), built only when a test or `modelapp-cluster addons` asks.
# Traefik v3.6: pure Go (ingress-nginx needs nginx, Contour needs Envoy), an Ingress controller in one
# binary; v3.7 replaces a module with a local folder its release does not ship, so it cannot be built.
TRAEFIK_VERSION = "v3.6.12"
METRICS_SERVER_VERSION = "v0.8.0"
TRAEFIK = go_binary("traefik", "github.com/traefik/traefik/v3", TRAEFIK_VERSION,
                    "github.com/traefik/traefik/v3/cmd/traefik", helper=True, forks=True,
                    stamps=(f"github.com/traefik/traefik/v3/pkg/version.Version={TRAEFIK_VERSION}",))  # fmt: skip
METRICS_SERVER = go_binary("metrics-server", "sigs.k8s.io/metrics-server", METRICS_SERVER_VERSION,
                           "sigs.k8s.io/metrics-server/cmd/metrics-server")  # its go.mod has no replace

# What a binary found on PATH or in KUBEBUILDER_ASSETS must report to be used (`<bin> --version`).
EXPECTED_VERSION_PREFIX = {
    "etcd": "3.6.",
    "kube-apiserver": "v1.34.",
    "kube-controller-manager": "v1.34.",
    "kube-scheduler": "v1.34.",
    "kwok": "v0.8.",
}


def cache_root(env: dict[str, str] | None = None) -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/modelapp`."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelapp"


def bin_dir(recipe: BuildRecipe, env: dict[str, str] | None = None) -> Path:
    """Where the built binaries of `recipe` live."""
    return cache_root(env) / "bin" / recipe.key


def build_dir(recipe: BuildRecipe, env: dict[str, str] | None = None) -> Path:
    """Where the helper Go module of `recipe` and its build logs live."""
    return cache_root(env) / "build" / recipe.key
