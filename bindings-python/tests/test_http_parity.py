"""HTTP parity (docs/http.md): the Express example and the FastAPI example, each started as
a real server process on its own SQLite file, get the same sequence of requests
covering every route and every status. Their statuses and JSON bodies must be
identical once generated values (raw keys, account ids, timestamps) are normalized,
and the statuses must be the ones docs/http.md names."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import unique

REPO = Path(__file__).resolve().parents[2]
EXPRESS = REPO / "examples" / "express-app"
FASTAPI = REPO / "examples" / "fastapi-app"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FIFTY = "x" * 50  # 0.5 + 50 * 0.01 = 1 cent
BIG = "x" * 100_000  # a body over the 65,536-byte limit
DEEP = '{"prompt": "x", "a": ' + "[" * 10_000 + "]" * 10_000 + "}"
TOO_LARGE = {"error": "payload_too_large", "message": "request body is larger than 65536 bytes"}
BAD_BODY = {"error": "invalid_argument", "message": 'the body must be JSON like {"prompt": "..."}'}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class App:
    """One example as a server process on 127.0.0.1 (or on the Unix socket
    ``socket_path`` when given), with its own SQLite file."""

    def __init__(self, kind: str, db: Path, socket_path: Path | None = None) -> None:
        self.kind, self.db, port = kind, db, free_port()
        env = {**os.environ, "PORT": str(port), "DATABASE_URL": f"sqlite://{db}"}
        env["CHUNK_DELAY_MS"] = "1"  # the streamed model's pause before each word
        if socket_path is not None:
            env["SOCKET"] = str(socket_path)
        if kind == "express":
            cmd, cwd = ["node", "server.js"], EXPRESS
        else:
            cmd, cwd = [sys.executable, "app.py"], FASTAPI
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if socket_path is None:
            self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)
        else:
            transport = httpx.HTTPTransport(uds=str(socket_path))
            self.http = httpx.Client(transport=transport, base_url="http://localhost", timeout=20)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                pytest.fail(f"the {kind} example exited with {self.proc.returncode}: {err}")
            try:
                if socket_path is None:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                else:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(socket_path))
                break
            except OSError:
                assert time.monotonic() < deadline, f"the {kind} example did not listen"
                time.sleep(0.05)

    def request(
        self,
        method: str,
        path: str,
        key: str | None = None,
        body: Any = None,
        raw: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        if body is not None:
            raw = httpx.Request("POST", "/", json=body).content.decode()
        if raw is not None:
            h["Content-Type"] = "application/json"
        return self.http.request(method, path, headers=h, content=raw)

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        res = self.request(method, path, **kwargs)
        return res.status_code, res.json()

    def stream(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        """A streaming route's answer: the text and its type, or the JSON of a refusal."""
        res = self.request("POST", path, **kwargs)
        if res.headers["content-type"].startswith("text/plain"):
            return res.status_code, {"type": res.headers["content-type"], "text": res.text}
        return res.status_code, res.json()

    def break_store(self) -> None:
        """A real store failure: the keys table disappears under the running server."""
        with sqlite3.connect(self.db) as conn:
            conn.execute("ALTER TABLE sdk_api_keys RENAME TO sdk_api_keys_gone")

    def mend_store(self) -> None:
        with sqlite3.connect(self.db) as conn:
            conn.execute("ALTER TABLE sdk_api_keys_gone RENAME TO sdk_api_keys")

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(10)


