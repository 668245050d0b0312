"""Test harness: every test runs on a real SQLite file and a real Postgres
(``DATABASE_URL``, which ``make test`` provides with a private cluster), each in its
own freshly migrated table, with a manual clock, through the built extension."""

from __future__ import annotations

import itertools
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import keyleash

START = "2026-01-15T12:00:00.000Z"
"""The manual clock's first reading (docs/conformance.md's default)."""

STORES = ["sqlite", "postgres"]
_seq = itertools.count()


def unique(tag: str) -> str:
    return f"{tag}_{os.getpid()}_{next(_seq)}"


def database_url(store: str) -> str:
    if store == "sqlite":
        # The time too: pids wrap around, and an earlier run's file would be reused.
        path = Path(tempfile.gettempdir()) / f"{unique('keyleash_py')}_{time.time_ns()}.db"
        return f"sqlite://{path}"
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.fail("DATABASE_URL is not set: run `make test-python`, which starts Postgres")
    return url


def valid(result: keyleash.Validation) -> keyleash.ValidKey:
    """``result``, which must be valid (the test fails here otherwise)."""
    assert result.valid, result
    return result


def charged(result: keyleash.ChargeResult) -> keyleash.Charged:
    """``result``, which must be a charge that succeeded (the test fails otherwise)."""
    assert result.success, result
    return result


def reason(result: keyleash.Validation | keyleash.ChargeResult) -> str:
    """Why ``result``, a validation or a charge, said no (the test fails if it said yes)."""
    assert isinstance(result, keyleash.InvalidKey | keyleash.ChargeRefused), result
    return result.reason


class Db:
    """A migrated keyleash on its own table, plus plain SQL to inspect it."""

    def __init__(self, store: str, url: str, table: str, kl: keyleash.KeyLeash) -> None:
        self.store, self.url, self.table, self.kl = store, url, table, kl

    def render(self, sql: str) -> str:
        return sql.replace("{keys}", self.table).replace("{ledger}", f"{self.table}_ledger")

    def scalar(self, sql: str) -> Any:
        sql = self.render(sql)
        if self.store == "sqlite":
            with sqlite3.connect(self.url.removeprefix("sqlite://")) as conn:
                return conn.execute(sql).fetchone()[0]
        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql).fetchone()
            return None if row is None else row[0]

    def execute(self, sql: str) -> None:
        """Runs a statement outside keyleash (e.g. to break the store under it)."""
        sql = self.render(sql)
        if self.store == "sqlite":
            with sqlite3.connect(self.url.removeprefix("sqlite://")) as conn:
                conn.execute(sql)
        else:
            with psycopg.connect(self.url) as conn:
                conn.execute(sql)

    def used_micros(self, key_id: int) -> int:
        return int(self.scalar(f"SELECT budget_used_micros FROM {{keys}} WHERE id = {key_id}"))

    def ledger(self, key_id: int) -> tuple[int, int]:
        """The sum of the key's ledger rows in micro-cents, and their number."""
        total = self.scalar(
            f"SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM {{ledger}} "
            f"WHERE key_id = {key_id}"
        )
        count = self.scalar(f"SELECT COUNT(*) FROM {{ledger}} WHERE key_id = {key_id}")
        return int(total), int(count)

    def cleanup(self) -> None:
        if self.store == "sqlite":
            path = self.url.removeprefix("sqlite://")
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)


async def open_db(store: str, url: str | None = None, **options: Any) -> Db:
    table = unique("t_py")
    url = url or database_url(store)
    options.setdefault("manual_clock", START)
    kl = await keyleash.KeyLeash.connect(url, table_name=table, **options)
    await kl.migrate()
    return Db(store, url, table, kl)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db(store: str) -> AsyncIterator[Db]:
    d = await open_db(store)
    yield d
    await d.kl.close()
    d.cleanup()
