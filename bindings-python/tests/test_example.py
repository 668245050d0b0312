"""examples/fastapi-app over real HTTP, on both stores: signup, chat with exact
charging, idempotency, the budget running out, a child key, and the docs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from conftest import database_url, unique
from server import Server

APP = Path(__file__).resolve().parents[2] / "examples" / "fastapi-app" / "app.py"


def load_example(url: str) -> ModuleType:
    os.environ["KEYLEASH_DB"] = url
    spec = importlib.util.spec_from_file_location(unique("fastapi_app"), APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Pins the example's whole flow, as its README describes it.
async def test_fastapi_example(store: str) -> None:
    url = database_url(store)
    example = load_example(url)
    server = Server(example.app)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            assert (await http.get("/docs")).status_code == 200
            doc = (await http.get("/openapi.json")).json()
            assert doc["paths"]["/v1/chat"]["post"]["security"] == [{"keyleash": []}]
            prompt = {"prompt": "hello there"}  # 2 words: 26 tokens, 0.026 cents
            denied = await http.post("/v1/chat", json=prompt)
            assert (denied.status_code, denied.json()) == (401, {"error": "Missing API key"})
            signup = await http.post("/auth/signup", json={"email": "dev@example.com"})
            assert signup.status_code == 201, signup.text
            auth = {"Authorization": f"Bearer {signup.json()['key']}"}
            first = await http.post("/v1/chat", json=prompt, headers=auth)
            assert first.status_code == 200, first.text
            assert first.json()["costCents"] == pytest.approx(0.026)
            assert first.json()["budgetRemainingCents"] == pytest.approx(49.974)
            again = {**auth, "Idempotency-Key": "req-1"}
            r1 = (await http.post("/v1/chat", json=prompt, headers=again)).json()
            r2 = (await http.post("/v1/chat", json=prompt, headers=again)).json()
            assert r1["budgetRemainingCents"] == r2["budgetRemainingCents"] == pytest.approx(49.948)
            me = (await http.get("/auth/sdk-keys/me", headers=auth)).json()
            assert me["budgetUsedCents"] == pytest.approx(0.052) and me["scopes"] == ["proxy.chat"]
            child = await http.post(
                "/auth/sdk-keys", json={"budget_cents": 0.04, "name": "agent"}, headers=auth
            )
            assert child.status_code == 201, child.text
            agent = {"Authorization": f"Bearer {child.json()['key']}"}
            ok = await http.post("/v1/chat", json=prompt, headers=agent)
            assert ok.status_code == 200 and ok.json()["reply"].startswith("(agent)")
            spent = await http.post("/v1/chat", json=prompt, headers=agent)
            assert (spent.status_code, spent.json()) == (429, {"error": "budget_exceeded"})
            parent = (await http.get("/auth/sdk-keys/me", headers=auth)).json()
            assert parent["budgetUsedCents"] == pytest.approx(0.078)
    finally:
        server.stop()
        example.kl.close()
        if store == "sqlite":
            Path(url.removeprefix("sqlite://")).unlink()
