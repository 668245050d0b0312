"""Type-checked, never run: misuses of results that ``mypy --strict`` must refuse.
Each line ending in ``# E: <code>`` must give exactly that error, and no other line
may give one (tests/test_typing.py). Excluded from the suite's own mypy run."""

from __future__ import annotations

import keyleash
import keyleash.sync
from keyleash import GrantedKey, ValidKey


async def validate(kl: keyleash.KeyLeash, raw_key: str) -> None:
    """Fields of one kind read without checking ``valid``, or on the other kind."""
    v = await kl.validate(raw_key)
    print(v.account_id)  # E: union-attr
    print(v.reason)  # E: union-attr
    if v.valid:
        print(v.reason)  # E: attr-defined
    else:
        print(v.budget_remaining_cents)  # E: attr-defined
        if v.reason == "expird":  # E: comparison-overlap
            pass
    if not v.valid:
        print(v.name)  # E: attr-defined


def validate_sync(kl: keyleash.sync.KeyLeash, raw_key: str) -> str:
    """The sync API's result needs the same check."""
    return kl.validate(raw_key).account_id  # E: union-attr


async def track_usage(kl: keyleash.KeyLeash, raw_key: str) -> float | None:
    """A charge's numbers read without checking ``success``, or its reason on success."""
    c = await kl.track_usage(raw_key, 1)
    print(c.reason)  # E: union-attr
    if c.success:
        print(c.reason)  # E: attr-defined
        used: float = c.budget_used_cents  # E: assignment
        print(used)
    return c.budget_used_cents  # E: union-attr


async def granted(key: GrantedKey) -> None:
    """A GrantedKey is valid: it has no reason; its charge is either kind."""
    print(key.reason)  # E: attr-defined
    print((await key.charge(1)).budget_remaining_cents)  # E: union-attr


def construct() -> None:
    """The discriminants are literals: a ValidKey cannot say it is not valid."""
    ValidKey(valid=False)  # E: arg-type


def admin_page(kl: keyleash.KeyLeash) -> None:
    """authorize is a function of the request; anything else is a type error."""
    from keyleash.fastapi import admin_router

    admin_router(kl, authorize=True)  # E: arg-type
