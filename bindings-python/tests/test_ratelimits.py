"""Rate limits from Python: limits set at create, refusals with their name and wait,
arguments refused by name and type, and parallel charges from asyncio tasks on two
pools checked against the database afterwards, on both stores."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import keyleash
from conftest import START, Db


async def test_a_requests_limit_refuses_past_its_burst(db: Db) -> None:
    kl = db.kl
    k = await kl.create(
        account_id="a",
        budget_cents=1000,
        limits=[
            {"unit": "requests", "limit": 5, "period": "1m"},
            {"unit": "cents", "limit": 20, "period": "1m", "name": "spend"},
        ],
    )
    for _ in range(5):
        assert (await kl.track_usage(k.key, 1)).success
    sixth = await kl.track_usage(k.key, 1)
    assert isinstance(sixth, keyleash.ChargeRefused)
    assert (sixth.reason, sixth.limit, sixth.retry_after) == ("rate_limited", "requests", 12)
    assert sixth.to_dict() == {
        "success": False,
        "reason": "rate_limited",
        "limit": "requests",
        "retryAfter": 12,
    }
    kl.advance(seconds=12)
    big = await kl.track_usage(k.key, 20)
    assert not big.success and (big.reason, big.limit) == ("rate_limited", "spend")
    # The refused 20 cents used no request up: 19 pass.
    assert (await kl.track_usage(k.key, 19)).success
    assert db.used_micros(k.id) == 24_000_000
    assert db.ledger(k.id) == (24_000_000, 6)


async def test_parallel_charges_from_two_pools_admit_exactly_the_burst(db: Db) -> None:
    other = await keyleash.KeyLeash.connect(db.url, table_name=db.table, manual_clock=START)
    k = await db.kl.create(
        account_id="a", limits=[{"unit": "requests", "limit": 50, "period": "1h"}]
    )
    calls = [(other if i % 2 else db.kl).track_usage(k.key, 1) for i in range(120)]
    results = await asyncio.gather(*calls)
    assert sum(r.success for r in results) == 50
    assert all(r.success or r.reason == "rate_limited" for r in results)
    assert db.ledger(k.id) == (50_000_000, 50)
    await other.close()


async def test_a_concurrent_limit_counts_open_holds(db: Db) -> None:
    kl = db.kl
    k = await kl.create(
        account_id="a", limits=[{"unit": "concurrent", "limit": 2, "name": "streams"}]
    )
    holds = await asyncio.gather(*(kl.reserve(k.key, 1) for _ in range(6)))
    held = [h for h in holds if isinstance(h, keyleash.Held)]
    assert len(held) == 2
    refused = next(h for h in holds if not h.success)
    assert isinstance(refused, keyleash.ReserveRefused)
    assert (refused.reason, refused.limit, refused.retry_after) == ("rate_limited", "streams", None)
    assert await kl.release(held[0].hold_id)
    assert (await kl.reserve(k.key, 1)).success
    view = [{"name": "streams", "unit": "concurrent", "limit": 2, "periodSeconds": None,
             "burst": None}]  # fmt: skip
    v = await kl.validate(k.key)
    assert isinstance(v, keyleash.ValidKey) and v.limits == view
    [summary] = await kl.list("a")
    assert summary.limits == view
    plain = await kl.create(account_id="a")
    plain_v = await kl.validate(plain.key)
    assert isinstance(plain_v, keyleash.ValidKey) and plain_v.limits is None


async def test_set_limits_keeps_what_a_kept_limit_counted(db: Db) -> None:
    kl = db.kl
    k = await kl.create(account_id="a", limits=[{"unit": "requests", "limit": 4, "period": "1m"}])
    for _ in range(3):
        assert (await kl.track_usage(k.key, 1)).success
    assert await kl.set_limits(k.id, [{"unit": "requests", "limit": 6, "period": "1m"}], "a")
    after = await asyncio.gather(*(kl.track_usage(k.key, 1) for _ in range(6)))
    assert sum(r.success for r in after) == 3
    assert not await kl.set_limits(k.id, [], "b")
    assert not await kl.set_limits(k.id + 100, [])
    with pytest.raises(keyleash.InvalidArgumentError, match="unknown option 'brust'"):
        await kl.set_limits(k.id, [{"unit": "requests", "limit": 5, "period": "1m", "brust": 2}])  # type: ignore[typeddict-unknown-key]
    with pytest.raises(keyleash.InvalidArgumentError):
        await kl.set_limits(k.id, None)  # type: ignore[arg-type]
    assert await kl.set_limits(k.id, [])
    assert (await kl.track_usage(k.key, 1)).success
    assert db.ledger(k.id) == (7_000_000, 7)


BAD: list[tuple[Any, str]] = [
    ({"unit": "requests", "limit": 5, "perod": "1m"}, "unknown option 'perod'"),
    ({"limit": 5, "period": "1m"}, "unit is required"),
    ({"unit": "requests", "limit": "5", "period": "1m"}, "limits[0].limit must be an int"),
    ({"unit": "requests", "limit": 2.5, "period": "1m"}, "limits[0].limit must be an int"),
    ({"unit": "requests", "limit": True, "period": "1m"}, "limits[0].limit must be an int"),
    ({"unit": "requests", "limit": 5, "period": "1m", "burst": 0}, "limits[0].burst must be"),
    ({"unit": "request", "limit": 5, "period": "1m"}, "must be requests, cents or concurrent"),
    ({"unit": "concurrent", "limit": 5, "period": "1m"}, "takes no period"),
    ({"unit": "cents", "limit": 5}, "needs a period"),
    ("5/m", "limits[0] must be a mapping"),
]


@pytest.mark.parametrize(("limit", "message"), BAD)
async def test_bad_limits_are_refused_and_mint_nothing(db: Db, limit: Any, message: str) -> None:
    with pytest.raises(keyleash.InvalidArgumentError, match=None) as e:
        await db.kl.create(account_id="a", limits=[limit])
    assert message in str(e.value)
    with pytest.raises(keyleash.InvalidArgumentError):
        await db.kl.create(account_id="a", limits={"unit": "requests"})  # type: ignore[arg-type]
    assert await db.kl.list("a") == []
