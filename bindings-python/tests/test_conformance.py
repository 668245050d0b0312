"""The Python runner of the cross-language conformance vectors (CONFORMANCE.md):
every vector of ``CONFORMANCE_DIR`` (default ``tests/conformance``) on SQLite and
on Postgres, failing loudly on an op or field it does not know and naming the first
step that differed."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

import keyleash
from conftest import database_url, unique

REPO = Path(__file__).resolve().parents[2]
FOLDER = Path(os.environ.get("CONFORMANCE_DIR", REPO / "tests" / "conformance"))
VECTORS = sorted(FOLDER.glob("*.json"))
DEFAULT_START = "2026-01-15T12:00:00Z"
STEP_FIELDS = {"op", "args", "save", "expect", "expectError", "key", "rawKey", "id", "hold",
               "subject", "count", "step", "expectCount"}  # fmt: skip
OPTIONS = {"validScopes": "valid_scopes", "keyPrefix": "key_prefix", "tableName": "table_name"}


def snake(args: dict[str, Any]) -> dict[str, Any]:
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in args.items()}


def matches(expected: Any, actual: Any) -> bool:
    """CONFORMANCE.md's subset match for one field's value."""
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
    if not isinstance(expected, dict):
        return matches(expected, actual)
    if not isinstance(actual, dict):
        return False
    return all(
        actual.get(k) is None if v is None else (k in actual and matches(v, actual[k]))
        for k, v in expected.items()
    )


class Runner:
    def __init__(self, kl: keyleash.KeyLeash) -> None:
        self.kl = kl
        self.saved: dict[str, Any] = {}

    def raw_key(self, step: dict[str, Any]) -> str:
        if "rawKey" in step:
            return str(step["rawKey"])
        return str(self.saved[step["key"]]["key"])

    async def run(self, step: dict[str, Any]) -> Any:
        unknown = set(step) - STEP_FIELDS
        if unknown:
            raise AssertionError(f"unknown step fields {sorted(unknown)}")
        op, args = step["op"], dict(step.get("args", {}))
        kl = self.kl
        if op == "create":
            return (await kl.create(**snake(args))).to_dict()
        if op == "validate":
            return (await kl.validate(self.raw_key(step))).to_dict()
        if op == "validateBySubject":
            return (await kl.validate_by_subject(step["subject"])).to_dict()
        if op in ("trackUsage", "trackUsageBySubject"):
            a = snake(args)
            cost = a.pop("cost_cents")
            if op == "trackUsage":
                return (await kl.track_usage(self.raw_key(step), cost, **a)).to_dict()
            return (await kl.track_usage_by_subject(step["subject"], cost, **a)).to_dict()
        if op == "ensureSubject":
            return await kl.ensure_subject(step["subject"], **snake(args))
        if op == "revoke":
            return await kl.revoke(self.saved[step["id"]]["id"], args.get("accountId"))
        if op == "hasScope":
            return kl.has_scope(await kl.validate(self.raw_key(step)), args["scope"])
        if op == "advance":
            return kl.advance(**args)
        if op == "setNow":
            return kl.set_now(args["at"])
        if op == "parallel":
            return await asyncio.gather(*(self.run(step["step"]) for _ in range(step["count"])))
        raise AssertionError(f"op {op!r} is not known to the Python runner")


async def run_vector(path: Path, store: str) -> None:
    vector = json.loads(path.read_text())
    unknown = set(vector) - {"name", "start", "options", "steps"}
    assert not unknown, f"unknown vector fields {sorted(unknown)}"
    options = {OPTIONS[k]: v for k, v in vector.get("options", {}).items()}
    table = unique(options.pop("table_name", "t_conf"))
    kl = await keyleash.KeyLeash.connect(
        database_url(store),
        table_name=table,
        manual_clock=vector.get("start", DEFAULT_START),
        **options,
    )
    await kl.migrate()
    runner = Runner(kl)
    try:
        for i, step in enumerate(vector["steps"]):
            where = f"{vector['name']}: step {i} ({step['op']})"
            try:
                result = await runner.run(step)
            except keyleash.KeyLeashError as e:
                assert "expectError" in step, f"{where}: raised {e.code}: {e}"
                assert e.code == step["expectError"], f"{where}: raised {e.code}, not {step}"
                continue
            assert "expectError" not in step, f"{where}: expected {step['expectError']}"
            if "save" in step:
                runner.saved[step["save"]] = result
            if "expect" in step:
                assert subset(step["expect"], result), f"{where}: got {result}"
            for rule in step.get("expectCount", []):
                got = sum(subset(rule["match"], r) for r in result)
                assert got == rule["count"], f"{where}: {got} matched {rule['match']}"
    finally:
        await kl.close()


def test_vectors_are_present() -> None:
    # Pins that the runner sees vectors: an empty folder would pass silently.
    assert VECTORS, f"no conformance vectors in {FOLDER}"


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
async def test_conformance(path: Path, store: str) -> None:
    await run_vector(path, store)
