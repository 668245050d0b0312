"""FastAPI integration: the ``require_key`` dependency and the self-serve router.

Every decision (status code, JSON body, what a self-serve key may grant) is the
core's (``core/src/http.rs``), shared with the Express package, so both answer
every request with the same status and the same bytes of JSON (docs/http.md). This
module only reads the request and writes the core's reply back unchanged.

Denials are raised as ``KeyLeashDenied`` (a Starlette ``HTTPException``) and
answered with the core's exact body, not FastAPI's ``{"detail": ...}`` wrapper: the
dependency registers the handler on the app the first time it denies a request.

When the store fails (500 ``auth_unavailable``), the core's description of the
failure is logged once, at error level, on the ``keyleash`` logger; it never holds
a key or a password, and the client never sees it. Self-serve bodies are read up to
``MAX_BODY_BYTES`` (65,536) and no further: a longer one is answered 413
``payload_too_large``. A route that charges a key itself answers with the same
helpers: ``spend_refused`` (a refused or replayed charge or reserve) and
``store_failed`` (the store down).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal, NoReturn

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from keyleash import _check, _native, client, sync
from keyleash.exceptions import InvalidArgumentError, KeyLeashError, UnavailableError
from keyleash.granted import GrantedKey, _Reserver
from keyleash.results import (
    Charged,
    ChargeRefused,
    ChargeResult,
    ReserveRefused,
    ReserveResult,
)
from keyleash.spend import Spend

__all__ = [
    "MAX_BODY_BYTES",
    "CreatedKeyResponse",
    "ErrorResponse",
    "GrantedKey",
    "KeyLeashDenied",
    "MintRequest",
    "RevokedResponse",
    "SignupRequest",
    "Spend",
    "ValidationResponse",
    "admin_router",
    "agentkey_router",
    "bearer_scheme",
    "payload_too_large",
    "require_key",
    "spend_refused",
    "store_failed",
    "stream_with_hold",
]

AnyKeyLeash = client.KeyLeash | sync.KeyLeash

_log = logging.getLogger("keyleash")


def _log_cause(cause: str | None) -> None:
    """Logs the core's description of a store failure (never a key or password)."""
    if cause is not None:
        _log.error("the key store failed (answered 500 auth_unavailable): %s", cause)


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


def require_key(kl: AnyKeyLeash, scope: str | None = None) -> Callable[..., Awaitable[GrantedKey]]:
    """A dependency that admits a request only with a valid key holding ``scope``
    and returns a ``GrantedKey``: its ``ValidKey``, plus ``await
    key.charge(cost_cents, idempotency_key=...)``, which charges that key without
    parsing the header or hashing the key again, and ``await
    key.reserve(estimate_cents, ttl=...)``, which places a hold on it (a ``Spend``).
    Otherwise it answers as docs/http.md says: 401, 403, 429, or 500 ``{"error":
    "auth_unavailable"}`` when the store is down (its cause logged once on the
    ``keyleash`` logger)."""
    native = _native_of(kl)

    async def keyleash_key(request: Request, _credentials: Credentials) -> GrantedKey:
        authorization = request.headers.get("authorization")
        status, answer, cause, key_ref = await native.authenticate_key(authorization, scope)
        _log_cause(cause)
        if key_ref is None or isinstance(answer, str):  # denied: the core's status and body
            _deny(request, status, str(answer))
        # Reserves through the granted key's handle, which holds its hash, never the key.
        reserver = _Reserver(key_ref, request.is_disconnected)
        return GrantedKey._grant(answer, key_ref, reserver)

    return keyleash_key


def _reply(answer: tuple[int, str]) -> Response:
    """One of the core's answers, ``(status, body JSON)``, sent as the core wrote it."""
    status, body = answer
    return Response(body, status_code=status, media_type="application/json")


