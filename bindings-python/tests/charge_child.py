"""A second process for test_concurrency: connects to the same table, says READY,
waits for GO on stdin, fires COUNT concurrent 1-cent charges at one key and prints
``CHILD-RESULT ok=N``. Usage: charge_child.py URL TABLE KEY COUNT."""

from __future__ import annotations

import asyncio
import sys

import keyleash


async def main(url: str, table: str, key: str, count: int) -> None:
    kl = await keyleash.KeyLeash.connect(url, table_name=table)
    print("READY", flush=True)
    sys.stdin.readline()
    results = await asyncio.gather(*(kl.track_usage(key, 1) for _ in range(count)))
    print(f"CHILD-RESULT ok={sum(r.success for r in results)}", flush=True)
    await kl.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
