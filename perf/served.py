"""A server a benchmark starts on loopback: a free port, and waiting until it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(url: str, within: float = 30.0) -> None:
    """Until ``url``'s ``/readyz`` answers 200."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"server at {url} not ready after {within}s")