def _refusal(refused: ReserveRefused) -> Response:
    """The HTTP answer to a reserve that serves no work (docs/http.md), the core's
    (``Reply::spend_refused``): 429 ``budget_exceeded``; 409
    ``idempotency_replayed`` (with ``replayed``: where the repeated idempotency
    key's first hold stands) for a repeat; 422 ``idempotency_conflict`` for an
    idempotency key first used for another operation; 401 for a key revoked,
    expired or unknown since ``require_key``."""
    if refused.reason == "rate_limited":
        return _limited(refused.limit, refused.retry_after)
    return _reply(_native.spend_refused(refused.reason, refused.replayed))


def _limited(limit: str | None, retry_after: float | None) -> Response:
    """The core's 429 for a key's rate limit, with ``Retry-After`` when waiting ends it."""
    status, body, seconds = _native.rate_limited(limit or "", retry_after)
    headers = None if seconds is None else {"Retry-After": str(seconds)}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def spend_refused(result: ChargeResult | ReserveResult) -> Response:
    """The core's answer to a charge or reserve result that serves no work (not a
    success, or ``replayed``), as ``stream_with_hold`` answers a refused reserve
    (docs/http.md#streaming): 409 ``{"error": "idempotency_replayed", "replayed":
    ...}`` for a repeated idempotency key (``"charged"``, or where the first hold
    stands), 429 ``budget_exceeded``, 429 ``rate_limited`` (with the limit's name
    and ``retryAfter``, and a ``Retry-After`` header when waiting ends it), 422
    ``idempotency_conflict`` for an idempotency key first used for another
    operation, else 401 ``{"error": reason}`` (the key was revoked, expired or
    unknown since ``require_key``). A result that serves work raises
    ``InvalidArgumentError``."""
    if isinstance(result, ReserveRefused):
        return _refusal(result)
    if isinstance(result, ChargeRefused):
        if result.reason == "rate_limited":
            return _limited(result.limit, result.retry_after)
        return _reply(_native.spend_refused(result.reason))
    if isinstance(result, Charged) and result.replayed is not None:
        return _reply(_native.spend_refused("idempotency_replayed", result.replayed))
    raise InvalidArgumentError("spend_refused needs a refused or replayed charge or reserve result")


MAX_BODY_BYTES: int = _native.MAX_BODY_BYTES
"""The longest request body the self-serve routes read (65,536 bytes), for an app's
own routes to read no further (as Node's ``MAX_BODY_BYTES``)."""


def payload_too_large() -> Response:
    """413 ``{"error": "payload_too_large", ...}``, the core's answer to a body longer
    than ``MAX_BODY_BYTES``, as the self-serve routes send it (Node's
    ``payloadTooLarge``)."""
    return _reply(_native.payload_too_large())


def store_failed(error: KeyLeashError) -> Response:
    """500 ``{"error": "auth_unavailable"}``, the core's answer to a key store
    failure (as ``require_key`` answers one), with ``error`` logged once, at error
    level, on the ``keyleash`` logger (its message never holds a key or a password;
    the client never sees it)."""
    _log_cause(str(error))
    return _reply(_native.store_failed(str(error)))


class _HeldStream(StreamingResponse):
    """A StreamingResponse that ends its ``Spend`` by the rules of ``stream_with_hold``
    whichever way the response ends (normal end, client gone, chunks raising)."""

    def __init__(
        self,
        spend: Spend,
        chunks: AsyncIterator[str | bytes],
        first: str | bytes | None,
        media_type: str,
    ) -> None:
        self._spend = spend
        self._chunks = chunks
        self._ended = False
        super().__init__(self._body(first), media_type=media_type)

    async def _body(self, first: str | bytes | None) -> AsyncIterator[str | bytes]:
        if first is not None:
            yield first
            async for chunk in self._chunks:
                yield chunk
        self._ended = True
        # Settled before the last (empty) body message: a client that has the whole
        # stream finds the charge recorded.
        await _end(self._spend.settle())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._ended:
                # The client went away (Starlette cancelled the stream or send
                # failed) or the chunks raised: stop them, settle what was
                # consumed, release when nothing was. Shielded: the request's own
                # cancellation must not cut the settle short.
                with anyio.CancelScope(shield=True):
                    await _close(self._chunks)
                    await _end(self._spend.cut_short())


