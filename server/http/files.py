"""`/v1/files`: the source file ledger — per-file counts, and sequence gaps per source."""

from __future__ import annotations

from typing import Literal

import msgspec
from aiohttp import web

from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import IntId, Text
from billing_oss.server.http.validation import decode_path, decode_query
from billing_oss.server.store import files_repo
from billing_oss.server.store.files_repo import Gap, SourceFile


class FileQuery(msgspec.Struct, frozen=True, kw_only=True):
    source: Text | None = None
    partner: Text | None = None
    state: Literal["claimed", "done", "error"] | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class GapQuery(msgspec.Struct, frozen=True, kw_only=True):
    source: Text | None = None
    limit: Limit = 50


class FilePath(msgspec.Struct, frozen=True):
    source_file_id: IntId


class FilePage(msgspec.Struct, frozen=True):
    items: list[SourceFile]
    next_cursor: str | None


class GapList(msgspec.Struct, frozen=True):
    items: list[Gap]


async def list_files(request: web.Request) -> web.Response:
    q = decode_query(request, FileQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await files_repo.find(request.app[POOL], source=q.source, state=q.state,
                                 partner=q.partner, after=after[0] if after else None,
                                 limit=q.limit)
    items, next_cursor = page(rows, q.limit, lambda f: (f.source_file_id,))
    return reply(FilePage(items, next_cursor))


async def get_file(request: web.Request) -> web.Response:
    path = decode_path(request, FilePath)
    return reply(await files_repo.get(request.app[POOL], path.source_file_id))


async def list_gaps(request: web.Request) -> web.Response:
    q = decode_query(request, GapQuery)
    return reply(GapList(await files_repo.gaps(request.app[POOL], source=q.source,
                                               limit=q.limit)))


def register(api: Api) -> None:
    tag = "files"
    api.add("GET", "/v1/files", list_files, summary="List received source files with counts",
            tag=tag, query=FileQuery, response=FilePage, roles=("viewer",))
    api.add("GET", "/v1/files/gaps", list_gaps,
            summary="Sequence numbers missing between received files, per source", tag=tag,
            query=GapQuery, response=GapList, roles=("viewer",))
    api.add("GET", "/v1/files/{source_file_id}", get_file, summary="Read one file's entry",
            tag=tag, params=FilePath, response=SourceFile, roles=("viewer",))
