"""admin_router's own part on a real uvicorn server on 127.0.0.1, on both stores:
who gets in, the page and a revoke through the API (checked in the database), its
options and its body limit. The page itself is the core's (core/tests/admin.rs);
bindings-node/test-browser/admin.test.js drives it in Chromium in both examples."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI, Request

from conftest import Db
from keyleash.exceptions import InvalidArgumentError
from keyleash.fastapi import admin_router
from server import Server


def serve(db: Db, authorize: Callable[[Request], bool | Awaitable[bool]] | None) -> Server:
    app = FastAPI()
    app.include_router(admin_router(db.kl, authorize=authorize), prefix="/admin")
    return Server(app)


async def is_admin(request: Request) -> bool:
    return request.headers.get("x-admin") == "yes"


async def test_only_true_lets_a_request_in(db: Db) -> None:
    for authorize in (None, lambda _r: False, lambda _r: 1):
        server = serve(db, authorize)  # type: ignore[arg-type]
        try:
            async with httpx.AsyncClient(base_url=server.url) as client:
                r = await client.get("/admin/")
                assert r.status_code == 401
                assert r.headers["www-authenticate"].startswith('Basic realm="keyleash admin"')
                assert r.json()["error"]["code"] == "unauthorized"
        finally:
            server.stop()


async def test_page_and_a_revoke_through_the_api(db: Db) -> None:
    key = await db.kl.create(account_id="ops", budget_cents=100)
    server = serve(db, is_admin)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers={"x-admin": "yes"}) as c:
            r = await c.get("/admin")
            assert (r.status_code, r.headers["location"]) == (308, "/admin/")
            page = await c.get("/admin/")
            assert page.status_code == 200
            assert "<title>keyleash admin</title>" in page.text
            accounts = (await c.get("/admin/api/accounts", params={"q": "ops"})).json()
            assert [k["id"] for k in accounts["accounts"][0]["keys"]] == [key.id]
            refused = await c.post("/admin/api/revoke", json={"id": key.id})
            assert refused.status_code == 403
            token = (await c.get("/admin/api/session")).json()["csrf"]
            big = await c.post(
                "/admin/api/revoke", content=b"x" * 20_000, headers={"x-keyleash-csrf": token}
            )
            assert big.status_code == 413
            done = await c.post(
                "/admin/api/revoke", json={"id": key.id}, headers={"x-keyleash-csrf": token}
            )
            assert (done.status_code, done.json()) == (200, {"revoked": True})
    finally:
        server.stop()
    assert (
        db.scalar(f"SELECT COUNT(*) FROM {{keys}} WHERE id = {key.id} AND revoked_at IS NOT NULL")
        == 1
    )


def test_options_are_checked(db: Db) -> None:
    with pytest.raises(InvalidArgumentError, match="authorize must be a function"):
        admin_router(db.kl, authorize=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        admin_router(db.kl, authorise=is_admin)  # type: ignore[call-arg]
