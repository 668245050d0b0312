"""The signup rate limit holds across processes: two uvicorn processes serving the
self-serve routes on one database (SQLite file or Postgres) share one count."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import Db

SERVER = Path(__file__).with_name("router_server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(db: Db) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), db.url, db.table, str(port)],
        cwd=SERVER.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"the server exited with {proc.returncode}: {err}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            assert time.monotonic() < deadline, "the server did not listen"
            time.sleep(0.05)


# Pins issue 10 (7): 21 signups from one address, alternating between two server
# processes: 20 keys, then 429 with Retry-After; the database holds exactly 20 keys.
async def test_signup_rate_limit_across_processes(db: Db) -> None:
    servers = [start(db), start(db)]
    try:
        answers = []
        for i in range(21):
            url = servers[i % 2][1]
            async with httpx.AsyncClient(base_url=url, timeout=20) as http:
                answers.append(await http.post("/auth/signup", json={"email": f"a{i}@b.c"}))
        assert [r.status_code for r in answers] == [201] * 20 + [429], [r.text for r in answers]
        last = answers[-1]
        assert last.json()["error"] == "rate_limited"
        assert int(last.headers["retry-after"]) == last.json()["retryAfter"] > 0
        assert db.scalar("SELECT COUNT(*) FROM {keys}") == 20
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(10)
