"""A stand-in rater for pipeline tests that are about storage, not prices.

Prices are simple and predictable (1 000 micro-units per second or per KiB, 50 000 per SMS);
it fails like the real rater: unknown identifier → UNKNOWN_ACCOUNT, called number starting
with 999 → NO_ZONE. Built like the real one (``RaterFactory``): from the stored tariff
versions, around the accounts directory the pipeline keeps up to date.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.rating import Accounts
from billing_oss.server.store.rating_repo import VersionRow


class FlatRater:
    def __init__(self, versions: Sequence[VersionRow], accounts: Accounts) -> None:
        self.accounts = accounts
        last = versions[-1] if versions else None
        self.version = last.tariff_version_id if last else None
        self.identity = (f"{last.tariff_id}@"
                         f"{last.effective_from.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
                         if last else "flat@1970-01-01T00:00:00Z")

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        return [self._one(r) for r in records]

    def _one(self, r: UsageRecord) -> Charge | Failure:
        who = r.calling if r.kind in ("voice", "sms") else (r.msisdn or r.imsi)
        account = self.accounts.get(who or "")
        if account is None:
            return Failure(Reason.UNKNOWN_ACCOUNT, f"no account for {who}")
        if (r.called or "").startswith("999"):
            return Failure(Reason.NO_ZONE, f"no zone for {r.called}", account.id)
        if r.kind == "voice":
            amount = (r.duration_s or 0) * 1000
        elif r.kind == "data":
            amount = ((r.volume_up or 0) + (r.volume_down or 0)) // 1024 * 1000
        else:
            amount = 50_000
        return Charge(account.id, self.version, "national", "peak", amount, "EUR",
                      self.identity)
