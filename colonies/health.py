"""A file an executor touches while its loop is alive, for container health checks and liveness probes.

The kit (`Executor(health_file=...)`, `colonies executor run --health-file`, COLONIES_EXECUTOR_HEALTH_FILE)
touches it once it has announced itself to the server, after every answer to a long-poll for work (a
process, or none within the poll timeout), and every poll timeout while processes run (all slots may be
busy). Its age stays under about the poll timeout while the executor works; it goes stale when the server
cannot be reached or the event loop is stuck.

    python -m colonies.health [--max-age 60] [FILE]

exits 0 while FILE (default $COLONIES_EXECUTOR_HEALTH_FILE) is younger than --max-age seconds, 1 if not,
with the reason on stderr: the executor image's HEALTHCHECK.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from colonies.clock import NS, Clock, SystemClock

log = logging.getLogger("colonies.executor")
ENV = "COLONIES_EXECUTOR_HEALTH_FILE"


class HealthFile:
    """The file; `touch()` never raises (a full or read-only disk is logged once, not fatal)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._warned = False

    def touch(self) -> None:
        try:
            self.path.touch(mode=0o644, exist_ok=True)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot touch the health file %s: %s", self.path, exc)
                self._warned = True


def age(path: str | Path, clock: Clock | None = None) -> float | None:
    """Seconds since `path` was last touched; None when it does not exist."""
    try:
        mtime_ns = Path(path).stat().st_mtime_ns
    except FileNotFoundError:
        return None
    return ((clock or SystemClock()).now_ns() - mtime_ns) / NS


def check(path: str | Path, max_age: float, clock: Clock | None = None) -> str:
    """'' when the executor is alive, else why not."""
    seconds = age(path, clock)
    if seconds is None:
        return f"{path} does not exist: the executor has not announced itself yet"
    if seconds > max_age:
        return f"{path} was last touched {seconds:.0f}s ago (more than {max_age:g}s)"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colonies.health", description="Exit 0 while the executor touches its health file.")
    parser.add_argument("file", nargs="?", default=os.environ.get(ENV, ""), help=f"default ${ENV}")
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    if not args.file:
        print(f"no health file: pass one or set {ENV}", file=sys.stderr)
        return 1
    reason = check(args.file, args.max_age)
    if reason:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
