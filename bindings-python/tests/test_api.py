"""Every method of ``keyleash.KeyLeash`` on both stores, through the built extension:
result shapes (``to_dict()`` is the camelCase JSON of docs/api.md), attributes, semantics."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest

import keyleash
from conftest import Db, charged, open_db, reason, valid


# Pins create's and validate's exact JSON and the snake_case attributes over it.
async def test_create_and_validate_shapes(db: Db) -> None:
    k = await db.kl.create(
        account_id="acct_1",
        user_id="user_9",
        scopes=["proxy.chat"],
        budget_cents=5000,
        budget_period="month",
        expires_in="7d",
        delegated_by="user_456",
        name="agent",
        metadata={"team": "ml", "n": [1, 2]},
    )
    assert k.key.startswith("ak_") and len(k.key) > 30
    assert k.to_dict() == {
        "key": k.key,
        "id": k.id,
        "scopes": ["proxy.chat"],
        "budgetCents": 5000,
        "budgetPeriod": "month",
        "expiresAt": "2026-01-22T12:00:00.000Z",
    }
    assert k.expires_at == datetime(2026, 1, 22, 12, tzinfo=UTC)
    assert k.key not in repr(k)
    v = await db.kl.validate(k.key)
    assert v.to_dict() == {
        "valid": True,
        "id": k.id,
        "accountId": "acct_1",
        "userId": "user_9",
        "scopes": ["proxy.chat"],
        "budgetCents": 5000,
        "budgetUsedCents": 0,
        "budgetHeldCents": 0,
        "budgetRemainingCents": 5000,
        "budgetPeriod": "month",
        "budgetResetAt": "2026-02-15T12:00:00.000Z",
        "expiresAt": "2026-01-22T12:00:00.000Z",
        "delegatedBy": "user_456",
        "name": "agent",
    }
    assert isinstance(v, keyleash.ValidKey) and v.account_id == "acct_1"
    assert v.budget_reset_at == datetime(2026, 2, 15, 12, tzinfo=UTC)
    assert v.budget_remaining_cents == 5000 and v.delegated_by == "user_456"
    # to_dict() is a copy: mutating it does not change the result.
    v.to_dict()["valid"] = False
    assert v.to_dict()["valid"] is True


# Pins the invalid shape: unknown, malformed, empty keys give {"valid": false, "reason": "invalid"}.
async def test_unknown_keys_are_invalid(db: Db) -> None:
    for raw in ["ak_" + "a" * 38, "nope", "", "ak_" + "x" * 500]:
        v = await db.kl.validate(raw)
        assert v.to_dict() == {"valid": False, "reason": "invalid"}
        assert isinstance(v, keyleash.InvalidKey) and v.reason == "invalid"


# Pins the result classes: the *_from_dict functions pick them by valid / success, a
# class's own from_dict refuses the other kind, and Validation / ChargeResult are unions.
def test_result_classes() -> None:
    v = keyleash.validation_from_dict({"valid": True, "id": 3, "accountId": "a", "name": "n"})
    assert isinstance(v, keyleash.ValidKey) and (v.id, v.account_id, v.name) == (3, "a", "n")
    i = keyleash.validation_from_dict({"valid": False, "reason": "expired"})
    assert isinstance(i, keyleash.InvalidKey) and i.reason == "expired" and not i.has_scope("x")
    assert isinstance(v, keyleash.Validation) and isinstance(i, keyleash.Validation)
    assert not hasattr(v, "reason") and not hasattr(i, "account_id")
    c = keyleash.charge_result_from_dict({"success": True})
    assert isinstance(c, keyleash.Charged) and c.budget_used_cents is None
    r = keyleash.charge_result_from_dict({"success": False, "reason": "revoked"})
    assert isinstance(r, keyleash.ChargeRefused) and r.reason == "revoked"
    assert isinstance(c, keyleash.ChargeResult) and isinstance(r, keyleash.ChargeResult)
    assert not hasattr(c, "reason") and not hasattr(r, "budget_used_cents")
    with pytest.raises(keyleash.InvalidArgumentError, match=r"ValidKey\.from_dict got valid=False"):
        keyleash.ValidKey.from_dict({"valid": False, "reason": "expired"})
    with pytest.raises(keyleash.InvalidArgumentError, match="ChargeRefused"):
        keyleash.ChargeRefused.from_dict({"success": True})
    with pytest.raises(keyleash.InvalidArgumentError, match="InvalidKey"):
        keyleash.validation_from_dict({"valid": 1})


# Pins track_usage: exact sub-cent amounts, zero cost, refusals and their reasons.
async def test_track_usage(db: Db) -> None:
    k = await db.kl.create(account_id="a", budget_cents=10)
    r = await db.kl.track_usage(k.key, 0.25)
    assert r.to_dict() == {"success": True, "budgetUsedCents": 0.25, "budgetRemainingCents": 9.75}
    assert isinstance(r, keyleash.Charged) and r.budget_used_cents == 0.25
    assert (await db.kl.track_usage(k.key, cost_cents=0)).to_dict() == {"success": True}
    for bad in [math.nan, math.inf, -math.inf, -1, -0.000001]:
        refused = await db.kl.track_usage(k.key, bad)
        assert refused.to_dict() == {"success": False, "reason": "invalid_cost"}
    over = await db.kl.track_usage(k.key, 9.76)
    assert over.to_dict() == {"success": False, "reason": "budget_exceeded"}
    assert isinstance(over, keyleash.ChargeRefused) and over.reason == "budget_exceeded"
    unknown = await db.kl.track_usage("ak_" + "b" * 38, 1)
    assert unknown.to_dict() == {"success": False, "reason": "invalid_key"}
    # 100 concurrent charges of 0.0001 cents add up exactly.
    await asyncio.gather(*(db.kl.track_usage(k.key, 0.0001) for _ in range(100)))
    assert db.used_micros(k.id) == 250_000 + 10_000
    uncapped = await db.kl.create(account_id="a")
    free = await db.kl.track_usage(uncapped.key, 3)
    assert free.to_dict() == {"success": True, "budgetUsedCents": 3, "budgetRemainingCents": None}


# Pins idempotency: a repeated idempotency key charges once and replays the first
# result, marked "charged"; another cost under it is a conflict.
async def test_idempotency_key(db: Db) -> None:
    k = await db.kl.create(account_id="a", budget_cents=100)
    first = await db.kl.track_usage(k.key, 7, idempotency_key="req-1")
    again = await asyncio.gather(
        *(db.kl.track_usage(k.key, 7, idempotency_key="req-1") for _ in range(10))
    )
    assert all(r.to_dict() == {**first.to_dict(), "replayed": "charged"} for r in again)
    other = await db.kl.track_usage(k.key, 8, idempotency_key="req-1")
    assert isinstance(other, keyleash.ChargeRefused) and other.reason == "idempotency_conflict"
    assert db.ledger(k.id) == (7_000_000, 1)
    entries = await db.kl.usage(k.id)
    assert [e.idempotency_key for e in entries] == ["req-1"]


# Pins expiry by the manual clock: valid before, expired at the instant, uncharged after.
async def test_expiry_and_clock(db: Db) -> None:
    k = await db.kl.create(account_id="a", expires_in="1h")
    assert db.kl.now() == "2026-01-15T12:00:00.000Z"
    db.kl.advance(minutes=59, seconds=59)
    assert (await db.kl.validate(k.key)).valid
    db.kl.advance(seconds=1)
    assert db.kl.now() == "2026-01-15T13:00:00.000Z"
    assert reason(await db.kl.validate(k.key)) == "expired"
    assert reason(await db.kl.track_usage(k.key, 1)) == "expired"
    db.kl.set_now(datetime(2026, 1, 15, 12, 30, tzinfo=UTC))
    assert (await db.kl.validate(k.key)).valid
    db.kl.set_now("2026-03-01T00:00:00Z")
    db.kl.advance(days=-1, hours=1)
    assert db.kl.now() == "2026-02-28T01:00:00.000Z"


# Pins lazy rollover: a spent monthly budget is whole again after the reset.
async def test_period_rollover(db: Db) -> None:
    db.kl.set_now("2026-01-31T12:00:00Z")
    k = await db.kl.create(account_id="a", budget_cents=100, budget_period="month")
    assert charged(await db.kl.track_usage(k.key, 100)).budget_remaining_cents == 0
    assert reason(await db.kl.validate(k.key)) == "budget_exceeded"
    db.kl.advance(days=28)
    v = await db.kl.validate(k.key)
    assert v.valid and v.budget_used_cents == 0
    assert v.to_dict()["budgetResetAt"] == "2026-03-31T12:00:00.000Z"


# Pins revoke: once, by account only when given, and a revoked key is refused.
async def test_revoke(db: Db) -> None:
    k = await db.kl.create(account_id="a")
    assert await db.kl.revoke(k.id, account_id="someone_else") is False
    assert await db.kl.revoke(k.id, "a") is True
    assert await db.kl.revoke(k.id) is False
    assert await db.kl.revoke(999_999) is False
    assert (await db.kl.validate(k.key)).to_dict() == {"valid": False, "reason": "revoked"}
    assert reason(await db.kl.track_usage(k.key, 1)) == "revoked"


# Pins subject rows: idempotent ensure, account defaulting to the subject, charges.
async def test_subjects(db: Db) -> None:
    await db.kl.ensure_subject("idp|machine-7", budget_cents=5, scopes=["read"])
    await db.kl.ensure_subject("idp|machine-7", budget_cents=999)
    v = await db.kl.validate_by_subject("idp|machine-7")
    assert v.valid and v.account_id == "idp|machine-7" and v.budget_cents == 5
    r = await db.kl.track_usage_by_subject("idp|machine-7", 3, idempotency_key="x")
    assert r.to_dict() == {"success": True, "budgetUsedCents": 3, "budgetRemainingCents": 2}
    assert reason(await db.kl.track_usage_by_subject("idp|machine-7", 3)) == "budget_exceeded"
    assert reason(await db.kl.validate_by_subject("nobody")) == "invalid"
    assert reason(await db.kl.track_usage_by_subject("nobody", 1)) == "invalid_key"
    rows = await db.kl.list("idp|machine-7")
    assert len(rows) == 1 and rows[0].external_subject == "idp|machine-7"


# Pins list: every key of the account, oldest first, no secret, metadata kept.
async def test_list(db: Db) -> None:
    a = await db.kl.create(account_id="acct", name="one", metadata={"k": [1, "two"]})
    b = await db.kl.create(account_id="acct", scopes=["read"], budget_cents=3, budget_period="day")
    await db.kl.create(account_id="other")
    await db.kl.revoke(b.id)
    await db.kl.track_usage(b.key, 1)
    rows = await db.kl.list("acct")
    assert [r.id for r in rows] == [a.id, b.id]
    first, second = rows
    assert first.name == "one" and first.metadata == {"k": [1, "two"]}
    assert first.key_prefix and a.key.startswith(first.key_prefix)
    assert first.created_at == datetime(2026, 1, 15, 12, tzinfo=UTC)
    assert second.revoked_at is not None and second.scopes == ["read"]
    d = second.to_dict()
    assert d["budgetPeriod"] == "day" and d["revokedAt"] == "2026-01-15T12:00:00.000Z"
    assert set(d) == {
        "id", "accountId", "userId", "name", "keyPrefix", "scopes", "budgetCents",
        "budgetUsedCents", "budgetHeldCents", "budgetPeriod", "budgetResetAt", "expiresAt",
        "revokedAt", "createdAt", "lastUsedAt", "delegatedBy", "externalSubject", "metadata",
    }  # fmt: skip
    assert all(a.key not in str(r.to_dict()) for r in rows)
    assert await db.kl.list("nobody") == []


# Pins usage: ledger rows in order, with from_ inclusive and to exclusive.
async def test_usage_window(db: Db) -> None:
    k = await db.kl.create(account_id="a")
    for cents in (1, 2, 3):
        await db.kl.track_usage(k.key, cents)
        db.kl.advance(hours=1)
    rows = await db.kl.usage(k.id)
    assert [r.amount_cents for r in rows] == [1, 2, 3]
    assert rows[0].to_dict() == {
        "id": rows[0].id,
        "keyId": k.id,
        "amountCents": 1,
        "createdAt": "2026-01-15T12:00:00.000Z",
        "idempotencyKey": None,
        "holdId": None,
    }
    start = datetime(2026, 1, 15, 13, tzinfo=UTC)
    window = await db.kl.usage(k.id, from_=start, to=start + timedelta(hours=1))
    assert [r.amount_cents for r in window] == [2]
    assert [r.amount_cents for r in await db.kl.usage(k.id, to="2026-01-15T13:00:00Z")] == [1]


# Pins parent keys: a child's charge counts against its parent's cap.
async def test_parent_keys(db: Db) -> None:
    parent = await db.kl.create(account_id="a", budget_cents=10)
    child = await db.kl.create(parent_id=parent.id, budget_cents=100)
    assert (await db.kl.track_usage(child.key, 8)).success
    assert reason(await db.kl.track_usage(child.key, 3)) == "budget_exceeded"
    assert valid(await db.kl.validate(parent.key)).budget_used_cents == 8
    await db.kl.revoke(parent.id)
    assert reason(await db.kl.validate(child.key)) == "revoked"


# Pins has_scope: None = all, exact, admin, trailing wildcard, and False when invalid.
async def test_has_scope(db: Db) -> None:
    cases = {
        None: {"anything": True},
        ("proxy.*",): {"proxy.chat": True, "proxy": False, "other.chat": False},
        ("admin",): {"whatever.x": True},
        ("read",): {"read": True, "write": False},
    }
    for scopes, expected in cases.items():
        k = await db.kl.create(account_id="a", scopes=None if scopes is None else list(scopes))
        v = await db.kl.validate(k.key)
        for scope, want in expected.items():
            assert keyleash.has_scope(v, scope) is want
            assert db.kl.has_scope(v, scope) is want and v.has_scope(scope) is want
    invalid = await db.kl.validate("nope")
    assert keyleash.has_scope(invalid, "anything") is False


# Pins expires_at: an aware datetime or ISO string; naive or past is invalid_argument.
async def test_expires_at(db: Db) -> None:
    at = datetime(2026, 1, 16, 13, 30, tzinfo=UTC)
    k = await db.kl.create(account_id="a", expires_at=at)
    assert k.expires_at == at and k.to_dict()["expiresAt"] == "2026-01-16T13:30:00.000Z"
    k2 = await db.kl.create(account_id="a", expires_at="2026-01-16T14:30:00+01:00")
    assert k2.expires_at == at
    with pytest.raises(keyleash.InvalidArgumentError):
        await db.kl.create(account_id="a", expires_at=datetime(2026, 2, 1))
    with pytest.raises(keyleash.InvalidArgumentError, match="future"):
        await db.kl.create(account_id="a", expires_at="2020-01-01T00:00:00Z")


# Pins the connect options: table name, key prefix, and the async context manager.
async def test_connect_options(store: str) -> None:
    db = await open_db(store, key_prefix="sk_live_", pool_size=2, statement_timeout_ms=2000)
    async with db.kl as kl:
        k = await kl.create(account_id="a")
        assert k.key.startswith("sk_live_") and (await kl.validate(k.key)).valid
        assert reason(await kl.validate("ak_" + k.key[8:])) == "invalid"
    with pytest.raises(keyleash.UnavailableError):
        await db.kl.validate(k.key)
    again = await keyleash.KeyLeash.connect(db.url, table_name=db.table, key_prefix="sk_live_")
    assert (await again.validate(k.key)).valid
    await again.close()
    db.cleanup()


# Pins cancellation: cancelled awaits raise CancelledError, the others get results,
# the loop reports no error, and the key's counter still equals its ledger.
async def test_cancelled_calls(db: Db) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    k = await db.kl.create(account_id="a", budget_cents=1000)
    tasks = [asyncio.create_task(db.kl.track_usage(k.key, 1)) for _ in range(60)]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[::2])
    assert all(isinstance(r, keyleash.ChargeResult) and r.success for r in results[1::2])
    # Cancelled calls run to their end in the core: wait until the counter settles.
    for _ in range(50):
        await asyncio.sleep(0.05)
        if db.ledger(k.id)[1] == 60:
            break
    total, count = db.ledger(k.id)
    assert count >= 30 and db.used_micros(k.id) == total == count * 1_000_000
    assert valid(await db.kl.validate(k.key)).budget_used_cents == count
    loop.set_exception_handler(None)
    assert errors == []
