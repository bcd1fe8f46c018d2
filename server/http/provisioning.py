"""`POST /v1/accounts/{account_id}/provisioning`: an operator's provisioning command
(suspend, resume, terminate) for an account's network service, published over MQTT like
dunning's (``server.integrations.provisioning``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id
from billing_oss.server.http.validation import decode_body, decode_path
from billing_oss.server.integrations import provisioning


class AccountPath(msgspec.Struct, frozen=True):
    account_id: Id


class CommandIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    action: Literal["suspend", "resume", "terminate"]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class CommandOut(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    account_id: str
    action: str
    command_topic: str
    state_topic: str


async def post_provisioning_command(request: web.Request) -> web.Response:
    path = decode_path(request, AccountPath)
    body = await decode_body(request, CommandIn)
    event_id = await provisioning.send(request.app[POOL], actor(request), path.account_id,
                                       body.action, body.reason)
    prefix = request.app[CONFIG].provisioning.topic_prefix
    return reply(CommandOut(event_id=event_id, account_id=path.account_id, action=body.action,
                            command_topic=f"{prefix}/{path.account_id}/command",
                            state_topic=f"{prefix}/{path.account_id}/state"), status=202)


def register(api: Api) -> None:
    api.add("POST", "/v1/accounts/{account_id}/provisioning", post_provisioning_command,
            summary="Send a provisioning command (suspend, resume, terminate) to the account's"
            " network elements over MQTT, in order after any before it", tag="provisioning",
            params=AccountPath, request=CommandIn, response=CommandOut, status=202,
            roles=("operator",), errors=(404, 422))
