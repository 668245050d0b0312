"""The SQLite references of `make bench`: what one SQLite connection can do with the
statements a validate and a charge need at minimum, on the same kind of file keyleash
uses (WAL journal, the `synchronous` level keyleash's connections run at). The
keyleash SQLite rows are read against these, as the Postgres rows are read against
pgbench.

Usage: python bench/sqlite_ref.py SQLITE_FILE SECONDS SYNCHRONOUS KEYS

    SQLITE_FILE   a database made by keyleash's migrate() holding the bench keys
                  (account_id 'bench', the hot key is the one with the lowest id)
    SYNCHRONOUS   the PRAGMA synchronous level to use (0-3): bench/run.py passes
                  the level the Rust driver read from a connection opened the way
                  keyleash opens it (sqlx's default: FULL, 2)
    KEYS          how many of the bench keys to pick from

Cases, one connection, one caller, one transaction each, one JSON line per case:
    select   SELECT * by key_hash of a random key (autocommit)
    update   BEGIN IMMEDIATE; guarded UPDATE ... RETURNING of a random key; INSERT
             of its ledger row; COMMIT
    hot      the same on the hot key
Python's sqlite3 (its own libsqlite3, usually older than the one sqlx bundles) adds
some interpreter time per statement: the reference is a floor for one connection,
not a bound on what a C program could do.
"""

from __future__ import annotations

import json
import math
import random
import re
import sqlite3
import sys
import time
from datetime import UTC, datetime


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


def charge(db: sqlite3.Connection, key_hash: str) -> bool:
    """The guarded UPDATE and the ledger INSERT, in one write transaction."""
    db.execute("BEGIN IMMEDIATE")
    row = db.execute(
        "UPDATE sdk_api_keys SET budget_used_micros = budget_used_micros + 1 "
        "WHERE key_hash = ? AND budget_used_micros + 1 <= budget_micros "
        "RETURNING id, account_id, budget_used_micros",
        (key_hash,),
    ).fetchone()
    if row is not None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        db.execute(
            "INSERT INTO sdk_api_keys_ledger (key_id, account_id, amount_micros, created_at, "
            "used_after_micros) VALUES (?, ?, 1, ?, ?)",
            (row[0], row[1], now, row[2]),
        )
    db.execute("COMMIT")
    return row is not None


def run_case(
    db: sqlite3.Connection, case: str, hashes: list[str], seconds: float
) -> dict[str, object]:
    """Runs one case for `seconds` and returns its JSON line."""
    latencies: list[int] = []
    errors = 0
    start = time.perf_counter_ns()
    end = start + int(seconds * 1e9)
    while True:
        began = time.perf_counter_ns()
        if began >= end:
            break
        if case == "select":
            ok = (
                db.execute(
                    "SELECT * FROM sdk_api_keys WHERE key_hash = ?", (random.choice(hashes),)
                ).fetchone()
                is not None
            )
        else:
            ok = charge(db, hashes[0] if case == "hot" else random.choice(hashes))
        errors += not ok
        latencies.append(time.perf_counter_ns() - began)
    elapsed = (time.perf_counter_ns() - start) / 1e9
    latencies.sort()
    return {
        "driver": "sqlite3",
        "case": case,
        "store": "sqlite",
        "callers": 1,
        "seconds": elapsed,
        "ops": len(latencies),
        "ops_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) / 1e6,
        "p99_ms": percentile(latencies, 0.99) / 1e6,
        "errors": errors,
        "first_error": "a statement matched no row" if errors else None,
        "rss_mb": peak_rss_mb(),
    }


def main(argv: list[str]) -> None:
    if len(argv) != 4:
        sys.exit("usage: python bench/sqlite_ref.py SQLITE_FILE SECONDS SYNCHRONOUS KEYS")
    path, seconds, synchronous, keys = argv[0], float(argv[1]), int(argv[2]), int(argv[3])
    db = sqlite3.connect(path, isolation_level=None)  # autocommit; BEGIN is explicit
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous:d}")
    hashes = [
        r[0]
        for r in db.execute(
            "SELECT key_hash FROM sdk_api_keys WHERE account_id = 'bench' ORDER BY id LIMIT ?",
            (keys,),
        )
    ]
    if not hashes:
        sys.exit("sqlite_ref: no bench keys in the file")
    for case in ("select", "update", "hot"):
        print(json.dumps(run_case(db, case, hashes, seconds)), flush=True)
    db.close()


if __name__ == "__main__":
    main(sys.argv[1:])
