"""``GrantedKey.charge`` over real HTTP (uvicorn on 127.0.0.1), on both stores: the
handler charges the key ``require_key`` granted, without its raw key, and the
database (the key's counter and its ledger rows) shows exactly what was charged."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.responses import JSONResponse

import keyleash
import keyleash.sync
from conftest import Db, reason, valid
from keyleash.fastapi import GrantedKey, require_key, spend_refused, store_failed
from server import Server

Hook = Callable[[GrantedKey], Awaitable[None]]


def charge_app(
    kl: keyleash.KeyLeash | keyleash.sync.KeyLeash, between: Hook | None = None
) -> FastAPI:
    """``POST /v1/spend`` ``{"cost": n}`` charges the granted key through ``.charge``
    (``Idempotency-Key`` passed on) and answers the charge result's JSON; ``between``
    runs after the dependency granted the key and before the charge."""
    app = FastAPI()

    @app.post("/v1/spend")
    async def spend(
        body: dict[str, Any],
        key: GrantedKey = Depends(require_key(kl, scope="proxy.chat")),  # noqa: B008
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        if between is not None:
            await between(key)
        charge = await key.charge(body["cost"], idempotency_key=idempotency_key)
        return JSONResponse(charge.to_dict())

    @app.get("/v1/misuse")
    async def misuse(
        key: GrantedKey = Depends(require_key(kl)),  # noqa: B008
    ) -> dict[str, Any]:
        """Each wrong call of ``charge`` and the exception class it raised."""
        any_key: Any = key
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "str cost": lambda: any_key.charge("5"),
            "bool cost": lambda: any_key.charge(True),
            "None cost": lambda: any_key.charge(None),
            "int idempotency key": lambda: any_key.charge(1, idempotency_key=5),
            "positional idempotency key": lambda: any_key.charge(1, "k"),
            "unknown keyword": lambda: any_key.charge(1, idempotencyKey="k"),
            "empty idempotency key": lambda: any_key.charge(1, idempotency_key=""),
        }
        raised: dict[str, str] = {}
        for label, call in calls.items():
            try:
                await call()
                raised[label] = "nothing"
            except Exception as e:
                raised[label] = type(e).__name__
        fields = dataclasses.asdict(key)
        return {
            "raised": raised,
            "isValidation": isinstance(key, keyleash.Validation),
            "reprHasRef": "NativeKeyRef" in repr(key),
            "fields": sorted(fields),
            "toDict": key.to_dict(),
        }

    return app


@pytest.fixture
async def http(db: Db) -> AsyncIterator[httpx.AsyncClient]:
    server = Server(charge_app(db.kl))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def spend(http: httpx.AsyncClient, key: str, cost: float, **headers: str) -> dict[str, Any]:
    resp = await http.post("/v1/spend", json={"cost": cost}, headers=bearer(key, **headers))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# Pins: one .charge writes exactly one ledger row, for that key, of that amount; a
# zero cost and an invalid one write none; other keys are untouched.
async def test_charge_writes_one_ledger_row(db: Db, http: httpx.AsyncClient) -> None:
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"], budget_cents=100)
    other = await db.kl.create(account_id="a", scopes=["proxy.chat"], budget_cents=100)
    charged = await spend(http, k.key, 2.5)
    assert charged == {"success": True, "budgetUsedCents": 2.5, "budgetRemainingCents": 97.5}
    assert await spend(http, k.key, 0) == {"success": True}
    assert await spend(http, k.key, -1) == {"success": False, "reason": "invalid_cost"}
    assert db.ledger(k.id) == (2_500_000, 1)
    assert db.used_micros(k.id) == 2_500_000
    [entry] = await db.kl.usage(k.id)
    assert (entry.key_id, entry.amount_cents, entry.idempotency_key) == (k.id, 2.5, None)
    assert db.scalar("SELECT COUNT(*) FROM {ledger}") == 1
    assert db.ledger(other.id) == (0, 0) and db.used_micros(other.id) == 0
    assert valid(await db.kl.validate(k.key)).budget_used_cents == 2.5


# Pins: a repeated Idempotency-Key is charged once (one ledger row, the same numbers,
# marked as a replay).
async def test_charge_idempotency_key(db: Db, http: httpx.AsyncClient) -> None:
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"], budget_cents=100)
    first = await spend(http, k.key, 3, **{"Idempotency-Key": "req-1"})
    again = await spend(http, k.key, 3, **{"Idempotency-Key": "req-1"})
    assert first == {"success": True, "budgetUsedCents": 3, "budgetRemainingCents": 97}
    assert again == {**first, "replayed": "charged"}
    assert db.ledger(k.id) == (3_000_000, 1)
    [entry] = await db.kl.usage(k.id)
    assert entry.idempotency_key == "req-1" and entry.amount_cents == 3
    await spend(http, k.key, 3, **{"Idempotency-Key": "req-2"})
    assert db.ledger(k.id) == (6_000_000, 2) and db.used_micros(k.id) == 6_000_000


# Pins: 50 parallel requests charging 0.3 cents on a 10-cent key: exactly 33 fit, the
# other 17 are budget_exceeded, and the key's counter equals its ledger's sum.
async def test_charge_cap_under_parallel_requests(db: Db, http: httpx.AsyncClient) -> None:
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"], budget_cents=10)
    results = await asyncio.gather(*(spend(http, k.key, 0.3) for _ in range(50)))
    ok = [r for r in results if r["success"]]
    refused = [r for r in results if not r["success"]]
    assert (len(ok), len(refused)) == (33, 17)
    assert all(r == {"success": False, "reason": "budget_exceeded"} for r in refused)
    assert sorted(round(r["budgetUsedCents"], 6) for r in ok) == [
        round(0.3 * n, 6) for n in range(1, 34)
    ]
    assert db.used_micros(k.id) == 33 * 300_000
    assert db.ledger(k.id) == (33 * 300_000, 33)
    assert valid(await db.kl.validate(k.key)).budget_used_cents == pytest.approx(9.9)


# Pins: a key revoked after require_key granted it, before the handler charges it, is
# refused (revoked) and nothing is written.
async def test_charge_after_revoke_is_refused(db: Db) -> None:
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"], budget_cents=100)

    async def revoke(key: GrantedKey) -> None:
        assert key.valid and key.id == k.id
        assert await db.kl.revoke(key.id)

    server = Server(charge_app(db.kl, between=revoke))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert await spend(http, k.key, 1) == {"success": False, "reason": "revoked"}
            again = await http.post("/v1/spend", json={"cost": 1}, headers=bearer(k.key))
            assert (again.status_code, again.json()) == (401, {"error": "revoked"})
    finally:
        server.stop()
    assert db.ledger(k.id) == (0, 0) and db.used_micros(k.id) == 0
    assert reason(await db.kl.validate(k.key)) == "revoked"


# Pins the argument checks of .charge (as track_usage's): a str, bool or None cost and a
# non-str idempotency key are InvalidArgumentError, a positional idempotency key or an
# unknown keyword TypeError; none reaches the store. The handle is on no field.
async def test_charge_argument_types(db: Db, http: httpx.AsyncClient) -> None:
    k = await db.kl.create(account_id="a", budget_cents=100)
    resp = await http.get("/v1/misuse", headers=bearer(k.key))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["raised"] == {
        "str cost": "InvalidArgumentError",
        "bool cost": "InvalidArgumentError",
        "None cost": "InvalidArgumentError",
        "int idempotency key": "InvalidArgumentError",
        "positional idempotency key": "TypeError",
        "unknown keyword": "TypeError",
        "empty idempotency key": "InvalidArgumentError",
    }
    assert body["isValidation"] and not body["reprHasRef"]
    assert "_key_ref" not in body["fields"]
    assert body["toDict"] == (await db.kl.validate(k.key)).to_dict()
    assert db.ledger(k.id) == (0, 0)
    # Not made by require_key: nothing to charge.
    with pytest.raises(keyleash.InvalidArgumentError):
        await GrantedKey.from_dict(body["toDict"]).charge(1)


# Pins: the sync facade's require_key hands out a GrantedKey that charges the same way.
async def test_charge_through_sync_facade(db: Db) -> None:
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"], budget_cents=5)
    server = Server(charge_app(keyleash.sync.KeyLeash(db.kl)))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await spend(http, k.key, 4))["success"]
            assert await spend(http, k.key, 4) == {"success": False, "reason": "budget_exceeded"}
    finally:
        server.stop()
    assert db.ledger(k.id) == (4_000_000, 1) and db.used_micros(k.id) == 4_000_000


# Pins the answers an app's own route sends (spend_refused, store_failed): the core's
# status and bytes, as stream_with_hold and require_key send them; the store failure
# logged once on the keyleash logger.
def test_answers_for_own_routes(caplog: pytest.LogCaptureFixture) -> None:
    replay = {"success": True, "budgetUsedCents": 1, "budgetRemainingCents": 2}
    cases: list[tuple[keyleash.ChargeResult | keyleash.ReserveResult, int, bytes]] = [
        (
            keyleash.Charged.from_dict({**replay, "replayed": "charged"}),
            409,
            b'{"error":"idempotency_replayed","replayed":"charged"}',
        ),
        (
            keyleash.ReserveRefused.from_dict(
                {"success": False, "reason": "idempotency_replayed", "replayed": "held"}
            ),
            409,
            b'{"error":"idempotency_replayed","replayed":"held"}',
        ),
    ]
    for refusal, status in [
        ("budget_exceeded", 429),
        ("idempotency_conflict", 422),
        ("revoked", 401),
        ("invalid_key", 401),
    ]:
        body = b'{"error":"%s"}' % refusal.encode()
        raw = {"success": False, "reason": refusal}
        cases.append((keyleash.ChargeRefused.from_dict(raw), status, body))
        cases.append((keyleash.ReserveRefused.from_dict(raw), status, body))
    for result, status, body in cases:
        r = spend_refused(result)
        assert (r.status_code, r.body, r.media_type) == (status, body, "application/json")
    served: list[keyleash.ChargeResult | keyleash.ReserveResult] = [
        keyleash.Charged.from_dict(replay),
        keyleash.Held.from_dict({"success": True, "holdId": 1}),
    ]
    for result in served:
        with pytest.raises(keyleash.InvalidArgumentError, match="refused or replayed"):
            spend_refused(result)
    with caplog.at_level(logging.ERROR, logger="keyleash"):
        r = store_failed(keyleash.UnavailableError("key store unavailable: gone"))
    assert (r.status_code, r.body) == (500, b'{"error":"auth_unavailable"}')
    assert [record.getMessage() for record in caplog.records] == [
        "the key store failed (answered 500 auth_unavailable): key store unavailable: gone"
    ]


# Pins: an app reading a body itself gets the self-serve routes' limit and 413 from the
# public module (as Node's MAX_BODY_BYTES and payloadTooLarge), not from _native.
def test_body_limit_for_own_routes() -> None:
    from keyleash.fastapi import MAX_BODY_BYTES, payload_too_large

    assert MAX_BODY_BYTES == 65_536
    r = payload_too_large()
    assert (r.status_code, r.media_type) == (413, "application/json")
    assert r.body == (
        b'{"error":"payload_too_large","message":"request body is larger than 65536 bytes"}'
    )
