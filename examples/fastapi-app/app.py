"""An "LLM proxy" guarded by keyleash, on embedded SQLite: the twin of the Express
example, answering every request with the same status and the same JSON
(bindings-python/tests/test_http_parity.py checks it).

    POST /signup            an agent gets a key: scope proxy.chat, 50 cents a day
    POST /v1/chat           {"prompt": "..."} with Authorization: Bearer <key>;
                            priced per character, charged after the "model" answers
    GET  /sdk-keys/me       the key's budget and scopes
    POST /sdk-keys          mint a narrower child key that draws on this one
    DELETE /sdk-keys/{id}   revoke a key of your own account

Run it with `make example-fastapi` (or `python app.py` in a virtualenv with keyleash,
fastapi and uvicorn), then open http://127.0.0.1:8000/docs.
Env: DATABASE_URL (default sqlite://keyleash-fastapi.db), PORT (default 8000).
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse

import keyleash.sync
from keyleash import KeyLeashError
from keyleash.fastapi import agentkey_router, require_key

kl = keyleash.sync.KeyLeash.connect(os.environ.get("DATABASE_URL", "sqlite://keyleash-fastapi.db"))
kl.migrate()

app = FastAPI(title="LLM proxy (keyleash example)")
app.include_router(
    agentkey_router(
        kl, signup_scopes=["proxy.chat"], signup_budget_cents=50, signup_budget_period="day"
    )
)


def complete(prompt: str) -> tuple[str, float]:
    """A pretend model and price list: 0.5 cents per call plus 0.01 cents per character."""
    return f"echo: {prompt}", 0.5 + len(prompt) * 0.01


def prompt_of(raw: bytes) -> str | None:
    """The prompt of a JSON body ``{"prompt": "..."}``, or None."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return None
    prompt = body.get("prompt") if isinstance(body, dict) else None
    return prompt if isinstance(prompt, str) else None


@app.post("/v1/chat", dependencies=[Depends(require_key(kl, scope="proxy.chat"))])
async def chat(
    request: Request, idempotency_key: str | None = Header(default=None)
) -> JSONResponse:
    """Answer a prompt and charge its cost to the calling key."""
    prompt = prompt_of(await request.body())
    if prompt is None:
        message = 'the body must be JSON like {"prompt": "..."}'
        return JSONResponse({"error": "invalid_argument", "message": message}, status_code=400)
    text, cost = complete(prompt)
    raw_key = request.headers["authorization"].strip()[len("bearer") :].strip()
    try:
        charge = await kl.aio.track_usage(raw_key, cost, idempotency_key=idempotency_key)
    except KeyLeashError:
        return JSONResponse({"error": "auth_unavailable"}, status_code=500)
    if not charge.success:
        # budget_exceeded, or the key was revoked or expired since require_key checked it.
        status = 429 if charge.reason == "budget_exceeded" else 401
        return JSONResponse({"error": charge.reason}, status_code=status)
    remaining = charge.budget_remaining_cents
    return JSONResponse({"completion": text, "costCents": cost, "budgetRemainingCents": remaining})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
