"""The Python driver of `make bench`: keyleash through the PyO3 package's asyncio API,
as a FastAPI or asyncio service calls it. Read its rows against the Rust driver's
(what the binding and the event loop add per call) and against the pgbench
references (what keyleash adds over the SQL).

Usage: python bench/python.py CASE URL KEYS_FILE SECONDS CALLERS

    CASE    validate  validate a random key of KEYS_FILE (one raw key a line)
            charge    track_usage 1 cent on a random key
            hot       track_usage 1 cent on the file's first key
            hold      reserve 1 cent on a random key, then settle it at 1 cent: one
                      call is the pair (two transactions)
            floor     validate("ak_x") from one caller, one call after another:
                      malformed, so it never reaches the store (the binding floor)

Prints one JSON line (the same fields as bench/rust and bench/node.mjs): calls in the
timed window, ops/s, p50/p99 latency per call, unexpected results, and the process's
peak RSS (VmHWM) at the end. A short warm-up before the window is untimed. For
bench/run.py's Postgres counters and CPU samples also: calls_all (every call made,
warm-up included), began_epoch_s (when the first call started) and window_epoch_s
(the timed window's start and end), in seconds since the epoch.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import sys
import time

import keyleash


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of sorted numbers (the rule every driver uses)."""
    if not sorted_values:
        return 0
    i = min(max(math.ceil(q * len(sorted_values)), 1), len(sorted_values)) - 1
    return sorted_values[i]


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    with open("/proc/self/status", encoding="ascii") as f:
        m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024 if m else 0.0


class Tally:
    """What all callers saw: latencies (ns) of calls started in the window, errors."""

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self.calls_all = 0  # warm-up included
        self.errors = 0
        self.first_error: str | None = None

    def error(self, what: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = what


async def call(kl: keyleash.KeyLeash, case: str, keys: list[str]) -> str | None:
    """One call of the case: None if the result is the expected one, else a description."""
    if case in ("validate", "cached"):
        v = await kl.validate(random.choice(keys))
        return None if v.valid else f"validate said {v.reason}"
    if case == "floor":
        v = await kl.validate("ak_x")
        return 'validate("ak_x") said valid' if v.valid else None
    if case in ("charge", "hot"):
        key = keys[0] if case == "hot" else random.choice(keys)
        c = await kl.track_usage(key, 1.0)
        return None if c.success else f"charge refused: {c.reason}"
    if case == "hold":
        r = await kl.reserve(random.choice(keys), 1.0)
        if not r.success:
            return f"reserve refused: {r.reason}"
        s = await kl.settle(r.hold_id, 1.0)
        return None if s.success else f"settle refused: {s.reason}"
    raise ValueError(f"unknown case {case}")


async def caller(
    kl: keyleash.KeyLeash, case: str, keys: list[str], start: int, end: int, tally: Tally
) -> None:
    """Call in a loop until `end`, timing the calls started at or after `start` (ns)."""
    while True:
        began = time.perf_counter_ns()
        if began >= end:
            return
        try:
            outcome = await call(kl, case, keys)
        except keyleash.KeyLeashError as e:
            outcome = f"{e.code}: {e}"
        tally.calls_all += 1
        if outcome is not None:
            tally.error(outcome)
        if began >= start:
            tally.latencies_ns.append(time.perf_counter_ns() - began)


async def main(argv: list[str]) -> None:
    if len(argv) != 5:
        sys.exit("usage: python bench/python.py CASE URL KEYS_FILE SECONDS CALLERS")
    case, url, keys_file = argv[0], argv[1], argv[2]
    seconds = float(argv[3])
    callers = 1 if case == "floor" else int(argv[4])
    with open(keys_file, encoding="ascii") as f:
        keys = [line for line in f.read().split("\n") if line]

    cache = keyleash.CacheOptions(ttl_ms=60_000, max_entries=10_000) if case == "cached" else None
    kl = await keyleash.KeyLeash.connect(url, cache=cache)
    warmup_ns = int(min(seconds * 0.2, 1.0) * 1e9)
    began_epoch = time.time()
    start = time.perf_counter_ns() + warmup_ns
    end = start + int(seconds * 1e9)
    tally = Tally()
    await asyncio.gather(*(caller(kl, case, keys, start, end, tally) for _ in range(callers)))
    elapsed = (time.perf_counter_ns() - start) / 1e9
    end_epoch = time.time()
    await kl.close()

    lat = sorted(tally.latencies_ns)
    line = {
        "driver": "python",
        "case": case,
        "store": "sqlite" if url.startswith("sqlite:") else "postgres",
        "callers": callers,
        "seconds": elapsed,
        "ops": len(lat),
        "ops_per_s": len(lat) / elapsed,
        "p50_ms": percentile(lat, 0.5) / 1e6,
        "p99_ms": percentile(lat, 0.99) / 1e6,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "calls_all": tally.calls_all,
        "began_epoch_s": began_epoch,
        "window_epoch_s": [began_epoch + warmup_ns / 1e9, end_epoch],
        "rss_mb": peak_rss_mb(),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
