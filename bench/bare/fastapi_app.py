"""The bare FastAPI row of `make bench`: the FastAPI example's POST /v1/chat
(examples/fastapi-app/app.py) with no key check, so the table shows what keyleash adds
to a FastAPI route. The same body is read (at most 64 KiB, JSON nesting checked before
parsing), the same pretend model prices the prompt, and the same JSON comes back, with
a fixed budgetRemainingCents of the size the real route sends; the Authorization
header wrk sends is ignored. No store is opened, keyleash is not imported.

Usage: PORT=8000 python bench/bare/fastapi_app.py   (served by uvicorn as the example is)
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response

MAX_BODY_BYTES = 65536
"""keyleash's MAX_BODY_BYTES (the example's body limit), without importing keyleash."""
MAX_DEPTH = 32
"""The deepest JSON nesting a chat body may have (checked before parsing)."""
BUDGET_REMAINING_CENTS = 99999999.45
"""A remaining budget of the size the keyleash route answers with (a $1M key)."""

app = FastAPI(title="bare chat route (keyleash bench)")


def complete(prompt: str) -> tuple[str, float]:
    """The example's pretend model: 0.5 cents per call plus 0.01 cents per character."""
    return f"echo: {prompt}", 0.5 + len(prompt) * 0.01


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
    """The prompt of a JSON body ``{"prompt": "..."}``, or None."""
    if too_deep(raw):
        return None
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return None
    prompt = body.get("prompt") if isinstance(body, dict) else None
    return prompt if isinstance(prompt, str) else None


@app.post("/v1/chat")
async def chat(request: Request, idempotency_key: str | None = Header(default=None)) -> Response:
    """Answer a prompt, as the example does, with no key and no charge."""
    raw = await read_body(request)
    if raw is None:
        return JSONResponse({"error": "payload_too_large"}, status_code=413)
    prompt = prompt_of(raw)
    if prompt is None:
        message = 'the body must be JSON like {"prompt": "..."}'
        return JSONResponse({"error": "invalid_argument", "message": message}, status_code=400)
    text, cost = complete(prompt)
    return JSONResponse(
        {"completion": text, "costCents": cost, "budgetRemainingCents": BUDGET_REMAINING_CENTS}
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), proxy_headers=False
    )
