"""CloudEvents 1.0 (HTTP protocol binding) as usage: each event is one usage record.

Three content modes reach ``POST /v1/usage``:

- structured: ``Content-Type: application/cloudevents+json``, the body one event object;
- batch: ``Content-Type: application/cloudevents-batch+json``, the body an array of them;
- binary: the attributes in ``ce-*`` headers, the body the event's ``data`` as it is
  (``application/json`` or MessagePack, by ``Content-Type``).

An event's ``id`` becomes the record's ``record_key`` and its ``source`` the record's
``source`` (CloudEvents makes ``source`` + ``id`` unique per event, which is the record's own
key: the same event twice is one record). ``data`` holds the usage fields (DESIGN.md §5b);
``time`` stands for ``event_time`` and the last dot-separated word of ``type`` for ``kind``
when ``data`` leaves them out. An envelope without a required attribute, or of another
``specversion``, refuses the whole request (``CloudEventError`` names the attribute); an
event whose ``data`` is not a valid record is a per-record reject, as in the plain batch.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import msgspec

from billing_oss.adapters.formats import payload
from billing_oss.core.contract import Reject
from billing_oss.core.errors import CloudEventError, DecodeError, Reason

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SPECVERSION = "1.0"
REQUIRED = ("specversion", "id", "source", "type")
HEADER_PREFIX = "ce-"
KINDS = frozenset({"voice", "sms", "data", "event"})


def is_cloudevent(content_type: str, headers: Mapping[str, str]) -> bool:
    """Whether a request carries CloudEvents (any of the three modes): any ``ce-*`` header
    makes it binary mode, so one without ``ce-specversion`` is refused naming it."""
    return content_type in (STRUCTURED, BATCH) or any(
        name.lower().startswith(HEADER_PREFIX) for name in headers)


def decode(content_type: str, headers: Mapping[str, str], body: bytes) -> payload.Decoded:
    """The request's events as records (source and record_key set) and rejects."""
    if content_type in (STRUCTURED, BATCH):
        parsed = _parse_json(body)
        if content_type == BATCH:
            if not isinstance(parsed, list):
                raise CloudEventError("a batch (application/cloudevents-batch+json) is a JSON"
                                      " array of events", attribute=None)
            events = [(_object(e, f"events[{i}]"), f"events[{i}]") for i, e in enumerate(parsed)]
        else:
            events = [(_object(parsed, "event"), "event")]
        out = payload.Decoded()
        for event, where in events:
            _add(out, _envelope(event, where), _structured_data(event, where), where)
        return out
    attributes = {name[len(HEADER_PREFIX):].lower(): value for name, value in headers.items()
                  if name.lower().startswith(HEADER_PREFIX)}
    out = payload.Decoded()
    _add(out, _envelope(attributes, "headers"), _binary_data(content_type, body), "event")
    return out


def _parse_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(f"the body nests deeper than {payload.MAX_DEPTH} levels") from None


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CloudEventError(f"{where}: an event is a JSON object", attribute=None)
    return value


def _envelope(attributes: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The context attributes checked: the required ones present, non-empty strings, and
    ``specversion`` 1.0. ``where`` names the event (``events[3]``) or ``headers``."""
    for name in REQUIRED:
        value = attributes.get(name)
        shown = f"ce-{name}" if where == "headers" else name
        if value is None or value == "":
            raise CloudEventError(f"{where}: the required attribute {shown!r} is missing",
                                  attribute=name)
        if not isinstance(value, str):
            raise CloudEventError(f"{where}: the attribute {shown!r} must be a string",
                                  attribute=name)
    if attributes["specversion"] != SPECVERSION:
        raise CloudEventError(
            f"{where}: specversion {attributes['specversion']!r} is not supported; only"
            f" {SPECVERSION!r} is", attribute="specversion")
    return dict(attributes)


def _structured_data(event: dict[str, Any], where: str) -> Any:
    if "data_base64" in event:
        try:
            raw = base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise CloudEventError(f"{where}: data_base64 is not valid base64",
                                  attribute="data_base64") from None
        return _binary_data(str(event.get("datacontenttype", "application/json")), raw)
    return event.get("data")


def _binary_data(content_type: str, body: bytes) -> Any:
    media = content_type.split(";", 1)[0].strip().lower()
    encoding = payload.CONTENT_TYPES.get(media)
    if encoding is None and not media.endswith("+json"):
        raise CloudEventError(f"data of content type {media!r} is not usage; send JSON or"
                              " MessagePack", attribute="datacontenttype")
    try:
        if encoding == "msgpack":
            return msgspec.msgpack.decode(body)
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"the event's data is not valid: {exc}") from None
    except RecursionError:
        raise DecodeError(f"the data nests deeper than {payload.MAX_DEPTH} levels") from None


def _add(out: payload.Decoded, envelope: dict[str, Any], data: Any, where: str) -> None:
    """One event into a record, or a reject naming the event and field."""
    if not isinstance(data, dict):
        out.rejects.append(Reject(reason=Reason.BAD_FIELD,
                                  detail=f"{where}: data must be an object of usage fields",
                                  raw=msgspec.json.encode(envelope), where=f"{where}.data"))
        return
    fields = dict(data)
    fields["record_key"] = envelope["id"]
    fields["source"] = envelope["source"]
    if "event_time" not in fields and isinstance(envelope.get("time"), str):
        fields["event_time"] = envelope["time"]
    if "kind" not in fields:
        kind = envelope["type"].rsplit(".", 1)[-1]
        if kind in KINDS:
            fields["kind"] = kind
    try:
        out.records.append(msgspec.convert(fields, payload.RecordIn))
    except msgspec.ValidationError as exc:
        out.rejects.append(Reject(reason=Reason.BAD_FIELD, detail=f"{where}.data: {exc}",
                                  raw=msgspec.json.encode(fields), where=f"{where}.data"))
