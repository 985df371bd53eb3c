"""Summarise a py-spy `--format raw` file (collapsed stacks): top functions by self and by total samples.

Run: .venv/bin/python bench/pyspy_top.py DIR/assignclose.txt [N]
"""

from __future__ import annotations

import sys
from collections import Counter


def main() -> None:
    path, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            samples += n
            own[frames[-1]] += n
            for fr in set(frames):
                total[fr] += n
    print(f"{samples} samples")
    for title, counter in (("self", own), ("total (inclusive)", total)):
        print(f"\n-- top {top} by {title} --")
        for fr, n in counter.most_common(top):
            print(f"{n / samples * 100:5.1f}%  {fr}")


if __name__ == "__main__":
    main()
