"""The ``keyleash`` command line for operators (docs/cli.md), as the Python
package ships it: ``keyleash …`` (a console script) and ``python -m keyleash …``.

Both run the core's command line, the same code as the Rust binary and ``npx
keyleash``, inside this process through the native module.
"""

from __future__ import annotations

import signal
import sys

from keyleash import _native

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Runs the command line on ``argv`` (default: ``sys.argv[1:]``) and exits
    with its status. Ctrl-C ends the process as it ends the Rust binary: the
    native code runs without the GIL, so Python's own handler could not stop it."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    sys.exit(_native.run_cli(args))
