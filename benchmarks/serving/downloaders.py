"""The two downloaders we compare `modelapp-serving fetch` with, run as their own processes.

`plain`: azure-storage-blob's own parallel download, `download_blob(max_concurrency=4).readinto(f)`,
in our virtualenv. `kserve`: kserve-storage's `Storage.download(uri, out_dir)`, the call KServe's
storage initializer makes, in KServe's virtualenv. Neither verifies a digest; ours does (sha256
of every byte), so its figures include that work. Kept free of our own package on purpose: the
kserve run imports nothing but the standard library and kserve-storage.

    python downloaders.py plain  CONTAINER BLOB DEST_FILE     (AZURE_STORAGE_CONNECTION_STRING)
    python downloaders.py kserve URI DEST_DIR                 (AZURE_STORAGE_ACCESS_KEY)
"""

from __future__ import annotations

import os
import sys


def plain(container: str, blob: str, dest: str) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])
    with open(dest, "wb") as sink:
        service.get_blob_client(container, blob).download_blob(max_concurrency=4).readinto(sink)


def kserve(uri: str, dest: str) -> None:
    from kserve_storage import Storage

    Storage.download(uri, dest)


if __name__ == "__main__":
    if sys.argv[1] == "plain":
        plain(*sys.argv[2:5])
    else:
        kserve(*sys.argv[2:4])
