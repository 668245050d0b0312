"""`make bench`: the measuring instrument of issue "Speed". One run, one table.

Every later speed change is judged by this table, so each keyleash row is printed
next to the reference it should be read against:

* the database's own limit, pgbench on the same keys table (keyleash's migrate(), keys
  created through keyleash): a SELECT by key_hash for validate, a guarded UPDATE for
  a charge, on random keys and on one hot key (bench/pgbench/*.sql);
* the peer, agentkey: the statements it issues per validate, per charge and per
  HTTP request (validate + charge), replayed by pgbench under the same load;
* SQLite references: the same SELECT and guarded UPDATE + ledger INSERT, one
  connection, on a WAL file at the `synchronous` level keyleash's connections use
  (bench/sqlite_ref.py);
* keyleash itself from Rust (bench/rust), Node (bench/node.mjs) and Python
  (bench/python.py), on Postgres and on a SQLite file: validate random keys, charge
  1 cent on random keys, charge 1 cent on one hot key;
* the binding floor: validate("ak_x"), which never reaches the store, one call after
  another (Rust for comparison, Node, Python), and beside it a cache hit the same way;
* with the validation cache on (ttl 60 s): validate random keys from every language;
  and a soak, ten million cached validates from Node (BENCH_SOAK_CALLS) with the
  resident set sampled at every tenth, which fails the run if it keeps growing;
* 1, 2 and 4 Node processes charging random keys of one Postgres together, then SQL
  checks that every key's counter equals its ledger sum, no cap was exceeded, and the
  ledger holds exactly the charges the processes saw succeed (a few keys get a 2-cent
  cap so that some charges are refused);
* HTTP: the Express and FastAPI examples' POST /v1/chat (validate + charge) under
  wrk, random keys and one hot key, each server started for its run; beside them the
  same route with no key check (bench/bare/: the same body read, the same JSON
  answered, no keyleash, no store), the "bare" row each keyleash row of its framework
  is divided by (x bare); with BENCH_AGENTKEY (a checkout or bare git directory of
  agentkey, which no registry has) also the same route built on agentkey itself
  (bench/agentkey/server.mjs), Express's peer.

The Postgres is durable unless told otherwise: `make bench` starts the private cluster
with fsync, synchronous_commit and full_page_writes on (BENCH_FSYNC=on, passed to
scripts/with-postgres.sh as KEYLEASH_PG_FSYNC; BENCH_FSYNC=off turns the three off, for
CPU profiles). The header prints them as the server reports them (pg_settings), with
wal_sync_method and the data directory's file system, never as the environment asked.

Under the table, a block says where the limit is for the charge cases on Postgres
(Rust/Node/Python charge random, hot key, reserve+settle), their pgbench references,
the 1/2/4 Node processes and the keyleash HTTP rows (a Probe watches each): Postgres'
own CPU (utime + stime of every server process, /proc), the client's (the driver,
pgbench or HTTP server process) and the machine's, each as a share of one core over the
timed window; commits per second and ops per commit (the bench database's
pg_stat_database.xact_commit over the whole case: the mean batch); WAL flushes per
second and per commit (pg_stat_wal.wal_sync; 0 with fsync off). The drivers report
the epoch times of their window and every call they made (warm-up included) for it.

Run inside scripts/with-postgres.sh (it sets DATABASE_URL), by the venv's python
(this script creates keys through the Python package). `make bench` does all that
after bench/prepare.sh has made sure the addon, the venv, the Rust driver and wrk
exist. Settings (environment): BENCH_SECONDS (5) per case, BENCH_CALLERS (32)
concurrent callers / pgbench clients / wrk connections, BENCH_KEYS (1000) keys,
BENCH_NAME (latest): writes bench/results/<name>.txt (the printed table) and
<name>.json (the same, plus every raw measurement).

Exits non-zero when anything failed (a driver crash or unexpected result, a pgbench
error, a cap violation, a counter that differs from its ledger, an HTTP error), after
printing the table of what did run. keyleash's pools are left at their defaults (10
connections on Postgres, 4 on a SQLite file), as users get them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import keyleash

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PGBENCH = str(PG_BIN / "pgbench")
PSQL = str(PG_BIN / "psql") if (PG_BIN / "psql").exists() else "psql"
RUST_DRIVER = ROOT / "target" / "bench" / "release" / "keyleash-bench"
PYTHON = sys.executable

SECONDS = float(os.environ.get("BENCH_SECONDS") or 5)
CALLERS = int(os.environ.get("BENCH_CALLERS") or 32)
KEYS = int(os.environ.get("BENCH_KEYS") or 1000)
NAME = os.environ.get("BENCH_NAME") or "latest"
# pgbench and wrk take whole seconds.
WHOLE_SECONDS = max(1, round(SECONDS))

BIG_BUDGET_CENTS = 100_000_000  # $1M: 1-cent charges never exhaust it during a run
SMALL_CAP_CENTS = 2  # the multi-process case's capped keys: refused from the 3rd charge on
CAPPED_KEYS = 8
MP_PROCESSES = (1, 2, 4)
# agentkey's own Express route beside keyleash's (needs a checkout: BENCH_AGENTKEY).
AGENTKEY_HTTP = bool(os.environ.get("BENCH_AGENTKEY"))
# The driver cases on Postgres whose Probe (CPU, commits, WAL flushes) is reported.
PROBED_CASES = ("charge", "hot", "hold")
# The pgbench references read against them, under a Probe too.
PROBED_REFS = ("pg.update", "pg.hot")
# The soak case's calls: ten million by default, fewer in bench-short.
SOAK_CALLS = int(os.environ.get("BENCH_SOAK_CALLS") or 10_000_000)
DEFAULT_PG_POOL = 10  # keyleash's default Postgres pool size (docs/api.md)
CLK_TCK = os.sysconf("SC_CLK_TCK")  # the unit of /proc's CPU times
PROBE_INTERVAL_S = 0.1  # how often a Probe samples the CPU times


class Failure(Exception):
    """A measurement that did not run as it must; recorded, and the run exits 1."""


@dataclass
class Row:
    """One line of the table."""

    name: str
    store: str
    ops_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    rss_mb: float | None = None
    ref: str | None = None  # id of the pgbench / SQLite reference row to compare with
    peer: str | None = None  # id of the agentkey row to compare with
    id: str | None = None  # this row's id, when it is a reference
    note: str = ""
    bare: str | None = None  # id of the bare HTTP row (no key check) to compare with
    ratio_ref: float | None = None
    ratio_peer: float | None = None
    ratio_bare: float | None = None
    probe: dict[str, Any] | None = None  # Probe.result(): where the time went
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, store: str, line: dict[str, Any], **more: Any) -> Row:
        """The row of a driver's (or wrk's) JSON line: its ops/s, p50, p99 and RSS."""
        return cls(
            name,
            store,
            line["ops_per_s"],
            line["p50_ms"],
            line["p99_ms"],
            line.get("rss_mb"),
            **more,
        )


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used, its reaped children's included
    (/proc/PID/stat utime, stime, cutime, cstime): Postgres' exited backends land in
    the postmaster's cutime/cstime."""
    text = Path(f"/proc/{pid}/stat").read_text()
    f = text[text.rindex(")") + 2 :].split()  # f[0] is field 3, the state
    return sum(int(x) for x in f[11:15]) / CLK_TCK


