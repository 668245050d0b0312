"""`make demo`'s driver (examples/demo/demo.mjs) run as a real process: it starts the
Express and FastAPI examples on one SQLite file and fires 80 parallel 1-cent calls at
a 50-cent key family. Checked here from its exit status and its table, and then
independently in the SQLite file it leaves behind."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_holds_the_cap_across_both_servers(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    env = {**os.environ, "KEYLEASH_PYTHON": sys.executable, "DEMO_DB": str(db)}
    done = subprocess.run(
        ["node", "examples/demo/demo.mjs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "50 of 80 calls were served across both servers" in out, out
    assert "the cap held across both servers." in out
    # Part 5, holds: a hang-up pays for its two words, and with streams in flight some
    # were refused while used + held stayed within the cap (checked by the demo too).
    assert 'a client hung up after "echo: w": charged 0.50¢, not the 5¢ held' in out, out
    waves = re.findall(r"wave \d: 30 streams at once, (\d+) streamed, (\d+) refused 429", out)
    assert len(waves) == 2 and all(int(ok) > 0 and int(no) > 0 for ok, no in waves), out
    assert "holds: the cap held with streams in flight; counter == ledger." in out
    # key, id, minted via, budget, used, own ledger, 200s, 429s
    cells = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    rows = {c[0]: c for c in cells if c[0] in ("parent", "agent-a", "agent-b")}
    assert set(rows) == {"parent", "agent-a", "agent-b"}, out
    assert not re.search(r"ak_[0-9A-Za-z]{20,}", out), "the demo printed a raw key"

    with sqlite3.connect(db) as conn:
        used = dict(conn.execute("SELECT name, budget_used_micros FROM sdk_api_keys"))
        total, count = conn.execute(
            "SELECT SUM(amount_micros), COUNT(*) FROM sdk_api_keys_ledger WHERE key_id IN "
            "(SELECT id FROM sdk_api_keys WHERE name IN ('parent', 'agent-a', 'agent-b'))"
        ).fetchone()
        # Part 5's key: its counter equals its ledger, every row naming a hold.
        streamer = conn.execute(
            "SELECT k.budget_used_micros, SUM(l.amount_micros), COUNT(l.hold_id), COUNT(*) "
            "FROM sdk_api_keys k JOIN sdk_api_keys_ledger l ON l.key_id = k.id "
            "WHERE k.name = 'streamer' GROUP BY k.id"
        ).fetchone()
    assert used["parent"] == 50_000_000
    assert used["agent-a"] <= 20_000_000 and used["agent-b"] <= 20_000_000
    assert (total, count) == (50_000_000, 50)
    assert streamer[0] == streamer[1] and streamer[2] == streamer[3] > 0, streamer
    # The table printed what the database holds.
    for name, micros in used.items():
        if name == "streamer":
            continue
        assert float(rows[name][4]) == micros / 1e6