async def _end(ending: Awaitable[object]) -> None:
    """Awaits a settle or release of a stream; a store failure is logged (the hold
    then frees itself at its ttl), never raised into the response."""
    try:
        await ending
    except KeyLeashError as e:
        _log.error("ending a stream's hold failed (it frees itself at its ttl): %s", e)


async def stream_with_hold(
    key: GrantedKey,
    estimate_cents: float,
    chunks: Callable[[Spend], AsyncIterator[str | bytes]],
    *,
    ttl: str | None = None,
    idempotency_key: str | None = None,
    media_type: str = "text/plain; charset=utf-8",
) -> Response:
    """A response streaming ``chunks(spend)`` (an async generator of ``str`` or
    ``bytes``) under a hold of ``estimate_cents`` on ``key`` (from ``require_key``),
    with the rules of docs/http.md#streaming:

    - refused (the estimate does not fit: 429 ``budget_exceeded``; revoked or
      expired since ``require_key``: 401): that answer, ``chunks`` never called. A
      repeated ``idempotency_key`` is never streamed under, whether its first hold
      is still held, settled or released: 409 ``{"error": "idempotency_replayed",
      "replayed": "held" | "settled" | "released"}``; one first used for another
      estimate or for a charge is 422 ``idempotency_conflict``. A store failure is
      500 ``auth_unavailable``, logged on the ``keyleash`` logger.
    - the first chunk is read before anything is sent. If ``chunks`` raises first,
      the hold is released (settled, if something was added) and the error is
      raised here, so the route answers it (a 502, say).
    - the stream ends: ``spend.settle()`` (what ``spend.add`` counted, unless
      ``chunks`` settled an actual cost itself) before the last byte goes out.
    - the client goes away: Starlette cancels the stream, ``chunks`` is closed
      (its ``finally`` runs) and what was consumed is settled, released when
      nothing was.
    - ``chunks`` raises mid-stream: the same, and the error propagates (the
      response is cut off).

    A failing settle or release is logged (the hold then frees itself at its ttl).
    ``estimate_cents`` that is not > 0 raises ``InvalidArgumentError``."""
    _check.text("media_type", media_type)
    try:
        spend = await key.reserve(estimate_cents, ttl=ttl, idempotency_key=idempotency_key)
    except UnavailableError as e:  # not_migrated included
        return store_failed(e)
    if not spend.success:
        if spend.reason == "invalid_cost":
            raise InvalidArgumentError("estimate_cents must be a finite number > 0")
        return _refusal(spend)
    iterator = chunks(spend).__aiter__()
    disconnected = key._reserver.disconnected if key._reserver is not None else None
    try:
        first: str | bytes | None = await _first_chunk(iterator, disconnected)
    except StopAsyncIteration:
        first = None
    except _ClientGone:
        # Nothing was sent and nobody is listening: stop the chunks, and settle
        # what they consumed (released when nothing was), as after a disconnect
        # mid-stream.
        with anyio.CancelScope(shield=True):
            await _close(iterator)
            await _end(spend.cut_short())
        return Response(status_code=499)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _end(spend.cut_short())
        raise
    return _HeldStream(spend, iterator, first, media_type)


class _ClientGone(Exception):
    """The client went away while the first chunk was being produced."""


#: How often ``_first_chunk`` asks whether the client is still there.
_DISCONNECT_POLL_S = 0.05


