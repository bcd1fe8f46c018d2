"""`POST /v1/psp/events`: a payment service provider's signed webhook (Standard Webhooks,
secret ``collections.psp_webhook_secret``). No API key: the signature is the credential; an
event that does not verify is a 401 and nothing is read or written. Rules in
``server.collections.psp``."""

from __future__ import annotations

from aiohttp import web

from billing_oss.core.errors import ErrorCode
from billing_oss.server.collections import psp
from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.problems import problem_for
from billing_oss.server.http.routing import Api, reply


async def receive_psp_event(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    try:
        event_id = psp.verify(request.app[CONFIG].collections.psp_webhook_secret, body,
                              {k.lower(): v for k, v in request.headers.items()})
    except psp.BadSignature as exc:
        return problem_for(ErrorCode.UNAUTHORIZED, "Unauthorized", str(exc),
                           instance=request.path)
    outcome = await psp.handle(request.app[POOL], f"psp:{event_id}", event_id, body)
    return reply(outcome, status=201 if outcome.status == "recorded" else 200)


def register(api: Api) -> None:
    api.add("POST", "/v1/psp/events", receive_psp_event,
            summary="A PSP's signed webhook event (Standard Webhooks): payment.succeeded "
            "records a card payment allocated like any other (201), the same event id again "
            "changes nothing (200); a bad signature is 401", tag="collections",
            request=psp.PaymentEvent, response=psp.Outcome, status=201, also=(200,),
            errors=(401, 404, 409, 422))
