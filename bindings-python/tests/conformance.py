"""The Python runner of the cross-language conformance vectors (docs/conformance.md,
tests/conformance/README.md): every vector of ``CONFORMANCE_DIR`` (default
``tests/conformance``; a relative path is taken from the repository root) on a fresh
SQLite file and on a fresh table of ``DATABASE_URL``, through the installed package.
One line per vector and store, then a summary; the exit status is non-zero when
anything failed, when an op or field is unknown, or when there is no vector.

Run: ``make conformance`` (all three runners), or ``python tests/conformance.py`` in
the project's virtualenv with DATABASE_URL set.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import keyleash

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_START = "2026-01-15T12:00:00Z"
VECTOR_FIELDS = {"name", "start", "options", "steps"}
STEP_FIELDS = {"op", "args", "save", "expect", "expectError", "key", "rawKey", "id", "hold",
               "subject"}  # fmt: skip
PARALLEL_FIELDS = {"count", "step", "expectCount"}
CREATE_FIELDS = {"accountId", "userId", "scopes", "budgetCents", "budgetPeriod", "expiresIn",
                 "expiresAt", "delegatedBy", "name", "metadata", "parentId", "limits"}  # fmt: skip
NUMBERS = {"Infinity": math.inf, "-Infinity": -math.inf}


class BrokenVector(Exception):
    """A vector that cannot be run as written (unknown op or field, bad reference)."""


def known(obj: dict[str, Any], fields: set[str], what: str) -> None:
    unknown = sorted(set(obj) - fields)
    if unknown:
        raise BrokenVector(f"unknown {what} field {unknown[0]!r}")


def snake(args: dict[str, Any]) -> dict[str, Any]:
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in args.items()}


def number(value: Any) -> float:
    """A number, or one of the strings NaN, Infinity, -Infinity, which JSON cannot write."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return NUMBERS.get(value, math.nan) if isinstance(value, str) else math.nan


def matches(expected: Any, actual: Any) -> bool:
    """One field's value: "*" is any non-null value, numbers within 1e-9, nested exactly."""
    if expected == "*":
        return actual is not None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=0, abs_tol=1e-9)
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            matches(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(matches, expected, actual))
    return bool(expected == actual)


