"""`billing-oss serve`: run the server until SIGINT/SIGTERM, then shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from billing_oss.server import config as config_module
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import serve


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "serve", help="start the server",
        description="Start the server. With no configuration: embedded PostgreSQL under "
        "./var/, HTTP on 127.0.0.1:8080, demo catalog loaded.",
    )
    add_config_options(parser)
    parser.add_argument("--host", help="HTTP listen address (http.host)")
    parser.add_argument("--port", type=int, help="HTTP listen port (http.port)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    asyncio.run(_serve_until_signalled(config))
    return 0


async def _serve_until_signalled(config: config_module.Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)
