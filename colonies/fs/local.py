"""A local directory as an object store: the `colonies dev` default, shared by every executor on the machine.

Objects live at root/<key>. A put writes a fresh 0600 temp file in the same directory and renames it
over the key, so a reader sees the whole old object or the whole new one, never a partial one; a crash
mid-put leaves at most a `.tmp` file, never an object. Directories are 0700. A marker file (`.colonyfs`)
tells a store apart from any other directory: a ref from the server can only point at a real store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import IO

from colonies.errors import ConfigError, FsError, ObjectNotFound
from colonies.fs.store import CHUNK, Progress
from colonies.model import Ref, S3Object
from colonies.secure_files import create_private, private_dir

MARKER = ".colonyfs"


def check_key(key: str) -> list[str]:
    """The path segments of an object key; refuses anything that could leave the store's directory."""
    parts = key.split("/")
    if not key or "\\" in key or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise FsError(f"invalid object key {key!r}")
    if parts[0] == MARKER or any(p.startswith(".tmp-") for p in parts):
        raise FsError(f"invalid object key {key!r} (reserved name)")
    return parts


class LocalStore:
    """Objects in a directory; see the module docstring."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()
        private_dir(self.root)
        create_private(self.root / MARKER)

    @classmethod
    def existing(cls, root: Path | str) -> LocalStore:
        """The store at `root`, which must already be one (has the marker); never creates anything."""
        path = Path(root)
        if not path.is_absolute() or not (path / MARKER).is_file():
            raise ConfigError(f"{str(root)!r} is not a ColonyFS local store on this machine")
        return cls(path)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def put(self, key: str, src: Path, progress: Progress | None = None) -> str:
        dst = self.path(key)
        if dst.parent != self.root:
            for parent in reversed(dst.relative_to(self.root).parents[:-1]):
                private_dir(self.root / parent)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".tmp-")  # 0600 from creation
        try:
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                digest = copy_hashing(fin, fout, progress)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return digest

    def get(self, key: str, dst: Path, progress: Progress | None = None) -> str:
        src = self.path(key)
        try:
            fin = src.open("rb")  # closed by the with below; only the open may say "missing"
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.root}") from None
        with fin, open(dst, "wb") as fout:
            return copy_hashing(fin, fout, progress)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(key))

    def ref(self, key: str) -> Ref:
        check_key(key)
        return Ref(protocol="local", s3object=S3Object(bucket=str(self.root), object=key))


def copy_hashing(fin: io.BufferedIOBase, fout: IO[bytes], progress: Progress | None) -> str:
    """Copy one open binary file to another CHUNK bytes at a time; returns the SHA-256 hex."""
    read = fin.readinto
    write = fout.write
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := read(buf):
        chunk = view[:n]
        digest.update(chunk)
        write(chunk)
        if progress is not None:
            progress(n)
    return digest.hexdigest()
