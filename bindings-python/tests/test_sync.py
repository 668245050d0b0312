"""The blocking facade ``keyleash.sync.KeyLeash``: the same methods and results, and
16 threads charging one key at once without passing its cap."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import keyleash
import keyleash.sync
from conftest import START, Db, database_url, reason, unique, valid


def connect(store: str) -> tuple[keyleash.sync.KeyLeash, Db]:
    table, url = unique("t_py"), database_url(store)
    kl = keyleash.sync.KeyLeash.connect(url, table_name=table, manual_clock=START)
    kl.migrate()
    return kl, Db(store, url, table, kl.aio)


# Pins every method of the sync facade against the same results as the async API.
def test_sync_facade_every_method(store: str) -> None:
    kl, db = connect(store)
    with kl:
        k = kl.create(account_id="a", scopes=["read"], budget_cents=10, expires_in="1h")
        assert isinstance(k, keyleash.CreatedKey) and k.expires_at is not None
        v = kl.validate(k.key)
        assert v.valid and v.budget_remaining_cents == 10 and kl.has_scope(v, "read")
        r = kl.track_usage(k.key, 4, idempotency_key="i1")
        assert r.to_dict() == {"success": True, "budgetUsedCents": 4, "budgetRemainingCents": 6}
        again = kl.track_usage(k.key, 4, idempotency_key="i1").to_dict()
        assert again == {**r.to_dict(), "replayed": "charged"}
        assert [e.amount_cents for e in kl.usage(k.id)] == [4]
        assert [s.id for s in kl.list("a")] == [k.id]
        kl.ensure_subject("sub", budget_cents=1)
        assert valid(kl.validate_by_subject("sub")).budget_cents == 1
        assert reason(kl.track_usage_by_subject("sub", 2)) == "budget_exceeded"
        assert kl.now() == START
        kl.advance(hours=1)
        assert reason(kl.validate(k.key)) == "expired"
        kl.set_now(START)
        assert kl.revoke(k.id) is True
        assert reason(kl.validate(k.key)) == "revoked"
        with pytest.raises(keyleash.InvalidDurationError):
            kl.create(account_id="a", expires_in="soon")
    with pytest.raises(keyleash.UnavailableError):
        kl.validate(k.key)
    db.cleanup()


# Pins the cap under 16 threads x 25 one-cent charges on a 100-cent key: exactly 100
# succeed, and the key's counter and its ledger agree in SQL.
def test_sixteen_threads_one_key(store: str) -> None:
    kl, db = connect(store)
    k = kl.create(account_id="a", budget_cents=100)
    barrier = threading.Barrier(16)

    def worker(_: int) -> int:
        barrier.wait()
        return sum(kl.track_usage(k.key, 1).success for _ in range(25))

    with ThreadPoolExecutor(16) as pool:
        ok = sum(pool.map(worker, range(16)))
    assert ok == 100
    assert db.used_micros(k.id) == 100_000_000
    assert db.ledger(k.id) == (100_000_000, 100)
    kl.close()
    db.cleanup()
