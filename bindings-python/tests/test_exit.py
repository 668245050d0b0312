"""A process that awaits its last keyleash call and exits at once must exit cleanly.
Pins the bridge's exit guard (src/bridge.rs): with pyo3-async-runtimes'
future_into_py, about half of these child processes died in finalization (SIGSEGV
or "PyGILState_Release: thread state must be current")."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from conftest import open_db

CHILD = Path(__file__).with_name("charge_child.py")


# Pins: 10 child processes, each charging a key while this process charges it too
# and exiting right after its last call, all exit with status 0.
async def test_exit_right_after_calls() -> None:
    db = await open_db("sqlite")
    for _ in range(10):
        k = await db.kl.create(account_id="a", budget_cents=100)
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), db.url, db.table, k.key, "100"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        assert await asyncio.to_thread(proc.stdout.readline) == "READY\n"
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        await asyncio.gather(*(db.kl.track_usage(k.key, 1) for _ in range(100)))
        out, err = await asyncio.to_thread(proc.communicate, None, 60)
        assert proc.returncode == 0, (proc.returncode, out, err[-2000:])
    await db.kl.close()
    db.cleanup()
