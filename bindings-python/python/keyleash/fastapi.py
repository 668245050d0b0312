"""FastAPI integration: the ``require_key`` dependency and the self-serve router.

Every decision (status code, JSON body, what a self-serve key may grant) is the
core's (``core/src/http.rs``), shared with the Express package, so both answer
every request with the same status and the same bytes of JSON (SPEC §6). This
module only reads the request and writes the core's reply back unchanged.

Denials are raised as ``KeyLeashDenied`` (a Starlette ``HTTPException``) and
answered with the core's exact body, not FastAPI's ``{"detail": ...}`` wrapper: the
dependency registers the handler on the app the first time it denies a request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from keyleash import _native, client, sync
from keyleash.results import Validation

__all__ = [
    "CreatedKeyResponse",
    "ErrorResponse",
    "KeyLeashDenied",
    "MintRequest",
    "RevokedResponse",
    "SignupRequest",
    "ValidationResponse",
    "agentkey_router",
    "bearer_scheme",
    "require_key",
]

AnyKeyLeash = client.KeyLeash | sync.KeyLeash

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="keyleash",
    description="A keyleash API key: `Authorization: Bearer ak_…`",
)
"""The OpenAPI security scheme of keyleash-protected routes (the Authorize button)."""

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


class KeyLeashDenied(HTTPException):
    """A request keyleash refused: ``status_code`` and ``body`` (the parsed JSON) are
    the core's reply, answered byte for byte as the core wrote it."""

    def __init__(self, status_code: int, body_json: str) -> None:
        self.body: Any = json.loads(body_json)
        super().__init__(status_code=status_code, detail=self.body)
        self.body_json = body_json


async def _denied(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, KeyLeashDenied):
        raise exc
    return Response(exc.body_json, status_code=exc.status_code, media_type="application/json")


def _deny(request: Request, status: int, body_json: str) -> NoReturn:
    # Starlette looks handlers up in this per-app table at raise time.
    handlers = request.scope.get("starlette.exception_handlers")
    if handlers is not None:
        handlers[0].setdefault(KeyLeashDenied, _denied)
    raise KeyLeashDenied(status, body_json)


def _native_of(kl: AnyKeyLeash) -> _native.NativeKeyLeash:
    return (kl.aio if isinstance(kl, sync.KeyLeash) else kl)._native


def require_key(kl: AnyKeyLeash, scope: str | None = None) -> Callable[..., Awaitable[Validation]]:
    """A dependency that admits a request only with a valid key holding ``scope``
    and returns its validation result. Otherwise it answers as SPEC §6: 401, 403,
    429, or 500 ``{"error": "auth_unavailable"}`` when the store is down."""
    native = _native_of(kl)

    async def keyleash_key(request: Request, _credentials: Credentials) -> Validation:
        status, body = await native.authenticate(request.headers.get("authorization"), scope)
        if status != 200:
            _deny(request, status, body)
        return Validation.from_dict(json.loads(body))

    return keyleash_key


class SignupRequest(BaseModel):
    """``POST /signup`` (agentkey's snake_case fields; all optional but ``email``
    when the router requires it)."""

    email: str | None = None
    scopes: list[str] | None = None
    budget_cents: float | None = None
    budget_period: str | None = None
    expires_in: str | None = None
    name: str | None = None


class MintRequest(BaseModel):
    """``POST /sdk-keys``: a child of the calling key, never wider than it."""

    scopes: list[str] | None = None
    budget_cents: float | None = None
    budget_period: str | None = None
    expires_in: str | None = None
    name: str | None = None


class CreatedKeyResponse(BaseModel):
    """A minted key (camelCase, as agentkey); ``key`` is shown once."""

    key: str
    id: int
    scopes: list[str] | None
    budgetCents: float | None
    budgetPeriod: str | None
    expiresAt: str | None


