"""Files that hold secrets (private keys, env files with keys, the SQLite database): created owner-only
from the first byte, so no other local user can read them in a window between create and chmod.

* `private_dir(path)`: a directory made 0700 (an existing one loses its group and other bits).
* `write_private(path, text)`: written to a fresh 0600 file in the same directory, then renamed over
  `path`; a reader sees the old file or the new one, never a partial or a wider-mode one.
* `create_private(path)`: an empty 0600 file if none exists yet (SQLite then opens it, and makes its
  -wal and -shm files with the same mode as the database file).

Modes are passed to the creating call itself (the umask can only narrow them), never set afterwards.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """`path` as a directory only its owner may enter (parents are made with the default mode)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(p, DIR_MODE)
    except FileExistsError:
        if not p.is_dir():
            raise
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            p.chmod(mode & ~0o077)
    return p


def write_private(path: str | Path, text: str) -> None:
    """Replace `path` atomically with `text`, as a file only its owner may read or write."""
    p = Path(path)
    # mkstemp: O_CREAT | O_EXCL with mode 0600 in the one call that creates the file
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def create_private(path: str | Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (an existing file keeps its mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
