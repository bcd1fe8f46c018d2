"""A signed-in console client over the live API harness (``api_harness.live_api``)."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from tests.integration.api_harness import Api

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Console:
    """One browser-like client: a cookie jar, and the CSRF token of its last page."""

    def __init__(self, api: Api) -> None:
        self.url = api.url
        # unsafe: the cookie jar keeps cookies of an IP host (127.0.0.1) too
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def sign_in(self, token: str) -> int:
        async with self.http.get(self.url + "/console/sign-in") as r:
            form_token = CSRF.search(await r.text())
        assert form_token is not None
        async with self.http.post(self.url + "/console/sign-in", data={
                "csrf": form_token.group(1), "api_key": token, "next": "/console/"},
                allow_redirects=False) as r:
            status = r.status
        if status == 302:
            await self.get("/console/")
        return status

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.http.get(self.url + path, allow_redirects=False, **kw) as r:
            body = await r.text()
            if r.status == 302:
                return r.status, r.headers["Location"]
        found = CSRF.search(body)
        if found:
            self.csrf = found.group(1)
        return r.status, body

    async def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]], *,
                   csrf: bool = True, headers: dict[str, str] | None = None) -> tuple[int, str]:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            fields.append(("csrf", self.csrf))
        async with self.http.post(self.url + path, data=fields, allow_redirects=False,
                                  headers=headers) as r:
            body = await r.text()
            return r.status, r.headers.get("Location", body) if r.status in (302, 303) \
                else body
