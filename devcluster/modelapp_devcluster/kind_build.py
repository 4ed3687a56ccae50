"""Builds what a kind cluster needs that the dev cluster does not already build: kind itself,
kubeadm and kubectl, CoreDNS and crictl, all from the Go module proxy at pinned versions.

Why build: no public registry or release site is reachable, so neither kind's release binary nor its
node image can be downloaded. The Kubernetes programs (kubeadm, kubectl) come from the same
`k8s.io/kubernetes` version as the control plane (`versions.KUBERNETES_VERSION`), through the same
helper-module build (`binaries.build_recipe`, version stamped in), but under a key of their own
(`k8s-<version>-kind`) so a kind build never waits on, nor rewrites the helper module of, a control
plane build running at the same time. kind and CoreDNS have no local `replace` directives:
`go install module@version` builds them as they are.

The versions kubeadm expects (`cmd/kubeadm/app/constants` of Kubernetes 1.34): CoreDNS v1.12.1 and
pause 3.10.1; its etcd (3.6.5-0) is replaced by the etcd the dev cluster already builds
(`versions.ETCD_VERSION`), named in kubeadm's configuration (`kind_node.cluster_config`), so one etcd is
built, not two.

Contract: `ensure_kind_binaries()` returns the paths, building what is missing once, under a file lock;
failures raise `ClusterError` naming the build log.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from modelapp_devcluster import binaries, versions
from modelapp_devcluster.binaries import Report
from modelapp_devcluster.versions import BuildRecipe, go_binary

KIND_VERSION = "v0.30.0"
COREDNS_VERSION = "v1.12.1"
"""kubeadm 1.34's `constants.CoreDNSVersion`."""
PAUSE_VERSION = "3.10.1"
"""kubeadm 1.34's `constants.PauseVersion`: the sandbox image kubelet and containerd are told to use."""

CRICTL_VERSION = "v1.34.0"
KIND = go_binary("kind", "sigs.k8s.io/kind", KIND_VERSION)
COREDNS = go_binary("coredns", "github.com/coredns/coredns", COREDNS_VERSION)
CRICTL = go_binary("crictl", "sigs.k8s.io/cri-tools", CRICTL_VERSION, "sigs.k8s.io/cri-tools/cmd/crictl")
"""crictl in the node: `kind load docker-image` asks it which images a node already holds."""
KUBEADM = dataclasses.replace(
    versions.KUBERNETES,
    key=f"k8s-{versions.KUBERNETES_VERSION}-kind",
    packages=(("kubeadm", "k8s.io/kubernetes/cmd/kubeadm"), ("kubectl", "k8s.io/kubernetes/cmd/kubectl")),
)
RECIPES = (KIND, KUBEADM, COREDNS, CRICTL)
# Cold builds measured on 2 shared cores (kind 84 s, kubeadm + kubectl 231 s, CoreDNS 314 s).
binaries.COLD_ESTIMATE_S.update({"kind": 90, "kubeadm": 120, "kubectl": 120, "coredns": 320, "crictl": 120})


@dataclass(frozen=True)
class KindBinaries:
    kind: Path
    kubeadm: Path
    kubectl: Path
    coredns: Path
    crictl: Path


def _build_env(recipe: BuildRecipe, env: dict[str, str]) -> dict[str, str]:
    """CoreDNS is built static (no cgo): its image holds that one file. The rest keep Go's default, so
    kubeadm and kubectl share the compiled packages of the control plane's build in GOCACHE."""
    return {**env, "CGO_ENABLED": "0"} if recipe is COREDNS else env


def ensure_kind_binaries(*, env: dict[str, str] | None = None, report: Report = print) -> KindBinaries:
    """kind, kubeadm, kubectl and CoreDNS at their pinned versions, built once and cached.

    Each lands in `~/.cache/modelapp/bin/<recipe key>/`; a binary already there is used as is (the key
    holds the version, so a version bump builds anew).
    """
    env = dict(os.environ) if env is None else env
    found: dict[str, Path] = {}
    for recipe in RECIPES:
        target = versions.bin_dir(recipe, env)
        missing = [name for name in recipe.binaries if not os.access(target / name, os.X_OK)]
        if missing:
            with binaries.file_lock(versions.build_dir(recipe, env).parent / f"{recipe.key}.lock"):
                still = [name for name in missing if not os.access(target / name, os.X_OK)]
                if still:
                    binaries.build_recipe(recipe, still, env=_build_env(recipe, env), report=report)
        found.update({name: target / name for name in recipe.binaries})
    return KindBinaries(kind=found["kind"], kubeadm=found["kubeadm"], kubectl=found["kubectl"],
                        coredns=found["coredns"], crictl=found["crictl"])
