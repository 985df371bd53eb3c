"""The Python half of the pipeline: an executor of type `py` with two functions.

Run it with the CLI, which fills in the colony, key and server from COLONIES_* variables:

    colonies executor run examples/pipeline/steps.py --colony-prvkey $COLONIES_COLONY_PRVKEY
"""

import logging

from colonies import Executor

ex = Executor(executortype="py", slots=2)
log = logging.getLogger("pipeline")


@ex.function
def generate(count: int, seed: int = 7) -> str:
    """`count` pseudo-random numbers, one per line (a tiny linear congruential generator)."""
    numbers, x = [], int(seed)
    for _ in range(int(count)):
        x = (1103515245 * x + 12345) % 2**31
        numbers.append(x % 1000)
    print(f"generated {len(numbers)} numbers")  # goes to the process log
    return "\n".join(str(n) for n in numbers)


@ex.function
def summarize(*lines: str) -> list[int]:
    """[count, min, max, median] of the sorted numbers it receives from the `sort` step."""
    values = [int(v) for v in lines if str(v).strip()]
    log.warning("summarizing %d values", len(values))  # logging goes to the process log too
    return [len(values), values[0], values[-1], values[len(values) // 2]]
