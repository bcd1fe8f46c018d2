"""The controls on the assurance dataset (real catalog, ingested files, a bill run) once its
January usage is pseudonymised: the re-rating controls leave pseudonymised usage out (no
number, no account or zone to rate it with), every control still passes, and the duplicate
control still pairs calls by their pseudonyms."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing_oss.server.retention import pseudonyms, repo
from tests.integration.test_assurance_controls import copy, failing, run_all, template

__all__ = ["copy", "template"]  # the fixtures this module borrows
KEY = "controls test key"


async def test_controls_pass_once_january_is_pseudonymised(copy: asyncpg.Pool) -> None:
    changed = await pseudonyms.run(copy, KEY, 1, dt.datetime(2026, 2, 2, tzinfo=dt.UTC), "test")
    january = await copy.fetchval("SELECT count(*) FROM usage_records"
                                  " WHERE event_time < '2026-02-01Z'")
    assert changed == january > 0
    # The policy the server applies: anything before 2026-01-17 (as of now) must be hashed.
    days = (dt.datetime.now(dt.UTC) - dt.datetime(2026, 1, 17, tzinfo=dt.UTC)).days
    await repo.put_policy(copy, days, 0)
    run = await run_all(copy)
    assert failing(run) == {}, [(r.control, r.evidence[:2]) for r in failing(run).values()]
    by_name = {r.control: r for r in run.results}
    february = await copy.fetchval(
        "SELECT count(*) FROM charges c JOIN usage_records u USING (account_id, event_time,"
        " usage_id) WHERE u.event_time >= '2026-02-01Z'")
    assert by_name["rating.rerate_sample"].checked == february > 0
    assert by_name["retention.pseudonymised"].checked > 0

    # A January call charged again from another switch is still caught on its pseudonyms.
    first = await copy.fetchrow("SELECT * FROM usage_records WHERE source = 'msc1'"
                                " AND event_time < '2026-02-01Z' AND kind = 'voice' LIMIT 1")
    async with copy.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s, calling, called) VALUES ($1, 999999, $2, 'msc9', 'dup', 'voice',"
            " 60, $3, $4)", first["account_id"], first["event_time"], first["calling"],
            first["called"])
        await conn.execute(
            "INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind,"
            " amount_micros, currency) VALUES ($1, 999999, $2, 999999, 'charge', 100000, 'EUR')",
            first["account_id"], first["event_time"])
    run = await run_all(copy)
    assert "duplicates.cross_source" in failing(run)
