"""Domain events: one msgspec Struct per event type, registered by its ``type`` name.

A module that emits an event declares its type once, next to the code that causes it::

    class PaymentReceived(DomainEvent, frozen=True, kw_only=True):
        event_type: ClassVar[str] = "payment.received"
        event_version: ClassVar[int] = 1
        payment_id: int
        amount: str          # decimal string, never a float
        currency: str

and emits it in the transaction of the change (``server.integrations.outbox.emit``). The
registry gives the webhooks section of the OpenAPI document one schema per type, and lets a
consumer decode a stored payload back into its type.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

REGISTRY: dict[str, type[DomainEvent]] = {}


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event payload. A subclass sets ``event_type`` (registered once: two
    classes claiming one name is a bug) and ``event_version`` (≥ 1, raised when the payload
    changes incompatibly)."""

    event_type: ClassVar[str] = ""
    event_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("event_type", "")
        if not name:
            return  # an abstract intermediate class
        if name in REGISTRY:
            raise TypeError(f"domain event type {name!r} is declared twice "
                            f"({REGISTRY[name].__module__} and {cls.__module__})")
        if cls.event_version < 1:
            raise TypeError(f"domain event {name!r}: event_version must be ≥ 1")
        REGISTRY[name] = cls


def decode(type: str, payload: bytes) -> DomainEvent:
    """A stored payload back into its registered type (``KeyError`` for an unknown type)."""
    return msgspec.json.decode(payload, type=REGISTRY[type])


# Analytics (server.analytics.anomalies) -------------------------------------------------

class AnomalyFlagged(DomainEvent, frozen=True, kw_only=True):
    """A detector found an account × service's usage or money far from its baseline."""

    event_type: ClassVar[str] = "anomaly.flagged"
    flag_id: int
    service: str
    metric: str  # records | amount
    granularity: str  # day | hour
    period_start: str  # RFC 3339
    direction: str  # spike | drop
    observed: str  # decimal string (records, or money in the currency's units)
    baseline: str
    score: str
    method: str
    explanation: str


class AnomalyReviewed(DomainEvent, frozen=True, kw_only=True):
    """An operator confirmed or dismissed a flag."""

    event_type: ClassVar[str] = "anomaly.reviewed"
    flag_id: int
    state: str  # confirmed | dismissed
    by: str