def subset(expected: Any, actual: Any) -> bool:
    """``expect`` as a subset: null matches null or absent; a list result element-wise."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(
            actual.get(k) is None if v is None else (k in actual and matches(v, actual[k]))
            for k, v in expected.items()
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(subset, expected, actual))
    return matches(expected, actual)


def shown(result: Any) -> str:
    """A result as printed in a failure, with raw keys hidden."""

    def hide(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: "<raw key>" if k == "key" and isinstance(x, str) else hide(x)
                    for k, x in v.items()}  # fmt: skip
        return [hide(x) for x in v] if isinstance(v, list) else v

    return json.dumps(hide(result))


def plain(result: Any) -> Any:
    """The JSON form of a result: ``to_dict()`` gives the camelCase fields of docs/api.md."""
    if isinstance(result, list):
        return [plain(r) for r in result]
    to_dict = getattr(result, "to_dict", None)
    return to_dict() if callable(to_dict) else result


class Runner:
    def __init__(self, kl: keyleash.KeyLeash) -> None:
        self.kl = kl
        self.saved: dict[str, Any] = {}

    def saved_field(self, name: Any, field: str) -> Any:
        if name not in self.saved:
            raise BrokenVector(f"no saved result named {name!r}")
        if field not in self.saved[name]:
            raise BrokenVector(f"saved result {name!r} has no {field}")
        return self.saved[name][field]

    def raw_key(self, step: dict[str, Any]) -> str:
        if "rawKey" in step:
            return str(step["rawKey"])
        if "key" not in step:
            raise BrokenVector("the step needs `key` or `rawKey`")
        return str(self.saved_field(step["key"], "key"))

    def hold_id(self, step: dict[str, Any]) -> int:
        if "hold" not in step:
            raise BrokenVector("the step needs `hold`")
        return int(self.saved_field(step["hold"], "holdId"))

    def key_id(self, step: dict[str, Any]) -> int:
        if "id" not in step:
            raise BrokenVector("the step needs `id`")
        return int(self.saved_field(step["id"], "id"))

    def subject(self, step: dict[str, Any]) -> str:
        if not isinstance(step.get("subject"), str):
            raise BrokenVector("the step needs `subject`")
        return str(step["subject"])

    def create_args(self, args: dict[str, Any]) -> dict[str, Any]:
        known(args, CREATE_FIELDS, "create args")
        out = dict(args)
        if isinstance(args.get("budgetCents"), str):
            out["budgetCents"] = number(args["budgetCents"])
        if args.get("parentId") is not None:
            out["parentId"] = self.saved_field(args["parentId"], "id")
        return snake(out)

    def charge_args(self, args: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        known(args, {"costCents", "idempotencyKey"}, "charge args")
        if "costCents" not in args:
            raise BrokenVector("a charge needs costCents")
        rest = snake({k: v for k, v in args.items() if k != "costCents"})
        return number(args["costCents"]), rest

    async def run(self, step: dict[str, Any]) -> Any:
        """Runs one step; BrokenVector is the vector's fault, KeyLeashError the API's answer."""
        op = step.get("op")
        known(step, STEP_FIELDS | PARALLEL_FIELDS if op == "parallel" else STEP_FIELDS, "step")
        args: dict[str, Any] = dict(step.get("args", {}))
        kl = self.kl
        if op == "create":
            return await kl.create(**self.create_args(args))
        if op == "ensureSubject":
            return await kl.ensure_subject(self.subject(step), **self.create_args(args))
        if op == "validate":
            return await kl.validate(self.raw_key(step))
        if op == "validateBySubject":
            return await kl.validate_by_subject(self.subject(step))
        if op == "trackUsage":
            cost, rest = self.charge_args(args)
            return await kl.track_usage(self.raw_key(step), cost, **rest)
        if op == "trackUsageBySubject":
            cost, rest = self.charge_args(args)
            return await kl.track_usage_by_subject(self.subject(step), cost, **rest)
        if op == "reserve":
            known(args, {"costCents", "ttl", "idempotencyKey"}, "reserve args")
            if "costCents" not in args:
                raise BrokenVector("a reserve needs costCents")
            cost = number(args.pop("costCents"))
            return await kl.reserve(self.raw_key(step), cost, **snake(args))
        if op == "settle":
            known(args, {"costCents"}, "settle args")
            if "costCents" not in args:
                raise BrokenVector("a settle needs costCents")
            return await kl.settle(self.hold_id(step), number(args["costCents"]))
        if op == "release":
            known(args, set(), "release args")
            return await kl.release(self.hold_id(step))
        if op == "setAccountBudget":
            known(args, {"accountId", "budgetCents", "budgetPeriod"}, "setAccountBudget args")
            if "accountId" not in args or "budgetCents" not in args:
                raise BrokenVector("a setAccountBudget needs accountId and budgetCents")
            cents = args["budgetCents"]
            return await kl.set_account_budget(
                args["accountId"],
                None if cents is None else number(cents),
                args.get("budgetPeriod"),
            )
        if op == "revoke":
            known(args, {"accountId"}, "revoke args")
            return await kl.revoke(self.key_id(step), args.get("accountId"))
        if op == "setLimits":
            known(args, {"limits", "accountId"}, "setLimits args")
            if "limits" not in args:
                raise BrokenVector("a setLimits needs limits")
            return await kl.set_limits(self.key_id(step), args["limits"], args.get("accountId"))
        if op == "hasScope":
            known(args, {"scope"}, "hasScope args")
            return kl.has_scope(await kl.validate(self.raw_key(step)), args["scope"])
        if op == "usage":
            known(args, {"from", "to"}, "usage args")
            return await kl.usage(self.key_id(step), from_=args.get("from"), to=args.get("to"))
        if op == "list":
            known(args, {"accountId"}, "list args")
            return await kl.list(args["accountId"])
        if op == "advance":
            known(args, {"seconds", "minutes", "hours", "days"}, "advance args")
            return kl.advance(**args)
        if op == "setNow":
            known(args, {"at"}, "setNow args")
            return kl.set_now(args["at"])
        if op == "parallel":
            return await asyncio.gather(
                *(self.one_of_many(step["step"]) for _ in range(step["count"]))
            )
        raise BrokenVector(f"op {op!r} is not known to the Python runner")

    async def one_of_many(self, step: dict[str, Any]) -> Any:
        # An element that raised is {"error": code}, so expectCount can count errors too.
        try:
            return plain(await self.run(step))
        except keyleash.KeyLeashError as e:
            return {"error": e.code}


def check(step: dict[str, Any], result: Any, error: keyleash.KeyLeashError | None) -> str | None:
    """Compares a step's outcome with expect / expectError / expectCount: why not, or None."""
    if error is not None:
        if "expectError" not in step:
            return f"raised {error.code}: {error}"
        if error.code != step["expectError"]:
            return f"raised {error.code}, expected {step['expectError']}: {error}"
        return None
    if "expectError" in step:
        return f"expected error {step['expectError']}, got {shown(result)}"
    if "expect" in step and not subset(step["expect"], result):
        return f"expected {json.dumps(step['expect'])}, got {shown(result)}"
    for rule in step.get("expectCount", []):
        got = sum(subset(rule["match"], r) for r in result)
        if got != rule["count"]:
            return (f"{got} of {len(result)} results matched {json.dumps(rule['match'])}, "
                    f"expected {rule['count']}: {shown(result)}")  # fmt: skip
    return None


