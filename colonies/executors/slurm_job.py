"""Runs one Python function inside a Slurm job, for the Slurm executor's [functions.NAME] entries.

    python3 colonies_job.py package.module:function

The Slurm executor copies this file into the job directory and runs it with the cluster's python
(`[slurm] python`), so the cluster needs only Python 3 and the function's module on its path (set
PYTHONPATH in `[slurm] env`), not this project. It reads {"args": [...], "kwargs": {...}} from the JSON
file in $COLONIES_INPUT, calls the function, and writes its return value as JSON to $COLONIES_OUTPUT
(the executor's output convention: a list is the output list, any other value one item). An
exception ends the job with exit status 1 and the traceback on stderr. Standard library only.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any


def call(target: str, payload: dict[str, Any]) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{target!r} is not module:function")
    fn = importlib.import_module(module_name)
    for part in attr.split("."):
        fn = getattr(fn, part)
    return fn(*payload.get("args", []), **payload.get("kwargs", {}))  # type: ignore[operator]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: colonies_job.py module:function", file=sys.stderr)
        return 2
    with open(os.environ["COLONIES_INPUT"], encoding="utf-8") as f:
        payload = json.load(f)
    sys.path.insert(0, os.getcwd())
    try:
        result = call(argv[1], payload)
    except Exception:  # noqa: BLE001 - the job's failure: its traceback goes to the process log
        traceback.print_exc()
        return 1
    out = os.environ["COLONIES_OUTPUT"]
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