def scenario(app: App) -> Iterator[tuple[str, int, Any]]:
    """Every route and status of docs/http.md, each request built from earlier answers."""
    call, stream = app.call, app.stream

    def step(label: str, answer: tuple[int, Any]) -> tuple[str, int, Any]:
        return (label, *answer)

    yield step("chat without a key", call("POST", "/v1/chat", body={"prompt": "hi"}))
    yield step("chat with an unknown key", call("POST", "/v1/chat", key="ak_nope", body={}))
    yield step(
        "chat with another scheme", call("POST", "/v1/chat", headers={"Authorization": "Token x"})
    )
    yield step("signup without email", call("POST", "/signup", body={}))
    yield step("signup, bad JSON", call("POST", "/signup", raw="{oops"))
    yield step("signup, a JSON list", call("POST", "/signup", raw="[1]"))
    yield step(
        "signup, wider scopes",
        call("POST", "/signup", body={"email": "a@example.com", "scopes": ["admin"]}),
    )
    yield step(
        "signup, over the budget",
        call("POST", "/signup", body={"email": "a@example.com", "budget_cents": 51}),
    )
    yield step(
        "signup, bad duration",
        call("POST", "/signup", body={"email": "a@example.com", "expires_in": "soon"}),
    )
    yield step(
        "signup, another period",
        call("POST", "/signup", body={"email": "a@example.com", "budget_period": "week"}),
    )
    yield step(
        "signup, unknown field",
        call("POST", "/signup", body={"email": "a@example.com", "budgetCents": 20}),
    )
    yield step(
        "signup, 100 KB", call("POST", "/signup", body={"email": "a@example.com", "name": BIG})
    )
    status, root = call("POST", "/signup", body={"email": "agent@example.com", "name": "root"})
    yield ("signup", status, root)
    key = root["key"]
    yield step("me without a key", call("GET", "/sdk-keys/me"))
    yield step("me", call("GET", "/sdk-keys/me", key=key))
    yield step(
        "me, lowercase scheme",
        call("GET", "/sdk-keys/me", headers={"Authorization": f"bearer {key}"}),
    )
    yield step("chat", call("POST", "/v1/chat", key=key, body={"prompt": "hello"}))
    again = {"Idempotency-Key": "req-1"}
    yield step(
        "chat, idempotent", call("POST", "/v1/chat", key=key, body={"prompt": "abc"}, headers=again)
    )
    yield step(
        "chat, repeated", call("POST", "/v1/chat", key=key, body={"prompt": "abc"}, headers=again)
    )
    yield step(
        "chat, repeated with another prompt of that cost",
        call("POST", "/v1/chat", key=key, body={"prompt": "xyz"}, headers=again),
    )
    yield step(
        "chat, same key, another cost",
        call("POST", "/v1/chat", key=key, body={"prompt": "abcd"}, headers=again),
    )
    yield step(
        "stream, a chat's key",
        stream("/v1/chat/stream", key=key, body={"prompt": "abc"}, headers=again),
    )
    yield step("chat, bad JSON", call("POST", "/v1/chat", key=key, raw="not json"))
    yield step("chat, no prompt", call("POST", "/v1/chat", key=key, body={"prompt": 5}))
    yield step("chat, empty body", call("POST", "/v1/chat", key=key, raw=""))
    yield step("chat, 100 KB", call("POST", "/v1/chat", key=key, body={"prompt": BIG}))
    yield step("chat, nested 10,000 deep", call("POST", "/v1/chat", key=key, raw=DEEP))
    yield step("stream", stream("/v1/chat/stream", key=key, body={"prompt": "hello  world"}))
    yield step("stream, bad JSON", stream("/v1/chat/stream", key=key, raw="not json"))
    yield step("stream, model fails", stream("/v1/chat/stream", key=key, body={"prompt": "!fail"}))
    yield step("me after streams", call("GET", "/sdk-keys/me", key=key))
    yield step("mint, wider scope", call("POST", "/sdk-keys", key=key, body={"scopes": ["admin"]}))
    yield step(
        "mint, bigger budget", call("POST", "/sdk-keys", key=key, body={"budget_cents": 100})
    )
    yield step("mint, later expiry", call("POST", "/sdk-keys", key=key, body={"expires_in": "30d"}))
    yield step(
        "mint, bad period", call("POST", "/sdk-keys", key=key, body={"budget_period": "yearly"})
    )
    yield step("mint, bad JSON", call("POST", "/sdk-keys", key=key, raw="{"))
    yield step("mint, unknown field", call("POST", "/sdk-keys", key=key, body={"budgetCents": 20}))
    yield step("mint, 100 KB", call("POST", "/sdk-keys", key=key, body={"name": BIG}))
    weekly_body = {"budget_cents": 10, "budget_period": "week", "name": "weekly"}
    status, weekly = call("POST", "/sdk-keys", key=key, body=weekly_body)
    yield ("mint, a weekly child", status, weekly)
    yield step(
        "mint, shorter period",
        call("POST", "/sdk-keys", key=weekly["key"], body={"budget_period": "day"}),
    )
    yield step("mint without a key", call("POST", "/sdk-keys", body={}))
    status, bare = call("POST", "/sdk-keys", key=key, body={"scopes": [], "name": "no scopes"})
    yield ("mint, no scopes", status, bare)
    yield step(
        "chat without the scope", call("POST", "/v1/chat", key=bare["key"], body={"prompt": "x"})
    )
    status, small = call("POST", "/sdk-keys", key=key, body={"budget_cents": 1, "name": "small"})
    yield ("mint, 1 cent", status, small)
    yield step(
        "stream, estimate over the budget",
        stream("/v1/chat/stream", key=small["key"], body={"prompt": "x"}),
    )
    yield step(
        "chat, all of it", call("POST", "/v1/chat", key=small["key"], body={"prompt": FIFTY})
    )
    yield step(
        "chat, over budget", call("POST", "/v1/chat", key=small["key"], body={"prompt": "x"})
    )
    yield step(
        "stream, over budget", stream("/v1/chat/stream", key=small["key"], body={"prompt": "x"})
    )
    yield step("me, over budget", call("GET", "/sdk-keys/me", key=small["key"]))
    yield step("me of the parent", call("GET", "/sdk-keys/me", key=key))
    status, short = call("POST", "/sdk-keys", key=key, body={"expires_in": "1s", "name": "short"})
    yield ("mint, 1 second", status, short)
    time.sleep(1.1)
    yield step("chat, expired", call("POST", "/v1/chat", key=short["key"], body={"prompt": "x"}))
    yield step("me, expired", call("GET", "/sdk-keys/me", key=short["key"]))
    yield step("revoke, bad id", call("DELETE", "/sdk-keys/abc", key=key))
    yield step("revoke without a key", call("DELETE", f"/sdk-keys/{small['id']}"))
    status, other = call("POST", "/signup", body={"email": "someone@example.com"})
    yield ("signup, another account", status, other)
    yield step(
        "revoke, other account", call("DELETE", f"/sdk-keys/{small['id']}", key=other["key"])
    )
    yield step("revoke", call("DELETE", f"/sdk-keys/{small['id']}", key=key))
    yield step("revoke again", call("DELETE", f"/sdk-keys/{small['id']}", key=key))
    yield step("chat, revoked", call("POST", "/v1/chat", key=small["key"], body={"prompt": "x"}))
    yield step("revoke, no such id", call("DELETE", "/sdk-keys/999999", key=key))
    app.break_store()
    yield step("chat, store down", call("POST", "/v1/chat", key=key, body={"prompt": "x"}))
    yield step("stream, store down", stream("/v1/chat/stream", key=key, body={"prompt": "x"}))
    yield step("me, store down", call("GET", "/sdk-keys/me", key=key))
    yield step("signup, store down", call("POST", "/signup", body={"email": "b@example.com"}))
    yield step("mint, store down", call("POST", "/sdk-keys", key=key, body={}))
    yield step("revoke, store down", call("DELETE", f"/sdk-keys/{bare['id']}", key=key))
    app.mend_store()
    # Three signups counted so far (root, another account, store down): 17 more fit
    # in the default 20 per address per hour, then 429 with Retry-After.
    created = 0
    while (
        res := app.request("POST", "/signup", body={"email": "c@example.com"})
    ).status_code == 201:
        created += 1
        assert created <= 20, "the signup rate limit did not apply"
    limited = res.json()
    assert limited["retryAfter"] > 0 and res.headers["retry-after"] == str(limited["retryAfter"])
    assert limited["message"].endswith(f"retry in {limited['retryAfter']} s"), limited
    limited.update(retryAfter="<secs>", message=limited["message"].rsplit(";", 1)[0])
    yield ("signups until rate limited", res.status_code, {"created": created, **limited})


