"""The README's FastAPI example, run as written (only the database URL swapped for
this test's store) and driven over real HTTP."""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from conftest import database_url, unique
from server import Server

README = Path(__file__).resolve().parents[2] / "README.md"
# The package's own README (shown on the package index) carries the same example;
# scripts/test-dist.sh runs its asyncio example against the built wheel and sdist.
PACKAGE_README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(readme: Path = README) -> str:
    python: list[str] = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    [example] = [block for block in python if "keyleash.fastapi" in block]
    return example


def test_package_readme_has_the_same_fastapi_example() -> None:
    assert readme_example(PACKAGE_README) == readme_example()


def load(source: str) -> ModuleType:
    path = Path(tempfile.gettempdir()) / f"{unique('readme_app')}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path.unlink()
    return module


# Pins the README's example: at most 15 lines of code, and it works as described.
async def test_readme_fastapi_example(store: str) -> None:
    source = readme_example()
    assert len([line for line in source.splitlines() if line.strip()]) <= 15
    assert 'connect("sqlite://keys.db")' in source
    url = database_url(store)
    app = load(source.replace("sqlite://keys.db", url))
    server = Server(app.app)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            signup = await http.post("/signup", json={"email": "a@b.c"})
            assert signup.status_code == 201, signup.text
            key = signup.json()["key"]
            resp = await http.post("/v1/chat", headers={"Authorization": f"Bearer {key}"})
            assert resp.status_code == 200, resp.text
            account = (await app.kl.aio.validate(key)).account_id
            assert resp.json() == {"account": account, "remaining": pytest.approx(49.58)}
            denied = await http.post("/v1/chat")
            assert (denied.status_code, denied.json()) == (401, {"error": "Missing API key"})
    finally:
        server.stop()
        app.kl.close()
        if store == "sqlite":
            Path(url.removeprefix("sqlite://")).unlink()
