"""FastAPI over real HTTP (uvicorn on 127.0.0.1), on both stores: every status code
and JSON body of docs/http.md from ``require_key``, every rule of the self-serve routes,
and the OpenAPI document (bearer security, request and response models)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import keyleash
import keyleash.sync
from conftest import Db, reason, valid
from keyleash.fastapi import agentkey_router
from server import Server, make_app

SIGNUP = {"signup_scopes": ["proxy.chat", "read"], "signup_budget_cents": 100}


@pytest.fixture
async def http(db: Db) -> AsyncIterator[httpx.AsyncClient]:
    server = Server(make_app(db.kl, **SIGNUP))
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        yield client
    server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def expect(resp: httpx.Response, status: int, body: Any) -> None:
    assert (resp.status_code, resp.json()) == (status, body), resp.text
    assert resp.headers["content-type"] == "application/json"


# Pins require_key's denials: 401 missing/invalid/expired/revoked, 429, 403.
async def test_require_key_denials(db: Db, http: httpx.AsyncClient) -> None:
    missing = {"error": "Missing API key"}
    await expect(await http.post("/v1/chat"), 401, missing)
    # The core's JSON text, byte for byte (as the Express package sends it).
    assert (await http.post("/v1/chat")).content == b'{"error":"Missing API key"}'
    await expect(await http.post("/v1/chat", headers={"Authorization": "Basic abc"}), 401, missing)
    await expect(await http.post("/v1/chat", headers={"Authorization": "Bearer"}), 401, missing)
    await expect(await http.post("/v1/chat", headers=bearer("ak_nope")), 401, {"error": "invalid"})
    expiring = await db.kl.create(account_id="a", scopes=["proxy.chat"], expires_in="1h")
    revoked = await db.kl.create(account_id="a", scopes=["proxy.chat"])
    await db.kl.revoke(revoked.id)
    spent = await db.kl.create(account_id="a", scopes=["proxy.chat"], budget_cents=1)
    await db.kl.track_usage(spent.key, 1)
    narrow = await db.kl.create(account_id="a", scopes=["read", "proxy.embed"])
    await expect(
        await http.post("/v1/chat", headers=bearer(revoked.key)), 401, {"error": "revoked"}
    )
    await expect(
        await http.post("/v1/chat", headers=bearer(spent.key)), 429, {"error": "budget_exceeded"}
    )
    await expect(
        await http.post("/v1/chat", headers=bearer(narrow.key)),
        403,
        {
            "error": "insufficient_scope",
            "required": "proxy.chat",
            "available": ["read", "proxy.embed"],
        },
    )
    db.kl.advance(hours=1)
    await expect(
        await http.post("/v1/chat", headers=bearer(expiring.key)), 401, {"error": "expired"}
    )


# Pins require_key's grant: the route gets the validation result as its dependency.
async def test_require_key_grants(db: Db, http: httpx.AsyncClient) -> None:
    k = await db.kl.create(account_id="acct_9", scopes=["proxy.*"], budget_cents=40)
    await db.kl.track_usage(k.key, 15)
    resp = await http.post("/v1/chat", headers={"authorization": f"bearer  {k.key}"})
    assert resp.status_code == 200
    assert resp.json() == {"keyId": k.id, "account": "acct_9", "remaining": 25}
    whoami = await http.get("/v1/whoami", headers=bearer(k.key))
    assert whoami.json() == (await db.kl.validate(k.key)).to_dict()


# Pins fail-closed: a store that fails answers 500 auth_unavailable on every route.
async def test_store_failure_is_500(db: Db, http: httpx.AsyncClient) -> None:
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"])
    await db.kl.close()
    down = {"error": "auth_unavailable"}
    await expect(await http.post("/v1/chat", headers=bearer(k.key)), 500, down)
    await expect(await http.get("/auth/sdk-keys/me", headers=bearer(k.key)), 500, down)
    await expect(await http.post("/auth/signup", json={"email": "a@b.c"}), 500, down)


# Pins POST /signup: email required, signup scopes only, limits, a fresh account each.
async def test_signup(db: Db, http: httpx.AsyncClient) -> None:
    await expect(
        await http.post("/auth/signup", json={}), 400, {"error": "Valid email is required"}
    )
    await expect(
        await http.post("/auth/signup", json={"email": "a@b.c", "scopes": ["admin", "read"]}),
        400,
        {"error": "Scopes not allowed on signup: admin", "allowed": ["proxy.chat", "read"]},
    )
    resp = await http.post("/auth/signup", json={"email": "a@b.c"})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert set(created) == {"key", "id", "scopes", "budgetCents", "budgetPeriod", "expiresAt"}
    assert created["scopes"] == ["proxy.chat", "read"] and created["budgetCents"] == 100
    assert created["expiresAt"] == "2026-01-16T12:00:00.000Z"
    v = valid(await db.kl.validate(created["key"]))
    assert v.user_id == "a@b.c"
    other = (await http.post("/auth/signup", json={"email": "a@b.c", "scopes": ["read"]})).json()
    assert valid(await db.kl.validate(other["key"])).account_id != v.account_id
    assert other["scopes"] == ["read"]
    too_big = await http.post("/auth/signup", json={"email": "a@b.c", "budget_cents": 101})
    assert (too_big.status_code, too_big.json()["error"]) == (400, "invalid_argument")
    too_long = await http.post("/auth/signup", json={"email": "a@b.c", "expires_in": "2d"})
    assert (too_long.status_code, too_long.json()["error"]) == (400, "invalid_argument")
    bad = await http.post("/auth/signup", json={"email": "a@b.c", "expires_in": "7x"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_duration")
    for body in ["{", "[1]", '{"scopes": "read"}']:
        malformed = await http.post(
            "/auth/signup", content=body, headers={"content-type": "application/json"}
        )
        assert (malformed.status_code, malformed.json()["error"]) == (400, "invalid_argument")


# Pins GET /sdk-keys/me and POST /sdk-keys: a child never wider than its caller.
async def test_me_and_mint(db: Db, http: httpx.AsyncClient) -> None:
    await expect(await http.get("/auth/sdk-keys/me"), 401, {"error": "Missing API key"})
    parent = await db.kl.create(
        account_id="acct", user_id="u1", scopes=["proxy.chat", "read"], budget_cents=50,
        expires_in="2d",
    )  # fmt: skip
    me = await http.get("/auth/sdk-keys/me", headers=bearer(parent.key))
    await expect(me, 200, (await db.kl.validate(parent.key)).to_dict())
    h = bearer(parent.key)
    wider = await http.post("/auth/sdk-keys", json={"scopes": ["admin"]}, headers=h)
    await expect(
        wider,
        403,
        {"error": "insufficient_scope", "required": "admin", "available": ["proxy.chat", "read"]},
    )
    richer = await http.post("/auth/sdk-keys", json={"budget_cents": 51}, headers=h)
    assert (richer.status_code, richer.json()["error"]) == (403, "budget_exceeds_parent")
    longer = await http.post("/auth/sdk-keys", json={"expires_in": "3d"}, headers=h)
    assert (longer.status_code, longer.json()["error"]) == (403, "expiry_exceeds_parent")
    resp = await http.post(
        "/auth/sdk-keys", json={"scopes": ["read"], "budget_cents": 30, "name": "bot"}, headers=h
    )
    assert resp.status_code == 201, resp.text
    child = resp.json()
    assert child["scopes"] == ["read"] and child["expiresAt"] == "2026-01-17T12:00:00.000Z"
    cv = valid(await db.kl.validate(child["key"]))
    assert cv.account_id == "acct" and cv.delegated_by == "u1" and cv.name == "bot"
    assert (await db.kl.track_usage(child["key"], 30)).success
    assert valid(await db.kl.validate(parent.key)).budget_used_cents == 30
    assert reason(await db.kl.track_usage(child["key"], 0.5)) == "budget_exceeded"


# Pins DELETE /sdk-keys/{id}: the caller and its descendants only, 400 for a bad id,
# 404 otherwise (another key of the same account included, issue 21 (10)).
async def test_revoke_route(db: Db, http: httpx.AsyncClient) -> None:
    mine = await db.kl.create(account_id="acct")
    peer = await db.kl.create(account_id="acct")
    child = await db.kl.create(account_id="acct", parent_id=mine.id)
    stranger = await db.kl.create(account_id="other")
    h = bearer(mine.key)
    await expect(await http.delete(f"/auth/sdk-keys/{child.id}"), 401, {"error": "Missing API key"})
    for bad in ["abc", "-1", "0", "1.5"]:
        await expect(
            await http.delete(f"/auth/sdk-keys/{bad}", headers=h), 400, {"error": "Invalid key ID"}
        )
    await expect(
        await http.delete(f"/auth/sdk-keys/{stranger.id}", headers=h), 404, {"error": "not_found"}
    )
    assert (await db.kl.validate(stranger.key)).valid
    await expect(
        await http.delete(f"/auth/sdk-keys/{peer.id}", headers=h), 404, {"error": "not_found"}
    )
    assert (await db.kl.validate(peer.key)).valid
    await expect(await http.delete(f"/auth/sdk-keys/{child.id}", headers=h), 200, {"revoked": True})
    await expect(
        await http.delete(f"/auth/sdk-keys/{child.id}", headers=h), 404, {"error": "not_found"}
    )
    assert reason(await db.kl.validate(child.key)) == "revoked"


# Pins the OpenAPI document: bearer security with an Authorize button, models documented.
async def test_openapi(db: Db, http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["keyleash"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    protected = [
        ("/v1/chat", "post"),
        ("/auth/sdk-keys/me", "get"),
        ("/auth/sdk-keys", "post"),
        ("/auth/sdk-keys/{key_id}", "delete"),
    ]
    for path, method in protected:
        assert doc["paths"][path][method]["security"] == [{"keyleash": []}], path
    assert "security" not in doc["paths"]["/auth/signup"]["post"]
    signup = doc["paths"]["/auth/signup"]["post"]
    schema = signup["requestBody"]["content"]["application/json"]["schema"]
    assert {"email", "scopes", "budget_cents", "expires_in"} <= set(schema["properties"])
    ok = signup["responses"]["201"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/CreatedKeyResponse"}
    assert "budgetCents" in doc["components"]["schemas"]["CreatedKeyResponse"]["properties"]
    mint = doc["paths"]["/auth/sdk-keys"]["post"]
    assert "requestBody" in mint and "403" in mint["responses"]
    docs = await http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# Pins the router's options: bad config fails at once; require_email=False works.
async def test_router_options(db: Db) -> None:
    with pytest.raises(keyleash.InvalidDurationError):
        agentkey_router(db.kl, signup_expires_in="forever")
    with pytest.raises(keyleash.InvalidPeriodError):
        agentkey_router(db.kl, signup_budget_period="year")
    server = Server(make_app(db.kl, require_email=False, signup_expires_in="1h"))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            resp = await client.post("/auth/signup")
            assert resp.status_code == 201, resp.text
            created = resp.json()
            assert created["scopes"] == [] and created["expiresAt"] == "2026-01-15T13:00:00.000Z"
            v = await db.kl.validate(created["key"])
            assert v.valid and v.user_id is None and not v.has_scope("read")
    finally:
        server.stop()


# Pins that the sync facade plugs into FastAPI the same way.
async def test_sync_facade_in_fastapi(db: Db) -> None:
    sync_kl = keyleash.sync.KeyLeash(db.kl)
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"])
    server = Server(make_app(sync_kl))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.post("/v1/chat", headers=bearer(k.key))).status_code == 200
            assert (await client.post("/v1/chat")).status_code == 401
    finally:
        server.stop()


def break_store(db: Db) -> None:
    """A real store failure: the keys table disappears under the running server."""
    db.execute("ALTER TABLE {keys} RENAME TO {keys}_gone")


def keyleash_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "keyleash"]


# Pins issue 10 (5): each 500 auth_unavailable logs its cause once, at error level,
# on the "keyleash" logger, without the key; other denials log nothing.
async def test_store_failure_is_logged(
    db: Db, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="keyleash")
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"])
    await expect(await http.post("/v1/chat", headers=bearer("ak_nope")), 401, {"error": "invalid"})
    assert keyleash_logs(caplog) == []
    break_store(db)
    requests = [
        ("POST", "/v1/chat", bearer(k.key), None),
        ("GET", "/auth/sdk-keys/me", bearer(k.key), None),
        ("POST", "/auth/signup", {}, {"email": "a@b.c"}),
        ("POST", "/auth/sdk-keys", bearer(k.key), {}),
        ("DELETE", f"/auth/sdk-keys/{k.id}", bearer(k.key), None),
    ]
    for method, path, headers, body in requests:
        caplog.clear()
        resp = await http.request(method, path, headers=headers, json=body)
        await expect(resp, 500, {"error": "auth_unavailable"})
        [record] = keyleash_logs(caplog)
        message = record.getMessage()
        assert record.levelno == logging.ERROR
        assert db.table in message and "migrate()" in message, message
        assert k.key not in message and k.key not in resp.text


MAX_BODY = 65_536
TOO_LARGE = {"error": "payload_too_large", "message": "request body is larger than 65536 bytes"}
JSON = {"content-type": "application/json"}


# Pins issue 10 (6): the self-serve routes read at most 65,536 bytes of body: more is
# the core's 413 (declared or streamed without a length); exactly 65,536 is read.
async def test_body_limit(db: Db, http: httpx.AsyncClient) -> None:
    k = await db.kl.create(account_id="a", scopes=["read"])
    big = b'{"email": "a@b.c", "name": "' + b"x" * 100_000 + b'"}'
    await expect(await http.post("/auth/signup", content=big, headers=JSON), 413, TOO_LARGE)
    mint = await http.post("/auth/sdk-keys", content=big, headers={**JSON, **bearer(k.key)})
    await expect(mint, 413, TOO_LARGE)

    async def streamed() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    resp = await http.post("/auth/signup", content=streamed(), headers=JSON)
    assert "content-length" not in resp.request.headers
    await expect(resp, 413, TOO_LARGE)
    exact = b'{"email": "a@b.c"}'.ljust(MAX_BODY)
    assert len(exact) == MAX_BODY
    resp = await http.post("/auth/signup", content=exact, headers=JSON)
    assert resp.status_code == 201, resp.text
    over = await http.post("/auth/signup", content=exact + b" ", headers=JSON)
    await expect(over, 413, TOO_LARGE)


# Pins issue 10 (7): unknown body fields are refused (a typo must not mint an
# uncapped key), naming the field.
async def test_unknown_body_fields(db: Db, http: httpx.AsyncClient) -> None:
    k = await db.kl.create(account_id="a", scopes=["read"], budget_cents=50)
    resp = await http.post("/auth/sdk-keys", json={"budgetCents": 20}, headers=bearer(k.key))
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_argument")
    assert "budgetCents" in resp.json()["message"]
    resp = await http.post("/auth/signup", json={"email": "a@b.c", "budgetCents": 20})
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_argument")
    assert "budgetCents" in resp.json()["message"]
    assert [s.id for s in await db.kl.list("a")] == [k.id]


async def signups(url: str, n: int, email: str = "a@b.c") -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        return [await client.post("/auth/signup", json={"email": email}) for _ in range(n)]


# Pins issue 10 (7): the signup rate limit per client address (429 with Retry-After),
# per email domain, and turned off with False.
async def test_signup_rate_limit(db: Db) -> None:
    server = Server(make_app(db.kl, signup_rate_limit=2, signup_rate_limit_per_domain=3))
    try:
        first = await signups(server.url, 3)
        assert [r.status_code for r in first] == [201, 201, 429]
        refused = first[2]
        body = refused.json()
        assert body["error"] == "rate_limited" and isinstance(body["retryAfter"], int)
        assert body["retryAfter"] > 0 and refused.headers["retry-after"] == str(body["retryAfter"])
    finally:
        server.stop()
    # Another router on the same database: its per-domain limit counts the two above.
    server = Server(make_app(db.kl, signup_rate_limit=False, signup_rate_limit_per_domain=3))
    try:
        assert [r.status_code for r in await signups(server.url, 2)] == [201, 429]
        assert "retry-after" in (await signups(server.url, 1))[0].headers
        others = await signups(server.url, 25, email="x@elsewhere.example")
        assert [r.status_code for r in others] == [201, 201, 201] + [429] * 22
    finally:
        server.stop()
    server = Server(make_app(db.kl, signup_rate_limit=False))
    try:
        assert {r.status_code for r in await signups(server.url, 25, "y@z.example")} == {201}
    finally:
        server.stop()
    assert db.scalar("SELECT COUNT(*) FROM {keys}") == 2 + 1 + 3 + 25


# Pins the router's option checks: a wrong type or a limit out of 1..=1,000,000 fails
# when the router is made, never on the first request; None is not "off" (False is).
async def test_router_option_types(db: Db) -> None:
    any_router: Any = agentkey_router
    bad: list[dict[str, Any]] = [
        {"signup_rate_limit": None},
        {"signup_rate_limit": 0},
        {"signup_rate_limit": -1},
        {"signup_rate_limit": True},
        {"signup_rate_limit": 20.0},
        {"signup_rate_limit": "20"},
        {"signup_rate_limit": 1_000_001},
        {"signup_rate_limit": 2**40},
        {"signup_rate_limit": 2**70},
        {"signup_rate_limit_per_domain": 0},
        {"signup_rate_limit_per_domain": False},
        {"signup_scopes": "read"},
        {"signup_budget_cents": True},
        {"signup_budget_cents": "50"},
        {"signup_expires_in": 3600},
        {"require_email": "no"},
    ]
    for options in bad:
        with pytest.raises(keyleash.InvalidArgumentError):
            any_router(db.kl, **options)
    agentkey_router(db.kl, signup_rate_limit=1_000_000, signup_rate_limit_per_domain=1)


# Pins issue 21 (4): behind a Unix socket (request.client is None) the signups share
# one bucket of the per-address limit: 20 of 25 pass, the rest are 429.
async def test_signups_over_unix_socket_share_one_limit(db: Db, tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    server = Server(make_app(db.kl, require_email=False), uds=path)
    try:
        transport = httpx.AsyncHTTPTransport(uds=path)
        async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
            answers = [await client.post("/auth/signup", json={}) for _ in range(25)]
    finally:
        server.stop()
    assert [r.status_code for r in answers] == [201] * 20 + [429] * 5, answers[-1].text
    last = answers[-1]
    assert last.json()["error"] == "rate_limited"
    assert last.headers["retry-after"] == str(last.json()["retryAfter"])
    assert db.scalar("SELECT COUNT(*) FROM {keys}") == 20


# Pins issue 21 (10): a key revokes itself and its descendants, never its parent, a
# sibling or another key of its account (404, as an unknown id).
async def test_revoke_only_descendants(db: Db, http: httpx.AsyncClient) -> None:
    root = await db.kl.create(account_id="acct")
    peer = await db.kl.create(account_id="acct")

    async def mint(key: str) -> dict[str, Any]:
        resp = await http.post("/auth/sdk-keys", json={}, headers=bearer(key))
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()
        return created

    child = await mint(root.key)
    sibling = await mint(root.key)
    grandchild = await mint(child["key"])

    async def delete(key: str, key_id: int) -> httpx.Response:
        return await http.delete(f"/auth/sdk-keys/{key_id}", headers=bearer(key))

    not_found = {"error": "not_found"}
    await expect(await delete(child["key"], root.id), 404, not_found)
    await expect(await delete(child["key"], sibling["id"]), 404, not_found)
    await expect(await delete(child["key"], peer.id), 404, not_found)
    await expect(await delete(grandchild["key"], child["id"]), 404, not_found)
    for key in (root.key, peer.key, child["key"], sibling["key"]):
        assert (await db.kl.validate(key)).valid
    await expect(await delete(root.key, grandchild["id"]), 200, {"revoked": True})
    await expect(await delete(sibling["key"], sibling["id"]), 200, {"revoked": True})
    await expect(await delete(root.key, child["id"]), 200, {"revoked": True})


# Pins issue 21 (10): POST /sdk-keys allows 50 children per calling key an hour by
# default, then 429 rate_limited with Retry-After; another key is not affected.
async def test_mint_rate_limit_default(db: Db, http: httpx.AsyncClient) -> None:
    p = await db.kl.create(account_id="acct")
    q = await db.kl.create(account_id="acct")
    answers = [await http.post("/auth/sdk-keys", json={}, headers=bearer(p.key)) for _ in range(51)]
    assert [r.status_code for r in answers] == [201] * 50 + [429], answers[-1].text
    last = answers[-1]
    assert (last.json()["error"], last.json()["retryAfter"]) == ("rate_limited", 72)
    assert last.headers["retry-after"] == "72"
    ok = await http.post("/auth/sdk-keys", json={}, headers=bearer(q.key))
    assert ok.status_code == 201, ok.text


# Pins the mint_rate_limit option: a chosen limit counted per key tree, False for off,
# checked at once.
async def test_mint_rate_limit_option(db: Db) -> None:
    p = await db.kl.create(account_id="acct")
    server = Server(make_app(db.kl, mint_rate_limit=2))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            statuses = [
                (await client.post("/auth/sdk-keys", json={}, headers=bearer(p.key))).status_code
                for _ in range(3)
            ]
            # The allowance is the tree's: a child's mints count on its root key.
            root = await db.kl.create(account_id="acct")
            child = (await client.post("/auth/sdk-keys", json={}, headers=bearer(root.key))).json()
            tree = [
                (await client.post("/auth/sdk-keys", json={}, headers=bearer(key))).status_code
                for key in (child["key"], child["key"], root.key)
            ]
    finally:
        server.stop()
    assert statuses == [201, 201, 429]
    assert tree == [201, 429, 429]
    server = Server(make_app(db.kl, mint_rate_limit=False))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            for _ in range(60):
                r = await client.post("/auth/sdk-keys", json={}, headers=bearer(p.key))
                assert r.status_code == 201, r.text
    finally:
        server.stop()
    any_router: Any = agentkey_router
    for bad in [None, 0, -1, True, 2.0, "5", 1_000_001]:
        with pytest.raises(keyleash.InvalidArgumentError):
            any_router(db.kl, mint_rate_limit=bad)
    with pytest.raises(keyleash.InvalidArgumentError, match="the mint rate limit must be"):
        agentkey_router(db.kl, mint_rate_limit=0)


# Pins issue 21 (9): the raw bytes go to the core: a leading UTF-8 BOM is skipped, a
# charset other than UTF-8 is 415 unsupported_charset, bytes not UTF-8 are 400.
async def test_body_encodings(db: Db, http: httpx.AsyncClient) -> None:
    p = await db.kl.create(account_id="acct")
    json_type = {"content-type": "application/json"}
    bom = await http.post(
        "/auth/sdk-keys",
        content=b"\xef\xbb\xbf" + b'{"name": "bom"}',
        headers={**json_type, **bearer(p.key)},
    )
    assert bom.status_code == 201, bom.text
    utf16 = await http.post(
        "/auth/signup",
        content='{"email": "a@b.c"}'.encode("utf-16-le"),
        headers={"content-type": "application/json; charset=utf-16le"},
    )
    message = 'request body: charset "utf-16le" is not supported; send JSON as UTF-8'
    await expect(utf16, 415, {"error": "unsupported_charset", "message": message})
    latin = await http.post("/auth/signup", content=b'{"email": "\xe9@b.c"}', headers=json_type)
    assert (latin.status_code, latin.json()["error"]) == (400, "invalid_argument")
