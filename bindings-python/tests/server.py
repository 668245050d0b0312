"""A real HTTP server for the FastAPI tests: uvicorn on 127.0.0.1 in a thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI

import keyleash
import keyleash.sync
from keyleash.fastapi import agentkey_router, require_key


class Server:
    """Serves ``app`` on a free loopback port until ``stop()``, or on the Unix socket
    ``uds`` (a path) when given; ``url`` is then ``http://localhost``, to use with an
    ``httpx.AsyncHTTPTransport(uds=...)``."""

    def __init__(self, app: FastAPI, uds: str | None = None) -> None:
        if uds is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(uds)
            self.url = "http://localhost"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def make_app(kl: keyleash.KeyLeash | keyleash.sync.KeyLeash, **router: Any) -> FastAPI:
    """An app with a scoped route, an unscoped one and the self-serve routes."""
    app = FastAPI()

    @app.post("/v1/chat")
    async def chat(
        key: keyleash.GrantedKey = Depends(require_key(kl, scope="proxy.chat")),  # noqa: B008
    ) -> dict[str, Any]:
        return {"keyId": key.id, "account": key.account_id, "remaining": key.budget_remaining_cents}

    @app.get("/v1/whoami")
    async def whoami(
        key: keyleash.GrantedKey = Depends(require_key(kl)),  # noqa: B008
    ) -> dict[str, Any]:
        return key.to_dict()

    app.include_router(agentkey_router(kl, **router), prefix="/auth")
    return app
