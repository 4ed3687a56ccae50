"""OCI images written by hand, for the real node's sandbox ("pause") image and test workloads.

Why: no public registry is reachable, so the pause image containerd needs for every pod, and
the small images the node's tests run, are made here from static binaries compiled on this
machine. An image is one layer holding a few files; this module lays it out as an OCI image
layout tarball (what `ctr images import` reads) or as blobs + manifest (what a registry
accepts by the distribution API).

Everything here is pure: bytes in, bytes out, deterministic (fixed mtimes and owners), so the
same binary always gives the same image digest and a re-import is a no-op.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class ImageFile:
    """One file of the image's single layer: its absolute path in the image, content and mode."""

    path: str
    content: bytes
    mode: int = 0o755


@dataclass(frozen=True)
class OciImage:
    """A built image: every blob by digest, and the manifest's own bytes and digest."""

    blobs: Mapping[str, bytes]
    manifest: bytes
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]


def digest_of(data: bytes) -> str:
    """The OCI content digest (`sha256:<hex>`) of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(files: Sequence[ImageFile]) -> bytes:
    """An uncompressed, reproducible layer tar: parent directories first, root-owned, mtime 0."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for item in sorted(files, key=lambda f: f.path):
            parts = item.path.strip("/").split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in seen:
                    seen.add(folder)
                    tar.addfile(_tar_info(folder, tarfile.DIRTYPE, 0o755, 0))
            info = _tar_info("/".join(parts), tarfile.REGTYPE, item.mode, len(item.content))
            tar.addfile(info, io.BytesIO(item.content))
    return buffer.getvalue()


def _tar_info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_image(
    files: Sequence[ImageFile],
    *,
    entrypoint: Sequence[str],
    cmd: Sequence[str] = (),
    user: str = "",
    env: Sequence[str] = ("PATH=/usr/local/bin:/usr/bin:/bin",),
    exposed_ports: Sequence[int] = (),
) -> OciImage:
    """A single-layer linux/amd64 image from `files`, with the given process settings.

    `user` is `uid[:gid]` (numeric, as there is no /etc/passwd in such an image) or empty for root.
    """
    raw = layer_tar(files)
    layer = gzip.compress(raw, mtime=0)
    container_config: dict[str, object] = {"Entrypoint": list(entrypoint), "Env": list(env)}
    if cmd:
        container_config["Cmd"] = list(cmd)
    if user:
        container_config["User"] = user
    if exposed_ports:
        container_config["ExposedPorts"] = {f"{port}/tcp": {} for port in exposed_ports}
    config = _canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [digest_of(raw)]},
            "history": [{"created_by": "modelapp_devcluster.node_image"}],
        }
    )
    manifest = _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": digest_of(layer), "size": len(layer)}],
        }
    )
    return OciImage(
        blobs={digest_of(config): config, digest_of(layer): layer},
        manifest=manifest,
        manifest_digest=digest_of(manifest),
        config_digest=digest_of(config),
        layer_digests=(digest_of(layer),),
    )


def oci_layout_tar(image: OciImage, *, ref: str) -> bytes:
    """The image as an OCI image layout tarball, named `ref` for `ctr images import`.

    containerd names the imported image from the `io.containerd.image.name` annotation;
    other tools read `org.opencontainers.image.ref.name` (the tag), so both are set.
    """
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": image.manifest_digest,
                    "size": len(image.manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    )
    entries: dict[str, bytes] = {
        "oci-layout": _canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        _blob_path(image.manifest_digest): image.manifest,
    }
    entries.update({_blob_path(digest): blob for digest, blob in image.blobs.items()})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in ("blobs", "blobs/sha256"):
            tar.addfile(_tar_info(folder, tarfile.DIRTYPE, 0o755, 0))
        for name in sorted(entries):
            tar.addfile(_tar_info(name, tarfile.REGTYPE, 0o644, len(entries[name])), io.BytesIO(entries[name]))
    return buffer.getvalue()


def _blob_path(digest: str) -> str:
    algorithm, hexdigest = digest.split(":", 1)
    return f"blobs/{algorithm}/{hexdigest}"
