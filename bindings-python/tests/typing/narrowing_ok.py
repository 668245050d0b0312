"""Type-checked, never run: how results narrow under ``mypy --strict``. Must check
clean (tests/test_typing.py); every line here is a use the types must allow."""

from __future__ import annotations

from datetime import datetime
from typing import assert_type

import keyleash
import keyleash.sync
from keyleash import (
    Charged,
    ChargeRefusal,
    ChargeRefused,
    ChargeResult,
    GrantedKey,
    InvalidKey,
    InvalidReason,
    Validation,
    ValidKey,
)


async def validate(kl: keyleash.KeyLeash, raw_key: str) -> str:
    """``if v.valid:`` narrows to ValidKey, its else branch to InvalidKey."""
    v = await kl.validate(raw_key)
    assert_type(v, ValidKey | InvalidKey)
    if v.valid:
        assert_type(v, ValidKey)
        account: str = v.account_id
        key_id: int = v.id
        name: str = v.name
        spent: float = v.budget_used_cents + v.budget_held_cents
        remaining: float | None = v.budget_remaining_cents
        reset: datetime | None = v.budget_reset_at
        return f"{key_id} {account} {name} {spent} {remaining} {reset} {v.has_scope('x')}"
    assert_type(v, InvalidKey)
    reason: InvalidReason = v.reason
    return reason


async def early_return(kl: keyleash.KeyLeash, subject: str) -> str:
    """``if not v.valid: return`` leaves a ValidKey after it."""
    v = await kl.validate_by_subject(subject)
    if not v.valid:
        return v.reason
    return v.account_id


def validate_sync(kl: keyleash.sync.KeyLeash, raw_key: str) -> str | None:
    """The sync API returns the same union; ``isinstance`` and ``match`` narrow too."""
    v = kl.validate(raw_key)
    if isinstance(v, ValidKey):
        return v.user_id
    match kl.validate_by_subject("s"):
        case ValidKey(account_id=account):
            return account
        case InvalidKey(reason=reason):
            return reason
    return None


async def track_usage(kl: keyleash.KeyLeash, raw_key: str) -> float | None:
    """``if c.success:`` narrows to Charged, its else branch to ChargeRefused."""
    c = await kl.track_usage(raw_key, 0.42, idempotency_key="req-81")
    assert_type(c, Charged | ChargeRefused)
    if c.success:
        assert_type(c, Charged)
        return c.budget_remaining_cents
    refusal: ChargeRefusal = c.reason
    return 0.0 if refusal == "budget_exceeded" else None


def track_usage_sync(kl: keyleash.sync.KeyLeash, subject: str) -> float | None:
    """The sync API's charges narrow the same way."""
    c = kl.track_usage_by_subject(subject, 1)
    if not c.success:
        assert_type(c, ChargeRefused)
        return None
    return c.budget_used_cents


async def granted(key: GrantedKey) -> str:
    """A GrantedKey is a ValidKey: no check needed; its charge is a ChargeResult."""
    valid: ValidKey = key
    charge: ChargeResult = await key.charge(1)
    if charge.success:
        return f"{valid.account_id} {charge.budget_used_cents}"
    return f"{key.name} {charge.reason}"


def from_dicts(raw: dict[str, object]) -> tuple[Validation, ChargeResult]:
    """The ``*_from_dict`` functions return the unions, the classes' ``from_dict`` a class."""
    assert_type(ValidKey.from_dict({"valid": True}), ValidKey)
    assert_type(ChargeRefused.from_dict(raw), ChargeRefused)
    return keyleash.validation_from_dict(raw), keyleash.charge_result_from_dict(raw)


def has_scope(v: Validation) -> bool:
    """``has_scope`` takes either kind (always False for an InvalidKey)."""
    return v.has_scope("proxy.chat") and keyleash.has_scope(v, "admin")


def admin_page(kl: keyleash.KeyLeash, sync_kl: keyleash.sync.KeyLeash) -> None:
    """admin_router takes either facade and a plain or async ``authorize``."""
    from fastapi import APIRouter, Request

    from keyleash.fastapi import admin_router

    def is_admin(request: Request) -> bool:
        return request.headers.get("x-admin") == "yes"

    async def is_admin_async(request: Request) -> bool:
        return is_admin(request)

    assert_type(admin_router(kl, authorize=is_admin), APIRouter)
    assert_type(admin_router(sync_kl, authorize=is_admin_async), APIRouter)
