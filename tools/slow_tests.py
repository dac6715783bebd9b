"""Chooses the tests of the slow tier from a timed run of the whole suite.

    python -m pytest -q -n 2 --durations=0 > durations.txt
    python tools/slow_tests.py durations.txt --budget 300

reads every `--durations` line (setup, call and teardown seconds of each
test, summed per test), marks the slowest tests `slow` until the others
together take at most `--budget` seconds of worker time, and writes their
ids to `tests/slow_tests.txt`, which `tests/conftest.py` reads: `pytest -m
"not slow"` is the fast tier, `pytest -m slow` the rest. Tests marked
`slow` in their file stay slow whatever their time.
"""

import argparse
import collections
import os
import re
import sys

LINE = re.compile(r"^\s*([0-9.]+)s\s+(setup|call|teardown)\s+(\S+)")
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "slow_tests.txt")
HEADER = (
    "# The slow tier: tests whose time pushes the rest over the fast tier's\n"
    "# budget, chosen by tools/slow_tests.py from a timed run of the suite.\n"
    "# tests/conftest.py marks them `slow`; `-m 'not slow'` skips them.\n"
)


def seconds_per_test(lines):
    """`{test id: seconds}`, setup, call and teardown summed."""
    total = collections.defaultdict(float)
    for line in lines:
        match = LINE.match(line)
        if match:
            total[match.group(3)] += float(match.group(1))
    return dict(total)


def choose(times, budget):
    """The slowest tests, fewest first, until the rest fit in `budget`."""
    ordered = sorted(times.items(), key=lambda item: (-item[1], item[0]))
    rest = sum(times.values())
    slow = []
    for test, seconds in ordered:
        if rest <= budget:
            break
        slow.append(test)
        rest -= seconds
    return sorted(slow), rest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("durations")
    parser.add_argument("--budget", type=float, default=300.0)
    args = parser.parse_args(argv)
    with open(args.durations) as f:
        times = seconds_per_test(f)
    if not times:
        sys.exit(f"No --durations lines in {args.durations}.")
    slow, rest = choose(times, args.budget)
    with open(OUT, "w") as f:
        f.write(HEADER + "".join(test + "\n" for test in slow))
    print(
        f"{len(slow)} of {len(times)} tests are slow "
        f"({sum(times.values()) - rest:.0f} s); the fast tier has "
        f"{len(times) - len(slow)} tests ({rest:.0f} s of worker time)."
    )


if __name__ == "__main__":
    main()
