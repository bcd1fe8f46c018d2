"""The HTTP application ``serve`` runs: the API (``server.http``) with the operator console
mounted under ``/console`` (``server.console``), which renders through the API's functions."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from billing_oss.server.config import Config
from billing_oss.server.console.web import create_console
from billing_oss.server.http.app import create_api_app
from billing_oss.server.pipeline.pipeline import Pipeline


def create_app(
    config: Config, pool: asyncpg.Pool, pipeline: Pipeline | None = None
) -> web.Application:
    app = create_api_app(config, pool, pipeline)
    app.add_subapp("/console", create_console(config.console))
    return app
