"""Which of ``serve --workers N``'s processes this one is, and what that changes: its MQTT
client ids and shared subscriptions, and stopping when its supervisor is gone. The
supervisor itself is ``server.supervisor``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from billing_oss.core.sources_config import DEFAULT_SHARED_GROUP, MqttSource, SourceConfig

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Which worker this process is: its index among ``count``, and the inherited listening
    socket (a file descriptor) when the supervisor bound the port."""

    index: int = 0
    count: int = 1
    listen_fd: int | None = None


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


async def watch_parent(stop: asyncio.Event) -> None:
    """A worker whose supervisor is gone (killed) stops too, rather than run unsupervised."""
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("supervisor gone; stopping")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_S)