def postgres_cpu_s(postmaster: int) -> float:
    """CPU seconds used so far by every process of the Postgres server: the postmaster
    with its reaped children, and its live children (backends, walwriter, ...)."""
    total = proc_cpu_s(postmaster)
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        with contextlib.suppress(OSError, ValueError):  # exited since it was listed
            total += proc_cpu_s(int(child))
    return total


def machine_busy_s() -> float:
    """CPU seconds all CPUs of the machine spent busy so far (/proc/stat: everything
    but idle and iowait), whoever used them."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(f) - f[3] - f[4]) / CLK_TCK


class Probe:
    """Where the time went during one case: Postgres' own CPU, the client's, the
    machine's, and Postgres' commits and WAL flushes.

    A thread samples every PROBE_INTERVAL_S the CPU seconds used so far by the server's
    processes (postgres_cpu_s), by the client processes given to watch() (the driver,
    pgbench, the HTTP server) and by the whole machine; result() interpolates them at
    the ends of the case's timed window, so the shares are over that window (1.0 = one
    core busy). Postgres publishes its counters (pg_stat_database.xact_commit of the
    bench database, pg_stat_wal.wal_sync) only when a backend idles (at most once a
    second, else 10 s later) or exits: they are read before the case and after its
    client has exited and every backend of the bench database is gone, so they count
    the whole case, warm-up included, exactly; result() divides them by every call
    made and by the seconds from the first call to the window's end.
    """

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.postmaster = bench.postmaster_pid()
        self.clients: dict[int, float] = {}  # pid: CPU seconds last seen
        self.samples: list[tuple[float, float | None, float, float]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.sample_until_stopped, daemon=True)
        self.before: dict[str, int] = {}
        self.after: dict[str, int] = {}
        self.quiet = True

    def __enter__(self) -> Probe:
        self.quiet = self.bench.quiesce()
        self.before = self.bench.pg_counters()
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.sample()
        if exc_type is None:
            self.quiet = self.bench.quiesce() and self.quiet
            self.after = self.bench.pg_counters()

    def watch(self, pid: int) -> None:
        """Counts this process's CPU as the client's from now on."""
        self.clients.setdefault(pid, 0.0)

    def sample(self) -> None:
        pg = None
        if self.postmaster is not None:
            with contextlib.suppress(OSError, ValueError):
                pg = postgres_cpu_s(self.postmaster)
        for pid, last in list(self.clients.items()):
            with contextlib.suppress(OSError, ValueError):  # gone: keep what it used
                self.clients[pid] = max(last, proc_cpu_s(pid))
        self.samples.append((time.time(), pg, sum(self.clients.values()), machine_busy_s()))

    def sample_until_stopped(self) -> None:
        while not self.stopping.wait(PROBE_INTERVAL_S):
            self.sample()

    def at(self, t: float, k: int) -> float | None:
        """Series k of the samples (1 Postgres, 2 client, 3 machine) at time t, linear
        between the two samples around it."""
        s = self.samples
        for a, b in itertools.pairwise(s):
            if a[0] <= t <= b[0]:
                va, vb = a[k], b[k]
                if va is None or vb is None:
                    return None
                return va + (vb - va) * (t - a[0]) / (b[0] - a[0] or 1)
        edge = s[0] if t < s[0][0] else s[-1]
        return edge[k]

    def share(self, t0: float, t1: float, k: int) -> float | None:
        a, b = self.at(t0, k), self.at(t1, k)
        return None if a is None or b is None or t1 <= t0 else (b - a) / (t1 - t0)

    def result(self, calls: int, began: float, window: Sequence[float]) -> dict[str, Any]:
        """The case's figures: `calls` made in all (warm-up included) from `began` on,
        `window` the timed window's [start, end] (epoch seconds)."""
        t0, t1 = window
        span = max(t1 - began, 1e-9)
        delta = {k: self.after[k] - self.before[k] for k in self.before} if self.after else {}
        commits, flushes = delta.get("commits"), delta.get("wal_sync")

        def per(a: float | None, b: float | None) -> float | None:
            return None if a is None or not b else a / b

        return {
            "window_s": t1 - t0,
            "postgres_cpu": self.share(t0, t1, 1),
            "client_cpu": self.share(t0, t1, 2) if self.clients else None,
            "machine_cpu": self.share(t0, t1, 3),
            "calls_all": calls,
            "calls_span_s": span,
            "commits": commits,
            "commits_per_s": per(commits, span),
            "ops_per_commit": per(calls, commits),
            "wal_flushes": flushes,
            "wal_flushes_per_s": per(flushes, span),
            "wal_flushes_per_commit": per(flushes, commits),
            "wal_bytes_per_op": per(delta.get("wal_bytes"), calls),
            "counters_exact": self.quiet,
        }


