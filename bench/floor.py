"""The Python binding's floor, measured precisely: N sequential
``await kl.validate("ak_x")`` on ``sqlite::memory:``. The key is malformed, so the
core answers without the store: what is left is the cost of the binding itself.

Usage (from the repository root, with the package installed, e.g. the python that
scripts/python-env.sh prints):

    python bench/floor.py wall [CALLS] [ROUNDS]
        µs per call, wall clock: ROUNDS rounds (default 7) of CALLS calls (default
        20000) after a warm-up; prints the best and the median round.

    python bench/floor.py callgrind [CALLS]
        Instructions per call under valgrind's callgrind (deterministic): runs this
        script twice under callgrind, with CALLS (default 2000) and 2*CALLS calls,
        and divides the difference by CALLS, so start-up and connect cost cancel
        out. Counts every thread (tokio, delivery thread included) and splits the
        per-call instructions by object file (the native module, libpython, libc...).

    python bench/floor.py run CALLS
        Just CALLS calls, untimed (what the callgrind mode runs).
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

WARMUP = 2000


async def calls(n: int, timed_rounds: int = 0) -> list[float]:
    import keyleash

    kl = await keyleash.KeyLeash.connect("sqlite::memory:")
    for _ in range(WARMUP if timed_rounds else 0):
        await kl.validate("ak_x")
    rounds: list[float] = []
    for _ in range(max(timed_rounds, 1)):
        began = time.perf_counter_ns()
        for _ in range(n):
            v = await kl.validate("ak_x")
        elapsed = time.perf_counter_ns() - began
        assert not v.valid and v.reason == "invalid", v
        rounds.append(elapsed / n / 1000)
    await kl.close()
    return rounds


def wall(n: int, rounds: int) -> None:
    r = asyncio.run(calls(n, rounds))
    print(
        f"floor wall: {n} sequential validate('ak_x') x {rounds} rounds: "
        f"best {min(r):.2f} µs/call, median {statistics.median(r):.2f} µs/call "
        f"({1e6 / statistics.median(r):,.0f}/s)"
    )


# Callgrind's output format: `ob=`/`fn=` set the current object and function
# (names compressed as `(id) name` the first time, `(id)` after); a cost line is
# `position cost`; the cost line right after `calls=` is a call's inclusive cost,
# which is not the current function's own.
_NAME = re.compile(r"^(c?ob)=\((\d+)\)(?: (.*))?$")


def self_cost_by_object(path: str) -> dict[str, int]:
    names: dict[str, str] = {}
    costs: collections.Counter[str] = collections.Counter()
    current = "?"
    skip_next = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _NAME.match(line)
            if m:
                kind, ident, name = m.groups()
                if name is not None:
                    names[ident] = name
                if kind == "ob":
                    current = names.get(ident, ident)
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if skip_next:
                    skip_next = False
                elif len(parts) >= 2:
                    costs[current] += int(parts[1])
    return dict(costs)


def callgrind_run(n: int, out_dir: str) -> dict[str, int]:
    out = os.path.join(out_dir, f"callgrind.{n}")
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "run",
            str(n),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # One file per process; threads are summed into it (no --separate-threads).
    return self_cost_by_object(out)


def short(obj: str) -> str:
    base = os.path.basename(obj)
    return "keyleash _native" if base.startswith("_native") else base


def callgrind(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        one = callgrind_run(n, d)
        two = callgrind_run(2 * n, d)
    per: collections.Counter[str] = collections.Counter()
    for obj in set(one) | set(two):
        per[short(obj)] += two.get(obj, 0) - one.get(obj, 0)
    total = sum(per.values())
    print(f"floor callgrind: ({2 * n} - {n} calls) / {n}: {total / n:,.0f} instructions/call")
    for obj, cost in per.most_common():
        if abs(cost) / n >= 50:
            print(f"  {cost / n:>10,.0f}  {100 * cost / total:5.1f}%  {obj}")


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else "wall"
    if mode == "wall":
        wall(int(argv[1]) if len(argv) > 1 else 20000, int(argv[2]) if len(argv) > 2 else 7)
    elif mode == "callgrind":
        callgrind(int(argv[1]) if len(argv) > 1 else 2000)
    elif mode == "run":
        asyncio.run(calls(int(argv[1])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
