"""The cap holds exactly under concurrency: 200 tasks on one key, and two OS
processes (this one and a Node or second Python process) charging one key at once.
Each test checks the database afterwards: the key's exact counter equals the sum
of its ledger rows, and both equal the successful charges."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Db, open_db, reason

REPO = Path(__file__).resolve().parents[2]

# The Node package's child: `node charge-child.mjs URL TABLE KEY COUNT` connects with
# that table name, prints "READY", waits for one line ("GO") on stdin, fires COUNT
# concurrent trackUsage(KEY, {costCents: 1}) calls and prints "CHILD-RESULT ok=N".
# `make test` builds the Node addon before the Python suite runs.
NODE_CHILD = REPO / "bindings-node" / "test" / "charge-child.mjs"


# Pins: 200 concurrent 1-cent charges on a 100-cent key → exactly 100 succeed.
async def test_200_tasks_one_key(db: Db) -> None:
    k = await db.kl.create(account_id="a", budget_cents=100)
    results = await asyncio.gather(*(db.kl.track_usage(k.key, 1) for _ in range(200)))
    assert sum(r.success for r in results) == 100
    assert {r.reason for r in results if not r.success} == {"budget_exceeded"}
    used = sorted(r.budget_used_cents or 0 for r in results if r.success)
    assert used == list(range(1, 101))
    assert db.used_micros(k.id) == 100_000_000
    assert db.ledger(k.id) == (100_000_000, 100)
    assert reason(await db.kl.validate(k.key)) == "budget_exceeded"


def peer_command(peer: str, db: Db, key: str, count: int) -> list[str]:
    if peer == "node":
        return ["node", str(NODE_CHILD), db.url, db.table, key, str(count)]
    child = Path(__file__).with_name("charge_child.py")
    return [sys.executable, str(child), db.url, db.table, key, str(count)]


# Pins: this process and another (a Node process, and a second Python one) each fire
# 100 concurrent 1-cent charges at one 100-cent key → exactly 100 succeed in total.
@pytest.mark.parametrize("peer", ["node", "python"])
async def test_two_processes_one_key(db: Db, peer: str) -> None:
    if peer == "node":
        assert shutil.which("node"), "node is needed for the cross-language test"
    k = await db.kl.create(account_id="a", budget_cents=100)
    proc = subprocess.Popen(
        peer_command(peer, db, k.key, 100),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert await asyncio.to_thread(proc.stdout.readline) == "READY\n"
    proc.stdin.write("GO\n")
    proc.stdin.flush()
    mine = await asyncio.gather(*(db.kl.track_usage(k.key, 1) for _ in range(100)))
    out, _ = await asyncio.to_thread(proc.communicate, None, 60)
    assert proc.returncode == 0, out
    theirs = int(out.split("CHILD-RESULT ok=")[1].split()[0])
    ours = sum(r.success for r in mine)
    assert ours + theirs == 100, (ours, theirs)
    assert db.used_micros(k.id) == 100_000_000
    assert db.ledger(k.id) == (100_000_000, 100)


# Pins: a Node process and this one, 100 concurrent 1-cent reserves each, on one
# 100-cent key ("key"), or each on its own key of one account with a 100-cent
# ceiling ("ceiling") → exactly 100 holds in total, and the database holds exactly
# 100 cents against the key or the ceiling.
@pytest.mark.parametrize("bound", ["key", "ceiling"])
async def test_node_and_python_reserve_within_one_cap(store: str, bound: str) -> None:
    assert shutil.which("node"), "node is needed for the cross-language test"
    # Both processes on the real clock: a hold's expiry is an instant both must agree on.
    db = await open_db(store, manual_clock=None)
    if bound == "key":
        mine = theirs = await db.kl.create(account_id="a", budget_cents=100)
    else:
        await db.kl.set_account_budget("a", 100)
        mine = await db.kl.create(account_id="a", budget_cents=1000)
        theirs = await db.kl.create(account_id="a", budget_cents=1000)
    proc = subprocess.Popen(
        ["node", str(NODE_CHILD), db.url, db.table, theirs.key, "100", "reserve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert await asyncio.to_thread(proc.stdout.readline) == "READY\n"
    proc.stdin.write("GO\n")
    proc.stdin.flush()
    ours = await asyncio.gather(*(db.kl.reserve(mine.key, 1) for _ in range(100)))
    out, _ = await asyncio.to_thread(proc.communicate, None, 60)
    assert proc.returncode == 0, out
    theirs_held = int(out.split("CHILD-RESULT ok=")[1].split()[0])
    assert sum(r.success for r in ours) + theirs_held == 100, out
    if bound == "key":
        budget = str(mine.id)
    else:
        budget = f"(SELECT -id FROM {db.table}_accounts WHERE account_id = 'a')"
    held = db.scalar(
        f"SELECT CAST(SUM(amount_micros) AS BIGINT) FROM {db.table}_hold_keys "
        f"WHERE key_id = {budget}"
    )
    assert held == 100_000_000
    assert reason(await db.kl.validate(mine.key)) == "budget_exceeded"
    await db.kl.close()
    db.cleanup()


# Pins: validates gathered in one turn of the event loop (one validate_many) answer
# exactly as sequential ones, and a caller cancelled meanwhile leaves the others be.
async def test_gathered_validates_answer_as_sequential_ones(db: Db) -> None:
    live = await db.kl.create(account_id="a", budget_cents=5)
    revoked = await db.kl.create(account_id="a")
    await db.kl.revoke(revoked.id)
    spent = await db.kl.create(account_id="a", budget_cents=1)
    await db.kl.track_usage(spent.key, 1)
    unknown = live.key[:-1] + ("B" if live.key.endswith("A") else "A")
    kinds = [live.key, revoked.key, spent.key, "ak_x", unknown]
    asked = [kinds[i % 5] for i in range(120)]
    together = await asyncio.gather(*(db.kl.validate(k) for k in asked))
    for key, v in zip(asked, together, strict=True):
        assert v.to_dict() == (await db.kl.validate(key)).to_dict()
    assert ["valid" if v.valid else v.reason for v in together[:5]] == [
        "valid",
        "revoked",
        "budget_exceeded",
        "invalid",
        "invalid",
    ]
    tasks = [asyncio.ensure_future(db.kl.validate(live.key)) for _ in range(10)]
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert all(v.valid for i, v in enumerate(done) if i != 3)  # type: ignore[union-attr]
