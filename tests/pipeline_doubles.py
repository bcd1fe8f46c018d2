"""A stand-in rater for pipeline tests that are about storage, not prices.

Prices are simple and predictable (1 000 micro-units per second or per KiB, 50 000 per SMS);
it fails like the real rater: unknown identifier → UNKNOWN_ACCOUNT, called number starting
with 999 → NO_ZONE. Built from the database snapshot, like the real one.
"""

from __future__ import annotations

from collections.abc import Sequence

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline.raters import CatalogSnapshot


class FlatRater:
    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self.generation = snapshot.generation
        self.accounts = snapshot.identifiers
        self.version = snapshot.versions[-1].tariff_version_id if snapshot.versions else None

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        return [self._one(r) for r in records]

    def _one(self, r: UsageRecord) -> Charge | Failure:
        who = r.calling if r.kind in ("voice", "sms") else (r.msisdn or r.imsi)
        account = self.accounts.get(who or "")
        if account is None:
            return Failure(Reason.UNKNOWN_ACCOUNT, f"no account for {who}")
        if (r.called or "").startswith("999"):
            return Failure(Reason.NO_ZONE, f"no zone for {r.called}", account)
        if r.kind == "voice":
            amount = (r.duration_s or 0) * 1000
        elif r.kind == "data":
            amount = ((r.volume_up or 0) + (r.volume_down or 0)) // 1024 * 1000
        else:
            amount = 50_000
        return Charge(account, self.version, "national", "peak", amount, "EUR")
