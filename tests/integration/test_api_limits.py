"""Input limits and hygiene: body size, request timeout, and no key in any log line."""

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from billing_oss.server.http.app import timeout_middleware
from billing_oss.server.http.keys import CONFIG
from billing_oss.server.http.problems import problem_middleware
from tests.conftest import free_port
from tests.integration.api_harness import Api, api  # noqa: F401


async def test_oversized_body_is_413_problem(api: Api) -> None:  # noqa: F811
    limit = api.app[CONFIG].http.max_body_bytes
    body = b'{"account_id": "' + b"x" * (limit + 1) + b'"}'
    status, problem = await api.call("POST", "/v1/accounts", data=body,
                                     content_type="application/json")
    assert status == 413 and problem["status"] == 413


async def test_slow_request_is_answered_503_with_retry_after() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application(middlewares=[problem_middleware, timeout_middleware(0.1)])
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/slow") as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert (await r.json())["code"] == "TIMEOUT"
    finally:
        await runner.cleanup()


async def test_no_key_in_any_log_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    secrets = [token.rsplit("_", 1)[1] for token in api.tokens.values()]
    for role in api.tokens:
        await api.call("GET", "/v1/accounts", role)
        await api.call("POST", "/v1/accounts", role, json={"account_id": "bad id"})
        await api.call("DELETE", "/v1/api-keys/0000000000000000", role)
    async with api.http.get(api.url + "/v1/accounts",
                            headers={"Authorization": "Bearer bok_0123456789abcdef_guess"}) as r:
        assert r.status == 401
    text = caplog.text
    assert all(secret not in text for secret in [*secrets, "guess"])