def normalized(value: Any) -> Any:
    """Generated values replaced by placeholders; everything else kept as it is."""
    if isinstance(value, dict):
        return {k: "<raw key>" if k == "key" else normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if isinstance(value, str) and TIME.match(value):
        return "<time>"
    if isinstance(value, str) and value.startswith("acct_"):
        return "<account>"
    return value


EXPECTED_STATUSES = [
    401, 401, 401, 400, 400, 400, 400, 400, 400, 400, 400, 413, 201, 401, 200, 200, 200, 200,
    409, 409, 422, 422,
    400, 400, 400, 413, 400, 200, 400, 502, 200, 403, 403, 403, 400, 400, 400, 413, 201,
    403, 401, 201, 403, 201, 429, 200, 429, 429, 429, 200, 201, 401, 401, 400, 401, 201, 404,
    200, 404, 401, 404, 500, 500, 500, 500, 500, 500, 429,
]  # fmt: skip


def test_express_and_fastapi_answer_alike(tmp_path: Path) -> None:
    answers: dict[str, list[tuple[str, int, Any]]] = {}
    for kind in ("express", "fastapi"):
        app = App(kind, tmp_path / f"{unique(kind)}.db")
        try:
            answers[kind] = list(scenario(app))
        finally:
            app.stop()
    express, fastapi = answers["express"], answers["fastapi"]
    assert [a[1] for a in express] == EXPECTED_STATUSES, express
    for e, f in zip(express, fastapi, strict=True):
        assert (e[0], e[1], normalized(e[2])) == (f[0], f[1], normalized(f[2]))
    by_label = {label: body for label, _, body in express}
    # A few bodies pinned outright, so a rule both servers get wrong still fails.
    assert by_label["chat without a key"] == {"error": "Missing API key"}
    assert by_label["chat with an unknown key"] == {"error": "invalid"}
    assert by_label["chat, over budget"] == {"error": "budget_exceeded"}
    assert by_label["chat, expired"] == {"error": "expired"}
    assert by_label["chat, revoked"] == {"error": "revoked"}
    assert by_label["chat, store down"] == {"error": "auth_unavailable"}
    # Streaming (docs/http.md#streaming): the words at 0.25 cents each, settled at the
    # end; the model's failure released its hold; refusals before anything streamed.
    assert by_label["stream"] == {
        "type": "text/plain; charset=utf-8",
        "text": "echo: hello world ",
    }
    assert by_label["stream, model fails"] == {"error": "upstream_failed"}
    assert by_label["stream, bad JSON"] == BAD_BODY
    assert by_label["stream, estimate over the budget"] == {"error": "budget_exceeded"}
    assert by_label["stream, over budget"] == {"error": "budget_exceeded"}
    assert by_label["stream, store down"] == {"error": "auth_unavailable"}
    before, after = by_label["me"], by_label["me after streams"]
    assert after["budgetHeldCents"] == 0
    # The two chats (0.55 and 0.53) and the three streamed words.
    assert after["budgetUsedCents"] - before["budgetUsedCents"] == pytest.approx(0.55 + 0.53 + 0.75)
    # Issue 10: the body limit, deep nesting, strict fields, periods, the rate limit.
    for label in ("signup, 100 KB", "chat, 100 KB", "mint, 100 KB"):
        assert by_label[label] == TOO_LARGE, label
    assert by_label["chat, nested 10,000 deep"] == BAD_BODY
    for label in ("signup, unknown field", "mint, unknown field"):
        assert by_label[label]["error"] == "invalid_argument"
        assert "unknown field `budgetCents`" in by_label[label]["message"], by_label[label]
    assert by_label["signup, another period"]["error"] == "invalid_argument"
    assert by_label["mint, shorter period"]["error"] == "period_shorter_than_parent"
    assert by_label["signups until rate limited"] == {
        "created": 17,
        "error": "rate_limited",
        "message": "too many signups: at most 20 an hour",
        "retryAfter": "<secs>",
    }
    assert by_label["revoke"] == {"revoked": True}
    assert by_label["chat without the scope"] == {
        "error": "insufficient_scope",
        "required": "proxy.chat",
        "available": [],
    }
    assert by_label["chat"] == {
        "completion": "echo: hello",
        "costCents": pytest.approx(0.55),
        "budgetRemainingCents": pytest.approx(49.45),
    }
    replayed = {"error": "idempotency_replayed", "replayed": "charged"}
    assert by_label["chat, repeated"] == replayed
    assert by_label["chat, repeated with another prompt of that cost"] == replayed
    assert by_label["chat, same key, another cost"] == {"error": "idempotency_conflict"}
    assert by_label["stream, a chat's key"] == {"error": "idempotency_conflict"}
    assert by_label["me of the parent"]["budgetUsedCents"] == pytest.approx(0.55 + 0.53 + 0.75 + 1)


def both_examples(tmp_path: Path, unix: bool = False) -> Iterator[App]:
    """Each example in turn, started on its own SQLite file (on a Unix socket when
    ``unix``), stopped after the caller is done with it."""
    for kind in ("express", "fastapi"):
        sock = tmp_path / f"{kind}.sock" if unix else None
        app = App(kind, tmp_path / f"{unique(kind)}.db", sock)
        try:
            yield app
        finally:
            app.stop()


# Pins issue 21 (5): neither example trusts X-Forwarded-For (Express has "trust
# proxy" off, uvicorn runs with proxy_headers=False): 30 signups from one client
# claiming 30 addresses are one address, so exactly 20 pass in each.
def test_forwarded_for_is_not_trusted_by_either_example(tmp_path: Path) -> None:
    for app in both_examples(tmp_path):
        statuses = [
            app.request(
                "POST",
                "/signup",
                body={"email": f"a{i}@example.com"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            ).status_code
            for i in range(30)
        ]
        assert statuses == [201] * 20 + [429] * 10, (app.kind, statuses)


# Pins issue 21 (4): both examples listening on a Unix socket (no client address):
# the signups share one bucket, so 20 of 25 pass in each, not all 25.
def test_unix_socket_signups_share_one_limit_in_both_examples(tmp_path: Path) -> None:
    for app in both_examples(tmp_path, unix=True):
        statuses = [
            app.request("POST", "/signup", body={"email": f"a{i}@example.com"}).status_code
            for i in range(25)
        ]
        assert statuses == [201] * 20 + [429] * 5, (app.kind, statuses)


# Pins issue 21 (9): one body rule in both examples, decided by the core: a leading
# UTF-8 BOM is skipped (201), a UTF-16 charset is 415 unsupported_charset, bytes that
# are not UTF-8 are 400.
def test_body_encodings_alike(tmp_path: Path) -> None:
    answers: dict[str, list[tuple[int, Any]]] = {}
    for app in both_examples(tmp_path):
        root = app.call("POST", "/signup", body={"email": "a@example.com"})[1]
        got = []
        for path, key, content, ctype in [
            ("/sdk-keys", root["key"], b'\xef\xbb\xbf{"name": "bom"}', "application/json"),
            (
                "/signup",
                None,
                '{"email": "b@example.com"}'.encode("utf-16-le"),
                "application/json; charset=utf-16le",
            ),
            ("/signup", None, b'{"email": "\xe9@example.com"}', "application/json"),
        ]:
            headers = {"Content-Type": ctype}
            if key is not None:
                headers["Authorization"] = f"Bearer {key}"
            res = app.http.post(path, content=content, headers=headers)
            got.append((res.status_code, normalized(res.json())))
        answers[app.kind] = got
    assert answers["express"] == answers["fastapi"]
    bom, utf16, latin = answers["express"]
    assert bom[0] == 201 and bom[1]["key"] == "<raw key>", bom
    assert utf16 == (
        415,
        {
            "error": "unsupported_charset",
            "message": 'request body: charset "utf-16le" is not supported; send JSON as UTF-8',
        },
    )
    assert latin[0] == 400 and latin[1]["error"] == "invalid_argument", latin
    assert "not UTF-8" in latin[1]["message"], latin


def rate_limited_answers(app: App) -> list[tuple[str, int, Any, str | None]]:
    """A key limited to 2 requests a minute, minted straight into the example's
    store, over the charged and the streamed route: (label, status, body,
    Retry-After)."""
    import keyleash.sync

    kl = keyleash.sync.KeyLeash.connect(f"sqlite://{app.db}")
    try:
        key = kl.create(
            account_id="limited",
            budget_cents=100,
            limits=[{"unit": "requests", "limit": 2, "period": "1m", "name": "rpm"}],
        ).key
    finally:
        kl.close()
    out: list[tuple[str, int, Any, str | None]] = []
    for label, path in [
        ("chat 1", "/v1/chat"),
        ("chat 2", "/v1/chat"),
        ("chat 3", "/v1/chat"),
        ("stream 4", "/v1/chat/stream"),
    ]:
        res = app.request("POST", path, key=key, body={"prompt": "hi"})
        body = res.json() if res.headers["content-type"].startswith("application/json") else None
        out.append((label, res.status_code, body, res.headers.get("retry-after")))
    return out


# Pins a key's rate limit over real HTTP in both examples: the same 429, body and
# Retry-After header, for a charge and for a stream's reserve, nothing charged.
def test_a_rate_limited_key_is_answered_alike(tmp_path: Path) -> None:
    answers = {}
    for kind in ("express", "fastapi"):
        app = App(kind, tmp_path / f"{unique(kind)}.db")
        try:
            answers[kind] = rate_limited_answers(app)
        finally:
            app.stop()
    for kind, got in answers.items():
        assert [status for _, status, _, _ in got] == [200, 200, 429, 429], (kind, got)
        for label, _, body, header in got[2:]:
            # 2 a minute: the next one is due in at most 30 s.
            assert header is not None and 1 <= int(header) <= 30, (kind, label, header)
            assert body == {
                "error": "rate_limited",
                "limit": "rpm",
                "message": f"rate limit rpm reached; retry in {header} s",
                "retryAfter": int(header),
            }, (kind, label)
    strip = [(label, status) for label, status, _, _ in answers["express"]]
    assert strip == [(label, status) for label, status, _, _ in answers["fastapi"]]
