"""The running server: database (embedded or external), migrations, demo catalog, HTTP.

Start-up happens in dependency order inside one ``AsyncExitStack`` so shutdown unwinds in
reverse: stop the sources, stop accepting requests, let the background jobs (bill runs,
rerating) commit the step in progress, close the pool, then stop the embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import logging
import socket
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.core.errors import ConfigError, StartupError
from billing_oss.core.ports import Decoder
from billing_oss.server import jobs, rerate
from billing_oss.server.billing import bill_runs
from billing_oss.server.catalog import Catalog, catalog_from_dict
from billing_oss.server.config import Config
from billing_oss.server.http.keys import (
    ASSURANCE_WAKE,
    BILL_RUN_WAKE,
    RERATE_WAKE,
    SIMULATION_WAKE,
)
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.pipeline.raters import RaterFactory
from billing_oss.server.store import audit, catalog_repo
from billing_oss.server.store.embedded import embedded_postgres
from billing_oss.server.store.migrate import ask_at_terminal, migrate, refuse_foreign
from billing_oss.server.store.pool import open_pool
from billing_oss.server.web import create_app
from billing_oss.server.workers import SINGLE, WorkerSlot, sources_for, watch_parent

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def database(config: Config) -> AsyncIterator[str]:
    """Yield the DSN to use: the configured one, else the embedded server's."""
    if config.database.url:
        yield config.database.url
        return
    async with embedded_postgres(config.database.data_dir, config.database.name) as dsn:
        yield dsn


@contextlib.asynccontextmanager
async def database_pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    """An open, migrated pool; closed (and the embedded server stopped) on exit."""
    async with database(config) as dsn, migrated_pool(config, dsn) as pool:
        yield pool


@contextlib.asynccontextmanager
async def migrated_pool(config: Config, dsn: str) -> AsyncIterator[asyncpg.Pool]:
    db = config.database
    pool = await open_pool(dsn, min_size=db.pool_min, max_size=db.pool_max,
                           timeout_s=db.connect_timeout_s)
    try:
        await refuse_foreign(pool, init=db.init, confirm=ask_at_terminal)
        await migrate(pool)
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()


async def prepare_database(config: Config, dsn: str) -> None:
    """What happens once before several workers start: migrations and the demo catalog."""
    async with migrated_pool(config, dsn) as pool:
        await load_demo_catalog(config, pool)


def decoders() -> dict[str, Decoder]:
    """File decoders by format name: every registered format (``adapters.formats.registry``)."""
    from billing_oss.adapters.formats.items import FormatDecoder
    from billing_oss.adapters.formats.registry import names

    return {name: FormatDecoder(name) for name in names()}


def decoder_for(format: str, options: Mapping[str, Any]) -> Decoder:
    """A decoder of ``format`` with a source's format options (checked at its start)."""
    from billing_oss.adapters.formats.items import FormatDecoder

    return FormatDecoder(format, options)


def check_sources(config: Config) -> None:
    """Refuse at start, before the database, a source whose format is not registered or
    whose format options that format does not take."""
    from billing_oss.adapters.formats.registry import names
    from billing_oss.adapters.sources import check_formats

    check_formats(config.sources, names())


def rater_factory() -> RaterFactory:
    """How the pipeline builds its rater from the catalog stored in the database."""
    from billing_oss.server.pipeline.raters import build_rater

    return build_rater


def make_pipeline(config: Config, pool: asyncpg.Pool) -> Pipeline:
    return Pipeline(pool, config.pipeline, rater_factory=rater_factory(), decoders=decoders(),
                    decoder_for=decoder_for)


