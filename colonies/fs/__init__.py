"""ColonyFS on the client side: files and snapshots of a colony, their bytes in an object store.

    from colonies.fs import FileSystem
    fs = FileSystem(client, "mycolony")          # store from AWS_S3_* or COLONIES_FS_DIR
    fs.upload("model.bin", "/models")
    fs.sync("data/", "/data", keeplocal=True)

`files` (FileSystem, AsyncFileSystem), `sync` (the sync rules and plan), `store` (the store interface,
S3 and local-directory stores). Imports stay light: a store's client library loads on first use.
"""

from __future__ import annotations

from colonies.errors import ChecksumError, FsError, ObjectNotFound
from colonies.fs.files import AsyncFileSystem, FileSystem
from colonies.fs.store import ObjectStore, store_for_ref, store_from_env
from colonies.fs.sync import LocalFile, RemoteFile, SyncPlan, normalise_label

__all__ = [
    "AsyncFileSystem",
    "ChecksumError",
    "FileSystem",
    "FsError",
    "LocalFile",
    "ObjectNotFound",
    "ObjectStore",
    "RemoteFile",
    "SyncPlan",
    "normalise_label",
    "store_for_ref",
    "store_from_env",
]
