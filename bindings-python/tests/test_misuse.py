"""Misuse that Python's coercions used to let through, on both stores and both APIs:
a str where a list of scopes belongs, a str or a bool where an amount or an id
belongs, connect options out of range (one aborted the process), a raw key echoed in
an error, and a database ``migrate()`` never prepared."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import keyleash
import keyleash.sync
from conftest import START, Db, charged, database_url, open_db, unique, valid
from keyleash import InvalidArgumentError, KeyLeashError, NotMigratedError, UnavailableError


def wrong_types(kl: Any, key: str, key_id: int) -> list[Callable[[], Awaitable[Any]]]:
    """Calls whose arguments Python would coerce: each must be refused, typed. (``kl``
    is ``Any``: every argument below has the wrong type on purpose.)"""
    cases: list[Callable[[], Awaitable[Any]]] = [
        lambda: kl.create(account_id="a", scopes="proxy.chat"),
        lambda: kl.create(account_id="a", scopes=b"proxy.chat"),
        lambda: kl.create(account_id="a", scopes=["read", 5]),
        lambda: kl.create(account_id="a", scopes={"read": True}),
        lambda: kl.create(account_id="a", budget_cents=True),
        lambda: kl.create(account_id="a", budget_cents="5"),
        lambda: kl.create(account_id=5),
        lambda: kl.create(account_id="a", name=7),
        lambda: kl.create(account_id="a", expires_in=3600),
        lambda: kl.create(account_id="a", parent_id=True),
        lambda: kl.create(account_id="a", parent_id="1"),
        lambda: kl.ensure_subject("s", scopes="read"),
        lambda: kl.ensure_subject(5),
        lambda: kl.track_usage(key, "5"),
        lambda: kl.track_usage(key, True),
        lambda: kl.track_usage(key, b"5"),
        lambda: kl.track_usage(key, 1, idempotency_key=1),
        lambda: kl.track_usage_by_subject("s", "5"),
        lambda: kl.validate(5),
        lambda: kl.revoke(True),
        lambda: kl.revoke(str(key_id)),
        lambda: kl.revoke(float(key_id)),
        lambda: kl.usage(str(key_id)),
        lambda: kl.list(5),
    ]
    return cases


# Pins issue 10 (1): no coercion: a str is not a list of scopes, "5" and True are not
# amounts, "1" and True are not ids; each is InvalidArgumentError and nothing is stored.
async def test_wrong_types_are_refused(db: Db) -> None:
    k = await db.kl.create(account_id="a", budget_cents=10)
    for i, call in enumerate(wrong_types(db.kl, k.key, k.id)):
        with pytest.raises(InvalidArgumentError) as e:
            await call()
        assert e.value.code == "invalid_argument", i
        assert " must be " in str(e.value), (i, str(e.value))
    assert [s.id for s in await db.kl.list("a")] == [k.id]
    assert await db.kl.list("s") == []
    assert valid(await db.kl.validate(k.key)).budget_used_cents == 0
    with pytest.raises(InvalidArgumentError):
        db.kl.advance(hours="1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        db.kl.advance(days=True)
    with pytest.raises(InvalidArgumentError):
        keyleash.has_scope(await db.kl.validate(k.key), 5)  # type: ignore[arg-type]
    # The right types still work: ints and floats for amounts, any list of str.
    ok = await db.kl.create(account_id="a", scopes=("read", "write"), budget_cents=5)
    assert ok.scopes == ["read", "write"] and ok.budget_cents == 5
    assert (await db.kl.track_usage(ok.key, 1)).success
    assert charged(await db.kl.track_usage(ok.key, 0.5)).budget_used_cents == 1.5
    assert await db.kl.revoke(ok.id)


# Pins issue 10 (1) for the blocking API, which shares the same checks.
def test_wrong_types_are_refused_by_the_sync_api(store: str) -> None:
    kl: Any = keyleash.sync.KeyLeash.connect(
        database_url(store), table_name=unique("t_py"), manual_clock=START
    )
    kl.migrate()
    k = kl.create(account_id="a")
    with pytest.raises(InvalidArgumentError):
        kl.create(account_id="a", scopes="proxy.chat")
    with pytest.raises(InvalidArgumentError):
        kl.create(account_id="a", budget_cents=True)
    with pytest.raises(InvalidArgumentError):
        kl.track_usage(k.key, "5")
    with pytest.raises(InvalidArgumentError):
        kl.revoke(True)
    assert [s.id for s in kl.list("a")] == [k.id]
    assert kl.validate(k.key).budget_used_cents == 0
    kl.close()


# Pins issue 10 (1) on connect: a str of scopes, a bool pool size, a float timeout.
async def test_connect_wrong_types(store: str) -> None:
    url = database_url(store)
    bad: list[dict[str, Any]] = [
        {"valid_scopes": "read"},
        {"pool_size": True},
        {"pool_size": "4"},
        {"acquire_timeout_ms": 1500.0},
        {"statement_timeout_ms": "100"},
        {"table_name": 5},
    ]
    for options in bad:
        with pytest.raises(InvalidArgumentError) as e:
            await keyleash.KeyLeash.connect(url, **options)
        assert " must be " in str(e.value), options
    with pytest.raises(InvalidArgumentError):
        await keyleash.KeyLeash.connect(b"sqlite::memory:")  # type: ignore[arg-type]


def connect_in_child(url: str, option: str, value: int) -> str:
    """Connects in a fresh interpreter, where an abort cannot take pytest down;
    returns what it printed (the refusal) after checking it exited normally."""
    code = (
        "import asyncio, sys, keyleash\n"
        "try:\n"
        f"    asyncio.run(keyleash.KeyLeash.connect(sys.argv[1], {option}={value}))\n"
        "    print('connected')\n"
        "except keyleash.InvalidArgumentError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (option, value, done.returncode, done.stderr[-2000:])
    return done.stdout.strip()


# Pins issue 10 (2): pool sizes out of 1..=1000 are refused with the core's message
# (2**31 used to abort the process on a failed allocation).
@pytest.mark.parametrize("size", [-1, 0, 2**31, 10**10, 1001])
def test_pool_size_out_of_range(tmp_path: Path, size: int) -> None:
    out = connect_in_child(f"sqlite://{tmp_path / 'pool.db'}", "pool_size", size)
    assert out.startswith("InvalidArgumentError "), out
    assert out.endswith(f"pool_size must be a whole number from 1 to 1000, got {size}"), out


# Pins issue 10 (2) for the timeouts: the core's limits (1 ms to 10 min, 1 ms to a day).
def test_timeouts_out_of_range(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'timeouts.db'}"
    for option, value, most in [
        ("acquire_timeout_ms", 0, 600_000),
        ("acquire_timeout_ms", -1, 600_000),
        ("acquire_timeout_ms", 600_001, 600_000),
        ("statement_timeout_ms", 0, 86_400_000),
        ("statement_timeout_ms", 10**12, 86_400_000),
    ]:
        out = connect_in_child(url, option, value)
        assert out.endswith(f"{option} must be a whole number from 1 to {most}, got {value}"), out
    assert connect_in_child(url, "pool_size", 1000) == "connected"


# Pins issue 10 (3): a raw key given where it does not belong is never echoed back
# (float(raw_key) used to raise ValueError quoting the key).
async def test_raw_key_not_in_type_errors(db: Db) -> None:
    k = await db.kl.create(account_id="a", budget_cents=10)
    raw: Any = k.key
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: db.kl.track_usage(raw, raw),
        lambda: db.kl.track_usage_by_subject("s", raw),
        lambda: db.kl.create(account_id="a", budget_cents=raw),
        lambda: db.kl.create(account_id="a", parent_id=raw),
        lambda: db.kl.revoke(raw),
        lambda: db.kl.usage(raw),
    ]
    for call in calls:
        with pytest.raises(KeyLeashError) as e:
            await call()
        assert type(e.value) is InvalidArgumentError
        assert raw not in str(e.value) and raw not in repr(e.value)
        assert raw[3:20] not in str(e.value)
    sync_kl = keyleash.sync.KeyLeash(db.kl)
    with pytest.raises(InvalidArgumentError) as e:
        sync_kl.track_usage(raw, raw)
    assert raw not in str(e.value)


# Pins issue 10 (4): a database migrate() never prepared is NotMigratedError (an
# UnavailableError), whose message points to migrate(); migrate() then fixes it.
async def test_not_migrated(store: str) -> None:
    other = await open_db(store)  # a well-formed key, so validation reaches the store
    raw = (await other.kl.create(account_id="a")).key
    kl = await keyleash.KeyLeash.connect(database_url(store), table_name=unique("t_py"))
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: kl.validate(raw),
        lambda: kl.validate_by_subject("s"),
        lambda: kl.create(account_id="a"),
        lambda: kl.track_usage(raw, 1),
        lambda: kl.list("a"),
        lambda: kl.revoke(1),
        lambda: kl.usage(1),
    ]
    for call in calls:
        with pytest.raises(UnavailableError) as e:
            await call()
        assert type(e.value) is NotMigratedError, repr(e.value)
        assert e.value.code == "not_migrated"
        assert "migrate()" in str(e.value), str(e.value)
    await kl.migrate()
    assert (await kl.create(account_id="a")).id > 0
    await kl.close()
    await other.kl.close()
    other.cleanup()


# Pins the sync API's NotMigratedError too (same class, re-exported at the top).
def test_not_migrated_sync(tmp_path: Path) -> None:
    kl = keyleash.sync.KeyLeash.connect(f"sqlite://{tmp_path / 'fresh.db'}")
    with pytest.raises(keyleash.NotMigratedError, match=r"migrate\(\)"):
        kl.list("a")
    kl.close()