class Bench:
    """Runs every case in order, collecting rows and failures."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pg_url = os.environ["DATABASE_URL"]
        self.sqlite_path = tmp / "bench.db"
        self.sqlite_url = f"sqlite://{self.sqlite_path}"
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.info: dict[str, Any] = {}
        self.pg_db = urlsplit(self.pg_url).path.lstrip("/")  # the bench database's name
        self.stats_url: str | None = None  # see stats_sql

    # ---------------------------------------------------------------- helpers

    def fail(self, what: str) -> None:
        print(f"bench: FAILED: {what}", file=sys.stderr, flush=True)
        self.failures.append(what)

    def step(self, title: str, fn: Any, *args: Any) -> Any:
        """Runs one part; a Failure or crash is recorded and the run goes on."""
        print(f"bench: {title}", file=sys.stderr, flush=True)
        try:
            return fn(*args)
        except Failure as e:
            self.fail(f"{title}: {e}")
        except Exception as e:  # any crash of a part is a failure of the run
            self.fail(f"{title}: {type(e).__name__}: {e}")
        return None

    def psql(self, sql: str) -> str:
        return self.psql_at(self.pg_url, sql)

    def psql_at(self, url: str, sql: str) -> str:
        p = subprocess.run(
            [PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            raise Failure(f"psql failed: {p.stderr.strip()}")
        return p.stdout.strip()

    def stats_sql(self, sql: str) -> str:
        """A query of the statistics views, from the `postgres` database when it can
        (so that its own commit does not count in the bench database's)."""
        if self.stats_url is None:
            url = urlsplit(self.pg_url)._replace(path="/postgres").geturl()
            try:
                self.psql_at(url, "SELECT 1")
                self.stats_url = url
            except Failure:
                self.stats_url = self.pg_url
        return self.psql_at(self.stats_url, sql)

    def pg_counters(self) -> dict[str, int]:
        """Postgres' cumulative counters: the bench database's commits, the cluster's
        WAL flushes (wal_sync: 0 with fsync off) and WAL bytes."""
        line = self.stats_sql(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = "
            f"'{self.pg_db}'), wal_sync, wal_bytes FROM pg_stat_wal"
        )
        commits, wal_sync, wal_bytes = line.split("|")
        return {"commits": int(commits), "wal_sync": int(wal_sync), "wal_bytes": int(wal_bytes)}

    def quiesce(self, timeout_s: float = 15) -> bool:
        """Waits until no client is connected to the bench database (a backend that
        has left pg_stat_activity has published its counters); False on timeout."""
        deadline = time.monotonic() + timeout_s
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            f"AND datname = '{self.pg_db}' AND pid <> pg_backend_pid()"
        )
        while self.stats_sql(sql) != "0":
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def postmaster_pid(self) -> int | None:
        """The Postgres server's postmaster, when it runs on this machine (the first
        line of postmaster.pid in its data directory); None otherwise."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid_file = Path(self.info["pg_data_directory"]) / "postmaster.pid"
            return int(pid_file.read_text().split("\n", 1)[0])
        return None

    def vacuum(self) -> None:
        """Each Postgres case starts from a vacuumed keys table, whatever ran before."""
        self.psql("VACUUM sdk_api_keys")

    def add(self, row: Row, line: dict[str, Any] | None = None) -> Row:
        if line is not None:
            row.raw = line
        self.rows.append(row)
        return row

    # ------------------------------------------------------------- the machine

    def machine(self) -> None:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        mem = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        git = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        # The durability settings as the server runs them, whatever was asked for.
        self.pg_db = self.psql("SELECT current_database()")
        pg = dict(
            line.split("|", 1)
            for line in self.psql(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', "
                "'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'data_directory')"
            ).splitlines()
        )
        data_dir = pg.get("data_directory")  # shown to superusers only
        data_fs = (
            subprocess.run(
                ["df", "--output=fstype", data_dir], capture_output=True, text=True
            ).stdout.split()
            if data_dir
            else []
        )
        self.info = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "nproc": os.cpu_count(),
            "memory_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
            "cpu": model.group(1).strip() if model else "unknown",
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
            "git": git,
            "node": subprocess.run(
                ["node", "--version"], capture_output=True, text=True
            ).stdout.strip(),
            "python": sys.version.split()[0],
            "postgres": self.psql("SHOW server_version"),
            "pg_fsync": pg["fsync"],
            "pg_synchronous_commit": pg["synchronous_commit"],
            "pg_full_page_writes": pg["full_page_writes"],
            "pg_wal_sync_method": pg["wal_sync_method"],
            "pg_data_directory": data_dir,
            "pg_data_filesystem": data_fs[-1] if data_fs else "unknown",
            "pg_fsync_asked": os.environ.get("KEYLEASH_PG_FSYNC"),
            "tmp_filesystem": subprocess.run(
                ["df", "--output=fstype", str(self.tmp)], capture_output=True, text=True
            ).stdout.split()[-1],
            "settings": {"seconds": SECONDS, "callers": CALLERS, "keys": KEYS},
        }

    def ensure_connections(self) -> None:
        """The cluster of with-postgres.sh allows 200 connections; the most this run
        opens at once is max(pgbench's clients, 4 processes x keyleash's pool). Raise
        max_connections (ALTER SYSTEM + restart of the private cluster) if needed."""
        need = max(CALLERS + 1, max(MP_PROCESSES) * DEFAULT_PG_POOL, CALLERS) + 10
        have = int(self.psql("SHOW max_connections"))
        if have >= need:
            return
        stop, start = os.environ.get("KEYLEASH_PG_STOP"), os.environ.get("KEYLEASH_PG_START")
        if not (stop and start):
            raise Failure(
                f"max_connections is {have}, this run needs {need}, and the server is not ours"
            )
        self.psql(f"ALTER SYSTEM SET max_connections = {need}")
        subprocess.run(["sh", "-c", stop], check=True, capture_output=True)
        subprocess.run(["sh", "-c", start], check=True, capture_output=True)

    # ---------------------------------------------------------------- the keys

    def create_keys(self, url: str, account: str, budgets: Sequence[float]) -> list[str]:
        """Creates one key per budget through keyleash (scope proxy.chat, no period, so
        nothing resets mid-run); returns the raw keys in id order."""

        async def go() -> list[str]:
            kl = await keyleash.KeyLeash.connect(url)
            await kl.migrate()
            gate = asyncio.Semaphore(8)

            async def one(budget: float) -> keyleash.CreatedKey:
                async with gate:
                    return await kl.create(
                        account_id=account, budget_cents=budget, scopes=["proxy.chat"]
                    )

            created = await asyncio.gather(*(one(b) for b in budgets))
            await kl.close()
            return [c.key for c in sorted(created, key=lambda c: c.id)]

        return asyncio.run(go())

    def write_keys(self, name: str, keys: list[str]) -> Path:
        path = self.tmp / name
        path.write_text("\n".join(keys) + "\n")
        return path

    def setup_keys(self) -> None:
        pg_keys = self.create_keys(self.pg_url, "bench", [BIG_BUDGET_CENTS] * KEYS)
        self.pg_keys = self.write_keys("keys-pg.txt", pg_keys)
        self.pg_hot = self.write_keys("keys-pg-hot.txt", pg_keys[:1])
        # The hashes, read back into the pgbench-friendly bench_keys(n, key_hash): n = 1
        # is the key with the lowest id, the first line of keys-pg.txt (the hot key).
        self.psql(
            "DROP TABLE IF EXISTS bench_keys; "
            "CREATE TABLE bench_keys (n int PRIMARY KEY, key_hash text NOT NULL); "
            "INSERT INTO bench_keys SELECT row_number() OVER (ORDER BY id), key_hash "
            "FROM sdk_api_keys WHERE account_id = 'bench'; ANALYZE"
        )
        if self.psql("SELECT count(*) FROM bench_keys") != str(KEYS):
            raise Failure("bench_keys does not hold one row per key")
        sqlite_keys = self.create_keys(self.sqlite_url, "bench", [BIG_BUDGET_CENTS] * KEYS)
        self.sqlite_keys = self.write_keys("keys-sqlite.txt", sqlite_keys)

    # ------------------------------------------------------------- references

    def pgbench(self, label: str, script: str, keys: int) -> dict[str, Any]:
        """One pgbench run: tps from its report, p50/p99 from its per-transaction log;
        the charge references (PROBED_REFS) under a Probe."""
        self.vacuum()
        logdir = self.tmp / f"pgbench-{label}"
        logdir.mkdir()
        now = datetime.now(UTC)
        cmd = [
            PGBENCH,
            "-n",
            "-M",
            "prepared",
            "-c",
            str(CALLERS),
            "-j",
            "2",
            "-T",
            str(WHOLE_SECONDS),
            "-f",
            str(BENCH / "pgbench" / script),
            "-D",
            f"keys={keys}",
            "-D",
            "cost=1",
            "-D",
            f"next_day={(now + timedelta(days=1)).isoformat()}",
            "-D",
            f"next_month={(now + timedelta(days=31)).isoformat()}",
            "--log",
            f"--log-prefix={logdir}/log",
            self.pg_url,
        ]
        with contextlib.ExitStack() as stack:
            probe = stack.enter_context(Probe(self)) if label in PROBED_REFS else None
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if probe is not None:
                probe.watch(p.pid)
            try:
                stdout, stderr = p.communicate(timeout=WHOLE_SECONDS + 120)
            except subprocess.TimeoutExpired as e:
                p.kill()
                p.communicate()
                raise Failure(f"pgbench {script} timed out") from e
        tps = re.search(r"^tps = ([\d.]+)", stdout, re.M)
        avg = re.search(r"^latency average = ([\d.]+) ms", stdout, re.M)
        failed = re.search(r"^number of failed transactions: (\d+)", stdout, re.M)
        if p.returncode != 0 or tps is None or (failed and failed.group(1) != "0"):
            raise Failure(
                f"pgbench {script} exited {p.returncode}: {(stderr or stdout).strip()[-400:]}"
            )
        # Log line: client_id transaction_no time_us script_no time_epoch time_us_frac,
        # the time of the transaction's end.
        log = [
            line.split() for f in logdir.iterdir() for line in f.read_text().splitlines() if line
        ]
        lat_us = sorted(int(x[2]) for x in log)
        ends = [int(x[4]) + int(x[5]) / 1e6 for x in log]
        began = min(e - int(x[2]) / 1e6 for e, x in zip(ends, log, strict=True))
        result = {
            "driver": "pgbench",
            "case": label,
            "ops_per_s": float(tps.group(1)),
            "ops": len(lat_us),
            "latency_avg_ms": float(avg.group(1)) if avg else None,
            "p50_ms": percentile(lat_us, 0.5) / 1000,
            "p99_ms": percentile(lat_us, 0.99) / 1000,
        }
        if probe is not None:
            result["probe"] = probe.result(len(log), began, [began, max(ends)])
        return result

    def references(self) -> None:
        cases = [
            ("pg.select", "pgbench SELECT by hash, random", "select.sql", KEYS, None),
            ("pg.update", "pgbench guarded UPDATE, random", "update.sql", KEYS, None),
            ("pg.hot", "pgbench guarded UPDATE, hot key", "update.sql", 1, None),
            (
                "ak.validate",
                "agentkey validate SQL, random",
                "agentkey_validate.sql",
                KEYS,
                "pg.select",
            ),
            ("ak.charge", "agentkey charge SQL, random", "agentkey_charge.sql", KEYS, "pg.update"),
            ("ak.hot", "agentkey charge SQL, hot key", "agentkey_charge.sql", 1, "pg.hot"),
            (
                "ak.request",
                "agentkey validate+charge SQL, random",
                "agentkey_request.sql",
                KEYS,
                "pg.update",
            ),
            (
                "ak.request_hot",
                "agentkey validate+charge SQL, hot",
                "agentkey_request.sql",
                1,
                "pg.hot",
            ),
        ]
        for rid, name, script, keys, ref in cases:
            line = self.step(f"{name} ({script})", self.pgbench, rid, script, keys)
            if line:
                note = "2 statements, autocommit" if "validate" in script else ""
                note = "3 statements, autocommit" if "request" in script else note
                self.add(
                    Row(
                        name,
                        "postgres",
                        line["ops_per_s"],
                        line["p50_ms"],
                        line["p99_ms"],
                        id=rid,
                        ref=ref,
                        note=note,
                        probe=line.pop("probe", None),
                    ),
                    line,
                )

    def sqlite_references(self) -> None:
        probe = run_json([str(RUST_DRIVER), "pragma", self.sqlite_url], timeout=60)[0]
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        self.info["sqlite_keyleash"] = probe | {
            "synchronous_name": names.get(probe["synchronous"], "?")
        }
        sync = f"synchronous={names.get(probe['synchronous'], '?')}"
        lines = run_json(
            [
                PYTHON,
                str(BENCH / "sqlite_ref.py"),
                str(self.sqlite_path),
                str(SECONDS),
                str(probe["synchronous"]),
                str(KEYS),
            ],
            timeout=SECONDS * 3 + 60,
        )
        titles = {
            "select": ("sqlite.select", "sqlite3 SELECT by hash, random"),
            "update": ("sqlite.update", "sqlite3 UPDATE+ledger, random"),
            "hot": ("sqlite.hot", "sqlite3 UPDATE+ledger, hot key"),
        }
        for line in lines:
            rid, name = titles[line["case"]]
            self.check_line(name, line)
            self.add(
                Row.of(
                    name,
                    "sqlite",
                    line,
                    id=rid,
                    note=f"1 connection, WAL, {sync}",
                ),
                line,
            )

    # ---------------------------------------------------------------- keyleash

    def check_line(self, what: str, line: dict[str, Any]) -> None:
        if line.get("errors"):
            self.fail(
                f"{what}: {line['errors']} unexpected results, first: {line.get('first_error')}"
            )

    def driver(self, lang: str, case: str, store: str) -> None:
        url, keys = (
            (self.pg_url, self.pg_keys)
            if store == "postgres"
            else (self.sqlite_url, self.sqlite_keys)
        )
        if store == "postgres":
            self.vacuum()
        cmd = [*DRIVERS[lang], case, url, str(keys), str(SECONDS), str(CALLERS)]
        probe = None
        if store == "postgres" and case in PROBED_CASES:
            with Probe(self) as probe:
                line = run_json(cmd, timeout=SECONDS * 3 + 60, started=probe.watch)[0]
        else:
            line = run_json(cmd, timeout=SECONDS * 3 + 60)[0]
        titles = {
            "validate": "validate, random",
            "cached": "validate, random, cache on",
            "charge": "charge 1c, random",
            "hot": "charge 1c, hot key",
            "hold": "reserve+settle 1c, random",
        }
        refs: dict[str, dict[str, tuple[str, str | None]]] = {
            "postgres": {
                "validate": ("pg.select", "ak.validate"),
                "cached": ("pg.select", "ak.validate"),
                "charge": ("pg.update", "ak.charge"),
                "hot": ("pg.hot", "ak.hot"),
                "hold": ("pg.update", "ak.charge"),
            },
            "sqlite": {
                "validate": ("sqlite.select", None),
                "cached": ("sqlite.select", None),
                "charge": ("sqlite.update", None),
                "hot": ("sqlite.hot", None),
                "hold": ("sqlite.update", None),
            },
        }
        ref, peer = refs[store][case]
        name = f"{lang} {titles[case]}"
        self.check_line(f"{name} on {store}", line)
        row = self.add(
            Row.of(
                name,
                store,
                line,
                ref=ref,
                peer=peer,
                note="one op = a reserve and its settle: 2 transactions" if case == "hold" else "",
            ),
            line,
        )
        if probe is not None:
            row.probe = probe.result(
                line["calls_all"], line["began_epoch_s"], line["window_epoch_s"]
            )

    def drivers(self) -> None:
        for lang in ("rust", "node", "python"):
            for store in ("postgres", "sqlite"):
                for case in ("validate", "cached", "charge", "hot", "hold"):
                    self.step(f"{lang} {case} on {store}", self.driver, lang, case, store)

    def floor(self, lang: str, case: str = "floor") -> None:
        line = run_json(
            [*DRIVERS[lang], case, self.pg_url, str(self.pg_keys), str(SECONDS), "1"],
            timeout=SECONDS * 3 + 60,
        )[0]
        what = "validate('ak_x')" if case == "floor" else "cache hit"
        name = f"{lang} floor: {what}, 1 caller"
        self.check_line(name, line)
        us = 1e6 / line["ops_per_s"] if line["ops_per_s"] else math.inf
        self.add(
            Row.of(
                name,
                "-",
                line,
                note=f"{us:.2f} us/call",
            ),
            line,
        )

    def floors(self) -> None:
        for lang in ("rust", "node", "python"):
            self.step(f"{lang} binding floor", self.floor, lang)
            # A cached valid answer, one call after another: what a hit costs,
            # to read against the floor above (the same binding, no store).
            self.step(f"{lang} cache hit, 1 caller", self.floor, lang, "cached")

    def soak(self) -> None:
        """Ten million cached validates from Node (BENCH_SOAK_CALLS), resident set
        sampled at every tenth: flat means bounded cache, no leak per call."""
        env = {**os.environ, "BENCH_SOAK_CALLS": str(SOAK_CALLS)}
        cmd = [*DRIVERS["node"], "soak", self.pg_url, str(self.pg_keys), "0", str(CALLERS)]
        line = run_json(cmd, timeout=SOAK_CALLS / 20_000 + 120, env=env)[0]
        name = f"node soak: {SOAK_CALLS:,} validates, cache on"
        self.check_line(name, line)
        samples = line.get("rss_samples_mb") or []
        if len(samples) >= 4:
            # The first sample is taken once the cache holds every key; growth after
            # it would be a leak. Allow GC slack of 25% or 16 MB, whichever is larger.
            base, last = samples[1], samples[-1]
            if last - base > max(16.0, 0.25 * base):
                self.fail(f"{name}: RSS grew from {base:.0f} MB to {last:.0f} MB")
        note = "RSS MB by tenth: " + " ".join(f"{m:.0f}" for m in samples)
        self.add(
            Row.of(
                name,
                "postgres",
                line,
                ref="pg.select",
                note=note,
            ),
            line,
        )

    # ---------------------------------------------------------- multi-process

    def multi_process(self, procs: int) -> None:
        """`procs` Node processes charge random keys of a fresh key set together; then
        the ledger, the counters and the caps are checked in SQL."""
        account = f"mp{procs}"
        budgets = [BIG_BUDGET_CENTS] * KEYS + [SMALL_CAP_CENTS] * CAPPED_KEYS
        keys = self.write_keys(
            f"keys-{account}.txt", self.create_keys(self.pg_url, account, budgets)
        )
        self.vacuum()
        cmd = [*DRIVERS["node"], "mp", self.pg_url, str(keys), str(SECONDS), str(CALLERS)]
        with Probe(self) as probe:
            env = os.environ | {"BENCH_START_AT": str(int(time.time() * 1000) + 2500)}
            running = [
                subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                    cwd=ROOT,
                )
                for _ in range(procs)
            ]
            for p in running:
                probe.watch(p.pid)
            lines = []
            for p in running:
                out, err = p.communicate(timeout=SECONDS * 3 + 60)
                if p.returncode != 0:
                    raise Failure(f"a node process exited {p.returncode}: {err.strip()[-400:]}")
                lines.append(json.loads(out.strip().splitlines()[-1]))
        for line in lines:
            self.check_line(f"{procs} node processes", line)
        succeeded = sum(line["succeeded"] for line in lines)
        refused = sum(line["refused"] for line in lines)
        # Per key of this run's account: its counter against its ledger sum, its cap.
        check = self.psql(
            "SELECT count(*) FILTER (WHERE coalesce(k.budget_used_micros, 0) <> coalesce(l.s, 0)),"
            " count(*) FILTER (WHERE k.budget_used_micros > k.budget_micros),"
            " coalesce(sum(l.rows), 0)"
            " FROM sdk_api_keys k LEFT JOIN"
            " (SELECT key_id, sum(amount_micros) AS s, count(*) AS rows"
            "  FROM sdk_api_keys_ledger GROUP BY key_id) l ON l.key_id = k.id"
            f" WHERE k.account_id = '{account}'"
        )
        mismatched, over_cap, ledger_rows = (int(x) for x in check.split("|"))
        problems = []
        if mismatched:
            problems.append(f"{mismatched} keys whose counter differs from their ledger sum")
        if over_cap:
            problems.append(f"{over_cap} keys over their cap")
        if ledger_rows != succeeded:
            problems.append(f"{ledger_rows} ledger rows for {succeeded} successful charges")
        if refused == 0:
            problems.append(
                "no charge was refused: the capped keys were not reached, the cap went untested"
            )
        row = self.add(
            Row(
                f"node {procs} process{'es' if procs > 1 else ''} x {CALLERS}, charge 1c, random",
                "postgres",
                sum(line["ops_per_s"] for line in lines),
                max(line["p50_ms"] for line in lines),
                max(line["p99_ms"] for line in lines),
                max(line["rss_mb"] for line in lines),
                ref="pg.update",
                peer="ak.charge",
                note=f"total ops/s, worst process's p50/p99; {succeeded} charged, "
                f"{refused} refused, "
                + ("counters = ledger, caps held" if not problems else "CHECK FAILED"),
            ),
            {
                "processes": lines,
                "ledger_rows": ledger_rows,
                "mismatched": mismatched,
                "over_cap": over_cap,
            },
        )
        row.probe = probe.result(
            sum(line["calls_all"] for line in lines),
            min(line["began_epoch_s"] for line in lines),
            [
                min(line["window_epoch_s"][0] for line in lines),
                max(line["window_epoch_s"][1] for line in lines),
            ],
        )
        if problems:
            row.note += ": " + "; ".join(problems)
            raise Failure("; ".join(problems))

    def multi_processes(self) -> None:
        for procs in MP_PROCESSES:
            self.step(f"{procs} node processes charging", self.multi_process, procs)

    # -------------------------------------------------------------------- HTTP

    @contextlib.contextmanager
    def served(
        self, name: str, cmd: list[str], cwd: Path
    ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
        """A server started with `cmd` on a free port (env PORT, DATABASE_URL the
        bench's Postgres), yielded once it accepts connections, stopped after."""
        port = free_port()
        log_path = self.tmp / f"{name}.log"
        log = log_path.open("w")
        env = os.environ | {"DATABASE_URL": self.pg_url, "PORT": str(port)}
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        try:
            wait_for_port(port, server, log_path)
            yield server, port
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()

    def http_bare(self, app: str) -> None:
        """The example's POST /v1/chat with no key check (bench/bare/), under the same
        wrk load: what the framework alone does, to read the keyleash rows against."""
        cmd = {
            "express": ["node", str(BENCH / "bare" / "express.mjs")],
            "fastapi": [PYTHON, str(BENCH / "bare" / "fastapi_app.py")],
        }[app]
        with self.served(f"bare-{app}", cmd, ROOT) as (server, port):
            line = wrk(port, self.pg_keys)
            line["rss_mb"] = peak_rss_of(server.pid)
        name = f"bare {app} POST /v1/chat, no key check"
        problems = line["non_2xx"] + line["socket_errors"]
        if problems:
            self.fail(f"{name}: {problems} non-2xx responses or socket errors")
        note = "the same body, JSON and answer, no keyleash, no store; RSS of the server"
        self.add(Row.of(name, "-", line, id=f"bare.{app}", note=note), line)

    def http(self, app: str, hot: bool) -> None:
        """The example's POST /v1/chat under wrk, its server started for this run alone
        (so that its backends are gone, their counters published, when the Probe ends)."""
        cmd = {
            "express": ["node", str(ROOT / "examples" / "express-app" / "server.js")],
            "fastapi": [PYTHON, str(ROOT / "examples" / "fastapi-app" / "app.py")],
        }[app]
        kind = "hot key" if hot else "random"
        self.vacuum()
        with (
            Probe(self) as probe,
            self.served(f"{app}-{kind}", cmd, Path(cmd[1]).parent) as (server, port),
        ):
            probe.watch(server.pid)
            began = time.time()
            line = wrk(port, self.pg_hot if hot else self.pg_keys)
            ended = time.time()
            line["rss_mb"] = peak_rss_of(server.pid)
        name = f"{app} POST /v1/chat, {kind}"
        problems = line["non_2xx"] + line["socket_errors"]
        self.add(
            Row.of(
                name,
                "postgres",
                line,
                ref="pg.hot" if hot else "pg.update",
                peer=(
                    ("ak.express_hot" if hot else "ak.express")
                    if app == "express" and AGENTKEY_HTTP
                    else ("ak.request_hot" if hot else "ak.request")
                ),
                bare=f"bare.{app}",
                note="validate+charge per request; RSS of the server"
                + (
                    f"; {line['non_2xx']} non-2xx, {line['socket_errors']} socket errors"
                    if problems
                    else ""
                ),
                probe=probe.result(line["requests"], began, [began, ended]),
            ),
            line,
        )
        if problems:
            self.fail(
                f"{name}: {line['non_2xx']} non-2xx responses, "
                f"{line['socket_errors']} socket errors"
            )

    def agentkey_http(self) -> None:
        """agentkey's own Express route (bench/agentkey/server.mjs) under the same
        wrk load: the peer the issue's HTTP target names. Only with BENCH_AGENTKEY."""
        dist = ROOT / "target" / "bench" / "agentkey" / "dist"
        cmd = ["node", str(BENCH / "agentkey" / "server.mjs"), str(dist)]
        with self.served("agentkey", cmd, ROOT) as (server, port):
            for hot in (False, True):
                self.vacuum()
                line = wrk(port, self.pg_hot if hot else self.pg_keys)
                line["rss_mb"] = peak_rss_of(server.pid)
                kind = "hot key" if hot else "random"
                name = f"agentkey express POST /v1/chat, {kind}"
                problems = line["non_2xx"] + line["socket_errors"]
                if problems:
                    self.fail(f"{name}: {problems} non-2xx responses or socket errors")
                row = Row.of(
                    name,
                    "postgres",
                    line,
                    id="ak.express_hot" if hot else "ak.express",
                    ref="pg.hot" if hot else "pg.update",
                    bare="bare.express",
                    note="agentkey's middleware + trackUsage (1 cent); RSS of the server",
                )
                self.add(row, line)

    def https(self) -> None:
        for app in ("express", "fastapi"):
            self.step(f"HTTP: bare {app} route under wrk", self.http_bare, app)
            if app == "express" and AGENTKEY_HTTP:
                self.step("HTTP: agentkey's Express route under wrk", self.agentkey_http)
            for hot in (False, True):
                kind = "hot key" if hot else "random"
                self.step(f"HTTP: {app} example under wrk, {kind}", self.http, app, hot)

    # ------------------------------------------------------------------ output

    def ratios(self) -> None:
        by_id = {r.id: r for r in self.rows if r.id}
        for r in self.rows:
            if r.ref in by_id and by_id[r.ref].ops_per_s:
                r.ratio_ref = r.ops_per_s / by_id[r.ref].ops_per_s
            if r.peer in by_id and by_id[r.peer].ops_per_s:
                r.ratio_peer = r.ops_per_s / by_id[r.peer].ops_per_s
            if r.bare in by_id and by_id[r.bare].ops_per_s:
                r.ratio_bare = r.ops_per_s / by_id[r.bare].ops_per_s

    def table(self) -> str:
        i = self.info
        sq = i.get("sqlite_keyleash", {})
        load_start, load_end = " ".join(i["loadavg_start"]), " ".join(i.get("loadavg_end", []))
        head = [
            f"keyleash bench  {i['date']}  git {i['git']}",
            f"machine: {i['nproc']} CPUs ({i['cpu']}), {i['memory_gb']} GB RAM, "
            f"load {load_start} at start, {load_end} at end",
            f"settings: {SECONDS:g} s per case, {CALLERS} callers, {KEYS} keys; "
            f"keyleash pools at their defaults (Postgres 10, SQLite 4); "
            f"pgbench -M prepared -c {CALLERS} -j 2",
            f"postgres {i['postgres']}: {durability(i)}",
            f"node {i['node']}; python {i['python']}",
            f"sqlite: keyleash's connections run journal_mode={sq.get('journal_mode', '?')}, "
            f"synchronous={sq.get('synchronous_name', '?')} "
            f"(sqlx's default; SQLite {sq.get('sqlite_version', '?')}); "
            f"file on {i['tmp_filesystem']}",
            "x ref: ops/s divided by the matching reference's: pgbench SELECT (validate), "
            "guarded UPDATE (charge, HTTP), hot UPDATE (hot key); on SQLite the sqlite3 rows",
            "x agentkey: divided by agentkey's statements under pgbench: validate, charge, "
            "hot charge; HTTP: "
            + (
                "agentkey's own Express route (BENCH_AGENTKEY)"
                if AGENTKEY_HTTP
                else "its validate+charge SQL (BENCH_AGENTKEY=checkout adds its Express route)"
            ),
            "x bare: an HTTP row divided by the bare row of its framework (the same route "
            "with no key check): what keyleash leaves of the framework's own speed",
            "",
        ]
        cols = [
            "case",
            "store",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "x ref",
            "x agentkey",
            "x bare",
            "RSS MB",
            "note",
        ]
        body = []
        for r in self.rows:
            body.append(
                [
                    r.name,
                    r.store,
                    f"{r.ops_per_s:,.0f}",
                    fmt_ms(r.p50_ms),
                    fmt_ms(r.p99_ms),
                    f"{r.ratio_ref:.2f}" if r.ratio_ref is not None else "",
                    f"{r.ratio_peer:.2f}" if r.ratio_peer is not None else "",
                    f"{r.ratio_bare:.2f}" if r.ratio_bare is not None else "",
                    f"{r.rss_mb:.0f}" if r.rss_mb else "",
                    r.note,
                ]
            )
        lines = [*head, *columns(cols, body, right={2, 3, 4, 5, 6, 7, 8})]
        lines += self.probe_block()
        if self.failures:
            lines += ["", f"FAILURES ({len(self.failures)}):", *(f"  - {f}" for f in self.failures)]
        return "\n".join(lines) + "\n"

    def probe_block(self) -> list[str]:
        """The block under the table: for the rows a Probe watched, where the time went."""
        probed = [r for r in self.rows if r.probe]
        if not probed:
            return []
        head = [
            "",
            "Where the limit is (charge cases on Postgres, their pgbench references, 1/2/4 Node "
            "processes, the HTTP rows):",
            f"  CPU: share of one core over the timed window ({self.info.get('nproc')} CPUs in "
            "all): Postgres = every server process (/proc), client = the driver, pgbench or HTTP "
            "server process (not wrk), machine = every CPU busy, whoever used it",
            "  commits/s and ops/commit (the mean batch): the bench database's xact_commit, "
            "counted over the whole case (warm-up included) and divided by every op made; "
            "for HTTP one op is a request (validate + charge)",
            "  WAL flushes/s: pg_stat_wal.wal_sync (0 with fsync off) over the same span; "
            "flushes/commit below 1 = several commits shared a flush",
        ]
        if any(not (r.probe or {}).get("counters_exact", True) for r in probed):
            head.append(
                "  (counters late): clients of the bench database stayed connected 15 s past "
                "the case, so its counters may lack their last second"
            )
        head.append("")
        cols = [
            "case",
            "ops/s",
            "postgres CPU",
            "client CPU",
            "machine CPU",
            "commits/s",
            "ops/commit",
            "WAL flushes/s",
            "flushes/commit",
        ]
        body = []
        for r in probed:
            pr = r.probe or {}
            body.append(
                [
                    r.name + ("" if pr.get("counters_exact", True) else " (counters late)"),
                    f"{r.ops_per_s:,.0f}",
                    fmt_share(pr.get("postgres_cpu")),
                    fmt_share(pr.get("client_cpu")),
                    fmt_share(pr.get("machine_cpu")),
                    fmt_num(pr.get("commits_per_s"), "{:,.0f}"),
                    fmt_num(pr.get("ops_per_commit"), "{:.2f}"),
                    fmt_num(pr.get("wal_flushes_per_s"), "{:,.0f}"),
                    fmt_num(pr.get("wal_flushes_per_commit"), "{:.2f}"),
                ]
            )
        return [*head, *columns(cols, body, right=set(range(1, len(cols))))]

    def run(self) -> int:
        started = time.monotonic()
        self.step("machine and server settings", self.machine)
        self.step("max_connections", self.ensure_connections)
        if self.step(
            "creating the keys through keyleash (Postgres and SQLite)", self.setup_keys
        ) is None and (not hasattr(self, "sqlite_keys")):
            self.fail("no keys: nothing else can run")
        else:
            self.references()
            self.step("SQLite references", self.sqlite_references)
            self.drivers()
            self.floors()
            self.step("soak", self.soak)
            self.multi_processes()
            self.https()
        self.info["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        self.info["duration_s"] = round(time.monotonic() - started, 1)
        self.ratios()
        text = self.table()
        print(text, end="")
        out = BENCH / "results"
        out.mkdir(exist_ok=True)
        (out / f"{NAME}.txt").write_text(text)
        report = {
            "machine": self.info,
            "rows": [asdict(r) for r in self.rows],
            "failures": self.failures,
        }
        (out / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
        took = self.info["duration_s"]
        print(f"bench: {len(self.rows)} rows in {took} s; wrote bench/results/{NAME}.txt, .json")
        return 1 if self.failures else 0


DRIVERS = {
    "rust": [str(RUST_DRIVER)],
    "node": ["node", str(BENCH / "node.mjs")],
    "python": [PYTHON, str(BENCH / "python.py")],
}


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted numbers (the rule every driver uses)."""
    if not sorted_values:
        return 0
    i = min(max(math.ceil(q * len(sorted_values)), 1), len(sorted_values)) - 1
    return sorted_values[i]


def columns(cols: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    """A text table: the header, a rule, the body; columns in `right` right-aligned."""
    widths = [
        max(len(c), *(len(b[k]) for b in body)) if body else len(c) for k, c in enumerate(cols)
    ]

    def fmt(cells: list[str]) -> str:
        out = [
            c.rjust(widths[k]) if k in right else c.ljust(widths[k]) for k, c in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    return [fmt(cols), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)]


def durability(info: dict[str, Any]) -> str:
    """The header's account of the server's durability settings, as the server reported
    them (SHOW), and of what was asked for when it differs."""
    keys = ("fsync", "synchronous_commit", "full_page_writes")
    values = {k: info.get(f"pg_{k}", "?") for k in keys}
    durable = all(v == "on" for v in values.values())
    text = ", ".join(f"{k}={v}" for k, v in values.items()) + (
        " (durable, as users run it)"
        if durable
        else " (not durable: a crash may lose committed data)"
    )
    text += (
        f"; wal_sync_method={info.get('pg_wal_sync_method', '?')}; "
        f"data directory on {info.get('pg_data_filesystem', '?')}"
    )
    asked = info.get("pg_fsync_asked")
    if asked and asked != values["fsync"]:
        text += f"; KEYLEASH_PG_FSYNC={asked} was asked, but this server was not started for it"
    return text


def fmt_share(share: float | None) -> str:
    """A CPU share of one core as a percentage: 1.45 -> '145%'."""
    return "" if share is None else f"{share * 100:.0f}%"


def fmt_num(value: float | None, spec: str) -> str:
    return "" if value is None else spec.format(value)


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.5f}" if ms < 0.01 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def run_json(
    cmd: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    started: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Runs a driver; its JSON lines, or a Failure naming how it died. `started` is
    given the driver's pid as soon as it runs (a Probe's watch)."""
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    if started is not None:
        started(p.pid)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        p.kill()
        p.communicate()
        raise Failure(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from e
    if p.returncode != 0:
        what = " ".join([Path(c).name for c in cmd if "://" not in c][:3])
        raise Failure(f"{what} exited {p.returncode}: {err.strip()[-400:]}")
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise Failure(f"{Path(cmd[0]).name} printed no result: {out.strip()[-200:]}")
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Failure(
                f"the server exited {server.returncode}: {log.read_text().strip()[-400:]}"
            )
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise Failure("the server did not listen within 60 s")


def peak_rss_of(pid: int) -> float | None:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else None


def wrk(port: int, keys: Path) -> dict[str, Any]:
    """One wrk run against POST /v1/chat: req/s, p50 and p99 (wrk --latency)."""
    cmd = [
        "wrk",
        "-t2",
        f"-c{CALLERS}",
        f"-d{WHOLE_SECONDS}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "wrk.lua"),
        f"http://127.0.0.1:{port}",
    ]
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=WHOLE_SECONDS + 60,
        env=os.environ | {"BENCH_WRK_KEYS": str(keys)},
    )
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", p.stdout, re.M)
    total = re.search(r"^\s*(\d+) requests in ", p.stdout, re.M)
    if p.returncode != 0 or rps is None:
        raise Failure(f"wrk exited {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}")
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", p.stdout, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", p.stdout
    )
    return {
        "driver": "wrk",
        "ops_per_s": float(rps.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "p50_ms": wrk_ms(lat.get("50")),
        "p99_ms": wrk_ms(lat.get("99")),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "output": p.stdout,
    }


def wrk_ms(text: str | None) -> float | None:
    """wrk's '812.00us' / '3.21ms' / '1.02s' in milliseconds."""
    if text is None:
        return None
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def main() -> int:
    if not os.environ.get("DATABASE_URL"):
        sys.exit("bench/run.py: DATABASE_URL is not set (run it through `make bench`)")
    for tool in (PGBENCH, str(RUST_DRIVER)):
        if not Path(tool).exists():
            sys.exit(f"bench/run.py: {tool} is missing (run it through `make bench`)")
    if shutil.which("wrk") is None:
        sys.exit("bench/run.py: wrk is missing (run it through `make bench`, which installs it)")
    with tempfile.TemporaryDirectory(prefix="keyleash-bench-") as tmp:
        return Bench(Path(tmp)).run()


if __name__ == "__main__":
    sys.exit(main())
