"""API keys and roles, enforced on routes that declare them, against the real database."""

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from billing_oss.server.http.auth import KEY_CACHE, KeyCache
from billing_oss.server.http.keys import POOL, PRINCIPAL
from billing_oss.server.http.problems import problem_middleware
from billing_oss.server.http.routing import Api
from billing_oss.server.store import api_keys
from tests.conftest import free_port


def whoami(name: str):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"key_id": request[PRINCIPAL].key_id})

    handler.__name__ = name
    return handler


@pytest.fixture(scope="module")
async def base_url(pool: asyncpg.Pool) -> AsyncIterator[str]:
    api = Api("t", "1")
    for path, roles in [("/read", ("viewer",)), ("/operate", ("operator",)),
                        ("/admin", ("admin",)), ("/ingest", ("ingest",))]:
        api.add("GET", path, whoami(path[1:]), summary=path, tag="t", roles=roles)
    app = web.Application(middlewares=[problem_middleware])
    app[POOL] = pool
    app[KEY_CACHE] = KeyCache()
    api.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


EXPECTED = {  # role → status for /read, /operate, /admin, /ingest
    "admin": (200, 200, 200, 200),
    "operator": (200, 200, 403, 403),
    "viewer": (200, 403, 403, 403),
    "ingest": (403, 403, 403, 200),
    "customer": (403, 403, 403, 403),  # a customer key serves only routes declaring customer
}


@pytest.mark.parametrize("role", list(EXPECTED))
async def test_role_grants(pool: asyncpg.Pool, base_url: str, role: api_keys.Role) -> None:
    account = None
    if role == "customer":
        account = "AUTH-C"
        await pool.execute("INSERT INTO accounts (account_id) VALUES ($1)"
                           " ON CONFLICT DO NOTHING", account)
    new = await api_keys.create(pool, role, name=f"test {role}", account_id=account)
    headers = {"Authorization": f"Bearer {new.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        statuses = []
        for path in ("/read", "/operate", "/admin", "/ingest"):
            async with http.get(base_url + path) as r:
                statuses.append(r.status)
                if r.status == 200:
                    assert (await r.json())["key_id"] == new.key.key_id
                else:
                    assert r.content_type == "application/problem+json"
                    assert (await r.json())["code"] == "FORBIDDEN"
    assert tuple(statuses) == EXPECTED[role]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer bok_0000000000000000_nope", "Bearer garbage"],
)
async def test_missing_or_wrong_key_is_401(base_url: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with aiohttp.ClientSession() as http, http.get(base_url + "/read", headers=headers) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await r.json())["code"] == "UNAUTHORIZED"


async def test_right_id_wrong_secret_and_revoked_keys_fail(pool: asyncpg.Pool) -> None:
    new = await api_keys.create(pool, "viewer")
    assert await api_keys.verify(pool, new.token) == new.key.__class__(
        key_id=new.key.key_id, role="viewer", name="", source=None)
    forged = new.token[:-4] + ("AAAA" if not new.token.endswith("AAAA") else "BBBB")
    assert await api_keys.verify(pool, forged) is None
    assert await api_keys.revoke(pool, new.key.key_id)
    assert await api_keys.verify(pool, new.token) is None
    assert not await api_keys.revoke(pool, new.key.key_id)


async def test_only_a_hash_is_stored(pool: asyncpg.Pool) -> None:
    new = await api_keys.create(pool, "admin")
    secret = new.token.rsplit("_", 1)[1]
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", new.key.key_id)
    assert row is not None
    assert all(secret not in str(value) for value in row.values())
    assert len(row["secret_sha256"]) == 32
