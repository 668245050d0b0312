"""Type stubs of the native module (``bindings-python/src/lib.rs``).

Results cross as the result objects of ``keyleash.results``, built natively
(``src/results.rs``) from the classes registered with ``result_class``; HTTP
replies as their JSON text. Timestamps given to the native module cross as ISO 8601
strings with a time zone.
"""

import asyncio
import builtins
from collections.abc import Awaitable, Callable
from typing import Literal

from keyleash.granted import GrantedKey
from keyleash.results import (
    CacheStats,
    ChargeResult,
    CreatedKey,
    KeySummary,
    LedgerEntry,
    ReserveRefused,
    ReserveResult,
    SettleResult,
    Validation,
)

class CreateOptions:
    def __init__(
        self,
        *,
        account_id: str = "",
        user_id: str | None = None,
        scopes: list[str] | None = None,
        budget_cents: float | None = None,
        budget_period: str | None = None,
        expires_in: str | None = None,
        expires_at: str | None = None,
        delegated_by: str | None = None,
        name: str | None = None,
        metadata: str | None = None,
        parent_id: int | None = None,
        limits: list[tuple[str | None, str, float, str | None, float | None]] | None = None,
    ) -> None:
        """``metadata`` is JSON text, checked by the core and stored as it is;
        ``limits`` are ``(name, unit, limit, period, burst)``."""

class SelfServeOptions:
    def __init__(
        self,
        *,
        signup_scopes: list[str] | None = None,
        require_email: bool = True,
        signup_expires_in: str = "24h",
        signup_budget_cents: float | None = None,
        signup_budget_period: str | None = None,
        signup_rate_limit: int | None = 20,
        signup_rate_limit_per_domain: int | None = None,
        mint_rate_limit: int | None = 50,
    ) -> None:
        """Checked by the core at once (``InvalidArgumentError`` and kin); a rate
        limit of ``None`` is off."""