async def _first_chunk(
    iterator: AsyncIterator[str | bytes], disconnected: Callable[[], Awaitable[bool]] | None
) -> str | bytes:
    """The first chunk of ``iterator``. Starlette does not cancel a route whose
    client goes away, so while the chunk is produced the client is asked every
    50 ms whether it is still there; if not, producing it is cancelled and
    ``_ClientGone`` raised."""
    if disconnected is None:
        return await iterator.__anext__()
    task = asyncio.ensure_future(iterator.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await disconnected():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise _ClientGone
    finally:
        if not task.done():  # the route itself was cancelled
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _close(iterator: AsyncIterator[str | bytes]) -> None:
    """Closes an async generator's iterator (its ``finally`` runs); its own failure
    is logged, never raised."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            _log.exception("closing the stream's chunks failed")


async def _read_body(request: Request, limit: int = _native.MAX_BODY_BYTES) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` (default
    ``MAX_BODY_BYTES``): reading stops there, so a 50 MB body costs at most that
    much memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class SignupRequest(BaseModel):
    """``POST /signup`` (agentkey's snake_case fields; all optional but ``email``
    when the router requires it). An unknown field is refused with 400."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = None
    scopes: list[str] | None = None
    budget_cents: float | None = None
    budget_period: str | None = None
    expires_in: str | None = None
    name: str | None = None


class MintRequest(BaseModel):
    """``POST /sdk-keys``: a child of the calling key, never wider than it (nor with
    a shorter budget period). An unknown field is refused with 400."""

    model_config = ConfigDict(extra="forbid")

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
    retryAfter: int | None = None


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
    signup_rate_limit: int | Literal[False] = 20,
    signup_rate_limit_per_domain: int | None = None,
    mint_rate_limit: int | Literal[False] = 50,
) -> APIRouter:
    """The self-serve routes of docs/http.md with agentkey's security model:
    ``POST /signup``, ``GET /sdk-keys/me``, ``POST /sdk-keys``, ``DELETE
    /sdk-keys/{key_id}``.

    ``signup_rate_limit`` is the most signups per client address per hour (default
    20; ``False`` turns it off), ``signup_rate_limit_per_domain`` the most per email
    domain per hour (default ``None``: off); signups whose client address is
    unknown (``request.client`` is None, as behind ``uvicorn --uds``) share one
    count. ``mint_rate_limit`` is the most children a key tree (a root key and its
    descendants together) may mint through ``POST /sdk-keys`` per hour (default
    50; ``False`` turns it off). All are
    counted in the store, so they hold across processes; a refused request is 429
    ``rate_limited`` with a ``Retry-After`` header. Bodies go to the core as raw
    bytes with their ``Content-Type``: JSON is UTF-8 (a leading byte order mark is
    skipped; another charset is 415 ``unsupported_charset``). Every option is
    checked at once: a bad one raises ``InvalidDurationError``,
    ``InvalidPeriodError``, ``InvalidScopeError`` or ``InvalidArgumentError`` here,
    not on the first request."""
    native = _native_of(kl)
    if not isinstance(require_email, bool):
        raise InvalidArgumentError(
            f"require_email must be a bool, got {type(require_email).__name__}"
        )
    if signup_rate_limit is None:
        raise InvalidArgumentError(
            "signup_rate_limit must be an int (signups per address per hour), "
            "or False to turn the limit off; got None"
        )
    if mint_rate_limit is None:
        raise InvalidArgumentError(
            "mint_rate_limit must be an int (keys minted by one key tree per hour), "
            "or False to turn the limit off; got None"
        )
    options = _native.SelfServeOptions(
        signup_scopes=_check.opt_texts("signup_scopes", signup_scopes),
        require_email=require_email,
        signup_expires_in=_check.text("signup_expires_in", signup_expires_in),
        signup_budget_cents=_check.opt_amount("signup_budget_cents", signup_budget_cents),
        signup_budget_period=_check.opt_text("signup_budget_period", signup_budget_period),
        signup_rate_limit=(
            None
            if signup_rate_limit is False
            else _check.int64("signup_rate_limit", signup_rate_limit)
        ),
        signup_rate_limit_per_domain=_check.opt_int64(
            "signup_rate_limit_per_domain", signup_rate_limit_per_domain
        ),
        mint_rate_limit=(
            None if mint_rate_limit is False else _check.int64("mint_rate_limit", mint_rate_limit)
        ),
    )

    async def answer(request: Request, route: str, key_id: str | None = None) -> Response:
        raw = await _read_body(request)
        if raw is None:
            return payload_too_large()
        auth = request.headers.get("authorization")
        # None behind a Unix socket: the core counts those signups together.
        address = request.client.host if request.client is not None else None
        content_type = request.headers.get("content-type")
        status, reply, retry_after, cause = await native.self_serve(
            route, auth, raw, options, key_id, address, content_type
        )
        _log_cause(cause)
        headers = None if retry_after is None else {"Retry-After": str(retry_after)}
        return Response(reply, status_code=status, headers=headers, media_type="application/json")

    router = APIRouter(tags=["keyleash"])
    bad: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "Malformed or refused request"}
    }
    forbidden: dict[int | str, dict[str, Any]] = {
        403: {"model": ErrorResponse, "description": "Wider than the calling key"}
    }
    too_large: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorResponse, "description": "Body larger than 65,536 bytes"}
    }

    @router.post(
        "/signup",
        status_code=201,
        response_model=None,
        responses={
            201: {"model": CreatedKeyResponse},
            **bad,
            **too_large,
            429: {"model": ErrorResponse, "description": "Too many signups; see Retry-After"},
            500: _AUTH_ERRORS[500],
        },
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
        responses={
            201: {"model": CreatedKeyResponse},
            **bad,
            **forbidden,
            **too_large,
            **_AUTH_ERRORS,
        },
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


Authorize = Callable[[Request], bool | Awaitable[bool]]
"""An admin page's gatekeeper: given the request, ``True`` lets it through."""


def admin_router(kl: AnyKeyLeash, *, authorize: Authorize | None = None) -> APIRouter:
    """The operators' admin page (docs/admin.md), to mount under a prefix:
    ``app.include_router(admin_router(kl, authorize=is_admin), prefix="/admin")``.

    The page, its files and its JSON API are served by the core, byte for byte
    as the Express ``adminRouter`` serves them. ``authorize(request)`` (a function
    or a coroutine function) is asked first on every request, and only ``True``
    lets it through; without ``authorize`` every request is refused. A refused
    request gets 401 with a ``WWW-Authenticate: Basic`` challenge, so a browser
    asks for a password the app can check in ``authorize``. Revoking needs the
    page's CSRF token (the core checks it). ``authorize`` that is not callable
    raises ``InvalidArgumentError`` here; an exception it raises propagates."""
    if authorize is not None and not callable(authorize):
        raise InvalidArgumentError(f"authorize must be a function, got {type(authorize).__name__}")
    native = _native_of(kl)
    router = APIRouter(include_in_schema=False)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    async def handle(request: Request, path: str = "") -> Response:
        allowed: object = False
        if authorize is not None:
            allowed = authorize(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        if allowed is not True:
            return _admin_response(*_native.admin_unauthorized())
        full = request.url.path
        sub = "/" + path if path or full.endswith("/") else ""
        base = full[: len(full) - len(sub)] if sub else full
        body = b""
        if request.method == "POST":
            read = await _read_body(request, _native.ADMIN_MAX_BODY_BYTES)
            if read is None:
                return _admin_response(*_native.admin_payload_too_large())
            body = read
        answer = await native.admin(
            request.method,
            sub,
            request.url.query,
            base,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body,
        )
        return _admin_response(*answer)

    router.add_api_route("", handle, methods=methods)
    router.add_api_route("/{path:path}", handle, methods=methods)
    return router


def _admin_response(status: int, headers: list[tuple[str, str]], content: bytes) -> Response:
    """One of the core's admin page answers (its 401 and 413 for the mount too),
    sent as the core wrote it."""
    return Response(content=content, status_code=status, headers=dict(headers))