def read_catalog_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read catalog {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"catalog {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"catalog {path}: the top level must be an object")
    return data


def validate_catalog(catalog: dict[str, Any]) -> Catalog:
    """Check a parsed catalog before it is stored; errors name the JSON path."""
    return catalog_from_dict(catalog)


DEMO_ACTOR = "server:demo-catalog"  # how the audit log names the load at first start


async def load_demo_catalog(config: Config, pool: asyncpg.Pool) -> None:
    if not config.catalog.load_demo or await catalog_repo.has_tariffs(pool):
        return
    path = config.demo_catalog_path()
    # Audited like any other load: the demo's accounts and prices are changes too.
    result = await catalog_repo.load_catalog(pool, read_catalog_file(path), actor=DEMO_ACTOR)
    log.info("demo catalog loaded", extra={"fields": {"path": str(path), **_as_dict(result)}})


def _as_dict(result: catalog_repo.LoadResult) -> dict[str, int]:
    return {"tariffs": result.tariffs, "versions": result.versions_added,
            "accounts": result.accounts_added, "products": result.products_changed,
            "tax_rates": result.tax_rates_changed, "discounts": result.discounts_changed}


async def serve(config: Config, stop: asyncio.Event, *,
                started: asyncio.Event | None = None, slot: WorkerSlot = SINGLE) -> None:
    """Run until ``stop`` is set; ``started`` is set once HTTP accepts connections. ``slot``
    says which of several worker processes this one is (``server.workers``)."""
    check_sources(config)
    async with contextlib.AsyncExitStack() as stack:
        if slot.supervisor_pid is not None:
            orphaned = asyncio.create_task(watch_parent(stop, slot.supervisor_pid),
                                           name="watch-supervisor")
            stack.push_async_callback(_cancel, orphaned)
        pool = await stack.enter_async_context(database_pool(config))
        await load_demo_catalog(config, pool)
        if gaps := config.billing.einvoice_gaps():
            # Invoices still render; their e-invoice fails validation until these are set.
            log.warning("e-invoices will not be EN 16931 valid: set the seller's details",
                        extra={"fields": {"missing": gaps}})
        if gaps := config.billing.printed_gaps():
            log.warning("invoices will print without the seller's address or bank account",
                        extra={"fields": {"missing": gaps}})
        pipeline = make_pipeline(config, pool)
        sweeper = asyncio.create_task(pipeline.run_sweeper(stop), name="partial-sweeper")
        stack.push_async_callback(_cancel, sweeper)
        if config.pipeline.suspense_alarm_records > 0:
            from billing_oss.server.integrations import suspense_watch

            watcher = asyncio.create_task(suspense_watch.watch(
                pool, config.pipeline.suspense_alarm_records, config.pipeline.suspense_check_s,
                stop), name="suspense-watch")
            stack.push_async_callback(_cancel, watcher)
        if config.retention.interval_s > 0:
            from billing_oss.server.retention import housekeeping

            keeper = asyncio.create_task(housekeeping.run_forever(pool, config.retention, stop),
                                         name="retention")
            stack.push_async_callback(_cancel, keeper)
        if config.analytics.compact_interval_s > 0:
            from billing_oss.server.analytics import compaction

            compactor = asyncio.create_task(compaction.run_forever(
                pool, config.analytics.compact_interval_s, stop), name="rollup-compaction")
            stack.push_async_callback(_cancel, compactor)
        chainer = asyncio.create_task(audit.run_chainer(pool, stop), name="audit-chainer")
        stack.push_async_callback(_cancel, chainer)
        if config.assurance.interval_s > 0:
            from billing_oss.server.assurance import schedule

            controls = asyncio.create_task(schedule.run_forever(pool, config.assurance, stop),
                                           name="assurance")
            stack.push_async_callback(_cancel, controls)
        worker = await stack.enter_async_context(rerate.running_worker(pool, pipeline.raters))
        # Claims the runs a crash or a shutdown left 'running' at once, and resumes them.
        billing = await stack.enter_async_context(jobs.running_worker(
            pool, bill_runs.BillRuns(pool, bill_runs.run_settings(config.billing))))
        if config.webhooks.enabled:
            await stack.enter_async_context(delivering_webhooks(config, pool))
        simulations = await stack.enter_async_context(jobs.running_worker(
            pool, simulation_jobs(pool, config)))
        assurance_runs = await stack.enter_async_context(jobs.running_worker(
            pool, assurance_jobs(pool, config)))
        app = create_app(config, pool, pipeline)
        app[RERATE_WAKE] = worker.wake
        app[BILL_RUN_WAKE] = billing.wake
        app[SIMULATION_WAKE] = simulations.wake
        app[ASSURANCE_WAKE] = assurance_runs.wake
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await _listen(runner, config, slot)
        await stack.enter_async_context(running_sources(
            msgspec.structs.replace(config, sources=sources_for(config.sources, slot)),
            pipeline, pool))
        await stack.enter_async_context(running_provisioning(config, pool))
        stack.callback(_fewer_collections())
        log.info("serving", extra={"fields": {
            "url": f"http://{config.http.host}:{config.http.port}", "worker": slot.index}})
        if started is not None:
            started.set()
        await stop.wait()
        log.info("shutting down")


@contextlib.asynccontextmanager
async def delivering_webhooks(config: Config, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Webhook delivery from the outbox (in the one process that holds its lock); on exit
    the attempts in flight finish and their outcomes are written before the pool closes."""
    from billing_oss.server.integrations.delivery import WebhookDeliverer

    stop = asyncio.Event()
    task = asyncio.create_task(WebhookDeliverer(pool, config.webhooks).run(stop),
                               name="webhooks")
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, config.webhooks.timeout_s + 15)
        except TimeoutError:
            log.warning("webhook delivery did not stop in time")


def simulation_jobs(pool: asyncpg.Pool, config: Config) -> jobs.JobKind:
    from billing_oss.server.billing.model import Settings
    from billing_oss.server.simulation.service import Simulations

    return Simulations(pool, Settings(seller=config.billing.seller(),
                                      rounding=config.billing.rounding))


def assurance_jobs(pool: asyncpg.Pool, config: Config) -> jobs.JobKind:
    from billing_oss.server.assurance.jobs import AssuranceJobs

    return AssuranceJobs(pool, config.assurance, config.ledger)


GC_YOUNG_THRESHOLD = 50_000  # allocations between young-generation collections


def _fewer_collections() -> Callable[[], None]:
    """Serving is a stream of short-lived, acyclic objects (records, rows, outcomes) while
    batches wait in queues; at the default threshold the cyclic collector runs every 700
    allocations and keeps traversing those batches — a sixth of the CPU at full intake.
    What startup made (modules, catalog, app) is frozen out of the collections. Returns
    what puts the collector back as it was."""
    saved = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(saved[0], GC_YOUNG_THRESHOLD), saved[1], saved[2])

    def restore() -> None:
        gc.set_threshold(*saved)
        gc.unfreeze()
    return restore


@contextlib.asynccontextmanager
async def running_sources(config: Config, sink: Pipeline, pool: asyncpg.Pool
                          ) -> AsyncIterator[None]:
    """Run the configured collection sources; on exit stop their intake and let each finish
    (commit and acknowledge) the batch it holds before the pool closes."""
    from billing_oss.adapters.sources import build_all

    stop = asyncio.Event()
    tasks = [asyncio.create_task(_supervised(source.name, source.run, stop),
                                 name=f"source-{source.name}")
             for source in build_all(config.sources, sink, pool)]
    try:
        yield
    finally:
        stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=30)
            for task in late:
                await _cancel(task)


@contextlib.asynccontextmanager
async def running_provisioning(config: Config, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Publish provisioning commands over MQTT while serving, when a broker is configured."""
    if not config.provisioning.enabled:
        yield
        return
    from billing_oss.server.integrations.provisioning import Publisher

    stop = asyncio.Event()
    task = asyncio.create_task(_supervised(
        "provisioning", Publisher(pool, config.provisioning).run, stop), name="provisioning")
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 10)
        await _cancel(task)


async def _supervised(name: str, run: Callable[[asyncio.Event], Awaitable[None]],
                      stop: asyncio.Event) -> None:
    """A source that fails unexpectedly is logged and started again after a pause."""
    while not stop.is_set():
        try:
            await run(stop)
        except Exception:
            log.exception("collection source failed; restarting", extra={"fields": {
                "source": name}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _listen(runner: web.AppRunner, config: Config, slot: WorkerSlot) -> None:
    if slot.listen_fd is not None:  # the supervisor's socket: every worker accepts from it
        await web.SockSite(runner, socket.socket(fileno=slot.listen_fd)).start()
        return
    host, port = config.http.host, config.http.port
    try:
        # reuse_port: processes started by hand on one port share it (Linux spreads the
        # connections over them)
        await web.TCPSite(runner, host, port, reuse_port=config.http.reuse_port or None).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"cannot listen on {host}:{port}: the port is already in use"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
