"""The one place Python values are checked before they cross to the core.

Python would happily coerce: ``list("proxy.chat")`` is ten one-letter scopes,
``float("5")`` is 5 cents and ``True`` is 1. Every public method (async and sync,
FastAPI router options) passes its arguments through these helpers, which only check
*types*: a wrong type raises ``InvalidArgumentError`` naming the field and the type
given, never the value (it may be a raw key). Ranges and every other rule are the
core's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any, cast

from keyleash.exceptions import InvalidArgumentError

__all__ = [
    "amount",
    "int64",
    "opt_amount",
    "opt_int64",
    "opt_text",
    "opt_texts",
    "opt_whole_number",
    "text",
    "whole",
    "whole_number",
]

_I64 = 2**63


def _refuse(field: str, expected: str, value: object) -> InvalidArgumentError:
    return InvalidArgumentError(f"{field} must be {expected}, got {type(value).__name__}")


def text(field: str, value: object) -> str:
    """A ``str`` (not bytes, not a number)."""
    if not isinstance(value, str):
        raise _refuse(field, "a str", value)
    return value


def opt_text(field: str, value: object) -> str | None:
    return None if value is None else text(field, value)


def opt_texts(field: str, value: object) -> list[str] | None:
    """``None`` or a collection of ``str`` (a list, tuple, set...), as a list. A
    ``str`` is refused: it is not a sequence of scopes, it is one."""
    if value is None:
        return None
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise _refuse(field, "a list of str", value)
    items: list[Any] = list(value)
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgumentError(
                f"{field} must be a list of str, got an item of type {type(item).__name__}"
            )
    return items


def amount(field: str, value: object) -> float:
    """A real number (``int`` or ``float``; not ``bool``, not ``str``), as a float.
    NaN, infinities and negative amounts are the core's to judge."""
    if type(value) is float:  # the common case, without the ABC check below
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise _refuse(field, "a number (int or float)", value)
    try:
        return float(value)
    except OverflowError:  # an int beyond a float's range: the core refuses infinity
        return float("inf") if cast(int, value) > 0 else float("-inf")


def opt_amount(field: str, value: object) -> float | None:
    return None if value is None else amount(field, value)


def whole(field: str, value: object) -> int:
    """An ``int`` (not ``bool``, not ``float``, not ``str``)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise _refuse(field, "an int", value)
    return int(value)


def whole_number(field: str, value: object) -> float:
    """An ``int`` handed to the core as a number (pool size, milliseconds), which
    checks its range and names it in its message."""
    return amount(field, whole(field, value))


def opt_whole_number(field: str, value: object) -> float | None:
    return None if value is None else whole_number(field, value)


def int64(field: str, value: object) -> int:
    """An ``int`` (a key id, a rate limit) that crosses as a 64-bit integer: one
    beyond 64 bits crosses as the nearest 64-bit value, which the core then treats
    as it would any value out of its range (an unknown id, a refused limit)."""
    return max(-_I64, min(whole(field, value), _I64 - 1))


def opt_int64(field: str, value: object) -> int | None:
    return None if value is None else int64(field, value)
