"""An "LLM proxy" guarded by keyleash, on embedded SQLite: the twin of the Express
example, answering every request with the same status and the same JSON
(bindings-python/tests/test_http_parity.py checks it).

    POST /signup            an agent gets a key: scope proxy.chat, 50 cents a day
    POST /v1/chat           {"prompt": "..."} with Authorization: Bearer <key>;
                            priced per character, charged after the "model" answers;
                            an Idempotency-Key header names the call: a repeat is
                            409 idempotency_replayed (never a second answer), the
                            same key for another prompt cost or a stream 422
    POST /v1/chat/stream    the same, streamed word by word: 5 cents held first,
                            0.25 cents per word settled at the end (or at a disconnect)
    GET  /sdk-keys/me       the key's budget and scopes
    POST /sdk-keys          mint a narrower child key that draws on this one
    DELETE /sdk-keys/{id}   revoke a key of your own account
    GET  /admin/            the operators' admin page: HTTP Basic, user "admin",
                            password ADMIN_PASSWORD (unset: the page stays shut)

The chat route reads at most 65,536 bytes of body (more is the core's 413
payload_too_large) and refuses JSON nested deeper than 32 levels before parsing it,
as the Express example does.

Run it with `make example-fastapi` (or `python app.py` in a virtualenv with keyleash,
fastapi and uvicorn), then open http://127.0.0.1:8000/docs.
Env: DATABASE_URL (default sqlite://keyleash-fastapi.db), PORT (default 8000),
SOCKET (a path: listen on that Unix socket instead of 127.0.0.1:PORT),
ADMIN_PASSWORD (opens /admin/),
CHUNK_DELAY_MS (the streamed model's pause before each word, default 50).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response

import keyleash.sync
from keyleash import KeyLeashError
from keyleash.fastapi import (
    MAX_BODY_BYTES,
    GrantedKey,
    Spend,
    admin_router,
    agentkey_router,
    payload_too_large,
    require_key,
    spend_refused,
    store_failed,
    stream_with_hold,
)

MAX_DEPTH = 32
"""The deepest JSON nesting a chat body may have (checked before parsing)."""

kl = keyleash.sync.KeyLeash.connect(os.environ.get("DATABASE_URL", "sqlite://keyleash-fastapi.db"))
kl.migrate()

app = FastAPI(title="LLM proxy (keyleash example)")
app.include_router(
    agentkey_router(
        kl, signup_scopes=["proxy.chat"], signup_budget_cents=50, signup_budget_period="day"
    )
)


def is_admin(request: Request) -> bool:
    """Whether the request is HTTP Basic for "admin" with ADMIN_PASSWORD."""
    password = os.environ.get("ADMIN_PASSWORD")
    header = request.headers.get("authorization", "")
    if not password or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:], validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, f"admin:{password}".encode())


app.include_router(admin_router(kl, authorize=is_admin), prefix="/admin")


def complete(prompt: str) -> tuple[str, float]:
    """A pretend model and price list: 0.5 cents per call plus 0.01 cents per character."""
    return f"echo: {prompt}", 0.5 + len(prompt) * 0.01


MAX_CHUNKS = 20
"""The most words a streamed answer has."""
CHUNK_CENTS = 0.25
"""The price of each streamed word: the hold is MAX_CHUNKS * CHUNK_CENTS."""
CHUNK_DELAY_MS = float(os.environ.get("CHUNK_DELAY_MS", "50"))


async def stream_completion(prompt: str, spend: Spend) -> AsyncIterator[str]:
    """A pretend streaming model: the words of ``echo: <prompt>`` (at most MAX_CHUNKS),
    one chunk each after a pause, each priced CHUNK_CENTS as it goes out. A prompt
    starting with ``!fail`` fails before the first word, as an unreachable upstream
    would."""
    if prompt.startswith("!fail"):
        raise ConnectionError("the model is unreachable")
    for word in f"echo: {prompt}".split()[:MAX_CHUNKS]:
        await asyncio.sleep(CHUNK_DELAY_MS / 1000)  # cancelled when the client leaves
        spend.add(CHUNK_CENTS)
        yield f"{word} "


async def read_body(request: Request) -> bytes | None:
    """The body, or None when it is longer than MAX_BODY_BYTES (reading stops there)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def too_deep(raw: bytes) -> bool:
    """Whether the JSON text nests `[` / `{` (outside strings) deeper than MAX_DEPTH."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def prompt_of(raw: bytes) -> str | None:
    """The prompt of a JSON body ``{"prompt": "..."}``, or None (also for JSON nested
    deeper than MAX_DEPTH, refused before json.loads could recurse that deep)."""
    if too_deep(raw):
        return None
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return None
    prompt = body.get("prompt") if isinstance(body, dict) else None
    return prompt if isinstance(prompt, str) else None


async def read_prompt(request: Request) -> str | Response:
    """The prompt of the request's body, or the answer to a body too large to read
    (413) or not JSON like {"prompt": "..."} (400)."""
    raw = await read_body(request)
    if raw is None:
        return payload_too_large()
    prompt = prompt_of(raw)
    if prompt is None:
        message = 'the body must be JSON like {"prompt": "..."}'
        return JSONResponse({"error": "invalid_argument", "message": message}, status_code=400)
    return prompt


@app.post("/v1/chat")
async def chat(
    request: Request,
    key: GrantedKey = Depends(require_key(kl, scope="proxy.chat")),  # noqa: B008
    idempotency_key: str | None = Header(default=None),
) -> Response:
    """Answer a prompt and charge its cost to the calling key."""
    prompt = await read_prompt(request)
    if isinstance(prompt, Response):
        return prompt
    text, cost = complete(prompt)
    try:
        # The key require_key granted, charged without parsing the header again.
        charge = await key.charge(cost, idempotency_key=idempotency_key)
    except KeyLeashError as e:  # the library's answer: 500, logged once (never a key)
        return store_failed(e)
    if not charge.success or charge.replayed:
        # The library's answer when the charge serves no completion: the
        # Idempotency-Key was already charged for one (409: the first answer is not
        # stored to repeat) or used for another request (422: another cost, or a
        # stream); or budget_exceeded (429), or the key was revoked or expired since
        # require_key checked it (401).
        return spend_refused(charge)
    remaining = charge.budget_remaining_cents
    return JSONResponse({"completion": text, "costCents": cost, "budgetRemainingCents": remaining})


@app.post("/v1/chat/stream", response_model=None)
async def chat_stream(
    request: Request,
    key: GrantedKey = Depends(require_key(kl, scope="proxy.chat")),  # noqa: B008
    idempotency_key: str | None = Header(default=None),
) -> Response:
    """The same answer streamed: the most it can cost is held before the model
    starts, what the words sent cost is settled when the stream ends or the client
    leaves, and the hold is released when the model fails before its first word."""
    prompt = await read_prompt(request)
    if isinstance(prompt, Response):
        return prompt
    try:
        return await stream_with_hold(
            key,
            MAX_CHUNKS * CHUNK_CENTS,
            lambda spend: stream_completion(prompt, spend),
            ttl="2m",
            idempotency_key=idempotency_key,
        )
    except ConnectionError as e:
        logging.getLogger("keyleash.example").error("the model failed: %s", e)
        return JSONResponse({"error": "upstream_failed"}, status_code=502)


if __name__ == "__main__":
    import uvicorn

    # The signup limit counts the connection's address: proxy headers are not
    # trusted (uvicorn would trust X-Forwarded-For from 127.0.0.1 by default, so any
    # local client could pick its own bucket), as Express without "trust proxy".
    # Behind a proxy of your own, name it: proxy_headers=True,
    # forwarded_allow_ips="<the proxy's address>" (docs/http.md, "Rate limit").
    socket_path = os.environ.get("SOCKET")
    if socket_path:
        uvicorn.run(app, uds=socket_path, proxy_headers=False)
    else:
        uvicorn.run(
            app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), proxy_headers=False
        )
