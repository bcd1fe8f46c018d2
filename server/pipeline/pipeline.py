"""``Pipeline``: the mediation core one process holds, and the ``Sink`` adapters commit to.

It owns the rater cache and the decoders by format. ``commit`` takes adapters' deliveries
(one transaction per call); ``ingest_file`` runs a file through the staged pipeline;
``run_sweeper`` (a long-running task under ``serve``) expires stale partial-record groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from billing_oss.core.contract import Delivery, FileAlarm, FileOutcome, Outcome
from billing_oss.core.errors import BillingError, ErrorCode
from billing_oss.core.ports import Decoder
from billing_oss.server.config import PipelineConfig
from billing_oss.server.integrations import outbox
from billing_oss.server.integrations.events import UsageFileGap
from billing_oss.server.pipeline import deliveries, files, suspense
from billing_oss.server.pipeline.raters import RaterCache, RaterFactory
from billing_oss.server.store import files_repo
from billing_oss.server.store.pool import Connection

log = logging.getLogger(__name__)


# A decoder of ``format`` reading with the given format options.
DecoderFactory = Callable[[str, Mapping[str, Any]], Decoder]


class UnknownFormat(BillingError):
    code = ErrorCode.UNKNOWN_FORMAT


class Pipeline:
    def __init__(self, pool: asyncpg.Pool, config: PipelineConfig, *,
                 rater_factory: RaterFactory, decoders: Mapping[str, Decoder],
                 decoder_for: DecoderFactory | None = None) -> None:
        self.pool = pool
        self.config = config
        self.raters = RaterCache(pool, rater_factory)
        self.decoders = dict(decoders)
        self._decoder_for = decoder_for
        self._usage_ids = deliveries.UsageIds(pool)
        self._files = files.FileSettings(
            batch_size=config.batch_size, queue_depth=config.queue_depth,
            write_attempts=config.write_attempts, retry_backoff_s=config.retry_backoff_s,
            write_lanes=config.write_lanes)

    @property
    def formats(self) -> list[str]:
        return sorted(self.decoders)

    async def commit(self, batch: Sequence[Delivery]) -> list[Outcome]:
        return await deliveries.commit(self.pool, self.raters, batch,
                                       attempts=self.config.write_attempts,
                                       backoff_s=self.config.retry_backoff_s,
                                       usage_ids=self._usage_ids)

    async def ingest_file(
        self, path: Path, *, source: str, format: str, name: str | None = None,
        sequence_no: int | None = None, progress: files.FileProgress | None = None,
        fault: Callable[[Connection], Awaitable[None]] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> FileOutcome:
        """``options``: the format's options for this file (a source's ``options``)."""
        decoder = self.decoders.get(format)
        if decoder is None:
            known = ", ".join(sorted(self.decoders)) or "none"
            raise UnknownFormat(f"no decoder for format {format!r} (known: {known})")
        if options:
            if self._decoder_for is None:
                raise UnknownFormat(f"no decoder for format {format!r} with options")
            decoder = self._decoder_for(format, options)
        return await files.ingest_file(
            self.pool, self.raters, decoder, self._files, path, source=source, fmt=format,
            name=name or path.name, sequence_no=sequence_no, progress=progress, fault=fault)

    async def file_alarm(self, alarm: FileAlarm) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await files_repo.insert_alarm(conn, alarm):
                return False
            if alarm.kind == "gap" and alarm.sequence_no is not None:
                await outbox.emit(conn, UsageFileGap(
                    source=alarm.source, name=alarm.name, sequence=alarm.sequence_no,
                    first_missing=alarm.first_missing or 0,
                    last_missing=alarm.last_missing or 0), stream=f"source:{alarm.source}")
        return True

    async def retry_suspense(self, *, ids: list[int] | None = None, reason: str | None = None,
                             limit: int = 1000) -> suspense.RetryReport:
        return await suspense.retry(self.pool, self.raters, ids=ids, reason=reason, limit=limit)

    async def expire_partials(self) -> int:
        return await suspense.expire_partials(self.pool, self.config.partial_timeout_s)

    async def run_sweeper(self, stop: asyncio.Event) -> None:
        """Expire stale partial groups every ``partial_sweep_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                expired = await self.expire_partials()
                if expired:
                    log.info("partial groups expired to suspense",
                             extra={"fields": {"groups": expired}})
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("partial sweep failed", extra={"fields": {"error": str(exc)}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.partial_sweep_s)
