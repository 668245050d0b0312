"""Result narrowing under ``mypy --strict``: tests/typing/narrowing_ok.py must check
clean, and every misuse in tests/typing/narrowing_misuse.py must give exactly the
error its ``# E: <code>`` comment names, on that line, and nothing else. mypy reads
the package's source (``python/``), so this checks the types being changed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPING = Path(__file__).resolve().parent / "typing"
ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")
EXPECT = re.compile(r"# E: (?P<code>[a-z-]+)$")


def mypy_errors(name: str) -> set[tuple[int, str]]:
    """(line, code) of each error ``mypy --strict`` gives ``tests/typing/<name>``."""
    env = {**os.environ, "MYPYPATH": str(ROOT / "python")}
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file", "pyproject.toml"]
    proc = subprocess.run(
        [*command, str(TYPING / name)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    errors = set()
    for line in proc.stdout.splitlines():
        if (found := ERROR.match(line)) is not None:
            assert Path(found["path"]).name == name, line
            errors.add((int(found["line"]), found["code"]))
        else:  # notes and the summary only
            assert ": note: " in line or line.startswith(("Found ", "Success: ")), line
    return errors


# Pins narrowing: `if v.valid:` / `if c.success:`, isinstance and match all narrow.
def test_narrowing_checks_clean() -> None:
    assert mypy_errors("narrowing_ok.py") == set()


# Pins the misuses mypy catches: each expected error, at its line, and no other.
def test_misuses_are_caught() -> None:
    lines = (TYPING / "narrowing_misuse.py").read_text().splitlines()
    expected = {
        (number, found["code"])
        for number, line in enumerate(lines, 1)
        if (found := EXPECT.search(line)) is not None
    }
    assert len(expected) >= 12
    assert mypy_errors("narrowing_misuse.py") == expected
