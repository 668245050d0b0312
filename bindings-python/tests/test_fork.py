"""keyleash after fork() (gunicorn --preload, Celery prefork): a connection made
before the fork refuses clearly in the child instead of hanging, and a new
connection in the child works, on a runtime of its own."""

from __future__ import annotations

import os
import time

import keyleash
import keyleash.sync
from conftest import START, Db, database_url, unique, valid


def child(inherited: keyleash.sync.KeyLeash, db: Db, raw_key: str) -> int:
    try:
        inherited.validate(raw_key)
    except keyleash.InvalidArgumentError as e:
        if "fork" not in str(e):
            return 3
    else:
        return 2
    kl = keyleash.sync.KeyLeash.connect(db.url, table_name=db.table, manual_clock=START)
    charged = kl.track_usage(raw_key, 1)
    kl.close()
    return 0 if charged.success else 4


# Pins: in a forked child the parent's connection raises InvalidArgumentError and a
# fresh connection charges; the parent sees the child's charge and keeps working.
def test_fork(store: str) -> None:
    table, url = unique("t_py"), database_url(store)
    kl = keyleash.sync.KeyLeash.connect(url, table_name=table, manual_clock=START)
    kl.migrate()
    db = Db(store, url, table, kl.aio)
    k = kl.create(account_id="a", budget_cents=10)
    assert kl.validate(k.key).valid
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child(kl, db, k.key)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            raise AssertionError("the forked child hung")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert valid(kl.validate(k.key)).budget_used_cents == 1
    assert db.ledger(k.id) == (1_000_000, 1)
    kl.close()
    db.cleanup()
