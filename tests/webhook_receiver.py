"""A loopback webhook receiver (aiohttp) for the tests and perf/bench_webhooks.py.

It records what arrives, and verifies each signature as it arrives with the standardwebhooks
package's own verifier (its timestamp tolerance applies at receipt, as in a real receiver).
``behave`` sets how a path answers: a status, a delay, a redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class Received:
    __slots__ = ("at", "body", "headers", "path", "verified")

    def __init__(self, path: str, headers: dict[str, str], body: bytes, at: float,
                 verified: bool) -> None:
        self.path, self.headers, self.body, self.at = path, headers, body, at
        self.verified = verified

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    def __init__(self, *, keep: bool = True) -> None:
        self.got: list[Received] = []
        self.count = 0
        self.keep = keep  # False: count only (the benchmark's peer)
        self.secrets: dict[str, list[str]] = {}  # path → secrets to verify with
        self.behaviour: dict[str, tuple[int, float, str | None]] = {}
        self.calls: dict[str, int] = {}
        self.url = ""
        self.arrived = asyncio.Event()

    def behave(self, path: str, status: int = 200, delay: float = 0.0,
               location: str | None = None) -> None:
        self.behaviour[path] = (status, delay, location)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.got if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        self.calls[path] = self.calls.get(path, 0) + 1
        status, delay, location = self.behaviour.get(path, (200, 0.0, None))
        if delay:
            await asyncio.sleep(delay)
        self.count += 1
        if self.keep:
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.got.append(Received(path, headers, body, time.time(),
                                     self._verify(path, body, headers)))
        self.arrived.set()
        if location:
            return web.Response(status=status, headers={"Location": location})
        return web.Response(status=status)

    def _verify(self, path: str, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets.get(path, []):
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False


@contextlib.asynccontextmanager
async def receiving(port: int = 0, *, keep: bool = True) -> AsyncIterator[Receiver]:
    receiver = Receiver(keep=keep)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
