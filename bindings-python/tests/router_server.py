"""``server.make_app`` as a process of its own, for tests that need two servers on one
database: ``python router_server.py URL TABLE PORT`` serves on 127.0.0.1:PORT."""

from __future__ import annotations

import sys

import uvicorn

import keyleash.sync
from server import make_app

if __name__ == "__main__":
    url, table, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kl = keyleash.sync.KeyLeash.connect(url, table_name=table)
    uvicorn.run(make_app(kl), host="127.0.0.1", port=port, log_level="warning")
