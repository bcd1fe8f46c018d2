"""Routes declared once, with the types that describe them, so the OpenAPI document and the
router cannot drift apart. Route modules call ``api.add(...)``; ``api.install(app)`` wires
aiohttp; ``api.openapi()`` renders the OpenAPI 3.1 document from the same declarations.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: Any = None
    status: int = 200
    also: tuple[int, ...] = ()  # other success statuses with the same response body
    alternatives: tuple[tuple[int, Any], ...] = ()  # (status, response) with another body
    request: Any = None
    query: Any = None
    params: Any = None  # a Struct whose fields are the path parameters
    content_type: str = "application/json"
    roles: tuple[str, ...] | None = None  # None: public, no key needed
    errors: tuple[int, ...] = ()
    openapi: bool = True  # False: left out of the document (the SOAP routes: XML, a WSDL)


class Api:
    def __init__(self, title: str, version: str) -> None:
        self.title = title
        self.version = version
        self.operations: list[Operation] = []

    def add(self, method: str, path: str, handler: Handler, **spec: Any) -> None:
        op = Operation(method=method.upper(), path=path, handler=handler, **spec)
        if any(_operation_id(o) == _operation_id(op) for o in self.operations):
            raise ValueError(f"two routes share the operation id {_operation_id(op)!r}")
        self.operations.append(op)

    def install(self, app: web.Application) -> None:
        from billing_oss.server.http.auth import protect

        for op in self.operations:
            handler = protect(op.handler, op.roles) if op.roles else op.handler
            app.router.add_route(op.method, op.path, handler, name=_operation_id(op))

    def openapi(self) -> dict[str, Any]:
        types = {t for op in self.operations if op.openapi
                 for t in (op.response, op.request, *(r for _, r in op.alternatives))
                 if _is_struct(t)}
        schemas, components = msgspec.json.schema_components(
            sorted(types, key=lambda t: t.__name__), ref_template="#/components/schemas/{name}"
        )
        refs = dict(zip(sorted(types, key=lambda t: t.__name__), schemas, strict=True))
        paths: dict[str, dict[str, Any]] = {}
        for op in (o for o in self.operations if o.openapi):
            paths.setdefault(openapi_path(op.path), {})[op.method.lower()] = _operation(op, refs)
        hooks, event_schemas = _webhooks()
        doc: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "webhooks": hooks,
            "components": {
                "schemas": {**components, **event_schemas, "Problem": _PROBLEM_SCHEMA},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }
        return doc


def _webhooks() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI ``webhooks`` section: one POST per registered domain event type, its body
    the delivery envelope around the event's payload (schemas named ``event.<Class>``)."""
    from billing_oss.server.integrations.events import REGISTRY

    types = sorted(REGISTRY.items())
    schemas, components = msgspec.json.schema_components(
        [t for _, t in types], ref_template="#/components/schemas/event.{name}")
    hooks: dict[str, Any] = {}
    for (name, event), schema in zip(types, schemas, strict=True):
        envelope = {
            "type": "object",
            "required": ["id", "type", "version", "timestamp", "account_id", "stream", "seq",
                         "data"],
            "properties": {
                "id": {"type": "string", "description": "the event's id (webhook-id)"},
                "type": {"const": name}, "version": {"const": event.event_version},
                "timestamp": {"type": "string", "format": "date-time"},
                "account_id": {"type": ["string", "null"]},
                "stream": {"type": "string"}, "seq": {"type": "integer"},
                "data": schema,
            },
        }
        signed = [{"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                  for h in ("webhook-id", "webhook-timestamp", "webhook-signature")]
        hooks[name] = {"post": {
            "operationId": f"event_{name.replace('.', '_')}",
            "summary": (event.__doc__ or name).strip().split("\n\n")[0].replace("\n", " "),
            "parameters": signed,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": envelope}}},
            "responses": {"2XX": {"description": "received; any other answer is retried"}},
        }}
    return hooks, {f"event.{k}": v for k, v in components.items()}


def reply(value: Any, status: int = 200,
          headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded by msgspec (RFC 3339 timestamps, decimal strings as given)."""
    return web.Response(body=msgspec.json.encode(value), status=status,
                        content_type="application/json", headers=headers)


def openapi_path(path: str) -> str:
    """The OpenAPI template of an aiohttp path: ``{id:\\d+}`` becomes ``{id}``."""
    return re.sub(r"{(\w+):[^}]+}", r"{\1}", path)


def _is_struct(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, msgspec.Struct)


def _operation_id(op: Operation) -> str:
    return op.handler.__name__


def _operation(op: Operation, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": _operation_id(op), "summary": op.summary, "tags": [op.tag],
    }
    path_schemas = _fields_schema(op.params).get("properties", {}) if op.params else {}
    params = [
        {"name": name, "in": "path", "required": True,
         "schema": path_schemas.get(name, {"type": "string"})}
        for name in _path_params(op.path)
    ]
    if _is_struct(op.query):
        schema = _fields_schema(op.query)
        required = set(schema.get("required", []))
        params += [
            {"name": name, "in": "query", "required": name in required,
             "schema": _not_null(prop)}
            for name, prop in schema.get("properties", {}).items()
        ]
    if params:
        out["parameters"] = params
    if op.request is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs.get(op.request, {})}},
        }
    ok: dict[str, Any] = {"description": "OK"}
    if op.response is not None:
        schema = refs.get(op.response) or {"type": "object" if op.response is dict else "string"}
        ok["content"] = {op.content_type: {"schema": schema}}
    responses: dict[str, Any] = {str(status): ok for status in (op.status, *op.also)}
    for status, response in op.alternatives:
        responses[str(status)] = {"description": "OK", "content": {
            op.content_type: {"schema": refs[response]}}}
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    codes = set(op.errors) | ({401, 403, 503} if op.roles else set())
    if op.request is not None:
        codes |= {400, 413, 415, 422}
    if op.query is not None:
        codes |= {400, 422}
    if op.params is not None or _path_params(op.path):
        codes |= {400, 404}
    for code in sorted(codes):
        responses[str(code)] = {"description": "Problem", "content": problem}
    out["responses"] = responses
    if op.roles:
        out["security"] = [{"bearer": []}]
        out["x-roles"] = list(op.roles)
    return out


def _fields_schema(struct: Any) -> dict[str, Any]:
    """A flat struct's object schema (msgspec puts it behind a ``$ref`` into ``$defs``)."""
    schema: dict[str, Any] = msgspec.json.schema(struct)
    ref = schema.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[-1]] if ref else schema


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value: drop the ``null`` alternative msgspec adds."""
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        return options[0]  # type: ignore[no-any-return]
    return {k: v for k, v in schema.items() if not (k == "default" and v is None)}


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "path": {"type": "string"},
                           "message": {"type": "string"}},
        }},
    },
}
