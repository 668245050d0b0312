"""The opt-in validation cache from Python: options checked, hits served, and on
Postgres a revoke made by another Python process reaching this process's cache
through LISTEN/NOTIFY (the delay is measured and printed)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

import keyleash
from conftest import Db, open_db, reason

REVOKER = """
import asyncio, sys, time
import keyleash

async def main() -> None:
    kl = await keyleash.KeyLeash.connect(sys.argv[1], table_name=sys.argv[2])
    print("READY", flush=True)
    for line in sys.stdin:
        await kl.revoke(int(line))
        print(f"REVOKED {time.time()}", flush=True)
    await kl.close()

asyncio.run(main())
"""


async def serving(kl: keyleash.KeyLeash) -> None:
    """Waits until the cache serves (on Postgres, once its LISTEN connection is up)."""
    deadline = time.monotonic() + 10
    while not (stats := kl.cache_stats()) or not stats.listening:
        assert time.monotonic() < deadline, "never listening"
        await asyncio.sleep(0.005)


async def test_cache_options_are_checked() -> None:
    bad: list[tuple[object, str]] = [
        (5, "cache must be a keyleash.CacheOptions or None"),
        ({"ttl_ms": 5}, "cache must be a keyleash.CacheOptions or None"),
        (keyleash.CacheOptions(ttl_ms=0), "cache.ttl_ms must be a whole number from 1 to 3600000"),
        (keyleash.CacheOptions(ttl_ms="5"), "cache.ttl_ms"),  # type: ignore[arg-type]
        (keyleash.CacheOptions(ttl_ms=True), "cache.ttl_ms"),
        (keyleash.CacheOptions(max_entries=0), "cache.max_entries must be a whole number"),
        (keyleash.CacheOptions(max_entries=10**7), "cache.max_entries must be a whole number"),
    ]
    for cache, message in bad:
        with pytest.raises(keyleash.InvalidArgumentError, match=message.replace(".", r"\.")):
            await keyleash.KeyLeash.connect("sqlite::memory:", cache=cache)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        keyleash.CacheOptions(ttl=5)  # type: ignore[call-arg]
    off = await keyleash.KeyLeash.connect("sqlite::memory:", cache=None)
    assert off.cache_stats() is None


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_served_until_revoked_or_exhausted(store: str) -> None:
    db = await open_db(store, cache=keyleash.CacheOptions(ttl_ms=60_000, max_entries=50))
    kl = db.kl
    try:
        await serving(kl)
        k = await kl.create(account_id="a", budget_cents=2)
        first = await kl.validate(k.key)
        assert first.valid
        assert (await kl.validate(k.key)).to_dict() == first.to_dict()
        stats = kl.cache_stats()
        assert stats is not None and (stats.hits, stats.entries) == (1, 1)
        assert (stats.channel is None) == (store == "sqlite")
        assert (await kl.track_usage(k.key, 2)).success
        assert reason(await kl.validate(k.key)) == "budget_exceeded"
        other = await kl.create(account_id="a")
        assert (await kl.validate(other.key)).valid
        assert await kl.revoke(other.id)
        assert reason(await kl.validate(other.key)) == "revoked"
    finally:
        await kl.close()
        db.cleanup()


# Pins one look per validate: a miss hashes the key and looks the cache up once, so
# it counts one miss, and the next validate of that key counts one hit.
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_a_miss_counts_once(store: str) -> None:
    db = await open_db(store, cache=keyleash.CacheOptions(ttl_ms=60_000, max_entries=50))
    kl = db.kl
    try:
        await serving(kl)
        k = await kl.create(account_id="a")
        assert (await kl.validate(k.key)).valid
        stats = kl.cache_stats()
        assert stats is not None and (stats.hits, stats.misses) == (0, 1)
        assert (await kl.validate(k.key)).valid
        stats = kl.cache_stats()
        assert stats is not None and (stats.hits, stats.misses) == (1, 1)
    finally:
        await kl.close()
        db.cleanup()


# Pins that 50 validates at once with the cache on (repeated keys, a revoked and a
# malformed one among them) each get the answer they would get alone.
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_concurrent_validates_answer_each(store: str) -> None:
    db = await open_db(store, cache=keyleash.CacheOptions(ttl_ms=60_000, max_entries=50))
    kl = db.kl
    try:
        await serving(kl)
        keys = [await kl.create(account_id="a") for _ in range(5)]
        gone = await kl.create(account_id="a")
        assert await kl.revoke(gone.id)
        asked = [keys[i % 5].key for i in range(48)] + [gone.key, "not a key"]
        answers = await asyncio.gather(*(kl.validate(raw) for raw in asked))
        for i, answer in enumerate(answers[:48]):
            assert answer.valid and answer.id == keys[i % 5].id
        assert reason(answers[48]) == "revoked"
        assert reason(answers[49]) == "invalid"
    finally:
        await kl.close()
        db.cleanup()


async def test_another_process_revoke_reaches_the_cache() -> None:
    db: Db = await open_db("postgres", cache=keyleash.CacheOptions(ttl_ms=3_600_000))
    kl = db.kl
    child = subprocess.Popen(
        [sys.executable, "-c", REVOKER, db.url, db.table],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        await serving(kl)
        assert child.stdout.readline().strip() == "READY"
        delays = []
        for _ in range(10):
            k = await kl.create(account_id="a")
            assert (await kl.validate(k.key)).valid
            assert (await kl.validate(k.key)).valid
            child.stdin.write(f"{k.id}\n")
            child.stdin.flush()
            started = time.monotonic()
            while (await kl.validate(k.key)).valid:
                assert time.monotonic() - started < 10, "the revoke never reached the cache"
                await asyncio.sleep(0)
            seen = time.time()
            revoked_at = float(child.stdout.readline().split()[1])
            delays.append(max(0.0, seen - revoked_at) * 1000)
        delays.sort()
        print(
            f"revocation delay across processes: median {delays[5]:.2f} ms, max {delays[9]:.2f} ms"
        )
        # The time to live is an hour: only the notification can have done this.
        assert delays[9] < 1000
        stats = kl.cache_stats()
        assert stats is not None and stats.hits >= 10
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        await kl.close()
