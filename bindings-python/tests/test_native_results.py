"""The result objects the native module builds (src/results.rs) are the ones the pure
Python builder ``_Result._own`` makes of the same JSON: same class, same attributes
with the same types, ``to_dict()`` the core's JSON, lists and dicts never shared."""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime
from typing import Any

import keyleash
from conftest import Db, open_db
from keyleash.results import _Result


def same_as_own(result: Any) -> None:
    """``result`` equals, attribute by attribute and type by type, what ``_own`` makes
    of its ``to_dict()``; none of its lists or dicts is the one in its ``_raw``."""
    assert isinstance(result, _Result), result
    rebuilt = type(result)._own(copy.deepcopy(result.to_dict()))
    assert vars(result).keys() == vars(rebuilt).keys(), (vars(result), vars(rebuilt))
    for name, value in vars(result).items():
        assert value == vars(rebuilt)[name], name
        assert type(value) is type(vars(rebuilt)[name]), name
    assert result == rebuilt and repr(result) == repr(rebuilt)
    assert dataclasses.asdict(result) == dataclasses.asdict(rebuilt)
    raw = vars(result)["_raw"]
    for name, value in vars(result).items():
        if name != "_raw" and isinstance(value, list | dict):
            assert all(value is not v for v in raw.values()), name


# Pins the native builder against _own for every kind of result the core returns.
async def test_every_result_is_what_own_makes(db: Db) -> None:
    k = await db.kl.create(
        account_id="a",
        scopes=["proxy.chat", "admin"],
        budget_cents=10,
        budget_period="day",
        expires_in="7d",
        metadata={"team": ["x", {"y": 1.5}], "n": None},
    )
    same_as_own(k)
    v = await db.kl.validate(k.key)
    assert isinstance(v, keyleash.ValidKey) and isinstance(v.budget_reset_at, datetime)
    same_as_own(v)
    same_as_own(await db.kl.validate("ak_x"))
    same_as_own(await db.kl.track_usage(k.key, 1))
    same_as_own(await db.kl.track_usage(k.key, 0))
    same_as_own(await db.kl.track_usage(k.key, 1, idempotency_key="i"))
    replay = await db.kl.track_usage(k.key, 1, idempotency_key="i")
    assert isinstance(replay, keyleash.Charged) and replay.replayed == "charged"
    same_as_own(replay)
    same_as_own(await db.kl.track_usage(k.key, 100))
    held = await db.kl.reserve(k.key, 1, idempotency_key="r")
    assert isinstance(held, keyleash.Held) and isinstance(held.expires_at, datetime)
    same_as_own(held)
    same_as_own(await db.kl.reserve(k.key, 1, idempotency_key="r"))
    same_as_own(await db.kl.settle(held.hold_id, 1))
    same_as_own(await db.kl.settle(10**9, 1))
    summaries = await db.kl.list("a")
    assert summaries[0].metadata == {"team": ["x", {"y": 1.5}], "n": None}
    for summary in summaries:
        same_as_own(summary)
    for entry in await db.kl.usage(k.id):
        same_as_own(entry)


# Pins cache hits: each is a new object equal to a freshly built one, with lists of
# its own, however often the same cached answer is served.
async def test_cache_hits_are_fresh_objects(store: str) -> None:
    db = await open_db(store, cache=keyleash.CacheOptions())
    try:
        k = await db.kl.create(account_id="a", scopes=["proxy.chat"], budget_cents=5)
        first, second, third = [await db.kl.validate(k.key) for _ in range(3)]
        stats = db.kl.cache_stats()
        assert stats is not None and stats.hits == 2
        same_as_own(stats)
        for hit in (second, third):
            same_as_own(hit)
            assert hit == first and hit is not first
        assert isinstance(second, keyleash.ValidKey) and isinstance(third, keyleash.ValidKey)
        assert second.scopes is not None and second.scopes is not third.scopes
        second.scopes.append("admin")
        assert third.scopes == ["proxy.chat"]
        fourth = await db.kl.validate(k.key)
        assert isinstance(fourth, keyleash.ValidKey) and fourth.scopes == ["proxy.chat"]
        assert fourth.to_dict()["scopes"] == ["proxy.chat"]
    finally:
        await db.kl.close()
        db.cleanup()