class NativeKeyLeash:
    @staticmethod
    def connect(
        url: str,
        *,
        table_name: str | None = None,
        key_prefix: str | None = None,
        valid_scopes: list[str] | None = None,
        pool_size: float | None = None,
        acquire_timeout_ms: float | None = None,
        statement_timeout_ms: float | None = None,
        manual_clock: str | None = None,
        cache: tuple[float | None, float | None] | None = None,
    ) -> Awaitable[NativeKeyLeash]: ...
    def cache_stats(self) -> CacheStats | None: ...
    def migrate(self) -> Awaitable[None]: ...
    def create(self, opts: CreateOptions) -> Awaitable[CreatedKey]: ...
    def ensure_subject(self, subject: str, opts: CreateOptions) -> Awaitable[None]: ...
    def validate_now_or_ref(self, raw_key: str) -> Validation | MissedKey:
        """The answer when no store is needed, else the key hashed once."""
    def validate_refs(
        self, keys: list[MissedKey], futures: list[asyncio.Future[Validation]]
    ) -> None:
        """The store's validate of each missed key, in order, in one native call:
        each answer (or exception) settles the future of the same place."""
    def validate_by_subject(self, subject: str) -> Awaitable[Validation]: ...
    def track_usage(
        self, raw_key: str, cost_cents: float, idempotency_key: str | None = None
    ) -> Awaitable[ChargeResult]: ...
    def track_usage_by_subject(
        self, subject: str, cost_cents: float, idempotency_key: str | None = None
    ) -> Awaitable[ChargeResult]: ...
    def reserve(
        self,
        raw_key: str,
        cost_cents: float,
        ttl: str | None = None,
        idempotency_key: str | None = None,
    ) -> Awaitable[ReserveResult]: ...
    def settle(self, hold_id: int, cost_cents: float) -> Awaitable[SettleResult]: ...
    def release(self, hold_id: int) -> Awaitable[bool]: ...
    def set_account_budget(
        self, account_id: str, budget_cents: float | None, budget_period: str | None = None
    ) -> Awaitable[None]: ...
    def revoke(self, key_id: int, account_id: str | None = None) -> Awaitable[bool]: ...
    def set_limits(
        self,
        key_id: int,
        limits: list[tuple[str | None, str, float, str | None, float | None]],
        account_id: str | None = None,
    ) -> Awaitable[bool]: ...
    def admin(
        self,
        method: str,
        path: str,
        query: str,
        base: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> Awaitable[tuple[int, list[tuple[str, str]], bytes]]: ...
    def list(self, account_id: str) -> Awaitable[builtins.list[KeySummary]]: ...
    def usage(
        self, key_id: int, from_: str | None = None, to: str | None = None
    ) -> Awaitable[builtins.list[LedgerEntry]]: ...
    def close(self) -> Awaitable[None]: ...
    def authenticate_key(
        self, authorization: str | None, scope: str | None = None
    ) -> Awaitable[tuple[int, GrantedKey | str, str | None, NativeKeyRef | None]]:
        """``(status, answer, cause, key)``: when granted (200), the ``GrantedKey``
        (without its handles) and ``key``, a handle that charges the key; else the
        body JSON and no key. ``cause`` (on a 500) is for the log."""
    def self_serve(
        self,
        route: str,
        authorization: str | None,
        body: bytes,
        options: SelfServeOptions,
        key_id: str | None = None,
        client: str | None = None,
        content_type: str | None = None,
    ) -> Awaitable[tuple[int, str, int | None, str | None]]:
        """``(status, body JSON, Retry-After seconds, cause)``."""
    def now(self) -> str: ...
    def set_now(self, at: str) -> None: ...
    def advance(self, seconds: float, minutes: float, hours: float, days: float) -> None: ...

class MissedKey:
    """A key the validation cache missed, hashed once (never the key): for ``validate_refs``."""

class NativeKeyRef:
    """A key ``authenticate_key`` granted: its hash (never the key) and connection."""

    def charge(
        self, cost_cents: float, idempotency_key: str | None = None
    ) -> Awaitable[ChargeResult]:
        """``track_usage`` of that key."""
    def reserve(
        self, cost_cents: float, ttl: str | None = None, idempotency_key: str | None = None
    ) -> Awaitable[ReserveRefused | NativeHold]:
        """``reserve`` of that key: the hold's handle when it holds, else the reserve
        result (a refusal or a replay)."""

class NativeHold:
    """A hold ``NativeKeyRef.reserve`` placed: the core's handle of it (its state,
    what was consumed, its one ending). ``settle``, ``release`` and ``cut_short``
    decide when called; a repeat awaits the first ending's result."""

    @property
    def hold_id(self) -> int: ...
    @property
    def expires_at(self) -> str:
        """ISO 8601."""
    @property
    def budget_remaining_cents(self) -> float | None: ...
    @property
    def estimate_cents(self) -> float: ...
    @property
    def consumed_cents(self) -> float: ...
    @property
    def state(self) -> Literal["held", "settled", "released"]: ...
    def add(self, cents: float) -> float:
        """The total so far; ``InvalidArgumentError`` for a non-amount or an ended hold."""
    def settle(self, cost_cents: float | None = None) -> Awaitable[SettleResult]:
        """The settle result (``None``: what was added)."""
    def release(self) -> Awaitable[bool]: ...
    def cut_short(self) -> Awaitable[SettleResult | bool]:
        """The settle result when something was consumed, else the release's answer."""

MAX_BODY_BYTES: int
"""The largest request body the self-serve routes read (65,536 bytes)."""
ADMIN_MAX_BODY_BYTES: int
"""The largest request body the admin page reads (16,384 bytes)."""
__version__: str
"""The package version (the workspace Cargo.toml's, compiled in)."""

def has_scope(scopes: list[str] | None, scope: str) -> bool: ...
def result_class(
    name: str,
    cls: type,
    fields: list[tuple[str, str, bool]],
    attribute: Callable[[type, str], tuple[str, bool] | None],
) -> None:
    """Registers a result class the native module builds results of: per field, its
    JSON key, its name and whether it is a timestamp; ``attribute`` answers for any
    other key (``keyleash.results._attribute``)."""

def payload_too_large() -> tuple[int, str]:
    """The core's 413 reply for a body over ``MAX_BODY_BYTES``."""

def rate_limited(limit: str, retry_after: float | None = None) -> tuple[int, str, int | None]:
    """The core's 429 for a key's rate limit: ``(429, body JSON, Retry-After seconds
    or None)``."""

def spend_refused(reason: str, replayed: str | None = None) -> tuple[int, str]:
    """The core's reply to a refused reserve, ``(status, body JSON)``: 409 when
    ``replayed`` is set, 429 ``budget_exceeded``, 422 ``idempotency_conflict``,
    else 401."""

def store_failed(cause: str) -> tuple[int, str]:
    """The core's reply to a key store failure, ``(500, body JSON)``; ``cause`` (the
    error's message) is for the log, never sent."""

def admin_unauthorized() -> tuple[int, list[tuple[str, str]], bytes]:
    """The core's 401 for an admin request ``authorize`` refused."""

def admin_payload_too_large() -> tuple[int, list[tuple[str, str]], bytes]:
    """The core's 413 for an admin body over ``ADMIN_MAX_BODY_BYTES``."""

def shutdown() -> None:
    """Registered with atexit: stops delivering results before Python finalizes."""

def run_cli(args: list[str]) -> int:
    """Runs the ``keyleash`` command line on ``args`` without the GIL; its exit status."""
