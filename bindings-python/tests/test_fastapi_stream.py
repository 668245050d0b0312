"""Streaming under a hold (docs/http.md#streaming) over real HTTP (uvicorn on
127.0.0.1), on both stores: ``GrantedKey.reserve``, ``Spend`` and
``stream_with_hold``'s rule for each way a stream ends, checked in the ledger and
the key's counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response

import keyleash
from conftest import Db, valid
from keyleash.fastapi import GrantedKey, Spend, require_key, stream_with_hold
from server import Server


class Upstream(Exception):
    """The pretend upstream's failure."""


def stream_app(kl: keyleash.KeyLeash, estimate: float = 5) -> tuple[FastAPI, list[Spend]]:
    """``POST /stream?chunks=N&delay=MS&fail=1`` streams N chunks of 0.25 cents under a
    hold of ``estimate``; the list gets each stream's ``Spend`` when its chunks start."""
    app = FastAPI()
    spends: list[Spend] = []

    @app.post("/stream", response_model=None)
    async def stream(
        chunks: int = 4,
        delay: int = 0,
        fail: int = 0,
        key: GrantedKey = Depends(require_key(kl)),  # noqa: B008
    ) -> Response:
        async def words(spend: Spend) -> AsyncIterator[str]:
            spends.append(spend)
            if fail:
                raise Upstream("upstream down")
            for i in range(chunks):
                if delay:
                    await asyncio.sleep(delay / 1000)
                spend.add(0.25)
                yield f"w{i} "

        try:
            return await stream_with_hold(key, estimate, words, ttl="2m")
        except Upstream:
            return JSONResponse({"error": "upstream_failed"}, status_code=502)

    return app, spends


@pytest.fixture
async def served(db: Db) -> AsyncIterator[tuple[httpx.AsyncClient, list[Spend]]]:
    app, spends = stream_app(db.kl)
    server = Server(app)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client, spends
    server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Waits until ``check()`` (the server ends a cut-short stream after the client left)."""
    deadline = time.monotonic() + 5
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.025)


async def ended(spends: list[Spend]) -> bool:
    """Whether the one stream's hold was ended and its settle or release is done."""
    if len(spends) != 1 or spends[0].state == "held":
        return False
    task = spends[0]._settled or spends[0]._released
    return task is not None and task.done()


# Pins: a stream that ends settles what was added, before the last byte, with one
# ledger row naming the hold; nothing stays held.
async def test_stream_end_settles_consumed(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=10)
    resp = await http.post("/stream?chunks=4", headers=bearer(k.key))
    assert (resp.status_code, resp.headers["content-type"], resp.text) == (
        200,
        "text/plain; charset=utf-8",
        "w0 w1 w2 w3 ",
    )
    [spend] = spends
    assert spend.state == "settled"
    [entry] = await db.kl.usage(k.id)
    assert (entry.amount_cents, entry.hold_id) == (1, spend.hold_id)
    v = valid(await db.kl.validate(k.key))
    assert (v.budget_used_cents, v.budget_held_cents) == (1, 0)
    assert db.ledger(k.id) == (1_000_000, 1) and db.used_micros(k.id) == 1_000_000


# Pins: a client that hangs up after three chunks is charged those three (0.75), not
# the estimate nor the twenty the stream would have sent; nothing stays held.
async def test_disconnect_settles_what_was_consumed(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=10)
    text = ""
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=30) as own:
        async with own.stream("POST", "/stream?chunks=20&delay=150", headers=bearer(k.key)) as r:
            async for piece in r.aiter_text():
                text += piece
                if len(text.split()) >= 3:
                    break
    assert text == "w0 w1 w2 "
    await until(lambda: ended(spends), "the stream to end")
    [spend] = spends
    assert (spend.state, spend.consumed_cents) == ("settled", 0.75)
    [entry] = await db.kl.usage(k.id)
    assert (entry.amount_cents, entry.hold_id) == (0.75, spend.hold_id)
    v = valid(await db.kl.validate(k.key))
    assert (v.budget_used_cents, v.budget_held_cents) == (0.75, 0)
    assert db.ledger(k.id) == (750_000, 1) and db.used_micros(k.id) == 750_000


