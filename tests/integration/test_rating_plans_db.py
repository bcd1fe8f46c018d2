"""A plan change stored in `subscriptions` prices each record on the plan of its event time."""

from __future__ import annotations

import asyncpg

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline.raters import RaterCache, build_rater
from billing_oss.server.store import catalog_repo


def tariff(tariff_id: str, price: str) -> dict[str, object]:
    return {"id": tariff_id, "versions": [{
        "effective_from": "2026-01-01T00:00:00Z", "timezone": "UTC",
        "zones": {"national": ["336"]}, "time_bands": [{"name": "all", "default": True}],
        "rates": [{"kind": "voice", "zone": "*", "band": "*", "connect_fee": "0",
                   "steps": [{"from": 0, "price": price, "unit": 60, "increment": 1}]}]}]}


def call(when: str) -> UsageRecord:
    return UsageRecord(record_key=when, source="t", kind="voice", event_time=when,
                       duration_s=60, calling="33699999999", called="33612345678")


async def test_records_rated_on_the_plan_of_their_event_time(pool: asyncpg.Pool) -> None:
    await catalog_repo.load_catalog(pool, {
        "currency": "EUR", "tariffs": [tariff("retail", "0.60"), tariff("business", "0.30")],
        "accounts": [{"id": "P1", "identifiers": ["33699999999"], "tariff": "retail"}]})
    async with pool.acquire() as conn:
        # retail from the first version on (as loaded), business from March on.
        await conn.execute("UPDATE subscriptions SET valid_to = '2026-03-01T00:00:00Z'"
                           " WHERE account_id = 'P1'")
        await conn.execute("INSERT INTO subscriptions (account_id, tariff_id, valid_from)"
                           " VALUES ('P1', 'business', '2026-03-01T00:00:00Z')")
        versions = {r["tariff_id"]: r["tariff_version_id"] for r in await conn.fetch(
            "SELECT tariff_id, tariff_version_id FROM tariff_versions")}
    rater = await RaterCache(pool, build_rater).current()

    feb, mar, before = rater.rate([call("2026-02-28T23:59:59Z"), call("2026-03-01T00:00:00Z"),
                                   call("2025-12-31T10:00:00Z")])
    assert isinstance(feb, Charge) and isinstance(mar, Charge), (feb, mar)
    assert (feb.tariff_version_id, feb.amount_micros) == (versions["retail"], 600_000)
    assert (mar.tariff_version_id, mar.amount_micros) == (versions["business"], 300_000)
    assert isinstance(before, Failure) and before.reason == Reason.NO_TARIFF
