"""keyleash: scoped, budgeted, time-bounded API keys on Postgres or SQLite.

``kl = await keyleash.KeyLeash.connect(url)`` gives the asyncio API;
``keyleash.sync.KeyLeash`` the same, blocking, for scripts, Django and Flask;
``keyleash.fastapi`` a dependency and the self-serve routes (needs FastAPI).
All the work is done by one Rust core, shared with the Node package.
"""

import atexit

from keyleash import _native
from keyleash.client import CacheOptions, ConnectOptions, CreateOptions, KeyLeash, has_scope
from keyleash.exceptions import (
    InvalidArgumentError,
    InvalidDurationError,
    InvalidPeriodError,
    InvalidScopeError,
    KeyLeashError,
    NotMigratedError,
    UnavailableError,
)
from keyleash.results import (
    CacheStats,
    ChargeResult,
    CreatedKey,
    GrantedKey,
    KeySummary,
    LedgerEntry,
    Validation,
)

__all__ = [
    "CacheOptions",
    "CacheStats",
    "ChargeResult",
    "ConnectOptions",
    "CreateOptions",
    "CreatedKey",
    "GrantedKey",
    "InvalidArgumentError",
    "InvalidDurationError",
    "InvalidPeriodError",
    "InvalidScopeError",
    "KeyLeash",
    "KeyLeashError",
    "KeySummary",
    "LedgerEntry",
    "NotMigratedError",
    "UnavailableError",
    "Validation",
    "has_scope",
]

__version__: str = _native.__version__

# Results of calls still in flight at exit must not touch a finalizing interpreter.
atexit.register(_native.shutdown)
