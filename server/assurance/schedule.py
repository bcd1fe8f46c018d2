"""What ``serve`` runs on its own: every ``assurance.interval_s``, all the controls, then a
signed checkpoint of the audit chain when ``assurance.checkpoint_dir`` is set — once per
interval whatever the number of worker processes (``server.scheduled``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import asyncpg
import asyncssh

from billing_oss.core.errors import BillingError
from billing_oss.server import assurance, scheduled
from billing_oss.server.assurance import checkpoints, engine, export
from billing_oss.server.config import AssuranceConfig

log = logging.getLogger(__name__)
ACTOR = "server:assurance"
TASK = "assurance"  # its row in scheduled_ticks


async def run_once(pool: asyncpg.Pool, config: AssuranceConfig) -> None:
    done = await engine.run(pool, assurance.context(config), trigger="schedule", actor=ACTOR)
    log.info("assurance run", extra={"fields": {"run": done.run_id, "failed": done.failed}})
    if config.checkpoint_dir:
        key = await asyncio.to_thread(checkpoints.signing_key, Path(config.signing_key))
        async with pool.acquire() as conn:
            path = await checkpoints.create(conn, Path(config.checkpoint_dir), key)
            if config.checkpoint_webhook:
                await checkpoints.publish(conn, checkpoints.read(path))
        log.info("audit checkpoint written", extra={"fields": {"path": str(path)}})
        if config.checkpoint_sftp is not None:
            sent = await export.upload_sftp(config.checkpoint_sftp, path)
            log.info("audit checkpoint uploaded", extra={"fields": {
                "host": config.checkpoint_sftp.host, "files": sent}})


async def run_forever(pool: asyncpg.Pool, config: AssuranceConfig, stop: asyncio.Event) -> None:
    """Until ``stop``: a run each ``interval_s`` (the first one an interval after the first
    start, so a restart loop does not hammer the database), by whichever process holds the
    task when it is due. A failed run is logged and retried at the next interval; the server
    keeps serving."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), scheduled.look_every(config.interval_s))
        if stop.is_set():
            return
        try:
            await scheduled.run_if_due(pool, TASK, config.interval_s,
                                       lambda: run_once(pool, config))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, BillingError,
                asyncssh.Error) as exc:  # a partner that cannot take the checkpoint, say
            log.warning("assurance run failed", extra={"fields": {"error": str(exc)}})
