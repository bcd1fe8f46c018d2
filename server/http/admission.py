"""Admission to HTTP ingest (``server.http.ingest``): a bounded number of requests at work,
a bounded queue, and the rest refused at once.

Under overload a server that takes every request makes each one slower until they all time
out, and a timeout answered while a batch commits says "failed" about stored usage. Instead
``POST /v1/usage`` first asks ``Admission.admit``: up to ``concurrency`` requests are at work
(reading, decoding, committing their batch), up to ``queue`` more wait for a slot, and any
other request is answered 503 ``OVERLOADED`` with ``Retry-After`` before its body is read —
nothing of it is stored. A request waiting in the queue holds only its connection (aiohttp
stops reading a body nobody consumes), so memory is bounded by ``concurrency`` bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from billing_oss.core.errors import BillingError, ErrorCode
from billing_oss.core.metrics import HTTP_INGEST_SHED


class Overloaded(BillingError):
    code = ErrorCode.OVERLOADED

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, retry_after=str(retry_after_s))
        self.retry_after_s = retry_after_s


class Admission:
    def __init__(self, concurrency: int, queue: int, retry_after_s: int = 1) -> None:
        self.concurrency, self.queue, self.retry_after_s = concurrency, queue, retry_after_s
        self._slots = asyncio.Semaphore(concurrency)
        self.working = 0
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a slot for the block; refuse at once when the slots and the queue are full."""
        if self.working >= self.concurrency and self.waiting >= self.queue:
            HTTP_INGEST_SHED.inc()
            raise Overloaded(
                f"ingest is at capacity ({self.concurrency} batches at work, {self.queue}"
                f" waiting); nothing of this request was stored: send it again after "
                f"{self.retry_after_s} s", retry_after_s=self.retry_after_s)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.working += 1
        try:
            yield
        finally:
            self.working -= 1
            self._slots.release()
