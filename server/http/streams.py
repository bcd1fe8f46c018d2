"""Streamed responses (the journal's CSV and FEC, a customer's usage CSV).

Once the status line is out nothing may answer again: the request's timeout is lifted (a
long period is not an error), and an error after that point drops the connection instead of
sending a problem response, which aiohttp would splice into the chunked body as if it were
part of the file. The client sees a broken transfer, never a file that looks whole. A write
waits at most the request timeout for a client that stopped reading, so a stalled reader
does not hold a database connection (and, for the journal, the snapshot vacuum waits on)
for ever.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from billing_oss.server.http.keys import CONFIG, STREAMING, lift_deadline


async def begin(request: web.Request, response: web.StreamResponse) -> None:
    await response.prepare(request)
    lift_deadline(request)
    request[STREAMING] = True


async def send(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    # config_dict: the console, a sub-application, streams the portal's CSV through here
    async with asyncio.timeout(request.config_dict[CONFIG].http.request_timeout_s):
        await response.write(data)
