"""examples/fastapi-app over real HTTP, on both stores: signup, chat with exact
charging, idempotency, the budget running out, a child key, and the docs."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import httpx
import psycopg
import pytest

from conftest import database_url, unique
from server import Server

APP = Path(__file__).resolve().parents[2] / "examples" / "fastapi-app" / "app.py"
# The example's default tables: other tests (and earlier runs) leave them in the test
# Postgres, and a ledger row left from an earlier run, under a reused key id, would
# replay an idempotency key this test expects fresh.
TABLES = ", ".join(
    f"sdk_api_keys{suffix}"
    for suffix in ("", "_ledger", "_rate", "_holds", "_hold_keys", "_accounts")
)
JSON = {"content-type": "application/json"}


def load_example(url: str) -> ModuleType:
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url  # the example reads it at import
    try:
        spec = importlib.util.spec_from_file_location(unique("fastapi_app"), APP)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del os.environ["DATABASE_URL"]
        else:
            os.environ["DATABASE_URL"] = saved
    return module


# Pins the example's whole flow: the docs, signup, exact per-character charging,
# idempotency, 60 parallel calls on 50 cents, and a child key drawing on its parent.
async def test_fastapi_example(store: str) -> None:
    url = database_url(store)
    if store == "postgres":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLES} CASCADE")
    example = load_example(url)
    server = Server(example.app)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            assert (await http.get("/docs")).status_code == 200
            doc = (await http.get("/openapi.json")).json()
            assert doc["paths"]["/v1/chat"]["post"]["security"] == [{"keyleash": []}]
            denied = await http.post("/v1/chat", json={"prompt": "hi"})
            assert (denied.status_code, denied.json()) == (401, {"error": "Missing API key"})
            signup = await http.post("/signup", json={"email": "dev@example.com"})
            assert signup.status_code == 201, signup.text
            assert signup.json()["budgetPeriod"] == "day"
            auth = {"Authorization": f"Bearer {signup.json()['key']}"}
            first = await http.post("/v1/chat", json={"prompt": "hello"}, headers=auth)
            assert first.status_code == 200, first.text
            assert first.json() == {
                "completion": "echo: hello",
                "costCents": pytest.approx(0.55),
                "budgetRemainingCents": pytest.approx(49.45),
            }
            again = {**auth, "Idempotency-Key": "req-1"}
            r1 = (await http.post("/v1/chat", json={"prompt": "a"}, headers=again)).json()
            assert r1["budgetRemainingCents"] == pytest.approx(48.94)
            # A repeat (even with another prompt of the same cost) gets no completion.
            for prompt in ("a", "b"):
                r2 = await http.post("/v1/chat", json={"prompt": prompt}, headers=again)
                replayed = {"error": "idempotency_replayed", "replayed": "charged"}
                assert (r2.status_code, r2.json()) == (409, replayed)
            # Another cost, or a stream, under the same key is a conflict.
            r3 = await http.post("/v1/chat", json={"prompt": "ab"}, headers=again)
            r4 = await http.post("/v1/chat/stream", json={"prompt": "a"}, headers=again)
            conflict = {"error": "idempotency_conflict"}
            assert (r3.status_code, r3.json(), r4.status_code, r4.json()) == (
                422,
                conflict,
                422,
                conflict,
            )
            child = await http.post(
                "/sdk-keys", json={"budget_cents": 1, "name": "agent"}, headers=auth
            )
            assert child.status_code == 201, child.text
            agent = {"Authorization": f"Bearer {child.json()['key']}"}
            ok = await http.post("/v1/chat", json={"prompt": "x" * 50}, headers=agent)
            assert ok.status_code == 200 and ok.json()["budgetRemainingCents"] == 0
            spent = await http.post("/v1/chat", json={"prompt": "x"}, headers=agent)
            assert (spent.status_code, spent.json()) == (429, {"error": "budget_exceeded"})
            # 47.94 cents are left: of 60 parallel 1-cent calls exactly 47 fit.
            calls = [
                http.post("/v1/chat", json={"prompt": "x" * 50}, headers=auth) for _ in range(60)
            ]
            statuses = [r.status_code for r in await asyncio.gather(*calls)]
            assert (statuses.count(200), statuses.count(429)) == (47, 13)
            me = (await http.get("/sdk-keys/me", headers=auth)).json()
            assert me["budgetUsedCents"] == pytest.approx(49.06)
    finally:
        server.stop()
        example.kl.close()
        if store == "sqlite":
            Path(url.removeprefix("sqlite://")).unlink()


# Pins the chat route's body rules (issue 10, the same as Express): nesting up to 32
# levels is parsed, 33 is a bad body (brackets inside strings do not count), and the
# body is read up to exactly 65,536 bytes.
async def test_fastapi_example_body_rules(tmp_path: Path) -> None:
    example = load_example(f"sqlite://{tmp_path / 'example.db'}")
    server = Server(example.app)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            signup = await http.post("/signup", json={"email": "dev@example.com"})
            auth = {"Authorization": f"Bearer {signup.json()['key']}", **JSON}

            def nested(depth: int) -> str:
                return '{"prompt": "[[{{", "a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"

            ok = await http.post("/v1/chat", content=nested(32), headers=auth)
            assert ok.status_code == 200, ok.text
            deep = await http.post("/v1/chat", content=nested(33), headers=auth)
            assert (deep.status_code, deep.json()["error"]) == (400, "invalid_argument")
            prompt = '{"prompt": "' + "[" * 100 + '"}'
            brackets = await http.post("/v1/chat", content=prompt, headers=auth)
            assert brackets.status_code == 200, brackets.text
            exact = '{"prompt": "x"}'.ljust(65_536)
            assert (await http.post("/v1/chat", content=exact, headers=auth)).status_code == 200
            over = await http.post("/v1/chat", content=exact + " ", headers=auth)
            assert (over.status_code, over.json()["error"]) == (413, "payload_too_large")
    finally:
        server.stop()
        example.kl.close()
