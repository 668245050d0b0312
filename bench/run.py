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
  wrk, random keys and one hot key; with BENCH_AGENTKEY (a checkout or bare git
  directory of agentkey, which no registry has) also the same route built on
  agentkey itself (bench/agentkey/server.mjs), Express's peer.

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
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
# The soak case's calls: ten million by default, fewer in bench-short.
SOAK_CALLS = int(os.environ.get("BENCH_SOAK_CALLS") or 10_000_000)
DEFAULT_PG_POOL = 10  # keyleash's default Postgres pool size (docs/api.md)


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
    ratio_ref: float | None = None
    ratio_peer: float | None = None
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
        p = subprocess.run(
            [PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.pg_url, "-c", sql],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            raise Failure(f"psql failed: {p.stderr.strip()}")
        return p.stdout.strip()

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
            "pg_fsync": self.psql("SHOW fsync"),
            "pg_synchronous_commit": self.psql("SHOW synchronous_commit"),
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
        """One pgbench run: tps from its report, p50/p99 from its per-transaction log."""
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
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=WHOLE_SECONDS + 120)
        tps = re.search(r"^tps = ([\d.]+)", p.stdout, re.M)
        avg = re.search(r"^latency average = ([\d.]+) ms", p.stdout, re.M)
        failed = re.search(r"^number of failed transactions: (\d+)", p.stdout, re.M)
        if p.returncode != 0 or tps is None or (failed and failed.group(1) != "0"):
            raise Failure(
                f"pgbench {script} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}"
            )
        # Log line: client_id transaction_no time_us script_no time_epoch time_us_frac
        lat_us = sorted(
            int(line.split()[2])
            for f in logdir.iterdir()
            for line in f.read_text().splitlines()
            if line
        )
        return {
            "driver": "pgbench",
            "case": label,
            "ops_per_s": float(tps.group(1)),
            "ops": len(lat_us),
            "latency_avg_ms": float(avg.group(1)) if avg else None,
            "p50_ms": percentile(lat_us, 0.5) / 1000,
            "p99_ms": percentile(lat_us, 0.99) / 1000,
        }

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
        line = run_json(
            [*DRIVERS[lang], case, url, str(keys), str(SECONDS), str(CALLERS)],
            timeout=SECONDS * 3 + 60,
        )[0]
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
        self.add(
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
        env = os.environ | {"BENCH_START_AT": str(int(time.time() * 1000) + 2500)}
        cmd = [*DRIVERS["node"], "mp", self.pg_url, str(keys), str(SECONDS), str(CALLERS)]
        running = [
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
            )
            for _ in range(procs)
        ]
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

    def http(self, app: str) -> None:
        cmd = {
            "express": ["node", str(ROOT / "examples" / "express-app" / "server.js")],
            "fastapi": [PYTHON, str(ROOT / "examples" / "fastapi-app" / "app.py")],
        }[app]
        with self.served(app, cmd, Path(cmd[1]).parent) as (server, port):
            for hot in (False, True):
                self.vacuum()
                keys = self.pg_hot if hot else self.pg_keys
                line = wrk(port, keys)
                line["rss_mb"] = peak_rss_of(server.pid)
                name = f"{app} POST /v1/chat, {'hot key' if hot else 'random'}"
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
                        note="validate+charge per request; RSS of the server"
                        + (
                            f"; {line['non_2xx']} non-2xx, {line['socket_errors']} socket errors"
                            if problems
                            else ""
                        ),
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
                    note="agentkey's middleware + trackUsage (1 cent); RSS of the server",
                )
                self.add(row, line)

    def https(self) -> None:
        if AGENTKEY_HTTP:
            self.step("HTTP: agentkey's Express route under wrk", self.agentkey_http)
        for app in ("express", "fastapi"):
            self.step(f"HTTP: {app} example under wrk", self.http, app)

    # ------------------------------------------------------------------ output

    def ratios(self) -> None:
        by_id = {r.id: r for r in self.rows if r.id}
        for r in self.rows:
            if r.ref in by_id and by_id[r.ref].ops_per_s:
                r.ratio_ref = r.ops_per_s / by_id[r.ref].ops_per_s
            if r.peer in by_id and by_id[r.peer].ops_per_s:
                r.ratio_peer = r.ops_per_s / by_id[r.peer].ops_per_s

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
            f"postgres {i['postgres']} (private cluster: fsync={i['pg_fsync']}, "
            f"synchronous_commit={i['pg_synchronous_commit']}); "
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
                    f"{r.rss_mb:.0f}" if r.rss_mb else "",
                    r.note,
                ]
            )
        widths = [
            max(len(c), *(len(b[k]) for b in body)) if body else len(c) for k, c in enumerate(cols)
        ]
        right = {2, 3, 4, 5, 6, 7}

        def fmt(cells: list[str]) -> str:
            out = [
                c.rjust(widths[k]) if k in right else c.ljust(widths[k])
                for k, c in enumerate(cells)
            ]
            return "  ".join(out).rstrip()

        lines = [*head, fmt(cols), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)]
        if self.failures:
            lines += ["", f"FAILURES ({len(self.failures)}):", *(f"  - {f}" for f in self.failures)]
        return "\n".join(lines) + "\n"

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


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.5f}" if ms < 0.01 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def run_json(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Runs a driver; its JSON lines, or a Failure naming how it died."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from e
    if p.returncode != 0:
        what = " ".join([Path(c).name for c in cmd if "://" not in c][:3])
        raise Failure(f"{what} exited {p.returncode}: {p.stderr.strip()[-400:]}")
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise Failure(f"{Path(cmd[0]).name} printed no result: {p.stdout.strip()[-200:]}")
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
