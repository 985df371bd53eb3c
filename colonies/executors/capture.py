"""Per-process output capture: what a running function prints or logs goes to its process' log.

The capture follows the process through a context variable, so concurrent slots keep their output
apart (a sync function's thread runs in a copy of its task's context); threads the function starts
itself are not followed. Output is still echoed to the executor's own terminal.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
from typing import TextIO


class Sink:
    """Lines written while one process runs; taken in batches for the process log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._partial = ""

    def write(self, text: str) -> None:
        with self._lock:
            self._partial += text
            if "\n" in self._partial:
                *done, self._partial = self._partial.split("\n")
                self._lines.extend(done)

    def take(self, final: bool = False) -> list[str]:
        with self._lock:
            out, self._lines = self._lines, []
            if final and self._partial:
                out.append(self._partial)
                self._partial = ""
            return out


SINK: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("colonies_process_output", default=None)


class _Tee(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: copies writes to the running process' sink, if any."""

    def __init__(self, orig: TextIO) -> None:
        self.orig = orig

    def write(self, s: str) -> int:
        sink = SINK.get()
        if sink is not None:
            sink.write(s)
        return self.orig.write(s)

    def flush(self) -> None:
        self.orig.flush()

    def isatty(self) -> bool:
        return self.orig.isatty()

    def fileno(self) -> int:
        return self.orig.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.orig, "encoding", "utf-8"))


class _LogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = SINK.get()
        if sink is not None and not record.name.startswith(("colonies.", "httpx", "httpcore")):
            try:
                sink.write(self.format(record) + "\n")
            except Exception:  # noqa: BLE001 - logging must never break the function
                self.handleError(record)


_capture_lock = threading.Lock()
_captured = False


def install_capture() -> None:
    """Route print/logging output of running processes to their sinks (idempotent)."""
    global _captured
    with _capture_lock:
        if _captured:
            return
        _captured = True
        if not isinstance(sys.stdout, _Tee):
            sys.stdout = _Tee(sys.stdout)
        if not isinstance(sys.stderr, _Tee):
            sys.stderr = _Tee(sys.stderr)
        handler = _LogHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
