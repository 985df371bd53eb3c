"""Submit some real work to the colony, wait for all of it, and print who did what (our SDK)."""

from __future__ import annotations

import os
import sys
import time

from colonies import Client, func_spec
from colonies.model import Process

COLONY, USER = os.environ["COLONIES_COLONY_NAME"], os.environ["COLONIES_PRVKEY"]
JOBS: list[tuple[str, list[object]]] = [("count_primes", [n]) for n in (100_000, 200_000, 400_000, 800_000)]
JOBS += [("digest", [word]) for word in ("colonies", "pods", "containers", "executors")]
JOBS += [("whoami", [])]


def wait(c: Client, processid: str, timeout: float) -> Process:
    """The process once it has ended (SUCCESS 2, FAILED 3), or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        p = c.get_process(processid)
        if p.state in (2, 3) or time.monotonic() > deadline:
            return p
        time.sleep(0.2)


def main() -> int:
    with Client("127.0.0.1", int(os.environ["COLONIES_SERVER_PORT"]), prvkey=USER) as c:
        started = time.monotonic()
        submitted = [(fn, args, c.submit(func_spec(fn, COLONY, "mywork", args=args, maxexectime=60,
                                                   maxretries=3)))
                     for fn, args in JOBS]
        names = {e.executorid: e.executorname for e in c.get_executors(COLONY)}
        failed = 0
        print(f"{'function':<14}{'args':<12}{'state':<9}{'output':<44}executor")
        for fn, args, p in submitted:
            done = wait(c, p.processid, 60)
            state = {2: "SUCCESS", 3: "FAILED"}.get(done.state, str(done.state))
            failed += done.state != 2
            output = done.output or []
            shown = output[0] if len(output) == 1 else output
            print(f"{fn:<14}{(args or [''])[0]!s:<12}{state:<9}{shown!s:<44}"
                  f"{names.get(done.assignedexecutorid, done.assignedexecutorid[:12])}")
        print(f"{len(submitted)} processes in {time.monotonic() - started:.1f}s, {failed} failed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
