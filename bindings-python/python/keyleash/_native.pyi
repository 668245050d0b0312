"""Type stubs of the native module (``bindings-python/src/lib.rs``).

Async methods return awaitables of the core's serde JSON text; the pure-Python
layer (``keyleash.KeyLeash``) wraps them in result objects. Timestamps cross as
ISO 8601 strings with a time zone.
"""

from collections.abc import Awaitable
from typing import Literal

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
    ) -> None:
        """``metadata`` is JSON text, checked by the core and stored as it is."""

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
    def cache_stats(self) -> str | None: ...
    def migrate(self) -> Awaitable[None]: ...
    def create(self, opts: CreateOptions) -> Awaitable[str]: ...
    def ensure_subject(self, subject: str, opts: CreateOptions) -> Awaitable[None]: ...
    def validate_now_or_ref(self, raw_key: str) -> str | MissedKey:
        """The answer's JSON when no store is needed, else the key hashed once."""
    def validate_refs(self, keys: list[MissedKey]) -> Awaitable[list[str | BaseException]]:
        """The store's validate of each missed key, in order, in one native call."""
    def validate_by_subject(self, subject: str) -> Awaitable[str]: ...
    def track_usage(
        self, raw_key: str, cost_cents: float, idempotency_key: str | None = None
    ) -> Awaitable[str]: ...
    def track_usage_by_subject(
        self, subject: str, cost_cents: float, idempotency_key: str | None = None
    ) -> Awaitable[str]: ...
    def reserve(
        self,
        raw_key: str,
        cost_cents: float,
        ttl: str | None = None,
        idempotency_key: str | None = None,
    ) -> Awaitable[str]: ...
    def settle(self, hold_id: int, cost_cents: float) -> Awaitable[str]: ...
    def release(self, hold_id: int) -> Awaitable[bool]: ...
    def set_account_budget(
        self, account_id: str, budget_cents: float | None, budget_period: str | None = None
    ) -> Awaitable[None]: ...
    def revoke(self, key_id: int, account_id: str | None = None) -> Awaitable[bool]: ...
    def admin(
        self,
        method: str,
        path: str,
        query: str,
        base: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> Awaitable[tuple[int, list[tuple[str, str]], bytes]]: ...
    def list(self, account_id: str) -> Awaitable[str]: ...
    def usage(
        self, key_id: int, from_: str | None = None, to: str | None = None
    ) -> Awaitable[str]: ...
    def close(self) -> Awaitable[None]: ...
    def authenticate_key(
        self, authorization: str | None, scope: str | None = None
    ) -> Awaitable[tuple[int, str, str | None, NativeKeyRef | None]]:
        """``(status, body JSON, cause, key)``: ``cause`` (on a 500) is for the log;
        ``key``, when granted (200), a handle that charges the key."""
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

    def charge(self, cost_cents: float, idempotency_key: str | None = None) -> Awaitable[str]:
        """``track_usage`` of that key: the charge result JSON."""
    def reserve(
        self, cost_cents: float, ttl: str | None = None, idempotency_key: str | None = None
    ) -> Awaitable[str | NativeHold]:
        """``reserve`` of that key: the hold's handle when it holds, else the reserve
        result JSON (a refusal or a replay)."""

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
    def settle(self, cost_cents: float | None = None) -> Awaitable[str]:
        """The settle result JSON (``None``: what was added)."""
    def release(self) -> Awaitable[bool]: ...
    def cut_short(self) -> Awaitable[str | bool]:
        """The settle result JSON when something was consumed, else the release's answer."""

MAX_BODY_BYTES: int
"""The largest request body the self-serve routes read (65,536 bytes)."""
ADMIN_MAX_BODY_BYTES: int
"""The largest request body the admin page reads (16,384 bytes)."""
__version__: str
"""The package version (the workspace Cargo.toml's, compiled in)."""

def has_scope(scopes: list[str] | None, scope: str) -> bool: ...
def payload_too_large() -> tuple[int, str]:
    """The core's 413 reply for a body over ``MAX_BODY_BYTES``."""

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
