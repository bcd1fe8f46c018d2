"""The one interface collection sources share, and the factory that builds them from config.

A source is a long-running task: ``run(stop)`` collects until ``stop`` is set, then finishes
(or leaves unacknowledged) what it has in hand and returns. Which transport a configured
source uses is its ``type`` (``[sources.<name>] type = "mqtt"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import asyncpg

from billing_oss.core.contract import Sink
from billing_oss.core.sources_config import MqttSource, SftpSource, SourceConfig


class Source(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


def build(name: str, config: SourceConfig, sink: Sink, pool: asyncpg.Pool) -> Source:
    if isinstance(config, MqttSource):
        from billing_oss.adapters.mqtt import MqttAdapter

        return MqttAdapter(name, config, sink, pool)
    if isinstance(config, SftpSource):
        from billing_oss.adapters.sftp import SftpPoller

        return SftpPoller(name, config, sink, pool)
    raise TypeError(f"no adapter for {type(config).__name__}")


def build_all(configs: Mapping[str, SourceConfig], sink: Sink, pool: asyncpg.Pool
              ) -> list[Source]:
    return [build(name, cfg, sink, pool) for name, cfg in configs.items() if cfg.enabled]
