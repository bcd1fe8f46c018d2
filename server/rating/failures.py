"""A refused record's ``Failure``, with the values an operator looks at to fix the catalog.

Both raters build their failures here, so they agree on the detail as on the reason.
"""

from __future__ import annotations

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.rating.fields import IDENTIFIER_FIELDS


def failure(reason: Reason, record: UsageRecord, account_id: str | None = None,
            detail: str = "") -> Failure:
    """``detail`` when the rule that failed said why (a bad field), else one made here."""
    return Failure(reason, detail or failure_detail(reason, record, account_id), account_id)


def failure_detail(reason: Reason, record: UsageRecord, account_id: str | None) -> str:
    kind = record.kind
    if reason is Reason.UNKNOWN_ACCOUNT:
        tried = IDENTIFIER_FIELDS.get(kind, IDENTIFIER_FIELDS["event"])
        shown = ", ".join(f"{name} {getattr(record, name)!r}" for name in tried
                          if getattr(record, name))
        return f"UNKNOWN_ACCOUNT: no account has the identifier ({shown or 'none given'})"
    if reason is Reason.NO_TARIFF:
        return (f"NO_TARIFF: account {account_id} has no subscription or tariff version in "
                f"force at {record.event_time}")
    if reason is Reason.NO_ZONE:
        if not record.called:
            return f"NO_ZONE: a {kind} record without 'called' matches only zone '*' rates"
        return f"NO_ZONE: no zone prefix matches called {record.called!r}"
    if reason is Reason.NO_RATE:
        return (f"NO_RATE: the tariff of account {account_id} has no {kind} rate for the "
                f"zone of {record.called!r} at {record.event_time}")
    if reason is Reason.OVERFLOW:
        return (f"OVERFLOW: the amount for this {kind} usage (duration_s {record.duration_s}, "
                f"volume {record.volume_up}/{record.volume_down}) exceeds 2^63-1 micro-units")
    return str(reason)
