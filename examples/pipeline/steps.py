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
    """`count` pseudo-random numbers, one per line (a tiny linear congruential generator).

    The type hints convert what arrives ("20" from the CLI becomes 20) and refuse what does not fit.
    """
    numbers, x = [], seed
    for _ in range(count):
        x = (1103515245 * x + 12345) % 2**31
        numbers.append(x % 1000)
    print(f"generated {len(numbers)} numbers")  # goes to the process log
    return "\n".join(str(n) for n in numbers)


@ex.function(parents="kwargs")
def summarize(sort: list[int]) -> list[int]:
    """[count, min, max, median] of the sorted numbers from the `sort` step: its output lines arrive
    as the keyword argument named by that node, converted to ints by the hint."""
    log.warning("summarizing %d values", len(sort))  # logging goes to the process log too
    return [len(sort), sort[0], sort[-1], sort[len(sort) // 2]]
