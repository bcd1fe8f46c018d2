"""Turning one received message (an MQTT publish, an HTTP body) into one ``Delivery``.

Shared by the message transports so a payload means the same whichever way it came. A
payload that cannot be parsed at all is kept as a single ``Reject`` (raw bytes, reason and
where it came from) so it reaches suspense instead of being dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from billing_oss.adapters import meters
from billing_oss.adapters.formats import payload
from billing_oss.core.contract import Delivery, Reject
from billing_oss.core.errors import DecodeError, Reason
from billing_oss.core.records import UsageRecord


def content_position(*parts: bytes) -> str:
    """A position naming the content itself: a redelivery of the same bytes finds it again."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:40]


async def to_delivery(
    pool: asyncpg.Pool, body: bytes, *, source: str, position: str, where: str,
    encoding: payload.Encoding | None = None, kind: str | None = None,
    key_prefix: str | None = None, strict: bool = False,
    on_decoded: Callable[[], Awaitable[None]] | None = None,
) -> Delivery:
    """Decode ``body``; with ``strict`` an unparseable body raises ``DecodeError`` (HTTP answers
    it with 400), otherwise it becomes a MALFORMED reject (MQTT keeps it in suspense).
    ``on_decoded`` runs once the body parsed, before anything of it (meter readings) is
    stored; what it raises ends the intake."""
    try:
        decoded = payload.decode(body, encoding)
    except (DecodeError, msgspec.MsgspecError) as exc:
        # a parser error the decoder did not translate is still the sender's bad input
        error = exc if isinstance(exc, DecodeError) else DecodeError(f"malformed payload: {exc}")
        if strict:
            raise error from None
        return refused(body, source=source, position=position, where=where,
                       why=error.message)
    return await decoded_delivery(pool, decoded, source=source, position=position, kind=kind,
                                  key_prefix=key_prefix, on_decoded=on_decoded)


async def decoded_delivery(
    pool: asyncpg.Pool, decoded: payload.Decoded, *, source: str, position: str,
    kind: str | None = None, key_prefix: str | None = None, own_sources: bool = False,
    on_decoded: Callable[[], Awaitable[None]] | None = None,
) -> Delivery:
    """The second half of ``to_delivery``, for a body another format decoded (CloudEvents);
    ``own_sources``: the records keep the sources they name."""
    if on_decoded is not None:
        await on_decoded()
    rejects = decoded.rejects
    rejects.extend(payload.complete(decoded.records, source=source, kind=kind,
                                    key_prefix=key_prefix, own_sources=own_sources))
    # filed under the transport's source, whatever source a rejected entry claims
    rejects = [msgspec.structs.replace(r, source=source) for r in rejects]
    records: list[UsageRecord] = list(decoded.records)
    if decoded.readings:
        from_meters, meter_rejects = await meters.to_records(pool, source, decoded.readings)
        records.extend(from_meters)
        rejects.extend(meter_rejects)
    return Delivery(source=source, position=position, records=records, rejects=rejects)


def refused(body: bytes, *, source: str, position: str, where: str, why: str) -> Delivery:
    """A message refused whole: one MALFORMED reject, kept in suspense under ``source``."""
    reject = Reject(reason=Reason.MALFORMED, detail=f"{where}: {why}", raw=body, where=where,
                    source=source)
    return Delivery(source=source, position=position, records=[], rejects=[reject])
