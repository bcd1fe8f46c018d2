"""Every documented admin route: 401 without a valid key, 403 for each role it does not
grant, never 401/403 for the roles it does (derived from the OpenAPI document itself)."""

import re
from typing import Any

import pytest

from billing_oss.server.http.auth import GRANTS
from tests.integration.api_harness import ROLES, Api, api  # noqa: F401

SAMPLE_PATH_VALUES = {"account_id": "A1", "subscription_id": "1", "tariff_id": "T1",
                      "version_id": "1", "suspense_id": "1", "rerate_job_id": "1",
                      "source_file_id": "1", "key_id": "0000000000000000"}


async def protected_routes(client: Api) -> list[tuple[str, str, list[str]]]:
    status, doc = await client.call("GET", "/v1/openapi.json", role=None)
    assert status == 200
    return [(method.upper(), path, op["x-roles"])
            for path, ops in doc["paths"].items() for method, op in ops.items()
            if "x-roles" in op]


def concrete(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: SAMPLE_PATH_VALUES.get(m.group(1), "1"), path)


async def test_every_admin_route_is_protected(api: Api) -> None:  # noqa: F811
    routes = await protected_routes(api)
    assert len(routes) >= 20
    for method, path, _ in routes:
        for header in ({}, {"Authorization": "Bearer bok_0000000000000000_x"}):
            async with api.http.request(method, api.url + concrete(path), headers=header) as r:
                assert r.status == 401, (method, path)
                assert r.content_type == "application/problem+json"


@pytest.mark.parametrize("role", ROLES)
async def test_roles_per_route(api: Api, role: str) -> None:  # noqa: F811
    for method, path, roles in await protected_routes(api):
        granted = bool(GRANTS[role] & set(roles))
        body: Any = {} if method in ("POST", "PATCH", "PUT") else None
        status, problem = await api.call(method, concrete(path), role=role, json=body)
        if granted:
            assert status not in (401, 403), (role, method, path, problem)
        else:
            assert status == 403, (role, method, path, status)
            assert problem["code"] == "FORBIDDEN"


async def test_viewer_cannot_write_and_operator_cannot_manage_keys(api: Api) -> None:  # noqa: F811
    status, _ = await api.call("POST", "/v1/accounts", "viewer", json={"account_id": "V1"})
    assert status == 403
    status, _ = await api.call("POST", "/v1/api-keys", "operator", json={"role": "admin"})
    assert status == 403
    status, _ = await api.call("GET", "/v1/accounts", "ingest")
    assert status == 403