# Pins: a client that hangs up before the first chunk costs nothing: the hold is
# released, no ledger row. The first chunk is produced inside the route, which
# Starlette does not cancel on a disconnect: stream_with_hold asks whether the
# client is still there while it waits for the chunk.
async def test_disconnect_before_output_releases(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=10)

    async def held() -> bool:
        return valid(await db.kl.validate(k.key)).budget_held_cents == 5

    async def call() -> None:
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=30) as own:
            await own.post("/stream?chunks=3&delay=3000", headers=bearer(k.key))

    task = asyncio.ensure_future(call())
    await until(held, "the hold")
    # The first chunk is read before the response starts: the request hangs up
    # while the route is still priming it.
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await until(lambda: ended(spends), "the stream to end")
    assert spends[0].state == "released"
    assert await db.kl.usage(k.id) == []
    assert valid(await db.kl.validate(k.key)).budget_held_cents == 0
    assert db.ledger(k.id) == (0, 0) and db.used_micros(k.id) == 0


# Pins: an upstream that fails before any output releases the hold and the route
# answers it (here 502); no ledger row, nothing held.
async def test_upstream_failure_releases(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=10)
    resp = await http.post("/stream?fail=1", headers=bearer(k.key))
    assert (resp.status_code, resp.text) == (502, '{"error":"upstream_failed"}')
    assert spends[0].state == "released"
    assert await db.kl.usage(k.id) == []
    v = valid(await db.kl.validate(k.key))
    assert (v.budget_used_cents, v.budget_held_cents) == (0, 0)
    assert db.ledger(k.id) == (0, 0)


# Pins: an estimate that does not fit is 429 budget_exceeded and the chunks never
# start.
async def test_estimate_that_does_not_fit_is_429(
    db: Db, served: tuple[httpx.AsyncClient, list[Spend]]
) -> None:
    http, spends = served
    k = await db.kl.create(account_id="a", budget_cents=4.99)
    resp = await http.post("/stream", headers=bearer(k.key))
    assert (resp.status_code, resp.headers["content-type"], resp.text) == (
        429,
        "application/json",
        '{"error":"budget_exceeded"}',
    )
    assert spends == []
    assert db.ledger(k.id) == (0, 0)


# Pins: 40 parallel streams (2-cent holds, 0 to 2 cents spent each) on a 10-cent key:
# used + held never passes the cap, some are refused, and afterwards nothing is held
# and the counter equals the ledger's sum and what the streams consumed.
async def test_parallel_streams_never_pass_the_cap(db: Db) -> None:
    app, spends = stream_app(db.kl, estimate=2)
    server = Server(app)
    k = await db.kl.create(account_id="a", budget_cents=10)
    running, peak = True, 0.0

    async def watch() -> None:
        nonlocal peak
        while running:
            # list, not validate: a key at its cap validates as budget_exceeded.
            [row] = await db.kl.list("a")
            peak = max(peak, row.budget_used_cents + row.budget_held_cents)
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        replies = await asyncio.gather(
            *(
                http.post(f"/stream?chunks={i % 9}&delay=20", headers=bearer(k.key))
                for i in range(40)
            )
        )
    running = False
    await watcher
    server.stop()
    ok = [r for r in replies if r.status_code == 200]
    assert 5 <= len(ok) < 40, len(ok)
    assert all(
        r.status_code == 200 or (r.status_code == 429 and r.text == '{"error":"budget_exceeded"}')
        for r in replies
    )
    assert peak <= 10, peak
    assert all(s.state == "settled" for s in spends)
    spent = round(sum(s.consumed_cents for s in spends) * 1e6)
    v = valid(await db.kl.validate(k.key))
    assert v.budget_held_cents == 0 and v.budget_used_cents <= 10
    assert db.used_micros(k.id) == db.ledger(k.id)[0] == spent


