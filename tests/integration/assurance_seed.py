"""One realistic dataset for the assurance tests, built once per module through the real
code paths: the demo catalog loaded (audited), CDR files ingested through the pipeline with
the real rater, January billed and finalised, a payment received from a bank statement, a
TAP file sent to a roaming partner, a record in suspense. February's usage is not billed yet.

Tests copy it (``CREATE DATABASE ... TEMPLATE``) and inject one fault per copy.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import asyncpg
import msgspec

from billing_oss.core.records import UsageRecord
from billing_oss.server import config
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.collections import payments
from billing_oss.server.collections.model import NewPayment
from billing_oss.server.composition import decoders, rater_factory, read_catalog_file
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo
from tests.conftest import REPO
from tests.integration.billing_seed import SETTINGS

UTC = dt.UTC
# Callers by account (demo catalog) and the numbers they call (national, mobile, eu).
CALLERS = {"A1": "33611111111", "A2": "33622222222", "B1": "33140000000"}
CALLED = ("33612345678", "33712345678", "4930123456")
UNKNOWN_CALLER = "33699999999"


def pipeline(pool: asyncpg.Pool) -> Pipeline:
    cfg = config.load(env={}).pipeline
    return Pipeline(pool, cfg, rater_factory=rater_factory(), decoders=decoders())


def calls(source: str, prefix: str, day: dt.date, n: int, *, offset_s: int = 0
          ) -> list[UsageRecord]:
    """``n`` weekday calls from the three accounts, spread over working hours."""
    out = []
    for i in range(n):
        account = ("A1", "A2", "B1")[i % 3]
        start = dt.datetime.combine(day, dt.time(8, 30), UTC) + dt.timedelta(
            minutes=37 * i, seconds=offset_s)
        out.append(UsageRecord(
            record_key=f"{prefix}-{i}", source=source, kind="voice",
            event_time=start.strftime("%Y-%m-%dT%H:%M:%SZ"), duration_s=17 + 41 * i,
            calling=CALLERS[account], called=CALLED[i % len(CALLED)]))
    return out


def write(path: Path, records: list[UsageRecord]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    return path


async def ingest(pool: asyncpg.Pool, tmp: Path, source: str, name: str, seq: int | None,
                 records: list[UsageRecord]) -> None:
    out = await pipeline(pool).ingest_file(write(tmp / name, records), source=source,
                                           format="jsonl", name=name, sequence_no=seq)
    assert not out.replay


async def seed(pool: asyncpg.Pool, tmp: Path) -> None:
    await catalog_repo.load_catalog(
        pool, read_catalog_file(REPO / "config/demo-catalog.json"), actor="test:seed")
    # January: four files from msc1, two from msc2 (other days), IoT data from ggsn1.
    for seq in range(1, 5):
        await ingest(pool, tmp, "msc1", f"MSC1_{seq:05d}.jsonl", seq,
                     calls("msc1", f"m1s{seq}", dt.date(2026, 1, 4 + seq), 9))
    for seq in range(1, 3):
        await ingest(pool, tmp, "msc2", f"MSC2_{seq:05d}.jsonl", seq,
                     calls("msc2", f"m2s{seq}", dt.date(2026, 1, 12 + seq), 6))
    iot = [UsageRecord(record_key=f"g-{i}", source="ggsn1", kind="data",
                       event_time=f"2026-01-{10 + i:02d}T03:00:00Z", volume_up=1000 * i,
                       volume_down=50_000 * i, msisdn="882360000000001") for i in range(1, 5)]
    await ingest(pool, tmp, "ggsn1", "GGSN1_0001.jsonl", None, iot)
    # February (not billed yet): one more msc1 file, with a caller nobody knows (suspense).
    feb = calls("msc1", "m1s5", dt.date(2026, 2, 3), 9)
    feb.append(UsageRecord(record_key="m1s5-unknown", source="msc1", kind="voice",
                           event_time="2026-02-03T09:00:00Z", duration_s=120,
                           calling=UNKNOWN_CALLER, called=CALLED[0]))
    await ingest(pool, tmp, "msc1", "MSC1_00005.jsonl", 5, feb)

    run = await bill_run(pool, "2026-01", SETTINGS, finalize=True, force=True, actor="test:seed")
    assert run.invoice_ids
    await _payment(pool)
    await _settlement(pool)


async def _payment(pool: asyncpg.Pool) -> None:
    """A1 pays 10.00 EUR by bank transfer; the statement line that carried it."""
    paid, _ = await payments.record(pool, "test:seed", NewPayment(
        account_id="A1", amount_micros=10_000_000, received_on=dt.date(2026, 2, 10),
        method="transfer", reference="RF-A1", source="bank", external_id="STMT1-1"))
    await pool.execute(
        "INSERT INTO bank_entries (statement_account, entry_key, file_name, entry_no, status,"
        " credit, amount_micros, currency, booked_on, account_id, payment_id, remittance)"
        " VALUES ('FR7630006000011234567890189', 'STMT1-1', 'camt053-2026-02-10.xml', 1,"
        " 'imported', true, 10000000, 'EUR', '2026-02-10', 'A1', $1, 'RF-A1')",
        paid.payment_id)


async def _settlement(pool: asyncpg.Pool) -> None:
    """One TAP file sent to a partner: two events, audit totals that match them."""
    await pool.execute(
        "INSERT INTO partners (tadig, our_tadig, name, local_currency, wholesale_tariff,"
        " imsi_prefixes) VALUES ('DEUD1', 'FRAF1', 'Partner DE', 'EUR', 'retail',"
        " ARRAY['26201'])")
    file_id = await pool.fetchval(
        "INSERT INTO settlement_files (partner, direction, file_type, kind, name, fsn, content,"
        " sha256, event_count, total_charge, decimal_places, tap_currency, state)"
        " VALUES ('DEUD1', 'out', 'tap', 'chargeable', 'CDFRAF1DEUD100001', 1, '\\x00',"
        " 'x', 2, 1750, 3, 'SDR', 'sent') RETURNING file_id")
    for i, (micros, tap) in enumerate(((1_000_000, 1000), (750_000, 750))):
        await pool.execute(
            "INSERT INTO settlement_events (partner, direction, file_id, event_index, source,"
            " record_key, event_time, imsi, record, charge_micros, tap_charge, state)"
            " VALUES ('DEUD1', 'out', $1, $2, 'msc1', $3, '2026-01-20T10:00:00Z',"
            " '262011234567890', $4::jsonb, $5, $6, 'sent')",
            file_id, i, f"roam-{i}", json.dumps({"k": i}), micros, tap)
