"""``Spend``: a hold placed through a granted key, and what has been consumed under it.

``GrantedKey.reserve`` (``keyleash.granted``, from ``keyleash.fastapi.require_key``)
makes one; the streaming helper ``keyleash.fastapi.stream_with_hold`` ends it by the
rules of docs/http.md#streaming. Every rule of a hold (what fits, the ledger row, expiry)
is the core's; this module only keeps the running total of ``add`` and makes sure a
hold is ended once: the first of ``settle`` and ``release`` decides, and later calls
answer as the core would answer them (a settle replays, a release is ``False``)
without a second trip to the store.

Hazard: the ending call runs as its own task, so a request cancelled while it is in
flight (a client that went away) does not leave a settle half-awaited; the task
finishes and a later ``settle``/``release`` awaits the same result.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Literal

from keyleash import _check, _native
from keyleash.exceptions import InvalidArgumentError
from keyleash.results import Held, SettleRefused, SettleResult, _settle_result

__all__ = ["Spend", "SpendState"]

SpendState = Literal["held", "settled", "released"]
"""A ``Spend``'s state: ``held`` until the first settle or release."""


class Spend:
    """A hold of ``estimate_cents`` on a granted key. ``add(cents)`` counts consumed
    cost as the work goes (a chunk sent, a token priced); ``await settle()`` charges
    the actual cost (default: what was added), in full even above the estimate, with
    a ledger row naming the hold; ``await release()`` frees it uncharged. The first of
    the two decides; a repeat returns the first settle's result, a settle after a
    release is ``SettleRefused("hold_released")`` and a release after a settle
    ``False``. A hold nobody ends frees itself at ``expires_at``."""

    success: Literal[True] = True
    """Always true: a refused reserve is a ``ReserveRefused``, not a ``Spend``."""

    def __init__(self, native: _native.NativeKeyLeash, held: Held, estimate_cents: float) -> None:
        self._native = native
        self.hold_id: int = held.hold_id
        """The hold's id, as ``kl.settle`` and ``kl.release`` take it."""
        self.expires_at: datetime | None = held.expires_at
        """When the hold stops counting by itself."""
        self.budget_remaining_cents: float | None = held.budget_remaining_cents
        """What could still be spent after the hold; ``None`` when uncapped."""
        self.estimate_cents: float = estimate_cents
        """The estimate held, in cents."""
        self._consumed = 0.0
        self._settled: asyncio.Task[SettleResult] | None = None
        self._released: asyncio.Task[bool] | None = None

    def __repr__(self) -> str:
        return (
            f"Spend(hold_id={self.hold_id}, estimate_cents={self.estimate_cents}, "
            f"consumed_cents={self._consumed}, state={self.state!r})"
        )

    @property
    def consumed_cents(self) -> float:
        """The cost added so far, in cents."""
        return self._consumed

    @property
    def state(self) -> SpendState:
        """``held`` until the first settle or release, then ``settled`` or ``released``."""
        if self._settled is not None:
            return "settled"
        return "released" if self._released is not None else "held"

    def add(self, cents: float) -> float:
        """Counts ``cents`` (finite, ≥ 0) as consumed and returns the total so far.
        Raises ``InvalidArgumentError`` once the hold is settled or released (the
        cost would be lost)."""
        c = _check.amount("cents", cents)
        if not math.isfinite(c) or c < 0:
            raise InvalidArgumentError("cents must be a finite number ≥ 0")
        if self.state != "held":
            raise InvalidArgumentError(
                f"the hold is already {self.state}: nothing more can be added"
            )
        self._consumed += c
        return self._consumed

    async def settle(self, cost_cents: float | None = None) -> SettleResult:
        """Charges ``cost_cents`` (default: ``consumed_cents``) and frees the hold:
        ``kl.settle``'s result. Exactly once: a repeat returns the first result."""
        if self._settled is None:
            if self._released is not None:
                return SettleRefused.from_dict({"success": False, "reason": "hold_released"})
            cost = self._consumed if cost_cents is None else _check.amount("cost_cents", cost_cents)
            self._settled = asyncio.ensure_future(self._settle(cost))
        return await asyncio.shield(self._settled)

    async def release(self) -> bool:
        """Frees the hold uncharged; whether it freed anything (``False`` after a settle)."""
        if self._released is None:
            if self._settled is not None:
                return False
            self._released = asyncio.ensure_future(self._native.release(self.hold_id))
        return await asyncio.shield(self._released)

    async def cut_short(self) -> SettleResult | bool:
        """How a stream that did not end normally ends: what was consumed is settled,
        and a hold with nothing consumed is released."""
        return await (self.settle() if self._consumed > 0 else self.release())

    async def _settle(self, cost: float) -> SettleResult:
        return _settle_result(await self._native.settle(self.hold_id, cost))