# Pins: reserve's and Spend's arguments are checked (typed errors, never coerced),
# the first of settle and release decides, and the granted key shows no raw key.
async def test_reserve_and_spend_rules(db: Db) -> None:
    k = await db.kl.create(account_id="a", budget_cents=10)
    app = FastAPI()
    report: dict[str, Any] = {}

    @app.get("/")
    async def probe(key: GrantedKey = Depends(require_key(db.kl))) -> dict[str, Any]:  # noqa: B008
        any_key: Any = key
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "str estimate": lambda: any_key.reserve("5"),
            "bool estimate": lambda: any_key.reserve(True),
            "int ttl": lambda: any_key.reserve(5, ttl=120),
            "positional ttl": lambda: any_key.reserve(5, "2m"),
            "unknown keyword": lambda: any_key.reserve(5, idempotencyKey="k"),
            "bad ttl": lambda: any_key.reserve(5, ttl="2 minutes"),
        }
        for label, call in calls.items():
            try:
                await call()
                report[label] = "nothing"
            except Exception as e:
                report[label] = type(e).__name__
        for label, estimate in (("zero", 0), ("too much", 11)):
            refused = await key.reserve(estimate)
            assert not refused.success
            report[label] = refused.to_dict()
        spend = await key.reserve(5, ttl="1m", idempotency_key="s1")
        assert spend.success
        again = await key.reserve(5, idempotency_key="s1")
        # A repeat is no Spend: it names the first hold and holds nothing.
        assert not isinstance(again, Spend) and not again.success
        assert (again.replayed, again.hold_id) == ("held", spend.hold_id)
        for bad in (-1, float("nan"), "1"):
            try:
                spend.add(bad)  # type: ignore[arg-type]
            except keyleash.InvalidArgumentError:
                report.setdefault("add refused", []).append(repr(bad))
        spend.add(1.5)
        spend.add(6)
        a, b = await asyncio.gather(spend.settle(), spend.settle(2))
        report["settles"] = [a.to_dict(), b.to_dict()]
        report["release after settle"] = await spend.release()
        try:
            spend.add(1)
        except keyleash.InvalidArgumentError as e:
            report["add after settle"] = str(e)
        other = await key.reserve(1)
        assert other.success
        report["releases"] = [await other.release(), await other.release()]
        report["settle after release"] = (await other.settle(1)).to_dict()
        report["texts"] = [repr(key), str(key.to_dict()), repr(spend), repr(vars(key))]
        report["hold"] = spend.hold_id
        report["expires"] = spend.expires_at.isoformat() if spend.expires_at else None
        return {}

    server = Server(app)
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (
            await http.get("/", headers={"Authorization": f"bearer  {k.key}"})
        ).status_code == 200
    server.stop()
    assert {label: report[label] for label in list(report)[:6]} == {
        "str estimate": "InvalidArgumentError",
        "bool estimate": "InvalidArgumentError",
        "int ttl": "InvalidArgumentError",
        "positional ttl": "TypeError",
        "unknown keyword": "TypeError",
        "bad ttl": "InvalidDurationError",
    }
    assert report["zero"] == {"success": False, "reason": "invalid_cost"}
    assert report["too much"] == {"success": False, "reason": "budget_exceeded"}
    assert report["add refused"] == ["-1", "nan", "'1'"]
    assert (
        report["settles"]
        == [{"success": True, "budgetUsedCents": 7.5, "budgetRemainingCents": 2.5}] * 2
    )
    assert report["release after settle"] is False
    assert "already settled" in report["add after settle"]
    assert report["releases"] == [True, True]
    assert report["settle after release"] == {"success": False, "reason": "hold_released"}
    assert not any(k.key in text for text in report["texts"])
    assert report["expires"] == "2026-01-15T12:01:00+00:00"
    [entry] = await db.kl.usage(k.id)
    assert (entry.amount_cents, entry.hold_id) == (7.5, report["hold"])
    assert valid(await db.kl.validate(k.key)).budget_held_cents == 0
