"""Where ColonyFS bytes live: one small interface, two stores, picked from the environment.

* `S3Store` (colonies/fs/s3.py): any S3 API (AWS, MinIO, Ceph RGW), configured with the original's
  variables, read exactly as pycolonies reads them, so both share one bucket and one ref shape:
  `AWS_S3_ENDPOINT` (host:port, no scheme), `AWS_S3_ACCESSKEY`, `AWS_S3_SECRETKEY`, `AWS_S3_REGION`,
  `AWS_S3_BUCKET`, `AWS_S3_TLS` (true/1/yes: https), `AWS_S3_SKIPVERIFY` (true/1/yes: no cert check).
* `LocalStore` (colonies/fs/local.py): a directory (`COLONIES_FS_DIR`), the `colonies dev` default.

Every transfer streams with a bounded buffer and returns the SHA-256 hex of the bytes it moved.
`progress`, when given, is called with the number of bytes moved since its previous call.
The server only ever sees a `Ref`; secret keys never go into one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from colonies.errors import ConfigError
from colonies.model import Ref

Progress = Callable[[int], None]

CHUNK = 1 << 20  # bytes per read/write when streaming (the buffer bound of a transfer)
TRUE = ("true", "1", "yes")  # what pycolonies takes as "on" for AWS_S3_TLS / AWS_S3_SKIPVERIFY


class ObjectStore(Protocol):
    def put(self, key: str, src: Path, progress: Progress | None = None) -> str:
        """Stream `src` up under `key` (multipart for big files); returns the SHA-256 hex of its bytes."""
        ...

    def get(self, key: str, dst: Path, progress: Progress | None = None) -> str:
        """Stream the object down into `dst` (the caller passes a temp path and renames it);
        returns the SHA-256 hex of the bytes written. No object: `ObjectNotFound`."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        ...

    def ref(self, key: str) -> Ref:
        """The wire ref for an object this store holds under `key`."""
        ...


def new_key() -> str:
    """A fresh object key: a random 64-hex id, as pycolonies names its objects."""
    return secrets.token_hex(32)


def is_on(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUE


def store_from_env(environ: Mapping[str, str] | None = None) -> ObjectStore:
    """AWS_S3_ENDPOINT set: an S3Store; else COLONIES_FS_DIR set: a LocalStore; else a ConfigError."""
    env = os.environ if environ is None else environ
    if env.get("AWS_S3_ENDPOINT"):
        from colonies.fs.s3 import S3Store

        return S3Store.from_env(env)
    if env.get("COLONIES_FS_DIR"):
        from colonies.fs.local import LocalStore

        return LocalStore(Path(env["COLONIES_FS_DIR"]))
    raise ConfigError(
        "no object store configured for ColonyFS: set AWS_S3_ENDPOINT, AWS_S3_BUCKET, AWS_S3_ACCESSKEY, "
        "AWS_S3_SECRETKEY (and AWS_S3_REGION, AWS_S3_TLS, AWS_S3_SKIPVERIFY) for S3, "
        "or COLONIES_FS_DIR for a local directory"
    )


def store_for_ref(ref: Ref, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """The store that can read `ref`: "s3" at the ref's server:port/tls/region/bucket with the keys from
    the environment; "local" at the ref's directory (s3object.bucket), which must be a ColonyFS store."""
    env = os.environ if environ is None else environ
    if ref.protocol == "s3":
        from colonies.fs.s3 import S3Store

        return S3Store.for_ref(ref, env)
    if ref.protocol == "local":
        from colonies.fs.local import LocalStore

        return LocalStore.existing(Path(ref.s3object.bucket))
    raise ConfigError(f"unknown object store protocol {ref.protocol!r} in a file ref (known: s3, local)")
