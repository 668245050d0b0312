"""Idempotency keys over real HTTP (uvicorn on 127.0.0.1), on both stores: a
repeated key never serves new work (``stream_with_hold`` answers 409 and never
starts the chunks, whatever the first hold became), a key reused for another
operation is 422, and the library's results say a replay is one. Checked in the
ledger and the key's counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.responses import JSONResponse, Response

import keyleash
from conftest import Db, valid
from keyleash.fastapi import GrantedKey, Spend, require_key, stream_with_hold
from server import Server


def replay_app(kl: keyleash.KeyLeash) -> tuple[FastAPI, list[Spend]]:
    """``POST /stream?chunks=N&delay=MS&fail=1`` streams N chunks of 0.25 cents under
    a 5-cent hold named by the ``idempotency-key`` header, ``POST /charge?cost=C``
    charges under it; the list gets each stream's ``Spend`` when its chunks start."""
    app = FastAPI()
    spends: list[Spend] = []

    @app.post("/stream", response_model=None)
    async def stream(
        chunks: int = 4,
        delay: int = 0,
        fail: int = 0,
        key: GrantedKey = Depends(require_key(kl)),  # noqa: B008
        idempotency_key: str | None = Header(default=None),
    ) -> Response:
        async def words(spend: Spend) -> AsyncIterator[str]:
            spends.append(spend)
            if fail:
                raise ConnectionError("upstream down")
            for i in range(chunks):
                if delay:
                    await asyncio.sleep(delay / 1000)
                spend.add(0.25)
                yield f"w{i} "

        try:
            return await stream_with_hold(key, 5, words, ttl="2m", idempotency_key=idempotency_key)
        except ConnectionError:
            return JSONResponse({"error": "upstream_failed"}, status_code=502)

    @app.post("/charge")
    async def charge(
        cost: float,
        key: GrantedKey = Depends(require_key(kl)),  # noqa: B008
        idempotency_key: str | None = Header(default=None),
    ) -> Response:
        result = await key.charge(cost, idempotency_key=idempotency_key)
        return JSONResponse(result.to_dict())

    return app, spends


@pytest.fixture
async def served(db: Db) -> AsyncIterator[tuple[httpx.AsyncClient, list[Spend]]]:
    app, spends = replay_app(db.kl)
    server = Server(app)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client, spends
    server.stop()


def headers(key: str, idem: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}


def replayed(state: str) -> dict[str, str]:
    return {"error": "idempotency_replayed", "replayed": state}


# Pins: after a stream under an idempotency key settled, the same key streams nothing
# more: 409 replayed "settled" each time, the chunks never started, one ledger row.
async def test_settled_key_streams_nothing_more(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=50)
    first = await http.post("/stream?chunks=4", headers=headers(k.key, "k"))
    assert (first.status_code, first.text) == (200, "w0 w1 w2 w3 ")
    for _ in range(6):
        again = await http.post("/stream?chunks=20", headers=headers(k.key, "k"))
        assert (again.status_code, again.json()) == (409, replayed("settled"))
    assert len(spends) == 1
    v = valid(await db.kl.validate(k.key))
    assert (v.budget_used_cents, v.budget_held_cents) == (1, 0)
    assert db.ledger(k.id) == (1_000_000, 1) and db.used_micros(k.id) == 1_000_000


# Pins: twenty concurrent streams sharing one idempotency key: exactly one streams,
# the others are 409 (the first hold held, or settled by then), one ledger row.
async def test_concurrent_streams_sharing_a_key(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=50)
    replies = await asyncio.gather(
        *(
            http.post("/stream?chunks=4&delay=100", headers=headers(k.key, "shared"))
            for _ in range(20)
        )
    )
    assert [r.text for r in replies if r.status_code == 200] == ["w0 w1 w2 w3 "]
    for r in replies:
        if r.status_code != 200:
            assert r.status_code == 409
            assert r.json() in (replayed("held"), replayed("settled"))
    assert len(spends) == 1
    assert db.ledger(k.id) == (1_000_000, 1) and db.used_micros(k.id) == 1_000_000
    assert valid(await db.kl.validate(k.key)).budget_held_cents == 0


# Pins: a key whose first stream failed before any output (its hold released) does
# not buy a free stream later: 409 replayed "released", nothing charged.
async def test_released_key_streams_nothing(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=50)
    assert (await http.post("/stream?fail=1", headers=headers(k.key, "f"))).status_code == 502
    again = await http.post("/stream?chunks=20", headers=headers(k.key, "f"))
    assert (again.status_code, again.json()) == (409, replayed("released"))
    assert len(spends) == 1
    assert db.ledger(k.id) == (0, 0)


# Pins: an idempotency key names one operation: a charge repeated replays its first
# result marked "charged"; another cost, a stream under a charge's key and a charge
# under a stream's key are conflicts (422 for a stream) that change nothing.
async def test_key_bound_to_its_operation(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=50)
    first = (await http.post("/charge?cost=3", headers=headers(k.key, "c"))).json()
    assert first == {"success": True, "budgetUsedCents": 3, "budgetRemainingCents": 47}
    again = (await http.post("/charge?cost=3", headers=headers(k.key, "c"))).json()
    assert again == {**first, "replayed": "charged"}
    other = (await http.post("/charge?cost=4", headers=headers(k.key, "c"))).json()
    assert other == {"success": False, "reason": "idempotency_conflict"}
    stream = await http.post("/stream", headers=headers(k.key, "c"))
    assert (stream.status_code, stream.json()) == (422, {"error": "idempotency_conflict"})
    assert (await http.post("/stream?chunks=1", headers=headers(k.key, "s"))).status_code == 200
    charge = (await http.post("/charge?cost=5", headers=headers(k.key, "s"))).json()
    assert charge == {"success": False, "reason": "idempotency_conflict"}
    assert len(spends) == 1
    assert db.ledger(k.id) == (3_250_000, 2) and db.used_micros(k.id) == 3_250_000


# Pins the library's answers (the repro): a reserve repeated after its hold
# was settled is no success and names the settled hold, while a fresh reserve of the
# same estimate is refused; a charge replay is a Charged marked "charged".
async def test_library_replays(db: Db) -> None:
    k = await db.kl.create(account_id="a", budget_cents=10)
    held = await db.kl.reserve(k.key, 5, idempotency_key="x")
    assert isinstance(held, keyleash.Held)
    await db.kl.settle(held.hold_id, 9)
    replay = await db.kl.reserve(k.key, 5, idempotency_key="x")
    assert isinstance(replay, keyleash.ReserveRefused)
    assert (replay.success, replay.reason, replay.replayed) == (
        False,
        "idempotency_replayed",
        "settled",
    )
    assert (replay.hold_id, replay.expires_at) == (held.hold_id, held.expires_at)
    fresh = await db.kl.reserve(k.key, 5)
    assert (fresh.success, getattr(fresh, "reason", None)) == (False, "budget_exceeded")
    k2 = await db.kl.create(account_id="a", budget_cents=10)
    c1 = await db.kl.track_usage(k2.key, 2, idempotency_key="y")
    c2 = await db.kl.track_usage(k2.key, 2, idempotency_key="y")
    assert isinstance(c1, keyleash.Charged) and isinstance(c2, keyleash.Charged)
    assert (c1.replayed, c2.replayed) == (None, "charged")
    assert c2.budget_used_cents == c1.budget_used_cents == 2
    c3 = await db.kl.track_usage(k2.key, 3, idempotency_key="y")
    assert isinstance(c3, keyleash.ChargeRefused) and c3.reason == "idempotency_conflict"
    assert db.ledger(k2.id) == (2_000_000, 1)
