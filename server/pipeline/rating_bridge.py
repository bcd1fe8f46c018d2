"""Builds the production rater (``server.rating``) from the catalog stored in the database.

The catalog is rebuilt from ``tariff_versions.definition`` (one jsonb per version, the same
shape as a catalog file's version), ``account_identifiers`` and ``subscriptions``: each
account's history of plans, so a record is rated on the tariff its account was on at the
record's event time (outside every subscription: ``NO_TARIFF``). Charges name their
version as ``(tariff id, effective_from)``; the bridge maps that back to the database's
``tariff_version_id`` so charge rows reference the exact version used.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog import Plan, catalog_from_definitions
from billing_oss.server.pipeline.raters import CatalogSnapshot, SubscriptionRow
from billing_oss.server.rating import Charge as CoreCharge
from billing_oss.server.rating import NativeRater, make_rater
from billing_oss.server.rating import Rater as CoreRater
from billing_oss.server.rating.fields import IDENTIFIER_FIELDS
from billing_oss.server.rating.native import STATUS_REASONS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def build_rater(snapshot: CatalogSnapshot) -> Rater:
    tariffs: dict[str, dict[str, Any]] = {}
    for v in snapshot.versions:
        tariff = tariffs.setdefault(v.tariff_id, {"id": v.tariff_id, "currency": v.currency,
                                                  "versions": []})
        tariff["versions"].append(v.definition)
    plan = _current_tariffs(snapshot.subscriptions)
    identifiers = {ident: (account, plan[account])
                   for ident, account in snapshot.identifiers.items() if account in plan}
    currency = snapshot.versions[0].currency if snapshot.versions else "EUR"
    catalog = catalog_from_definitions(currency, list(tariffs.values()), identifiers,
                                       _histories(snapshot.subscriptions))
    version_ids = {(v.tariff_id, _micros(v.effective_from)): v.tariff_version_id
                   for v in snapshot.versions}
    by_identity: dict[tuple[str, str], int | None] = {}
    for checked in catalog.tariffs.values():
        for version in checked.versions:
            by_identity[(checked.id, version.effective_from)] = version_ids.get(
                (checked.id, version.effective_us))
    return _Adapter(make_rater(catalog), by_identity, snapshot.generation)


def _current_tariffs(subscriptions: Sequence[SubscriptionRow]) -> dict[str, str]:
    """account → tariff: the subscription valid now, else the latest one."""
    now = datetime.now(UTC)
    plan: dict[str, str] = {}
    for s in subscriptions:  # ordered by account, valid_from
        if s.valid_from <= now and (s.valid_to is None or now < s.valid_to):
            plan[s.account_id] = s.tariff_id
        else:
            plan.setdefault(s.account_id, s.tariff_id)
    return plan


def _histories(subscriptions: Sequence[SubscriptionRow]) -> dict[str, list[Plan]]:
    """account → its subscriptions, so each record is rated on the plan of its event time."""
    histories: dict[str, list[Plan]] = {}
    for s in subscriptions:
        histories.setdefault(s.account_id, []).append(Plan(
            _micros(s.valid_from), None if s.valid_to is None else _micros(s.valid_to),
            s.tariff_id))
    return histories


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


class _Adapter:
    """``server.rating`` outcomes → the pipeline's ``Charge`` / ``Failure``.

    With the native rater, charges are read straight from the kernel's columns (one
    ``Charge`` per record, no intermediate outcome objects); the reference rater goes
    through its outcomes.
    """

    def __init__(self, rater: CoreRater, version_ids: dict[tuple[str, str], int | None],
                 generation: int) -> None:
        self._rater = rater
        self._version_ids = version_ids
        self.generation = generation
        if isinstance(rater, NativeRater):
            compiled = rater.compiled
            # Per kernel version number: (database id, zone names, band names).
            self._versions = [
                (version_ids.get((v.tariff_id, v.effective_from)), zones, bands)
                for v, zones, bands in zip(compiled.versions, compiled.zone_names,
                                           compiled.band_names, strict=True)]

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        if isinstance(self._rater, NativeRater):
            return self._rate_columns(self._rater, records)
        return self._rate_outcomes(records)

    def _rate_columns(self, rater: NativeRater,
                      records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        cols = rater.columns(records)
        rated = rater.rate_columns(cols)
        currencies = rater.compiled.currencies
        versions = self._versions
        details = cols.details
        out: list[Charge | Failure] = []
        append = out.append
        for n, (code, account_id, number, zone, band, amount, tariff) in enumerate(zip(
                rated.status, cols.account_ids, rated.version, rated.zone, rated.band,
                rated.amount, cols.tariff, strict=True)):
            if code:
                reason = STATUS_REASONS[code]
                assert reason is not None
                append(Failure(reason, details.get(n) or failure_detail(reason, records[n],
                                                                        account_id),
                               account_id))
                continue
            version_id, zones, bands = versions[number]
            assert account_id is not None
            append(Charge(account_id, version_id, zones[zone] if zone >= 0 else None,
                          bands[band] if band >= 0 else None, amount, currencies[tariff]))
        return out

    def _rate_outcomes(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        out: list[Charge | Failure] = []
        ids = self._version_ids
        for record, result in zip(records, self._rater.rate(records), strict=True):
            if isinstance(result, CoreCharge):
                out.append(Charge(result.account_id,
                                  ids.get((result.tariff_id, result.effective_from)),
                                  result.zone, result.band, result.amount_micros,
                                  result.currency))
            else:
                reason = Reason(result.reason)
                out.append(Failure(reason, result.detail or failure_detail(
                    reason, record, result.account_id), result.account_id))
        return out


def failure_detail(reason: Reason, record: UsageRecord, account_id: str | None) -> str:
    """Why rating refused the record, with the values an operator looks at to fix the
    catalog (the rater itself only says which rule failed)."""
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
