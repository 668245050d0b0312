"""The errors keyleash raises, one class per code of docs/errors.md.

Mistakes a caller can fix raise a subclass of ``KeyLeashError`` whose ``code`` is
``invalid_scope``, ``invalid_duration``, ``invalid_period`` or ``invalid_argument``;
a store that cannot be reached raises ``UnavailableError`` (``unavailable``), with
nothing half-applied, and a database ``migrate()`` has not prepared raises its
subclass ``NotMigratedError`` (``not_migrated``). Normal outcomes of a key (unknown,
expired, revoked, over budget, a bad cost) are results, not errors. No message
ever holds a raw key or a database password. The native module raises these very
classes.
"""

from __future__ import annotations

__all__ = [
    "InvalidArgumentError",
    "InvalidDurationError",
    "InvalidPeriodError",
    "InvalidScopeError",
    "KeyLeashError",
    "NotMigratedError",
    "UnavailableError",
]


class KeyLeashError(Exception):
    """Base of every keyleash error; ``code`` is the language-independent code."""

    code: str = "invalid_argument"

    def __init__(self, message: str, code: str | None = None, cause: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if cause is not None:
            # The underlying failure (e.g. the driver's error), kept as the cause.
            self.__cause__ = RuntimeError(cause)


class InvalidScopeError(KeyLeashError):
    """A scope is malformed or not in the ``valid_scopes`` allow-list."""

    code = "invalid_scope"


class InvalidDurationError(KeyLeashError):
    """A duration is not ``<n>s|m|h|d|w|mo`` with a positive ``n``."""

    code = "invalid_duration"


class InvalidPeriodError(KeyLeashError):
    """A budget period is not ``day``, ``week``, ``month`` or absent."""

    code = "invalid_period"


class InvalidArgumentError(KeyLeashError):
    """Any other bad argument: an identifier, amount, timestamp or string."""

    code = "invalid_argument"


class UnavailableError(KeyLeashError):
    """The store could not be reached or failed; nothing was applied."""

    code = "unavailable"


class NotMigratedError(UnavailableError):
    """A table keyleash needs does not exist: call ``migrate()`` on this database
    (with this ``table_name``) first. Nothing was applied. A subclass of
    ``UnavailableError``, so code that handles an unavailable store handles it too."""

    code = "not_migrated"
