"""The blocking API, for scripts, Django and Flask: ``keyleash.sync.KeyLeash``.

It runs the asyncio API's coroutines on one background event loop thread (started
on first use, restarted in a forked child), so any number of threads can call at
once: each blocks only itself while the core works without the GIL. Do not call it
from inside that loop (a keyleash coroutine); from other async code it works but
blocks that code's loop: use ``keyleash.KeyLeash`` there.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from keyleash import client
from keyleash.client import (
    ConnectOptions,
    CreateOptions,
    KeySummaries,
    LedgerEntries,
    LimitOptions,
)
from keyleash.results import (
    CacheStats,
    ChargeResult,
    CreatedKey,
    ReserveResult,
    SettleResult,
    Validation,
)

__all__ = ["KeyLeash"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="keyleash-sync", daemon=True)
            _thread.start()
        return _loop


def _forget_loop() -> None:
    global _loop, _thread
    _loop, _thread = None, None


os.register_at_fork(after_in_child=_forget_loop)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    loop = _background_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("keyleash.sync called from its own event loop: await instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


class KeyLeash:
    """The blocking twin of ``keyleash.KeyLeash``: same methods, same results."""

    def __init__(self, inner: client.KeyLeash) -> None:
        """Internal: use ``KeyLeash.connect(url, **options)``."""
        self.aio = inner
        """The asyncio ``keyleash.KeyLeash`` this wraps (shares its pool)."""

    @classmethod
    def connect(cls, url: str, **options: Unpack[ConnectOptions]) -> Self:
        """See ``keyleash.KeyLeash.connect``."""
        return cls(_run(client.KeyLeash.connect(url, **options)))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cache_stats(self) -> CacheStats | None:
        """The validation cache's counters, or ``None`` when the cache is off."""
        return self.aio.cache_stats()

    def migrate(self) -> None:
        _run(self.aio.migrate())

    def create(self, **options: Unpack[CreateOptions]) -> CreatedKey:
        return _run(self.aio.create(**options))

    def ensure_subject(self, subject: str, **options: Unpack[CreateOptions]) -> None:
        _run(self.aio.ensure_subject(subject, **options))

    def validate(self, raw_key: str) -> Validation:
        return _run(self.aio.validate(raw_key))

    def validate_by_subject(self, subject: str) -> Validation:
        return _run(self.aio.validate_by_subject(subject))

    def track_usage(
        self, raw_key: str, cost_cents: float, *, idempotency_key: str | None = None
    ) -> ChargeResult:
        return _run(self.aio.track_usage(raw_key, cost_cents, idempotency_key=idempotency_key))

    def reserve(
        self,
        raw_key: str,
        cost_cents: float,
        *,
        ttl: str | None = None,
        idempotency_key: str | None = None,
    ) -> ReserveResult:
        """``KeyLeash.reserve`` of the asyncio API, blocking."""
        return _run(self.aio.reserve(raw_key, cost_cents, ttl=ttl, idempotency_key=idempotency_key))

    def settle(self, hold_id: int, cost_cents: float) -> SettleResult:
        """``KeyLeash.settle`` of the asyncio API, blocking."""
        return _run(self.aio.settle(hold_id, cost_cents))

    def release(self, hold_id: int) -> bool:
        """``KeyLeash.release`` of the asyncio API, blocking."""
        return _run(self.aio.release(hold_id))

    def set_account_budget(
        self, account_id: str, budget_cents: float | None, budget_period: str | None = None
    ) -> None:
        """``KeyLeash.set_account_budget`` of the asyncio API, blocking."""
        _run(self.aio.set_account_budget(account_id, budget_cents, budget_period))

    def track_usage_by_subject(
        self, subject: str, cost_cents: float, *, idempotency_key: str | None = None
    ) -> ChargeResult:
        coro = self.aio.track_usage_by_subject(subject, cost_cents, idempotency_key=idempotency_key)
        return _run(coro)

    def revoke(self, key_id: int, account_id: str | None = None) -> bool:
        return _run(self.aio.revoke(key_id, account_id))

    def set_limits(
        self, key_id: int, limits: Sequence[LimitOptions], account_id: str | None = None
    ) -> bool:
        return _run(self.aio.set_limits(key_id, limits, account_id))

    def list(self, account_id: str) -> KeySummaries:
        return _run(self.aio.list(account_id))

    def usage(
        self,
        key_id: int,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
    ) -> LedgerEntries:
        return _run(self.aio.usage(key_id, from_, to))

    def close(self) -> None:
        _run(self.aio.close())

    def has_scope(self, result: Validation, scope: str) -> bool:
        return client.has_scope(result, scope)

    def now(self) -> str:
        return self.aio.now()

    def set_now(self, at: datetime | str) -> None:
        self.aio.set_now(at)

    def advance(
        self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0
    ) -> None:
        self.aio.advance(seconds=seconds, minutes=minutes, hours=hours, days=days)
