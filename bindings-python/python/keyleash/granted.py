"""``GrantedKey``: the key ``keyleash.fastapi.require_key`` granted, which charges and
reserves on itself without its raw key.

A module of its own, below the FastAPI integration and above the results and
``Spend``: it imports ``results`` and ``spend`` and nothing imports it back, so
``keyleash.GrantedKey`` (the same class as ``keyleash.fastapi.GrantedKey``) needs
no FastAPI, and no import runs in a circle. Every rule of a charge or a hold is the
core's; this module only holds the native handles a grant made and wraps what they
return.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import ClassVar

from keyleash import _check, _native
from keyleash.exceptions import InvalidArgumentError
from keyleash.results import ChargeResult, ReserveRefused, ValidKey, _register
from keyleash.spend import Spend

__all__ = ["GrantedKey"]


class _Reserver:
    """``reserve`` of one granted key: the handle ``require_key`` got (the key's
    native handle, which holds its hash, never the key), kept in a box so that it
    is no field of the ``GrantedKey`` dataclass."""

    __slots__ = ("_key_ref", "disconnected")

    def __init__(
        self,
        key_ref: _native.NativeKeyRef,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._key_ref = key_ref
        # Whether the request's client has gone away (``stream_with_hold`` asks it
        # while the first chunk is produced, before any response has started).
        self.disconnected = disconnected

    def __repr__(self) -> str:
        return "<reserve of the granted key>"

    async def __call__(
        self, cost: float, ttl: str | None, idempotency_key: str | None
    ) -> Spend | ReserveRefused:
        """``kl.reserve`` of the granted key, a ``Spend`` on the hold's native handle
        when it holds (one native call), else the refusal."""
        reserved = await self._key_ref.reserve(cost, ttl, idempotency_key)
        if isinstance(reserved, ReserveRefused):
            return reserved
        return Spend(reserved)


@dataclasses.dataclass(frozen=True)
class GrantedKey(ValidKey):
    """The key ``keyleash.fastapi.require_key`` granted: its ``ValidKey``, plus
    ``charge``, which charges that very key without the raw key, and ``reserve``,
    which places a hold on it. The handles they use are not dataclass fields:
    ``to_dict()``, ``dataclasses.asdict``, ``repr`` and ``==`` see the validation
    result alone."""

    # Set per instance by ``_grant``; ClassVars so they are no fields of the dataclass.
    _key_ref: ClassVar[_native.NativeKeyRef | None] = None
    _reserver: ClassVar[_Reserver | None] = None

    @staticmethod
    def _grant(
        granted: GrantedKey, key_ref: _native.NativeKeyRef, reserver: _Reserver | None = None
    ) -> GrantedKey:
        """The key a request was granted (as ``authenticate_key`` built it), given
        the handle charging its key and the box reserving on it."""
        object.__setattr__(granted, "_key_ref", key_ref)
        object.__setattr__(granted, "_reserver", reserver)
        return granted

    async def charge(
        self, cost_cents: float, *, idempotency_key: str | None = None
    ) -> ChargeResult:
        """Charges ``cost_cents`` to this key, as ``kl.track_usage(raw_key,
        cost_cents, idempotency_key=...)`` would, without parsing the header or
        hashing the key again. A key revoked, expired or spent since ``require_key``
        granted it gives a ``ChargeRefused`` with that ``reason``; a store failure
        raises ``UnavailableError``."""
        cost = _check.amount("cost_cents", cost_cents)
        key = _check.opt_text("idempotency_key", idempotency_key)
        if self._key_ref is None:
            raise InvalidArgumentError(
                "this GrantedKey holds no key to charge: only require_key makes one that does"
            )
        return await self._key_ref.charge(cost, key)

    async def reserve(
        self,
        estimate_cents: float,
        *,
        ttl: str | None = None,
        idempotency_key: str | None = None,
    ) -> Spend | ReserveRefused:
        """Holds ``estimate_cents`` of this key's budget, as ``kl.reserve(raw_key,
        estimate_cents, ttl=..., idempotency_key=...)`` would: a ``Spend`` (with
        ``add``, ``settle`` and ``release``) when used + held + estimate fits the key
        and every ancestor, else ``ReserveRefused`` (``budget_exceeded``, or the key
        was revoked or expired since ``require_key`` granted it; ``invalid_cost`` for
        an estimate that is not > 0). A store failure raises ``UnavailableError``."""
        cost = _check.amount("estimate_cents", estimate_cents)
        hold_ttl = _check.opt_text("ttl", ttl)
        key = _check.opt_text("idempotency_key", idempotency_key)
        if self._reserver is None:
            raise InvalidArgumentError(
                "this GrantedKey holds no key to reserve on: only require_key makes one that does"
            )
        return await self._reserver(cost, hold_ttl, key)


_register(GrantedKey)
