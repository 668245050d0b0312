"""The asyncio API: ``kl = await KeyLeash.connect(url, **options)``.

Every method converts its arguments and awaits the native core (which runs on tokio
threads without the GIL), which returns the result objects of ``keyleash.results``
built natively. No rule of keyleash lives here: validation, rounding, time and
budget math are all the core's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, Unpack, cast

from keyleash import _check, _native
from keyleash.exceptions import InvalidArgumentError
from keyleash.results import (
    CacheStats,
    ChargeResult,
    CreatedKey,
    KeySummary,
    LedgerEntry,
    ReserveResult,
    SettleResult,
    Validation,
)

__all__ = ["CacheOptions", "ConnectOptions", "CreateOptions", "KeyLeash", "has_scope"]

KeySummaries = list[KeySummary]
LedgerEntries = list[LedgerEntry]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CacheOptions:
    """The opt-in validation cache (``connect(url, cache=CacheOptions(...))``).

    Valid answers are served from this process for up to ``ttl_ms`` (never past
    the key's expiry or budget reset). On Postgres, revokes and exhausted budgets
    reach every process's cache through LISTEN/NOTIFY within milliseconds; changes
    made by hand in SQL are seen after ``ttl_ms``. Charges never read the cache.
    On SQLite only this process's own changes invalidate it.
    """

    ttl_ms: int | None = None
    """How long a valid answer may be served: 1 to 3,600,000. ``None``: 10,000."""
    max_entries: int | None = None
    """The most answers kept (the oldest goes first): 1 to 1,000,000. ``None``: 10,000."""


class ConnectOptions(TypedDict, total=False):
    """Options of ``KeyLeash.connect``; all optional."""

    table_name: str
    """The keys table, ``name`` or ``schema.name`` (Postgres). Default ``sdk_api_keys``."""
    key_prefix: str
    """The prefix of minted keys, 1 to 16 of ``[A-Za-z0-9_-]``. Default ``ak_``."""
    valid_scopes: Sequence[str]
    """When given, every scope of ``create``/``ensure_subject`` must be in it."""
    pool_size: int
    """Maximum connections, 1 to 1000 (default 10 on Postgres, 4 on a SQLite file)."""
    acquire_timeout_ms: int
    """How long a call waits for a connection before ``UnavailableError``: 1 to
    600,000 (10 minutes). Default 5000."""
    statement_timeout_ms: int
    """The longest one statement may run: 1 to 86,400,000 (a day). Default 10000."""
    manual_clock: datetime | str
    """Start a manual clock here (tests); absent means the system clock."""
    cache: CacheOptions | None
    """The opt-in validation cache; absent or ``None`` is off."""


class CreateOptions(TypedDict, total=False):
    """What a new key (or subject row) may do, spend, and until when."""

    account_id: str
    """The owning account; required unless ``parent_id`` gives it."""
    user_id: str | None
    scopes: Sequence[str] | None
    """``None`` grants everything; checked against ``valid_scopes``."""
    budget_cents: float | None
    """The cap in cents (sub-cent allowed); ``None`` is uncapped."""
    budget_period: str | None
    """``day``, ``week``, ``month`` or ``None`` (a lifetime cap)."""
    expires_in: str | None
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w``, ``1mo``."""
    expires_at: datetime | str | None
    """An aware datetime or ISO 8601 string in the future; not with ``expires_in``."""
    delegated_by: str | None
    name: str | None
    metadata: Mapping[str, Any] | None
    """JSON-serializable, at most 16 KiB serialized."""
    parent_id: int | None
    limits: Sequence[LimitOptions] | None
    """Rate limits (at most 8, names unique): every charge and reserve of the key
    counts against them and against its ancestors'; a refused request counts
    against nothing."""


class LimitOptions(TypedDict, total=False):
    """A rate limit of a key (``unit`` and ``limit`` required). ``burst`` may come
    at once from idle, then ``limit`` per ``period``: any span of time ``w`` admits
    at most ``burst + limit * w / period``."""

    name: str
    """Names it in refusals and headers: 1 to 32 of ``a-z 0-9 _ -``; default the unit."""
    unit: Literal["requests", "cents", "concurrent"]
    """Charges and reserves, the cents charges and settles record, or holds open at once."""
    limit: int
    """How many per period (whole cents for ``cents``), or holds open at once: 1 to 1e12."""
    period: str
    """The period of ``requests`` and ``cents`` (``1s`` to ``31d``); none for ``concurrent``."""
    burst: int
    """How many at once from idle: 1 to 1e12, default ``limit``; none for ``concurrent``."""


_LIMIT_KEYS = ("name", "unit", "limit", "period", "burst")

_Limit = tuple[str | None, str, float, str | None, float | None]


def _limits(value: object) -> list[_Limit] | None:
    """The limits of ``create``, each checked for its names and types, as tuples."""
    if value is None:
        return None
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"limits must be a list of limits, got {type(value).__name__}")
    out: list[_Limit] = []
    for i, item in enumerate(cast(Iterable[object], value)):
        field = f"limits[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidArgumentError(
                f"{field} must be a mapping (unit, limit, period, burst, name), "
                f"got {type(item).__name__}"
            )
        for key in item:
            if key not in _LIMIT_KEYS:
                raise InvalidArgumentError(
                    f"{field}: unknown option {str(key)[:40]!r} (known: {', '.join(_LIMIT_KEYS)})"
                )
        for key in ("unit", "limit"):
            if item.get(key) is None:
                raise InvalidArgumentError(f"{field}: {key} is required")
        burst = item.get("burst")
        out.append(
            (
                _check.opt_text(f"{field}.name", item.get("name")),
                _check.text(f"{field}.unit", item["unit"]),
                _check.whole_number(f"{field}.limit", item["limit"]),
                _check.opt_text(f"{field}.period", item.get("period")),
                None if burst is None else _check.whole_number(f"{field}.burst", burst),
            )
        )
    return out


