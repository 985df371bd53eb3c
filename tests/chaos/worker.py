"""A chaos-suite executor process: `python -m tests.chaos.worker` with CHAOS_* in the environment.
It serves `work` with our Executor helper until it is killed (SIGKILL) or stopped (SIGTERM)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from colonies.executor import Executor


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    env = os.environ
    ex = Executor(colony=env["CHAOS_COLONY"], prvkey=env["CHAOS_PRVKEY"], name=env["CHAOS_NAME"],
                  executortype=env["CHAOS_TYPE"], host="127.0.0.1", port=int(env["CHAOS_PORT"]),
                  slots=int(env.get("CHAOS_SLOTS", "4")), poll_timeout=5, capture_output=False)
    delay = float(env.get("CHAOS_WORK_S", "0.005"))

    @ex.function
    def work(*args: Any) -> list[Any]:
        time.sleep(delay)
        return [len(args)]

    ex.run()


if __name__ == "__main__":
    main()
