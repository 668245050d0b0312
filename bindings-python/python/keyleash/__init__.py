"""keyleash: scoped, budgeted, time-bounded API keys on Postgres or SQLite.

``kl = await keyleash.KeyLeash.connect(url)`` gives the asyncio API;
``keyleash.sync.KeyLeash`` the same, blocking, for scripts, Django and Flask;
``keyleash.fastapi`` a dependency and the self-serve routes (needs FastAPI).
All the work is done by one Rust core, shared with the Node package.
"""

import atexit

from keyleash import _native
from keyleash.client import (
    CacheOptions,
    ConnectOptions,
    CreateOptions,
    KeyLeash,
    LimitOptions,
    has_scope,
)
from keyleash.exceptions import (
    InvalidArgumentError,
    InvalidDurationError,
    InvalidPeriodError,
    InvalidScopeError,
    KeyLeashError,
    NotMigratedError,
    UnavailableError,
)
from keyleash.granted import GrantedKey
from keyleash.results import (
    CacheStats,
    Charged,
    ChargeRefusal,
    ChargeRefused,
    ChargeResult,
    CreatedKey,
    Held,
    HoldStatus,
    InvalidKey,
    InvalidReason,
    KeySummary,
    LedgerEntry,
    ReserveRefusal,
    ReserveRefused,
    ReserveResult,
    Settled,
    SettleRefusal,
    SettleRefused,
    SettleResult,
    Validation,
    ValidKey,
    charge_result_from_dict,
    validation_from_dict,
)
from keyleash.spend import Spend, SpendState

__all__ = [
    "CacheOptions",
    "CacheStats",
    "ChargeRefusal",
    "ChargeRefused",
    "ChargeResult",
    "Charged",
    "ConnectOptions",
    "CreateOptions",
    "CreatedKey",
    "GrantedKey",
    "Held",
    "HoldStatus",
    "InvalidArgumentError",
    "InvalidDurationError",
    "InvalidKey",
    "InvalidPeriodError",
    "InvalidReason",
    "InvalidScopeError",
    "KeyLeash",
    "KeyLeashError",
    "KeySummary",
    "LedgerEntry",
    "LimitOptions",
    "NotMigratedError",
    "ReserveRefusal",
    "ReserveRefused",
    "ReserveResult",
    "SettleRefusal",
    "SettleRefused",
    "SettleResult",
    "Settled",
    "Spend",
    "SpendState",
    "UnavailableError",
    "ValidKey",
    "Validation",
    "charge_result_from_dict",
    "has_scope",
    "validation_from_dict",
]

__version__: str = _native.__version__

# Results of calls still in flight at exit must not touch a finalizing interpreter.
atexit.register(_native.shutdown)
