"""Holds from Python: reserve, settle and release through the native module on both
stores, arguments refused by type, and parallel reserves from asyncio tasks checked
against the database afterwards."""

from __future__ import annotations

import asyncio

import pytest

import keyleash
import keyleash.sync
from conftest import START, Db, database_url, unique


async def test_reserve_settle_release(db: Db) -> None:
    kl = db.kl
    k = await kl.create(account_id="a", budget_cents=100)
    held = await kl.reserve(k.key, 60, ttl="2m", idempotency_key="call-1")
    assert isinstance(held, keyleash.Held)
    assert (
        held.expires_at is not None and held.expires_at.isoformat() == "2026-01-15T12:02:00+00:00"
    )
    assert held.budget_remaining_cents == 40
    # A repeat holds nothing and is no success: it names the first hold.
    replay = await kl.reserve(k.key, 60, idempotency_key="call-1")
    assert isinstance(replay, keyleash.ReserveRefused)
    assert (replay.reason, replay.replayed, replay.hold_id) == (
        "idempotency_replayed",
        "held",
        held.hold_id,
    )
    assert (replay.expires_at, replay.budget_remaining_cents) == (held.expires_at, 40)
    v = await kl.validate(k.key)
    assert v.valid and v.budget_held_cents == 60
    refused = await kl.reserve(k.key, 50)
    assert not refused.success and refused.reason == "budget_exceeded"
    settled = await kl.settle(held.hold_id, 75)
    assert settled.to_dict() == {"success": True, "budgetUsedCents": 75, "budgetRemainingCents": 25}
    assert await kl.settle(held.hold_id, 1) == settled
    assert not await kl.release(held.hold_id)
    other = await kl.reserve(k.key, 20)
    assert other.success
    assert await kl.release(other.hold_id)
    again = await kl.settle(other.hold_id, 1)
    assert not again.success and again.reason == "hold_released"
    unknown = await kl.settle(999_999, 1)
    assert not unknown.success and unknown.reason == "unknown_hold"
    [entry] = await kl.usage(k.id)
    assert (entry.amount_cents, entry.hold_id) == (75, held.hold_id)


async def test_parallel_reserves_hold_at_most_the_remainder(db: Db) -> None:
    kl = db.kl
    k = await kl.create(account_id="a", budget_cents=100)
    assert (await kl.track_usage(k.key, 50)).success
    results = await asyncio.gather(*(kl.reserve(k.key, 1) for _ in range(200)))
    held = [r for r in results if r.success]
    assert len(held) == 50
    assert all(r.reason == "budget_exceeded" for r in results if not r.success)
    settles = await asyncio.gather(*(kl.settle(h.hold_id, i % 2) for i, h in enumerate(held)))
    assert all(s.success for s in settles)
    v = await kl.validate(k.key)
    assert v.valid and (v.budget_used_cents, v.budget_held_cents) == (75, 0)
    assert db.used_micros(k.id) == 75_000_000
    assert db.ledger(k.id) == (75_000_000, 26)


async def test_bad_arguments_are_refused(db: Db) -> None:
    kl = db.kl
    k = await kl.create(account_id="a", budget_cents=100)
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.reserve(k.key, "5")  # type: ignore[arg-type]
    with pytest.raises(keyleash.InvalidDurationError):
        await kl.reserve(k.key, 5, ttl="2d")
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.settle(True, 1)
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.release("1")  # type: ignore[arg-type]
    zero = await kl.reserve(k.key, 0)
    assert not zero.success and zero.reason == "invalid_cost"


def test_sync_facade(store: str) -> None:
    url = database_url(store)
    sync_kl = keyleash.sync.KeyLeash.connect(url, table_name=unique("t_py"), manual_clock=START)
    sync_kl.migrate()
    k = sync_kl.create(account_id="a", budget_cents=10)
    held = sync_kl.reserve(k.key, 10)
    assert held.success
    assert not sync_kl.reserve(k.key, 1).success
    settled = sync_kl.settle(held.hold_id, 2)
    assert settled.success and settled.budget_used_cents == 2
    sync_kl.set_account_budget("a", 5)
    assert not sync_kl.track_usage(k.key, 5.01).success
    assert sync_kl.track_usage(k.key, 5).success
    sync_kl.close()


async def test_account_ceiling_bounds_the_sum_of_its_keys(db: Db) -> None:
    kl = db.kl
    keys = [await kl.create(account_id="a", budget_cents=1000) for _ in range(4)]
    other = await kl.create(account_id="b")
    await kl.set_account_budget("a", 60, "day")
    results = await asyncio.gather(
        *(
            kl.track_usage(keys[i % 4].key, 1) if i % 2 == 0 else kl.reserve(keys[i % 4].key, 1)
            for i in range(200)
        )
    )
    assert sum(r.success for r in results) == 60
    for k in keys:
        v = await kl.validate(k.key)
        assert not v.valid and v.reason == "budget_exceeded"
    charged = sum(r.success for i, r in enumerate(results) if i % 2 == 0)
    assert sum(db.ledger(k.id)[0] for k in keys) == charged * 1_000_000
    assert (await kl.track_usage(other.key, 500)).success
    # Setting it again with the same period keeps what was used.
    await kl.set_account_budget("a", 100, "day")
    v = await kl.validate(keys[0].key)
    assert v.valid and v.budget_remaining_cents == 40
    # Removed: each key is bound by its own budget again.
    await kl.set_account_budget("a", None)
    v = await kl.validate(keys[0].key)
    assert v.valid and v.budget_remaining_cents == 1000 - v.budget_used_cents - v.budget_held_cents


async def test_account_ceiling_bad_arguments_are_refused(db: Db) -> None:
    kl = db.kl
    k = await kl.create(account_id="a")
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.set_account_budget("a", "5")  # type: ignore[arg-type]
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.set_account_budget("a", -1)
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.set_account_budget("a", float("nan"))
    with pytest.raises(keyleash.InvalidPeriodError):
        await kl.set_account_budget("a", 5, "daily")
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.set_account_budget("a", None, "day")
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.set_account_budget("", 5)
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.set_account_budget(7, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await kl.set_account_budget("a", 5, budget_cents=5)  # type: ignore[misc]
    v = await kl.validate(k.key)
    assert v.valid and v.budget_remaining_cents is None
