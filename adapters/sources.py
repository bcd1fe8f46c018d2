"""The one interface collection sources share, and the factory that builds them from config.

A source is a long-running task: ``run(stop)`` collects until ``stop`` is set, then finishes
(or leaves unacknowledged) what it has in hand and returns. Which transport a configured
source uses is its ``type`` (``[sources.<name>] type = "mqtt"``).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

import asyncpg

from billing_oss.adapters.formats.options import parse_options
from billing_oss.core.contract import Sink
from billing_oss.core.errors import ConfigError
from billing_oss.core.sources_config import SourceConfig


class Source(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


def check_format(name: str, config: SourceConfig, known: Collection[str]) -> None:
    """A source that reads files (its config has a ``format``) names a format some decoder
    reads, and only options that format takes (typed as it declares them), or it does not
    start: the error names the source's key and the known formats or the bad option."""
    fmt = getattr(config, "format", None)
    if fmt is None:
        return
    if fmt not in known:
        raise ConfigError(f"sources.{name}.format: unknown format {fmt!r} "
                          f"(known: {', '.join(sorted(known))})")
    options = getattr(config, "options", None)
    if options:
        try:
            parse_options(fmt, options)
        except ConfigError as exc:
            raise ConfigError(f"sources.{name}.options: {exc.message}") from None


def check_formats(configs: Mapping[str, SourceConfig], known: Collection[str]) -> None:
    for name, config in configs.items():
        check_format(name, config, known)


def build(name: str, config: SourceConfig, sink: Sink, pool: asyncpg.Pool) -> Source:
    """The adapter the config's transport names (``adapter = "module:Class"``)."""
    module, _, cls = config.adapter.partition(":")
    adapter: Callable[[str, Any, Sink, asyncpg.Pool], Source] = getattr(
        importlib.import_module(module), cls)
    return adapter(name, config, sink, pool)


def build_all(configs: Mapping[str, SourceConfig], sink: Sink, pool: asyncpg.Pool
              ) -> list[Source]:
    check_formats(configs, sink.formats)
    return [build(name, cfg, sink, pool) for name, cfg in configs.items() if cfg.enabled]
