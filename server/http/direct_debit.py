"""SEPA direct-debit resources: `/v1/mandates` (an account's mandate) and
`/v1/direct-debits` (a pain.008 batch of what mandated accounts owe, and its XML file).
Rules in ``server.collections.direct_debit``; viewers read, operators act."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from billing_oss.core.errors import ConfigError, Conflict
from billing_oss.server.collections import direct_debit, repo
from billing_oss.server.collections.direct_debit import Batch
from billing_oss.server.collections.model import Mandate
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, IntId
from billing_oss.server.http.validation import decode_body, decode_path, decode_query

Iban = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                   examples=["DE89 3704 0044 0532 0130 00"])]
Bic = Annotated[str, msgspec.Meta(min_length=1, max_length=16, examples=["COBADEFFXXX"])]


class MandateIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: Id
    mandate_id: Annotated[str, msgspec.Meta(min_length=1, max_length=35,
                                            pattern="^[A-Za-z0-9+?/:().,' -]+$")]
    iban: Iban
    bic: Bic | None = None
    signed_on: dt.date
    sequence_type: Literal["FRST", "RCUR", "OOFF", "FNAL"] = "FRST"


class MandatePath(msgspec.Struct, frozen=True):
    account_id: Id


class MandateQuery(msgspec.Struct, frozen=True, kw_only=True):
    limit: Limit = 50
    cursor: Cursor | None = None


class MandatePage(msgspec.Struct, frozen=True):
    items: list[Mandate]
    next_cursor: str | None


class CollectIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    due_by: dt.date  # invoices due on or before
    collection_date: dt.date | None = None  # absent: tomorrow (UTC)


class BatchPath(msgspec.Struct, frozen=True):
    batch_id: IntId


async def put_mandate(request: web.Request) -> web.Response:
    body = await decode_body(request, MandateIn)
    stored = await direct_debit.put_mandate(request.app[POOL], actor(request), Mandate(
        account_id=body.account_id, mandate_id=body.mandate_id, iban=body.iban, bic=body.bic,
        signed_on=body.signed_on, sequence_type=body.sequence_type))
    return reply(stored)


async def get_mandate(request: web.Request) -> web.Response:
    path = decode_path(request, MandatePath)
    return reply(await direct_debit.get_mandate(request.app[POOL], path.account_id))


async def list_mandates(request: web.Request) -> web.Response:
    q = decode_query(request, MandateQuery)
    after = decode_cursor(q.cursor, tuple[Id])
    rows = await repo.mandates(request.app[POOL], after[0] if after else None, q.limit)
    items, next_cursor = page(rows, q.limit, lambda m: (m.account_id,))
    return reply(MandatePage(items, next_cursor))


async def collect(request: web.Request) -> web.Response:
    body = await decode_body(request, CollectIn)
    try:
        creditor = direct_debit.creditor_from(request.app[CONFIG])
    except ConfigError as exc:  # the server's set-up, not the request, is wrong: say so
        raise Conflict(f"this server cannot collect by direct debit: {exc.message}") from None
    on = body.collection_date or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    batch = await direct_debit.collect(request.app[POOL], actor(request), creditor,
                                       body.due_by, on)
    if batch is None:
        return web.Response(status=204)
    return reply(msgspec.structs.replace(batch, document=""), status=201)


async def get_batch_file(request: web.Request) -> web.Response:
    path = decode_path(request, BatchPath)
    document = await direct_debit.batch_document(request.app[POOL], path.batch_id)
    return web.Response(body=document.encode(), content_type="application/xml")


def register(api: Api) -> None:
    tag = "collections"
    api.add("PUT", "/v1/mandates", put_mandate,
            summary="Store an account's SEPA direct-debit mandate (IBAN and BIC checked; "
            "replaces the account's previous one)", tag=tag, request=MandateIn,
            response=Mandate, roles=("operator",), errors=(404, 409))
    api.add("GET", "/v1/mandates", list_mandates, summary="SEPA mandates by account",
            tag=tag, query=MandateQuery, response=MandatePage, roles=("viewer",))
    api.add("GET", "/v1/mandates/{account_id}", get_mandate, summary="An account's mandate",
            tag=tag, params=MandatePath, response=Mandate, roles=("viewer",), errors=(404,))
    api.add("POST", "/v1/direct-debits", collect,
            summary="Debit mandated accounts for their open invoices due by a date: a "
            "pain.008 batch (validated against its XSD) whose debits are recorded as "
            "payments; 204 when nobody owes anything", tag=tag, request=CollectIn,
            response=Batch, status=201, also=(204,), roles=("operator",), errors=(409,))
    api.add("GET", r"/v1/direct-debits/{batch_id:\d+}.xml", get_batch_file,
            summary="A batch's pain.008 document, as sent", tag=tag, params=BatchPath,
            response=bytes, content_type="application/xml", roles=("viewer",),
            errors=(404,))