def _iso(field: str, value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidArgumentError(f"{field} must be an aware datetime (with a time zone)")
        return value.isoformat()
    raise InvalidArgumentError(f"{field} must be a datetime or an ISO 8601 string")


def _create_options(options: CreateOptions) -> _native.CreateOptions:
    # Unknown names reach the native constructor, which raises TypeError: a typo
    # like `budget_cent=5` must not mint an uncapped key.
    kwargs: dict[str, Any] = dict(options)
    for field in ("user_id", "budget_period", "expires_in", "delegated_by", "name"):
        if field in kwargs:
            kwargs[field] = _check.opt_text(field, kwargs[field])
    if "account_id" in kwargs:
        kwargs["account_id"] = _check.text("account_id", kwargs["account_id"])
    if "scopes" in kwargs:
        kwargs["scopes"] = _check.opt_texts("scopes", kwargs["scopes"])
    if "budget_cents" in kwargs:
        kwargs["budget_cents"] = _check.opt_amount("budget_cents", kwargs["budget_cents"])
    if "parent_id" in kwargs:
        kwargs["parent_id"] = _check.opt_int64("parent_id", kwargs["parent_id"])
    if "limits" in kwargs:
        kwargs["limits"] = _limits(kwargs["limits"])
    if kwargs.get("metadata") is not None:  # free-form JSON, as in Node
        # The one conversion: the core checks this text and stores it as it is.
        # Compact UTF-8, as the core writes Node's, so the 16 KiB limit counts the
        # same bytes in both.
        try:
            kwargs["metadata"] = json.dumps(
                kwargs["metadata"], allow_nan=False, ensure_ascii=False, separators=(",", ":")
            )
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError("metadata must be JSON-serializable") from e
    if "expires_at" in kwargs:
        kwargs["expires_at"] = _iso("expires_at", kwargs["expires_at"])
    return _native.CreateOptions(**kwargs)


def has_scope(result: Validation, scope: str) -> bool:
    """Whether a validation result is valid and grants ``scope``: ``None`` scopes
    grant all, ``admin`` grants all, ``proxy.*`` grants ``proxy.chat``."""
    return result.has_scope(scope)


class KeyLeash:
    """A connection to one keys table (Postgres or SQLite). Safe to share between
    tasks and threads; make it once per process with ``connect``."""

    def __init__(self, native: _native.NativeKeyLeash) -> None:
        """Internal: use ``await KeyLeash.connect(url, **options)``."""
        self._native = native
        # Validates waiting for the end of this turn of each event loop (their keys
        # and futures), sent to the core as one validate_refs (see ``validate``).
        self._gathered: dict[
            asyncio.AbstractEventLoop,
            tuple[list[_native.MissedKey], list[asyncio.Future[Validation]]],
        ] = {}

    @classmethod
    async def connect(cls, url: str, **options: Unpack[ConnectOptions]) -> Self:
        """Connects to ``postgres://…`` or ``sqlite://file.db`` / ``sqlite::memory:``.
        Raises ``InvalidArgumentError`` (bad URL, table name, prefix) or
        ``UnavailableError``. Call ``migrate()`` before first use."""
        kwargs: dict[str, Any] = dict(options)  # unknown names raise TypeError natively
        for field in ("table_name", "key_prefix"):
            if field in kwargs:
                kwargs[field] = _check.opt_text(field, kwargs[field])
        if "valid_scopes" in kwargs:
            kwargs["valid_scopes"] = _check.opt_texts("valid_scopes", kwargs["valid_scopes"])
        for field in ("pool_size", "acquire_timeout_ms", "statement_timeout_ms"):
            if field in kwargs:
                kwargs[field] = _check.opt_whole_number(field, kwargs[field])
        if "manual_clock" in kwargs:
            kwargs["manual_clock"] = _iso("manual_clock", kwargs["manual_clock"])
        if "cache" in kwargs:
            kwargs["cache"] = _cache_options(kwargs["cache"])
        native = await _native.NativeKeyLeash.connect(_check.text("url", url), **kwargs)
        return cls(native)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def cache_stats(self) -> CacheStats | None:
        """The validation cache's counters, or ``None`` when the cache is off."""
        return self._native.cache_stats()

    async def migrate(self) -> None:
        """Creates the schema or adopts an existing (agentkey) table; idempotent."""
        await self._native.migrate()

    async def create(self, **options: Unpack[CreateOptions]) -> CreatedKey:
        """Mints a key; the raw key is in the result once and never again."""
        return await self._native.create(_create_options(options))

    async def ensure_subject(self, subject: str, **options: Unpack[CreateOptions]) -> None:
        """Creates, once, a budget row bound to an external identity (idempotent)."""
        subject = _check.text("subject", subject)
        await self._native.ensure_subject(subject, _create_options(options))

    async def validate(self, raw_key: str) -> Validation:
        """Checks a raw key: a ``ValidKey``, or an ``InvalidKey`` with a reason when
        it may not be used (``if v.valid:`` tells them apart, for mypy too).

        What the core answers without the store (a malformed key, a cache hit)
        comes back at once. The other validates of one turn of the event loop are
        gathered and cross into the core together (one native call, one wake-up
        for all of them); each gets exactly the answer it would have had alone.
        The key is hashed and the cache looked at once either way."""
        if not isinstance(raw_key, str):  # _check.text, inlined on this hot path
            raw_key = _check.text("raw_key", raw_key)
        now = self._native.validate_now_or_ref(raw_key)
        if isinstance(now, _native.MissedKey):
            return await self._gather(now)
        return now

    def _gather(self, key: _native.MissedKey) -> asyncio.Future[Validation]:
        """A future of ``key``'s validation, sent with the rest of this turn's
        misses when the loop gets to the callback scheduled here."""
        loop = asyncio.get_running_loop()
        waiting = loop.create_future()
        gathered = self._gathered.get(loop)
        if gathered is None:
            gathered = self._gathered[loop] = ([], [])
            loop.call_soon(self._send_gathered, loop)
        gathered[0].append(key)
        gathered[1].append(waiting)
        return waiting

    def _send_gathered(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sends this turn's misses as one ``validate_refs``, which settles each
        caller's future itself (one that is done, its caller cancelled, is left)."""
        keys, waiting = self._gathered.pop(loop, ([], []))
        try:
            self._native.validate_refs(keys, waiting)
        except Exception as e:  # every caller of the turn gets the failure
            for future in waiting:
                if not future.done():
                    future.set_exception(e)

    async def validate_by_subject(self, subject: str) -> Validation:
        """``validate`` for a row made by ``ensure_subject``."""
        return await self._native.validate_by_subject(_check.text("subject", subject))

    async def track_usage(
        self, raw_key: str, cost_cents: float, *, idempotency_key: str | None = None
    ) -> ChargeResult:
        """Charges ``cost_cents`` atomically: ``Charged`` only if it fits the cap of
        the key and every ancestor, else ``ChargeRefused`` with a reason (``if
        c.success:`` tells them apart). NaN, infinite or negative costs give
        ``invalid_cost``."""
        return await self._native.track_usage(
            _check.text("raw_key", raw_key),
            _check.amount("cost_cents", cost_cents),
            _check.opt_text("idempotency_key", idempotency_key),
        )

    async def reserve(
        self,
        raw_key: str,
        cost_cents: float,
        *,
        ttl: str | None = None,
        idempotency_key: str | None = None,
    ) -> ReserveResult:
        """Holds ``cost_cents`` of the key's budget before a spend whose cost is not
        known yet: ``Held`` (with ``hold_id``) only if used + held + estimate fits the
        key and every ancestor, else ``ReserveRefused``. ``ttl`` (``"30s"`` to
        ``"1d"``, default ``"5m"``) is how long the hold counts unless settled or
        released; a bad one raises ``InvalidDurationError``. A zero estimate is
        ``invalid_cost``."""
        return await self._native.reserve(
            _check.text("raw_key", raw_key),
            _check.amount("cost_cents", cost_cents),
            _check.opt_text("ttl", ttl),
            _check.opt_text("idempotency_key", idempotency_key),
        )

    async def settle(self, hold_id: int, cost_cents: float) -> SettleResult:
        """Charges a hold's actual cost, in full even above the hold, and frees it,
        with a ledger row naming the hold. A repeat returns the first result;
        ``SettleRefused`` says ``unknown_hold``, ``hold_released`` or
        ``invalid_cost``."""
        return await self._native.settle(
            _check.int64("hold_id", hold_id), _check.amount("cost_cents", cost_cents)
        )

    async def release(self, hold_id: int) -> bool:
        """Frees a hold without charging it; whether it freed anything (False for
        an unknown, settled, released or expired hold)."""
        return await self._native.release(_check.int64("hold_id", hold_id))

    async def set_account_budget(
        self, account_id: str, budget_cents: float | None, budget_period: str | None = None
    ) -> None:
        """Sets the ceiling of an account: what all its keys charge and hold
        together may not pass ``budget_cents`` per ``budget_period`` (``"day"``,
        ``"week"``, ``"month"``; ``None`` for a lifetime ceiling), atomically with
        each key's own budget. A new ceiling starts with nothing used; the same
        period again changes only the amount; another period starts over.
        ``budget_cents=None`` removes it. Bad input raises
        ``InvalidArgumentError`` or ``InvalidPeriodError``."""
        await self._native.set_account_budget(
            _check.text("account_id", account_id),
            _check.opt_amount("budget_cents", budget_cents),
            _check.opt_text("budget_period", budget_period),
        )

    async def track_usage_by_subject(
        self, subject: str, cost_cents: float, *, idempotency_key: str | None = None
    ) -> ChargeResult:
        """``track_usage`` for a row made by ``ensure_subject``."""
        return await self._native.track_usage_by_subject(
            _check.text("subject", subject),
            _check.amount("cost_cents", cost_cents),
            _check.opt_text("idempotency_key", idempotency_key),
        )

    async def revoke(self, key_id: int, account_id: str | None = None) -> bool:
        """Soft-revokes a key (only of ``account_id`` when given); whether one was."""
        return await self._native.revoke(
            _check.int64("key_id", key_id), _check.opt_text("account_id", account_id)
        )

    async def set_limits(
        self, key_id: int, limits: Sequence[LimitOptions], account_id: str | None = None
    ) -> bool:
        """Replaces a key's rate limits (``[]``: none; only of ``account_id`` when
        given), checked as ``create`` checks them. A limit kept under the same name
        and unit keeps what it has counted, restated at its new rate (no fresh
        burst). Whether a key was found."""
        checked = _limits(limits)
        if checked is None:
            raise InvalidArgumentError("limits must be a list of limits, got NoneType")
        return await self._native.set_limits(
            _check.int64("key_id", key_id), checked, _check.opt_text("account_id", account_id)
        )

    async def list(self, account_id: str) -> KeySummaries:
        """The keys of an account, oldest first, without secrets."""
        return await self._native.list(_check.text("account_id", account_id))

    async def usage(
        self,
        key_id: int,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
    ) -> LedgerEntries:
        """A key's ledger rows, ``from_`` inclusive to ``to`` exclusive, oldest first."""
        key = _check.int64("key_id", key_id)
        return await self._native.usage(key, _iso("from_", from_), _iso("to", to))

    async def close(self) -> None:
        """Closes the pool; later calls raise ``UnavailableError``."""
        await self._native.close()

    def has_scope(self, result: Validation, scope: str) -> bool:
        """Same as the module function ``keyleash.has_scope``."""
        return has_scope(result, scope)

    def now(self) -> str:
        """The manual clock's reading (ISO 8601, ms, ``Z``)."""
        return self._native.now()

    def set_now(self, at: datetime | str) -> None:
        """Sets the manual clock (it may go backwards)."""
        self._native.set_now(_iso("at", at) or "")

    def advance(
        self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0
    ) -> None:
        """Moves the manual clock by the sum given (negative goes back)."""
        self._native.advance(
            _check.amount("seconds", seconds),
            _check.amount("minutes", minutes),
            _check.amount("hours", hours),
            _check.amount("days", days),
        )


def _cache_options(value: object) -> tuple[float | None, float | None] | None:
    """``cache`` as the native half takes it; the core checks the ranges."""
    if value is None:
        return None
    if not isinstance(value, CacheOptions):
        raise InvalidArgumentError("cache must be a keyleash.CacheOptions or None")
    return (
        _check.opt_whole_number("cache.ttl_ms", value.ttl_ms),
        _check.opt_whole_number("cache.max_entries", value.max_entries),
    )
