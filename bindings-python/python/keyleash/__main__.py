"""``python -m keyleash …``: the operators' command line (keyleash.cli)."""

from keyleash.cli import main

main()
