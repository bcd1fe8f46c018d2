"""Partner charges billed to our own subscribers as roaming usage (we are the home network).

Each call event accepted from a partner's TAP file becomes a usage record of our subscriber,
written in the transaction that accepts the file (``tapin.receive_tap``):

- ``source`` ``roaming:<partner TADIG>``, ``record_key`` the TAP event's key
  (``<sender>:<recipient>:<FSN>:<index>``): receiving the same events again adds nothing
  (``usage_keys``), like any other source.
- The account: the first of the event's MSISDN, IMSI (and, for a call we originate, the
  calling number) that is an identifier of ours. None: the record goes to suspense
  ``UNKNOWN_ACCOUNT`` naming the partner and file, never dropped.
- Retail price, pass-through plus markup: the partner's charge (TAP currency, TAP decimal
  places) at our exchange rate for the event's day (``rate_source`` of the partner, TAP
  currency → the account's currency) times ``1 + retail_markup_percent / 100``, rounded
  half-up to micro-units once. The subscriber pays what the partner charged us plus the
  agreed margin, whatever the home tariff says; a missing rate refuses the whole file, as
  it refuses an outbound one (nothing half-applied).
- The charge's zone is ``Roaming <TADIG>``: the bill run groups it as its own invoice line
  (``Voice — Roaming DEUD1``), apart from home usage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

import msgspec

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline import writer
from billing_oss.server.pipeline.batch import WriteBatch, prepare
from billing_oss.server.settlement import repo
from billing_oss.server.settlement.model import Partner
from billing_oss.server.settlement.wholesale import MissingRate, _half_up
from billing_oss.server.store import usage_repo
from billing_oss.server.store.pool import Connection


class RoamingBilled(msgspec.Struct, frozen=True, kw_only=True):
    charged: int = 0
    suspense: int = 0
    duplicates: int = 0


def subscriber_record(r: UsageRecord, partner: Partner, file_name: str,
                      tap_currency: str) -> UsageRecord:
    """The subscriber's usage record of one accepted TAP event."""
    return msgspec.structs.replace(
        r, source=f"roaming:{partner.tadig}",
        attrs={**(r.attrs or {}), "partner": partner.tadig, "tap_file": file_name,
               "tap_currency": tap_currency})


def _candidates(r: UsageRecord) -> list[str]:
    mt = (r.attrs or {}).get("event_type") == "MobileTerminatedCall"
    values = [r.msisdn, r.imsi] + ([] if mt else [r.calling])
    return [v for v in values if v]


class PassThroughRater:
    """Rates roaming records at the partner's charge plus the partner's retail markup."""

    def __init__(self, partner: Partner, accounts: dict[str, tuple[str, str]],
                 rates: dict[tuple[str, dt.date], Decimal]) -> None:
        self.partner = partner
        self.accounts, self.rates = accounts, rates
        self.factor = 1 + Fraction(Decimal(partner.retail_markup_percent)) / 100

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        return [self._one(r) for r in records]

    def _one(self, r: UsageRecord) -> Charge | Failure:
        owner = next((self.accounts[v] for v in _candidates(r) if v in self.accounts), None)
        if owner is None:
            return Failure(Reason.UNKNOWN_ACCOUNT,
                           f"roaming event of partner {self.partner.tadig} "
                           f"({(r.attrs or {}).get('tap_file')}): no account has MSISDN "
                           f"{r.msisdn!r} or IMSI {r.imsi!r}")
        account_id, currency = owner
        rate = self.rates[currency, _day(r)]
        micros = _half_up(Fraction(Decimal(r.charge or "0")) * Fraction(rate)
                          * self.factor * 1_000_000)
        return Charge(account_id=account_id, tariff_version_id=None,
                      zone=f"Roaming {self.partner.tadig}", band=None, amount_micros=micros,
                      currency=currency,
                      tariff_version=f"roaming:{self.partner.tadig}@{r.event_time}")


def _day(r: UsageRecord) -> dt.date:
    return dt.datetime.fromisoformat(r.event_time.replace("Z", "+00:00")).date()


async def bill_subscribers(conn: Connection, partner: Partner, file_name: str,
                           tap_currency: str, records: Sequence[UsageRecord]
                           ) -> RoamingBilled:
    """Store ``records`` (accepted TAP events) as our subscribers' rated usage; call in the
    transaction that accepts the file."""
    if not records:
        return RoamingBilled()
    mine = [subscriber_record(r, partner, file_name, tap_currency) for r in records]
    accounts = await repo.subscriber_accounts(
        conn, sorted({v for r in mine for v in _candidates(r)}))
    rates: dict[tuple[str, dt.date], Decimal] = {}
    needed = {(owner[1], _day(r)) for r in mine
              if (owner := next((accounts[v] for v in _candidates(r) if v in accounts), None))}
    for currency, day in sorted(needed):
        rate = await repo.rate_on(conn, partner.rate_source, tap_currency, currency, day)
        if rate is None:
            raise MissingRate(
                f"{file_name}: no {partner.rate_source} exchange rate {tap_currency} → "
                f"{currency} on {day} to bill the partner's charges to our subscribers; "
                "declare one (settle partners) and receive the file again")
        rates[currency, day] = rate
    rater = PassThroughRater(partner, accounts, rates)
    batch: WriteBatch = prepare(mine, rater, f"roaming:{partner.tadig}",
                                lambda i: f"{file_name}#{i}")
    # The usual writer in the caller's transaction; the partitions are created in it too
    # (idempotent), since the file's acceptance and its usage commit together.
    await usage_repo.ensure_partitions(conn, writer.months(batch))
    await writer.store_batch(conn, batch, source_file_id=None, rater=rater)
    return RoamingBilled(charged=batch.counts.get("charged", 0),
                         suspense=batch.counts.get("suspense", 0),
                         duplicates=batch.counts.get("duplicates", 0))
