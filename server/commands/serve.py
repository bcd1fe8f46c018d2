"""`billing-oss serve`: run the server until SIGINT/SIGTERM, then shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from billing_oss.core.errors import ConfigError
from billing_oss.server import config as config_module
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import serve
from billing_oss.server.supervisor import supervise
from billing_oss.server.workers import WorkerSlot, supervised

MAX_WORKERS = 64


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "serve", help="start the server",
        description="Start the server. With no configuration: embedded PostgreSQL under "
        "./var/, HTTP on 127.0.0.1:8080, demo catalog loaded.",
    )
    add_config_options(parser)
    parser.add_argument("--host", help="HTTP listen address (http.host)")
    parser.add_argument("--port", type=int, help="HTTP listen port (http.port)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="worker processes sharing the HTTP port, MQTT messages, SFTP "
                        "files and jobs, under one supervisor (default 1: no supervisor)")
    # Set by the supervisor on the command lines of its workers.
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: must be 1..{MAX_WORKERS}, not {args.workers}")
    config = load_config(args)
    if args.worker_index is not None:
        config = supervised(config)
        slot = WorkerSlot(args.worker_index, args.workers, args.listen_fd,
                          args.supervisor_pid)
        asyncio.run(_serve_until_signalled(config, slot))
        return 0
    if args.workers > 1:
        return asyncio.run(_supervise_until_signalled(config, args.workers,
                                                      _worker_argv(args, config)))
    asyncio.run(_serve_until_signalled(config, WorkerSlot()))
    return 0


async def _serve_until_signalled(config: config_module.Config, slot: WorkerSlot) -> None:
    await serve(config, _stop_on_signals(), slot=slot)


async def _supervise_until_signalled(config: config_module.Config, count: int,
                                     argv: list[str]) -> int:
    return await supervise(config, count, argv, _stop_on_signals())


def _worker_argv(args: argparse.Namespace, config: config_module.Config) -> list[str]:
    """The options a worker is started with (the supervisor adds its index, the database
    and the socket)."""
    argv = ["serve", "--workers", str(args.workers), "--host", config.http.host,
            "--port", str(config.http.port)]
    if args.config:
        argv += ["--config", args.config]
    if args.log_level:
        argv += ["--log-level", args.log_level]
    return argv


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
