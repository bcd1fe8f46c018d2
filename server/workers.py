"""Which of ``serve --workers N``'s processes this one is, and what that changes: its
configuration (the supervisor's database), its MQTT client ids and shared subscriptions, and
stopping when its supervisor is gone. The supervisor itself is ``server.supervisor``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from billing_oss.core.errors import ConfigError
from billing_oss.core.sources_config import DEFAULT_SHARED_GROUP, MqttSource, SourceConfig
from billing_oss.server.config import ENV_PREFIX, Config

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0
# The database the supervisor prepared, for its workers. Not BILLING_OSS_DATABASE_URL: that
# would make a worker of the quickstart (embedded database, no database URL) leave out the
# demo configuration its supervisor runs with. No configuration section reads this name.
ENV_DATABASE_URL = f"{ENV_PREFIX}SUPERVISED_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Which worker this process is: its index among ``count``, and the inherited listening
    socket (a file descriptor) when the supervisor bound the port."""

    index: int = 0
    count: int = 1
    listen_fd: int | None = None
    supervisor_pid: int | None = None  # the process that started this one, watched


SINGLE = WorkerSlot()


def sources_for(sources: Mapping[str, SourceConfig], slot: WorkerSlot
                ) -> dict[str, SourceConfig]:
    """The sources as this worker runs them: with several workers, MQTT subscriptions are
    shared and each worker has its own client id (its persistent session)."""
    if slot.count <= 1:
        return dict(sources)
    mine: dict[str, SourceConfig] = {}
    for name, config in sources.items():
        if isinstance(config, MqttSource):
            base = config.client_id or f"billing-oss-{name}"
            config = msgspec.structs.replace(
                config, client_id=base if slot.index == 0 else f"{base}-w{slot.index}",
                shared_group=config.shared_group or DEFAULT_SHARED_GROUP)
        mine[name] = config
    return mine


def supervised(config: Config, env: Mapping[str, str] | None = None) -> Config:
    """A worker's configuration: read as its supervisor read it (same file, environment and
    flags), on the database the supervisor prepared."""
    url = (os.environ if env is None else env).get(ENV_DATABASE_URL)
    if not url:
        raise ConfigError(f"--worker-index: a worker is started by serve --workers, which "
                          f"sets {ENV_DATABASE_URL}")
    return msgspec.structs.replace(
        config, database=msgspec.structs.replace(config.database, url=url))


async def watch_parent(stop: asyncio.Event, parent: int) -> None:
    """A worker whose supervisor ``parent`` is gone (killed) stops too, rather than run
    unsupervised. The pid comes from the supervisor: one read here at start would already be
    init's (or a subreaper's) when the supervisor died while this process was starting."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("supervisor gone; stopping")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_S)
