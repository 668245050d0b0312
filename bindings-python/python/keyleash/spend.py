"""``Spend``: a hold placed through a granted key, and what has been consumed under it.

``GrantedKey.reserve`` (``keyleash.granted``, from ``keyleash.fastapi.require_key``)
makes one from the hold's native handle; the streaming helper
``keyleash.fastapi.stream_with_hold`` ends it by the rules of docs/http.md#streaming.
Every rule of a hold is the core's, the ones of this class included
(core/src/ops/hold.rs): the running total of ``add``, the first of ``settle`` and
``release`` deciding, and what later calls answer (a settle replays, a release is
``False``) without a second trip to the store. This module types the answers and
keeps the first ending's awaitable.

Hazard: the ending call runs on the core's runtime to its end, whatever happens to
the task awaiting it, so a request cancelled while it is in flight (a client that
went away) does not leave a settle half-done; it is awaited through
``asyncio.shield``, so the first ending's future stays pending until the store has
answered, and a later ``settle``/``release`` gets the same result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import Literal, TypeVar, cast

from keyleash import _check, _native
from keyleash.results import SettleResult

__all__ = ["Spend", "SpendState"]

SpendState = Literal["held", "settled", "released"]
"""A ``Spend``'s state: ``held`` until the first settle or release."""

_T = TypeVar("_T")


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

    def __init__(self, hold: _native.NativeHold) -> None:
        self._hold = hold
        self.hold_id: int = hold.hold_id
        """The hold's id, as ``kl.settle`` and ``kl.release`` take it."""
        self.expires_at: datetime | None = datetime.fromisoformat(hold.expires_at)
        """When the hold stops counting by itself."""
        self.budget_remaining_cents: float | None = hold.budget_remaining_cents
        """What could still be spent after the hold; ``None`` when uncapped."""
        self.estimate_cents: float = hold.estimate_cents
        """The estimate held, in cents."""
        # The first ending's future, under the name of what the core decided.
        self._settled: asyncio.Future[SettleResult | bool] | None = None
        self._released: asyncio.Future[SettleResult | bool] | None = None

    def __repr__(self) -> str:
        return (
            f"Spend(hold_id={self.hold_id}, estimate_cents={self.estimate_cents}, "
            f"consumed_cents={self.consumed_cents}, state={self.state!r})"
        )

    @property
    def consumed_cents(self) -> float:
        """The cost added so far, in cents."""
        return self._hold.consumed_cents

    @property
    def state(self) -> SpendState:
        """``held`` until the first settle or release, then ``settled`` or ``released``."""
        return self._hold.state

    def add(self, cents: float) -> float:
        """Counts ``cents`` (finite, ≥ 0) as consumed and returns the total so far.
        Raises ``InvalidArgumentError`` once the hold is settled or released (the
        cost would be lost)."""
        return self._hold.add(_check.amount("cents", cents))

    async def settle(self, cost_cents: float | None = None) -> SettleResult:
        """Charges ``cost_cents`` (default: ``consumed_cents``) and frees the hold:
        ``kl.settle``'s result. Exactly once: a repeat returns the first result."""
        cost = None if cost_cents is None else _check.amount("cost_cents", cost_cents)
        return await self._ending(self._hold.settle(cost))

    async def release(self) -> bool:
        """Frees the hold uncharged; whether it freed anything (``False`` after a settle)."""
        return await self._ending(self._hold.release())

    async def cut_short(self) -> SettleResult | bool:
        """How a stream that did not end normally ends: what was consumed is settled,
        and a hold with nothing consumed is released."""
        return await self._ending(self._hold.cut_short())

    def _ending(self, pending: Awaitable[_T]) -> Awaitable[_T]:
        """``pending`` (a native ending, already decided), shielded from the
        caller's cancellation; the first one is kept as ``_settled`` or
        ``_released``, by the state the core moved to."""
        future = asyncio.ensure_future(pending)
        if self._settled is None and self._released is None:
            first = cast("asyncio.Future[SettleResult | bool]", future)
            if self.state == "settled":
                self._settled = first
            else:
                self._released = first
        return asyncio.shield(future)
