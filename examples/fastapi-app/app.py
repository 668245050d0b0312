"""An "LLM proxy" guarded by keyleash, on embedded SQLite: the FastAPI twin of the
Express example. Run it with `make example-fastapi` (or `python app.py` in a
virtualenv with keyleash, fastapi and uvicorn), then open http://127.0.0.1:8000/docs.

Flow: POST /auth/signup {"email": "you@example.com"} returns a key with a 50-cent
budget and the `proxy.chat` scope; POST /v1/chat with `Authorization: Bearer <key>`
"calls a model" and charges what the call cost, to the micro-cent, until the budget
is spent (429). POST /auth/sdk-keys mints a narrower child key for an agent.
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI, Header
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

import keyleash.sync
from keyleash import Validation
from keyleash.fastapi import agentkey_router, bearer_scheme, require_key

# Price of the pretend model, in cents per token (a tenth of a cent per 100 tokens).
CENTS_PER_TOKEN = 0.001

kl = keyleash.sync.KeyLeash.connect(os.environ.get("KEYLEASH_DB", "sqlite://keyleash-demo.db"))
kl.migrate()

app = FastAPI(title="LLM proxy (keyleash example)")
app.include_router(
    agentkey_router(kl, signup_scopes=["proxy.chat"], signup_budget_cents=50),
    prefix="/auth",
)


class ChatRequest(BaseModel):
    prompt: str
    max_tokens: int = 256


class ChatResponse(BaseModel):
    reply: str
    tokens: int
    costCents: float
    budgetRemainingCents: float | None


@app.post("/v1/chat", response_model=ChatResponse)
async def chat(
    body: ChatRequest,
    key: Validation = Depends(require_key(kl, scope="proxy.chat")),  # noqa: B008
    auth: HTTPAuthorizationCredentials = Depends(bearer_scheme),  # noqa: B008
    idempotency_key: str | None = Header(default=None),
) -> ChatResponse | JSONResponse:
    """Answer a prompt and charge its cost to the calling key."""
    tokens = min(body.max_tokens, len(body.prompt.split()) * 3 + 20)
    cost = tokens * CENTS_PER_TOKEN
    charged = await kl.aio.track_usage(auth.credentials, cost, idempotency_key=idempotency_key)
    if not charged.success:
        # A concurrent call spent the rest of the budget since validation.
        return JSONResponse({"error": charged.reason}, status_code=429)
    return ChatResponse(
        reply=f"({key.name}) You said {len(body.prompt)} characters.",
        tokens=tokens,
        costCents=cost,
        budgetRemainingCents=charged.budget_remaining_cents,
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
