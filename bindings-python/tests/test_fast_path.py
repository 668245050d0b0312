"""Calls the core answers without the store (a malformed key, an invalid or zero cost,
a bad idempotency key) return an already-resolved future (src/bridge.rs
`ready_into_py`): same answers as the store path, no thread hop, and clean under
cancellation and at exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any

import pytest

import keyleash
from conftest import Db, reason, valid


def answered_at_once(call: Coroutine[Any, Any, Any]) -> bool:
    """Whether ``call`` finishes without waiting for anything (no trip to the store);
    one that waits is closed."""
    try:
        call.send(None)
    except StopIteration:
        return True
    call.close()
    return False


# Pins the fast path: store-free answers are done futures, store-bound calls are not.
async def test_answers_without_the_store_are_already_resolved(db: Db) -> None:
    native = db.kl._native
    k = await db.kl.create(account_id="a", budget_cents=10)
    assert answered_at_once(db.kl.validate("ak_x"))
    assert native.validate_by_subject("").done()  # type: ignore[attr-defined]
    assert native.track_usage("ak_x", 1.0, None).done()  # type: ignore[attr-defined]
    assert native.track_usage(k.key, 0.0, None).done()  # type: ignore[attr-defined]
    assert native.track_usage(k.key, -1.0, None).done()  # type: ignore[attr-defined]
    assert native.track_usage_by_subject("", 1.0, None).done()  # type: ignore[attr-defined]
    assert not answered_at_once(db.kl.validate(k.key))
    assert (await db.kl.validate(k.key)).valid
    assert db.used_micros(k.id) == 0


# Pins the answers of the fast path (the core decides them in the same order as before).
async def test_fast_answers(db: Db) -> None:
    k = await db.kl.create(account_id="a", budget_cents=10)
    assert (await db.kl.validate("ak_x")).to_dict() == {"valid": False, "reason": "invalid"}
    assert reason(await db.kl.validate_by_subject("")) == "invalid"
    assert reason(await db.kl.validate_by_subject("a\0b")) == "invalid"
    refusal = {"success": False, "reason": "invalid_key"}
    assert (await db.kl.track_usage("ak_x", 1)).to_dict() == refusal
    assert (await db.kl.track_usage_by_subject("", 1)).to_dict() == refusal
    # The cost is checked before the key, the idempotency key before both.
    invalid_cost = {"success": False, "reason": "invalid_cost"}
    assert (await db.kl.track_usage("ak_x", -1)).to_dict() == invalid_cost
    assert (await db.kl.track_usage("ak_x", 0)).to_dict() == {"success": True}
    assert (await db.kl.track_usage_by_subject("", 0)).to_dict() == {"success": True}
    with pytest.raises(keyleash.InvalidArgumentError, match="idempotencyKey"):
        await db.kl.track_usage("ak_x", 1, idempotency_key="")
    with pytest.raises(keyleash.InvalidArgumentError, match="idempotencyKey"):
        await db.kl.track_usage_by_subject("s", 1, idempotency_key="x" * 257)
    assert db.used_micros(k.id) == 0


# Pins cancellation and unawaited errors: nothing reaches the loop's exception handler.
async def test_fast_path_cancel_and_errors_are_clean(db: Db) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(db.kl.validate("ak_x")) for _ in range(20)
    ]
    tasks += [
        asyncio.create_task(db.kl.track_usage("ak_x", 1, idempotency_key="")) for _ in range(20)
    ]
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[::2])
    assert all(isinstance(r, keyleash.Validation) for r in results[1:20:2])
    assert all(isinstance(r, keyleash.InvalidArgumentError) for r in results[21::2])
    loop.set_exception_handler(None)
    assert errors == []


# Pins result independence: attributes do not share lists with to_dict().
async def test_results_do_not_share_lists(db: Db) -> None:
    k = await db.kl.create(account_id="a", scopes=["proxy.chat"])
    v = valid(await db.kl.validate(k.key))
    assert v.scopes is not None
    v.scopes.append("admin")
    assert v.to_dict()["scopes"] == ["proxy.chat"]
    raw = {"valid": True, "scopes": ["x"]}
    w = keyleash.validation_from_dict(raw)
    raw["scopes"].append("y")  # type: ignore[attr-defined]
    assert w.valid and w.scopes == ["x"] and w.to_dict()["scopes"] == ["x"]


CHILD = """
import asyncio, sys, keyleash
async def main():
    kl = await keyleash.KeyLeash.connect(sys.argv[1])
    for _ in range(1000):
        await kl.validate("ak_x")
        await kl.track_usage("ak_x", 0)
    print((await kl.validate("ak_x")).reason)
asyncio.run(main())
"""


# Pins exit: a process whose last calls were answered on the fast path exits cleanly.
async def test_exit_right_after_fast_calls() -> None:
    for _ in range(5):
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", CHILD, "sqlite::memory:"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "invalid\n", "")