_seq = 0


async def run_vector(path: Path, store: str) -> str | None:
    """Runs one vector on one store: None when it passed, else the first difference."""
    global _seq
    vector = json.loads(path.read_text())
    known(vector, VECTOR_FIELDS, "vector")
    options: dict[str, Any] = vector.get("options", {})
    known(options, {"validScopes", "keyPrefix", "tableName"}, "options")
    n, _seq = _seq, _seq + 1
    if store == "sqlite":
        url = f"sqlite://{Path(tempfile.gettempdir()) / f'keyleash_conf_py_{os.getpid()}_{n}.db'}"
    else:
        url = os.environ.get("DATABASE_URL", "")
        if not url:
            raise BrokenVector("DATABASE_URL is not set: run `make conformance`")
    # Every vector gets a table of its own, so runs never see each other's rows.
    connect: dict[str, Any] = {
        "table_name": f"{options.get('tableName', 'conf')}_py{os.getpid()}_{n}",
        "manual_clock": vector.get("start", DEFAULT_START),
    }
    if "keyPrefix" in options:
        connect["key_prefix"] = options["keyPrefix"]
    if "validScopes" in options:
        connect["valid_scopes"] = options["validScopes"]
    kl = await keyleash.KeyLeash.connect(url, **connect)
    try:
        await kl.migrate()
        runner = Runner(kl)
        for i, step in enumerate(vector["steps"]):
            where = f"step {i} ({step.get('op')})"
            result: Any = None
            error: keyleash.KeyLeashError | None = None
            try:
                result = plain(await runner.run(step))
            except keyleash.KeyLeashError as e:
                error = e
            except BrokenVector as e:
                return f"{where}: {e}"
            why = check(step, result, error)
            if why is not None:
                return f"{where}: {why}"
            if "save" in step:
                runner.saved[step["save"]] = result
        return None
    finally:
        await kl.close()
        if store == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite://") + suffix).unlink(missing_ok=True)


async def main() -> int:
    folder = ROOT / os.environ.get("CONFORMANCE_DIR", "tests/conformance")
    try:
        files = sorted(folder.glob("*.json"))
    except OSError as e:
        print(f"FAIL cannot read CONFORMANCE_DIR {folder}: {e}")
        return 1
    if not files:
        print(f"FAIL no conformance vectors in {folder}")
        return 1
    passed = failed = 0
    for path in files:
        for store in ("sqlite", "postgres"):
            try:
                why = await run_vector(path, store)
            except Exception as e:  # a broken vector or a failed connect: report, go on
                why = f"{type(e).__name__}: {e}"
            if why is None:
                passed += 1
                print(f"ok   {store:<8} {path.stem}", flush=True)
            else:
                failed += 1
                print(f"FAIL {store:<8} {path.stem}: {why}", flush=True)
    print(
        f"conformance (python): {len(files)} vectors x 2 stores: {passed} passed, {failed} failed"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
