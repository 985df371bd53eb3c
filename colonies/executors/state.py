"""An executor's identity kept across restarts, in a state directory.

`colonies executor run` without a key uses the directory `--state-dir` (COLONIES_EXECUTOR_STATE_DIR),
by default `$XDG_STATE_HOME/colonies/executors/<colony>/<name>` (`~/.local/state/...` without
XDG_STATE_HOME). It holds:

    prvkey          the executor's private key (mode 0600; the directory is 0700)
    executor.json   colony, name, type and id, for people and for `--state-dir` without `--name`
    lock            held (flock) while an executor runs with this identity

The first run (with the colony owner's key) makes the key and registers it; later runs reuse it, with
or without the owner's key. Two executors cannot run with one identity at once: the second is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Self

from colonies.errors import StateError
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.secure_files import FILE_MODE, private_dir, write_private

KEY_FILE, INFO_FILE, LOCK_FILE = "prvkey", "executor.json", "lock"



def _safe(part: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", part)
    return "_" if cleaned in ("", ".", "..") else cleaned


def default_name(executortype: str) -> str:
    """A name that stays the same across restarts on this host."""
    return f"{executortype}-{socket.gethostname()}"


def default_dir(colony: str, name: str, environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg else Path(environ.get("HOME", str(Path.home()))) / ".local" / "state"
    return base / "colonies" / "executors" / _safe(colony) / _safe(name)


def stored_name(path: Path) -> str:
    """The executor name recorded in a state directory, or ""."""
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except (OSError, ValueError):
        return ""
    return str(info.get("name", "")) if isinstance(info, dict) else ""


class Identity:
    """The key in a state directory, locked for as long as this object is held open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[Any] | None = None
        self.created = False

    def __enter__(self) -> Self:
        private_dir(self.path)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        lock = os.fdopen(fd, "r+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock.read().strip()
            lock.close()
            raise StateError(f"another executor (pid {holder or '?'}) runs with the identity in {self.path}; "
                             "give this one its own --name or --state-dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def key(self, create: bool) -> str:
        """The stored key; with `create`, a new one is made and stored when there is none ("" if not)."""
        try:
            key = (self.path / KEY_FILE).read_text().strip()
        except FileNotFoundError:
            key = ""
        if key or not create:
            return key
        key = generate_prvkey()
        write_private(self.path / KEY_FILE, key + "\n")
        self.created = True
        return key

    def record(self, colony: str, name: str, executortype: str, prvkey: str) -> None:
        info = {"colony": colony, "name": name, "executortype": executortype, "executorid": id_of(prvkey)}
        write_private(self.path / INFO_FILE, json.dumps(info, indent=2) + "\n")
