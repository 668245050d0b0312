"""Result objects: snake_case attributes over the core's camelCase JSON (docs/api.md).

Each result keeps the exact JSON the core produced; ``to_dict()`` returns it, so it
equals what the Node package returns, field for field (timestamps as ISO 8601 with
milliseconds and ``Z``). The attributes give the same values the Python way:
timestamps as aware ``datetime`` objects.

The native module builds the results of the core's calls itself (``src/results.rs``):
each class registers its fields with it below, and gets exactly what ``_own`` gives
for the core's JSON, without the JSON text.

A validation is a ``ValidKey`` or an ``InvalidKey`` (the union ``Validation``), a
charge a ``Charged`` or a ``ChargeRefused`` (``ChargeResult``), as Node's
``ValidateResult`` and ``TrackUsageResult``: their ``valid`` / ``success`` are
``Literal`` types, so ``if v.valid:`` narrows the union under ``mypy --strict``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from datetime import datetime
from typing import Any, ClassVar, Literal, Self, TypeAlias

from keyleash import _check, _native
from keyleash.exceptions import InvalidArgumentError

__all__ = [
    "CacheStats",
    "ChargeRefusal",
    "ChargeRefused",
    "ChargeResult",
    "Charged",
    "CreatedKey",
    "Held",
    "HoldStatus",
    "InvalidKey",
    "InvalidReason",
    "KeySummary",
    "LedgerEntry",
    "ReserveRefusal",
    "ReserveRefused",
    "ReserveResult",
    "SettleRefusal",
    "SettleRefused",
    "SettleResult",
    "Settled",
    "ValidKey",
    "Validation",
    "charge_result_from_dict",
    "validation_from_dict",
]

InvalidReason: TypeAlias = Literal["invalid", "expired", "revoked", "budget_exceeded"]
"""Why a key may not be used (``InvalidKey.reason``)."""
ChargeRefusal: TypeAlias = Literal[
    "budget_exceeded",
    "invalid_key",
    "invalid_cost",
    "expired",
    "revoked",
    "idempotency_conflict",
    "rate_limited",
]
"""Why a charge was refused (``ChargeRefused.reason``). ``idempotency_conflict``:
the idempotency key was first used for another cost, or for a reserve."""
ReserveRefusal: TypeAlias = ChargeRefusal | Literal["idempotency_replayed"]
"""Why a reserve placed no hold (``ReserveRefused.reason``): a charge's reasons,
and ``idempotency_replayed`` for a repeat of an idempotency key."""
HoldStatus: TypeAlias = Literal["held", "settled", "released"]
"""Where the first hold of a replayed reserve stands (``ReserveRefused.replayed``)."""

_TIME_FIELDS = frozenset(
    {"expires_at", "budget_reset_at", "revoked_at", "created_at", "last_used_at"}
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


_Attribute = tuple[str, bool] | None
_ATTRIBUTES: dict[tuple[type, str], _Attribute] = {}
_MISSING = object()
# Per result class: JSON key -> attribute, so building a result is one dict lookup a key.
_KEYMAPS: dict[type, dict[str, _Attribute]] = {}
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _attribute(cls: type, key: str) -> _Attribute:
    """The attribute of ``cls`` a JSON key fills, and whether it is a timestamp, or
    None (an unknown key). Cached: results are made per call, on the hot path; the
    cache holds the core's keys, plus at most 1024 others from ``from_dict``."""
    attribute = _ATTRIBUTES.get((cls, key), _MISSING)
    if attribute is not _MISSING:
        return attribute  # type: ignore[return-value]
    name = _snake(key)
    fields = {f.name for f in dataclasses.fields(cls)}
    attribute = None if name == "_raw" or name not in fields else (name, name in _TIME_FIELDS)
    if len(_ATTRIBUTES) < 1024:
        _ATTRIBUTES[cls, key] = attribute
    return attribute


