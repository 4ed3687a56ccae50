"""Pushes a hand-made OCI image (`node_image.OciImage`) to a registry over the distribution API.

Why not `docker push`: the node's own images (pause, the test web server) are written in
Python, and the node must not depend on a Docker daemon. Only what a plain-HTTP registry on
127.0.0.1 needs is implemented: monolithic blob uploads (skipped when the blob exists) and a
manifest PUT by tag. Errors raise `ClusterError` naming the step and the HTTP status.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from modelapp_devcluster.errors import ClusterError
from modelapp_devcluster.node_image import OCI_MANIFEST, OciImage

TIMEOUT = 30.0


def _request(method: str, url: str, *, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ClusterError(f"refusing to push to {url}: only a registry on this machine is allowed")
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            return response.status, dict(response.headers.items())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items())


def push_image(registry: str, repository: str, tag: str, image: OciImage) -> str:
    """Push `image` as `registry/repository:tag` (registry like `127.0.0.1:5001`); return the reference."""
    base = f"http://{registry}/v2/{repository}"
    for digest, blob in image.blobs.items():
        status, _ = _request("HEAD", f"{base}/blobs/{digest}")
        if status == 200:
            continue
        status, headers = _request("POST", f"{base}/blobs/uploads/")
        location = headers.get("Location", "")
        if status != 202 or not location:
            raise ClusterError(f"push {repository}: starting a blob upload answered HTTP {status}")
        upload = urllib.parse.urljoin(f"http://{registry}/", location)
        joiner = "&" if "?" in upload else "?"
        status, _ = _request("PUT", f"{upload}{joiner}digest={urllib.parse.quote(digest)}", data=blob,
                             headers={"Content-Type": "application/octet-stream"})
        if status != 201:
            raise ClusterError(f"push {repository}: uploading blob {digest[:19]} answered HTTP {status}")
    status, _ = _request("PUT", f"{base}/manifests/{tag}", data=image.manifest,
                         headers={"Content-Type": OCI_MANIFEST})
    if status != 201:
        raise ClusterError(f"push {repository}:{tag}: the manifest PUT answered HTTP {status}")
    return f"{registry}/{repository}:{tag}"