class ValidationResponse(BaseModel):
    """The calling key's validation result."""

    valid: bool
    id: int
    accountId: str
    userId: str | None
    scopes: list[str] | None
    budgetCents: float | None
    budgetUsedCents: float
    budgetHeldCents: float
    budgetRemainingCents: float | None
    budgetPeriod: str | None
    budgetResetAt: str | None
    expiresAt: str | None
    delegatedBy: str | None
    name: str


class RevokedResponse(BaseModel):
    revoked: bool


class ErrorResponse(BaseModel):
    """Every refusal: ``error`` always; the other fields depend on it."""

    error: str
    message: str | None = None
    required: str | None = None
    available: list[str] | None = None
    allowed: list[str] | None = None


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, invalid, expired or revoked key"},
    429: {"model": ErrorResponse, "description": "The calling key's budget is spent"},
    500: {"model": ErrorResponse, "description": "The key store is unavailable"},
}


def agentkey_router(
    kl: AnyKeyLeash,
    *,
    signup_scopes: Sequence[str] | None = None,
    require_email: bool = True,
    signup_expires_in: str = "24h",
    signup_budget_cents: float | None = None,
    signup_budget_period: str | None = None,
) -> APIRouter:
    """The self-serve routes of SPEC §6 with agentkey's security model:
    ``POST /signup``, ``GET /sdk-keys/me``, ``POST /sdk-keys``, ``DELETE
    /sdk-keys/{key_id}``. Raises ``InvalidDurationError``/``InvalidPeriodError``
    at once for a bad ``signup_expires_in``/``signup_budget_period``."""
    native = _native_of(kl)
    options = _native.SelfServeOptions(
        signup_scopes=None if signup_scopes is None else list(signup_scopes),
        require_email=require_email,
        signup_expires_in=signup_expires_in,
        signup_budget_cents=signup_budget_cents,
        signup_budget_period=signup_budget_period,
    )

    async def answer(request: Request, route: str, key_id: str | None = None) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        auth = request.headers.get("authorization")
        status, reply = await native.self_serve(route, auth, body, options, key_id)
        return Response(reply, status_code=status, media_type="application/json")

    router = APIRouter(tags=["keyleash"])
    bad: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "Malformed or refused request"}
    }
    forbidden: dict[int | str, dict[str, Any]] = {
        403: {"model": ErrorResponse, "description": "Wider than the calling key"}
    }

    @router.post(
        "/signup",
        status_code=201,
        response_model=None,
        responses={201: {"model": CreatedKeyResponse}, **bad, 500: _AUTH_ERRORS[500]},
        openapi_extra=_documented_body(SignupRequest),
    )
    async def signup(request: Request) -> Response:
        """Mint a key for a new account (unauthenticated; signup scopes only)."""
        return await answer(request, "signup")

    @router.get(
        "/sdk-keys/me",
        response_model=None,
        responses={200: {"model": ValidationResponse}, **_AUTH_ERRORS},
    )
    async def me(request: Request, _credentials: Credentials) -> Response:
        """The calling key's validation result."""
        return await answer(request, "me")

    @router.post(
        "/sdk-keys",
        status_code=201,
        response_model=None,
        responses={201: {"model": CreatedKeyResponse}, **bad, **forbidden, **_AUTH_ERRORS},
        openapi_extra=_documented_body(MintRequest),
    )
    async def mint(request: Request, _credentials: Credentials) -> Response:
        """Mint a child of the calling key: its scopes, budget and expiry at most."""
        return await answer(request, "mint")

    @router.delete(
        "/sdk-keys/{key_id}",
        response_model=None,
        responses={
            200: {"model": RevokedResponse},
            **bad,
            404: {"model": ErrorResponse, "description": "No live key of this account"},
            **_AUTH_ERRORS,
        },
    )
    async def revoke(request: Request, key_id: str, _credentials: Credentials) -> Response:
        """Revoke a key of the calling key's own account."""
        return await answer(request, "revoke", key_id)

    return router