@dataclasses.dataclass(frozen=True)
class _Result:
    _raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    # The discriminant of a member of a union (``("valid", True)`` for ValidKey):
    # ``from_dict`` refuses a dict holding the other value.
    _tag: ClassVar[tuple[str, bool] | None] = None

    def to_dict(self) -> dict[str, Any]:
        """The core's JSON of this result: camelCase keys, ISO timestamps."""
        return copy.deepcopy(self._raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Self:
        """Wraps a result in the camelCase shape of docs/api.md. ``ValidKey``,
        ``InvalidKey``, ``Charged`` and ``ChargeRefused`` refuse one of the other
        kind (``InvalidArgumentError``); ``validation_from_dict`` and
        ``charge_result_from_dict`` pick the class."""
        tag = cls._tag
        if tag is not None and raw.get(tag[0], tag[1]) is not tag[1]:
            raise InvalidArgumentError(f"{cls.__name__}.from_dict got {tag[0]}={raw[tag[0]]!r}")
        return cls._own(copy.deepcopy(raw))

    @classmethod
    def _own(cls, raw: dict[str, Any]) -> Self:
        """Wraps ``raw``, which nobody else holds: it becomes ``_raw`` as is. The
        attributes get their own copies of lists and dicts (``scopes``,
        ``metadata``), so changing one never changes what ``to_dict()`` returns.

        Fills the instance's ``__dict__`` directly instead of calling the frozen
        dataclass's ``__init__`` (which sets each field through
        ``object.__setattr__``). Fields absent from ``raw`` read the class's
        defaults, as the generated ``__init__`` would have set them (no field has a
        default factory but ``_raw``). The native module's builder
        (``src/results.rs``) does the same for the core's results; keep the two
        alike."""
        self = object.__new__(cls)
        fields = self.__dict__
        fields["_raw"] = raw
        keymap = _KEYMAPS.get(cls)
        if keymap is None:
            keymap = _KEYMAPS[cls] = {}
        for key, value in raw.items():
            if key in keymap:
                attribute = keymap[key]
            else:
                attribute = _attribute(cls, key)
                if len(keymap) < 256:
                    keymap[key] = attribute
            if attribute is None:
                continue
            name, is_time = attribute
            kind = type(value)
            if is_time:
                if kind is str:
                    value = datetime.fromisoformat(value)
            elif kind in _SCALAR_TYPES:
                pass
            elif kind is list and all(type(v) is str for v in value):
                value = value.copy()
            else:
                value = copy.deepcopy(value)
            fields[name] = value
        return self


@dataclasses.dataclass(frozen=True)
class CreatedKey(_Result):
    """A new key. ``key`` is the raw key: shown once, never stored (not in repr)."""

    key: str = dataclasses.field(default="", repr=False)
    id: int = 0
    scopes: list[str] | None = None
    budget_cents: float | None = None
    budget_period: str | None = None
    expires_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class ValidKey(_Result):
    """A key that may be used (``valid`` is true) and its details; ``None`` only
    where the core's JSON may be null, as in Node's ``ValidKey``."""

    _tag = ("valid", True)

    valid: Literal[True] = True
    id: int = 0
    account_id: str = ""
    """``""`` when an adopted row has none."""
    user_id: str | None = None
    scopes: list[str] | None = None
    """``None`` grants every scope."""
    budget_cents: float | None = None
    budget_used_cents: float = 0.0
    budget_held_cents: float = 0.0
    budget_remaining_cents: float | None = None
    """The smallest remaining of the key and its ancestors; ``None`` when uncapped."""
    budget_period: str | None = None
    budget_reset_at: datetime | None = None
    expires_at: datetime | None = None
    delegated_by: str | None = None
    name: str = ""
    limits: list[dict[str, Any]] | None = None
    """The key's own rate limits (``name``, ``unit``, ``limit``, ``periodSeconds``,
    ``burst``, as the core writes them); ``None`` when it has none."""

    def has_scope(self, scope: str) -> bool:
        """Whether the key grants ``scope`` (see ``keyleash.has_scope``)."""
        return _native.has_scope(self.scopes, _check.text("scope", scope))


@dataclasses.dataclass(frozen=True)
class InvalidKey(_Result):
    """A key that may not be used (``valid`` is false) and why: ``invalid``,
    ``expired``, ``revoked`` or ``budget_exceeded``."""

    _tag = ("valid", False)

    valid: Literal[False] = False
    reason: InvalidReason = "invalid"

    def has_scope(self, scope: str) -> bool:
        """False: a key that may not be used grants nothing."""
        return False


Validation: TypeAlias = ValidKey | InvalidKey
"""What ``validate`` returns: ``if v.valid:`` narrows it to ``ValidKey``. A
``types.UnionType``, so ``isinstance(x, Validation)`` works."""


def validation_from_dict(raw: dict[str, Any]) -> Validation:
    """Wraps a validation in the camelCase shape of docs/api.md: a ``ValidKey`` when
    ``raw["valid"]`` is true, else an ``InvalidKey``."""
    return (ValidKey if raw.get("valid") is True else InvalidKey).from_dict(raw)


@dataclasses.dataclass(frozen=True)
class Charged(_Result):
    """A charge that succeeded, with the budget after it: the key's usage in the
    current period and the smallest remaining of it and its ancestors (``None``
    when uncapped). A zero cost succeeds with no numbers: both ``None``. A repeat
    of an idempotency key with the same cost has the first charge's numbers and
    ``replayed == "charged"``: nothing was charged again, so serve no new work
    under it."""

    _tag = ("success", True)

    success: Literal[True] = True
    budget_used_cents: float | None = None
    budget_remaining_cents: float | None = None
    replayed: Literal["charged"] | None = None
    """``"charged"`` for a repeat of an idempotency key, else ``None``."""


@dataclasses.dataclass(frozen=True)
class ChargeRefused(_Result):
    """A charge refused, nothing changed: ``budget_exceeded``, ``invalid_key``,
    ``invalid_cost``, ``expired``, ``revoked``, ``idempotency_conflict`` or
    ``rate_limited``: a rate limit of the key or an ancestor, named by ``limit``,
    with ``retry_after`` the seconds until the same charge would pass (``None``
    when it never can under that limit: a cost above its burst)."""

    _tag = ("success", False)

    success: Literal[False] = False
    reason: ChargeRefusal = "invalid_key"
    limit: str | None = None
    retry_after: float | None = None


ChargeResult: TypeAlias = Charged | ChargeRefused
"""What ``track_usage`` returns: ``if c.success:`` narrows it to ``Charged``."""


def charge_result_from_dict(raw: dict[str, Any]) -> ChargeResult:
    """Wraps a charge result in the camelCase shape of docs/api.md: a ``Charged``
    when ``raw["success"]`` is true, else a ``ChargeRefused``."""
    return (Charged if raw.get("success") is True else ChargeRefused).from_dict(raw)


@dataclasses.dataclass(frozen=True)
class Held(_Result):
    """A hold placed by ``reserve``: settle it with ``settle(hold_id, cost_cents)``
    or free it with ``release(hold_id)``; it stops counting at ``expires_at`` by
    itself. A repeated idempotency key never gives a ``Held`` (see
    ``ReserveRefused.replayed``)."""

    _tag = ("success", True)

    success: Literal[True] = True
    hold_id: int = 0
    expires_at: datetime | None = None
    budget_remaining_cents: float | None = None
    """What can still be spent after the hold; ``None`` when uncapped."""


@dataclasses.dataclass(frozen=True)
class ReserveRefused(_Result):
    """A reserve that placed no hold: ``budget_exceeded``, ``invalid_key``,
    ``invalid_cost``, ``expired``, ``revoked``, ``idempotency_conflict`` (the
    idempotency key was first used for another estimate, or for a charge), or
    ``idempotency_replayed``: a repeat of an idempotency key, which holds nothing
    new and names the first hold (``hold_id``, ``expires_at``,
    ``budget_remaining_cents``) and where it stands (``replayed``: ``"held"``,
    ``"settled"`` or ``"released"``). A replay is never a success, even while the
    first hold is held: there is no new budget to spend under it. ``rate_limited``:
    a rate limit refused it (``limit``, ``retry_after`` as for ``ChargeRefused``;
    a ``concurrent`` limit's ``retry_after`` is ``None``: it frees when a hold
    ends)."""

    _tag = ("success", False)

    success: Literal[False] = False
    reason: ReserveRefusal = "invalid_key"
    replayed: HoldStatus | None = None
    hold_id: int | None = None
    expires_at: datetime | None = None
    budget_remaining_cents: float | None = None
    limit: str | None = None
    retry_after: float | None = None


ReserveResult: TypeAlias = Held | ReserveRefused
"""What ``reserve`` returns; ``if r.success:`` narrows it."""

SettleRefusal: TypeAlias = Literal["unknown_hold", "hold_released", "invalid_cost"]
"""Why a settle was refused (``SettleRefused.reason``)."""


@dataclasses.dataclass(frozen=True)
class Settled(_Result):
    """A settle recorded (or, repeated, the first settle's result): the key's usage
    in its current period and the smallest remaining of it and its ancestors."""

    _tag = ("success", True)

    success: Literal[True] = True
    budget_used_cents: float = 0.0
    budget_remaining_cents: float | None = None


@dataclasses.dataclass(frozen=True)
class SettleRefused(_Result):
    """A settle refused, nothing changed: ``unknown_hold``, ``hold_released`` or
    ``invalid_cost``."""

    _tag = ("success", False)

    success: Literal[False] = False
    reason: SettleRefusal = "unknown_hold"


SettleResult: TypeAlias = Settled | SettleRefused
"""What ``settle`` returns; ``if s.success:`` narrows it."""


@dataclasses.dataclass(frozen=True)
class KeySummary(_Result):
    """One key of an account as ``list`` returns it: everything but the secret."""

    id: int = 0
    account_id: str = ""
    user_id: str | None = None
    name: str = ""
    key_prefix: str = ""
    scopes: list[str] | None = None
    budget_cents: float | None = None
    budget_used_cents: float = 0.0
    budget_held_cents: float = 0.0
    budget_period: str | None = None
    budget_reset_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    delegated_by: str | None = None
    external_subject: str | None = None
    metadata: Any = None
    limits: list[dict[str, Any]] | None = None
    """The key's own rate limits, as ``ValidKey.limits``; ``None`` when it has none."""


@dataclasses.dataclass(frozen=True)
class LedgerEntry(_Result):
    """One successful charge in the ledger."""

    id: int = 0
    key_id: int = 0
    amount_cents: float = 0.0
    created_at: datetime | None = None
    idempotency_key: str | None = None
    hold_id: int | None = None


@dataclasses.dataclass(frozen=True)
class CacheStats(_Result):
    """The validation cache's counters (``KeyLeash.cache_stats()``)."""

    entries: int = 0
    """Answers held now."""
    hits: int = 0
    """Validates answered from the cache."""
    misses: int = 0
    """Validates that went to the store."""
    listening: bool = False
    """Whether the cache serves answers: on Postgres only while its LISTEN connection is up."""
    disconnects: int = 0
    """How many times the LISTEN connection was lost (each emptied the cache)."""
    channel: str | None = None
    """The Postgres channel listened on (``None`` on SQLite); ``pg_notify(channel, '*')``
    empties every process's cache."""


def _camel(name: str) -> str:
    """The core's JSON key of a field: ``budget_used_cents`` -> ``budgetUsedCents``."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _register(cls: type[_Result]) -> None:
    """Hands ``cls`` to the native module, which builds the core's results of it:
    the JSON key of each field, the attribute it fills and whether it is a
    timestamp, as ``_attribute`` decides (asked again for any other key)."""
    fields: list[tuple[str, str, bool]] = []
    for f in dataclasses.fields(cls):
        attribute = _attribute(cls, _camel(f.name))
        if attribute is not None:
            fields.append((_camel(f.name), *attribute))
    _native.result_class(cls.__name__, cls, fields, _attribute)


for _cls in (
    ValidKey,
    InvalidKey,
    Charged,
    ChargeRefused,
    Held,
    ReserveRefused,
    Settled,
    SettleRefused,
    CreatedKey,
    KeySummary,
    LedgerEntry,
    CacheStats,
):
    _register(_cls)
del _cls
