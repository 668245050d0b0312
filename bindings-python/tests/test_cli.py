"""The command line as the wheel ships it: ``python -m keyleash`` and the
``keyleash`` console script run the core's CLI in a real Python process, and what
they print is what the database holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import Db


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


async def test_module_and_script_list_the_database(db: Db) -> None:
    key = await db.kl.create(account_id="ops", budget_cents=250, name="bot")
    used = db.used_micros(key.id)
    common = ("--url", db.url, "--table", db.table)
    script = str(Path(sys.executable).with_name("keyleash"))
    for cmd in ((sys.executable, "-m", "keyleash"), (script,)):
        out = run(*cmd, *common, "--json", "list", "--account", "ops")
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)
        assert [r["id"] for r in rows] == [key.id]
        assert rows[0]["budgetUsedCents"] * 1_000_000 == used
        assert rows[0]["budgetCents"] == 250
        assert key.key not in out.stdout
        bad = run(*cmd, *common, "show", "nine")
        assert bad.returncode == 2
        assert bad.stderr.startswith("keyleash: invalid_argument: ")
        assert len(bad.stderr.strip().splitlines()) == 1
    revoked = run(sys.executable, "-m", "keyleash", *common, "revoke", str(key.id))
    assert revoked.returncode == 0, revoked.stderr
    assert (
        db.scalar(f"SELECT COUNT(*) FROM {{keys}} WHERE id = {key.id} AND revoked_at IS NOT NULL")
        == 1
    )


def test_misplaced_url_password_is_never_printed(tmp_path: Path) -> None:
    """A database URL typed where another value belongs is not echoed with its
    password, by ``python -m keyleash`` or the console script: status 2, one line."""
    sqlite = f"sqlite://{tmp_path / 'k.db'}"
    url = "postgres://u:SECRET@host/db"
    script = str(Path(sys.executable).with_name("keyleash"))
    cases: list[tuple[str, ...]] = [
        (url, "list", "--account", "a"),
        ("show", url),
        ("create", "--account", "a", "--budget-cents", url),
        ("--table", url, "list", "--account", "a"),
        ("usage", "1", "--from", url),
    ]
    for cmd in ((sys.executable, "-m", "keyleash"), (script,)):
        for args in cases:
            out = subprocess.run(
                (*cmd, "--url", sqlite, *args),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                cwd=tmp_path,
                env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            )
            assert out.returncode == 2, (args, out.stderr)
            assert out.stderr.startswith("keyleash: invalid_argument: "), out.stderr
            assert len(out.stderr.strip().splitlines()) == 1
            assert "SECRET" not in out.stderr + out.stdout, out.stderr
