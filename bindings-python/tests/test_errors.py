"""Every error code of docs/errors.md as its typed exception, on both stores, and no
secret (raw key, database password) in any message."""

from __future__ import annotations

import pytest

import keyleash
from conftest import Db, database_url, open_db, unique
from keyleash import (
    InvalidArgumentError,
    InvalidDurationError,
    InvalidPeriodError,
    InvalidScopeError,
    KeyLeashError,
    UnavailableError,
)


def check(err: pytest.ExceptionInfo[KeyLeashError], cls: type[KeyLeashError], code: str) -> None:
    assert type(err.value) is cls and isinstance(err.value, KeyLeashError)
    assert err.value.code == code


# Pins invalid_scope: a malformed scope, and one outside valid_scopes.
async def test_invalid_scope(store: str) -> None:
    db = await open_db(store, valid_scopes=["read", "write"])
    with pytest.raises(KeyLeashError) as e:
        await db.kl.create(account_id="a", scopes=["delete"])
    check(e, InvalidScopeError, "invalid_scope")
    assert "delete" in str(e.value)
    with pytest.raises(KeyLeashError) as e:
        await db.kl.create(account_id="a", scopes=["bad scope!"])
    check(e, InvalidScopeError, "invalid_scope")
    with pytest.raises(InvalidScopeError):
        await db.kl.ensure_subject("s", scopes=["admin"])
    assert (await db.kl.create(account_id="a", scopes=["read"])).scopes == ["read"]
    await db.kl.close()
    db.cleanup()


# Pins invalid_duration and invalid_period on create and ensure_subject.
async def test_invalid_duration_and_period(db: Db) -> None:
    for bad in ["7x", "-1h", "", "1.5h"]:  # "0d" is valid: expired from creation
        with pytest.raises(KeyLeashError) as e:
            await db.kl.create(account_id="a", expires_in=bad)
        check(e, InvalidDurationError, "invalid_duration")
    for bad in ["year", "Month", ""]:
        with pytest.raises(KeyLeashError) as e:
            await db.kl.create(account_id="a", budget_period=bad)
        check(e, InvalidPeriodError, "invalid_period")
    with pytest.raises(InvalidPeriodError):
        await db.kl.ensure_subject("s", budget_period="fortnight")


# Pins invalid_argument: the caller's mistakes in every method that takes text.
async def test_invalid_argument(db: Db) -> None:
    k = await db.kl.create(account_id="a")
    mistakes = [
        db.kl.create(),
        db.kl.create(account_id="x" * 513),
        db.kl.create(account_id="a", budget_cents=-1),
        db.kl.create(account_id="a", budget_cents=float("nan")),
        db.kl.create(account_id="a", expires_in="1d", expires_at="2027-01-01T00:00:00Z"),
        db.kl.create(account_id="a", expires_at="next tuesday"),
        db.kl.create(account_id="a", metadata={"x": object()}),
        db.kl.create(account_id="a", parent_id=424242),
        db.kl.track_usage(k.key, 1, idempotency_key=""),
        db.kl.revoke(k.id, account_id="a\x00b"),
        db.kl.list(""),
        db.kl.usage(k.id, from_="yesterday"),
        db.kl.ensure_subject(""),
    ]
    for call in mistakes:
        with pytest.raises(KeyLeashError) as e:
            await call
        check(e, InvalidArgumentError, "invalid_argument")
    assert (await db.kl.validate(k.key)).valid


# Pins connect's invalid_argument: bad URL scheme, table name, prefix, pool options.
async def test_connect_invalid_argument(store: str) -> None:
    url = database_url(store)
    bad = [
        ("mysql://localhost/db", {}),
        (url, {"table_name": "keys; DROP TABLE x"}),
        (url, {"key_prefix": "bad prefix"}),
        (url, {"pool_size": 0}),
        (url, {"acquire_timeout_ms": -5}),
        (url, {"manual_clock": "not a time"}),
    ]
    for u, options in bad:
        with pytest.raises(KeyLeashError) as e:
            await keyleash.KeyLeash.connect(u, **options)  # type: ignore[arg-type]
        check(e, InvalidArgumentError, "invalid_argument")


# Pins the clock methods on a system-clock instance: invalid_argument, not a crash.
async def test_clock_needs_manual_clock(store: str) -> None:
    kl = await keyleash.KeyLeash.connect(database_url(store), table_name=unique("t_py"))
    for call in (kl.now, lambda: kl.set_now("2026-01-01T00:00:00Z"), lambda: kl.advance(days=1)):
        with pytest.raises(KeyLeashError) as e:
            call()
        check(e, InvalidArgumentError, "invalid_argument")
    await kl.close()


# Pins unavailable: an unreachable server fails fast, and the password is never shown.
async def test_unavailable_without_secrets() -> None:
    url = "postgres://keyleash:hunter2-secret@127.0.0.1:1/nowhere"
    with pytest.raises(KeyLeashError) as e:
        await keyleash.KeyLeash.connect(url, acquire_timeout_ms=500)
    check(e, UnavailableError, "unavailable")
    texts = [str(e.value), repr(e.value), str(e.value.__cause__)]
    assert e.value.__cause__ is not None
    assert all("hunter2" not in t for t in texts)
    with pytest.raises(InvalidArgumentError) as bad:
        await keyleash.KeyLeash.connect("postgres://u:hunter2-secret@[bad")
    assert "hunter2" not in str(bad.value)


# Pins that a raw key never appears in an error message or a result's repr.
async def test_no_raw_key_in_messages(db: Db) -> None:
    k = await db.kl.create(account_id="a")
    with pytest.raises(InvalidArgumentError) as e:
        await db.kl.track_usage(k.key, 1, idempotency_key="x" * 300)
    assert k.key not in str(e.value)
    assert k.key not in repr(k) and k.key not in repr(await db.kl.validate(k.key))
    await db.kl.close()
    with pytest.raises(UnavailableError) as closed:
        await db.kl.track_usage(k.key, 1)
    assert k.key not in str(closed.value)


# Pins that a misspelt option is a TypeError, never silently ignored (an uncapped key).
async def test_unknown_options_are_type_errors(db: Db) -> None:
    with pytest.raises(TypeError, match="budget_cent"):
        await db.kl.create(account_id="a", budget_cent=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="budget_cent"):
        await db.kl.ensure_subject("s", budget_cent=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="pool"):
        await keyleash.KeyLeash.connect(db.url, pool=3)  # type: ignore[call-arg]
    assert await db.kl.list("a") == [] and await db.kl.list("s") == []
