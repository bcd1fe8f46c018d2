"""Fault injection: on one realistic dataset every control passes; each test copies it,
injects the fault one control exists for, and checks that exactly the intended controls
fail, naming the objects and the money at stake to the cent."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from billing_oss.server.assurance import checkpoints, engine, repo
from billing_oss.server.assurance.model import Context, Settings
from billing_oss.server.config import LedgerConfig
from billing_oss.server.store import audit
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate
from tests.generators.threegpp_files import write_fast_3gpp
from tests.integration import assurance_seed
from tests.integration.assurance_seed import calls, ingest

Fault = Callable[[asyncpg.Pool], Awaitable[None]]


@pytest.fixture(scope="module")
async def template(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[str]:
    """The seeded database's name; nothing stays connected to it, so it can be copied."""
    name = f"t_assure_seed_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await asyncpg.create_pool(with_database(pg_admin_dsn, name), min_size=1,
                                         max_size=4)
        assert pool is not None
        try:
            await migrate(pool)
            await assurance_seed.seed(pool, tmp_path_factory.mktemp("cdr"))
        finally:
            await pool.close()
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def copy(pg_admin_dsn: str, template: str) -> AsyncIterator[asyncpg.Pool]:
    """A private copy of the seeded database for one test."""
    name = f"t_assure_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        pool = await asyncpg.create_pool(with_database(pg_admin_dsn, name), min_size=1,
                                         max_size=4)
        assert pool is not None
        try:
            yield pool
        finally:
            await pool.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def context(checkpoint_dir: Path | None = None) -> Context:
    return Context(as_of=dt.datetime.now(dt.UTC), settings=Settings(),
                   checkpoint_dir=str(checkpoint_dir or ""))


async def run_all(pool: asyncpg.Pool, ctx: Context | None = None) -> repo.Run:
    return await engine.run(pool, ctx or context(), trigger="cli", actor="test")


def failing(run: repo.Run) -> dict[str, repo.Result]:
    return {r.control: r for r in run.results if r.status != "pass"}


async def as_dba(pool: asyncpg.Pool, *statements: str) -> None:
    """Statements run the way a database administrator would, triggers off."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql in statements:
            await conn.execute(sql)


async def test_every_control_passes_on_the_untouched_data(copy: asyncpg.Pool) -> None:
    run = await run_all(copy)
    assert {r.status for r in run.results} == {"pass"}, [
        (r.control, r.error, r.evidence[:2]) for r in run.results if r.status != "pass"]
    assert run.controls == len(engine.select(None)) and run.failed == 0
    by_name = {r.control: r for r in run.results}
    assert by_name["rating.rerate_sample"].checked == await copy.fetchval(
        "SELECT count(*) FROM charges")  # the whole (small) table is the sample
    # The results are chained into the audit log, which still verifies.
    entries = await copy.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'assurance.result'"
        " AND entity LIKE $1", f"assurance:{run.run_id}/%")
    assert entries == run.controls
    assert (await audit.verify(copy)).ok
    assert await copy.fetchval("SELECT count(*) FROM outbox_events"
                               " WHERE type = 'control.failed'") == 0


async def test_a_file_missing_from_a_sequence(copy: asyncpg.Pool, tmp_path: Path) -> None:
    # msc1 sent 1..5; 6 is lost on the way, 7 arrives.
    await ingest(copy, tmp_path, "msc1", "MSC1_00007.jsonl", 7,
                 calls("msc1", "m1s7", dt.date(2026, 2, 5), 3))
    failed = failing(await run_all(copy))
    assert set(failed) == {"collection.sequence_gaps"}
    gap = failed["collection.sequence_gaps"]
    assert gap.offending == 1 and gap.unpriced == 1 and gap.at_stake == {}
    assert gap.evidence[0]["object"] == "source:msc1/seq:6"
    assert "MSC1_00005.jsonl (seq 5) and MSC1_00007.jsonl (seq 7)" in gap.evidence[0]["detail"]


async def test_a_file_sent_again_under_a_new_name(copy: asyncpg.Pool, tmp_path: Path) -> None:
    # The switch regenerates file 5 with new record keys and sends it as another file.
    again = calls("msc1", "m1s5-resent", dt.date(2026, 2, 3), 9)
    await ingest(copy, tmp_path, "msc1", "MSC1_00005_RESENT.jsonl", 5, again)
    file_id = await copy.fetchval(
        "SELECT source_file_id FROM source_files WHERE name = 'MSC1_00005_RESENT.jsonl'")
    charged = await copy.fetchval(
        "SELECT sum(c.amount_micros) FROM charges c JOIN usage_records u USING"
        " (account_id, event_time, usage_id) WHERE u.source_file_id = $1", file_id)
    failed = failing(await run_all(copy))
    assert set(failed) == {"collection.sequence_repeats"}
    repeat = failed["collection.sequence_repeats"]
    assert repeat.evidence[0]["object"] == f"source_file:{file_id}"
    assert "repeats sequence 5 of msc1" in repeat.evidence[0]["detail"]
    assert charged > 0 and repeat.at_stake == {"EUR": _text(charged)}


async def test_a_tariff_price_changed_under_stored_charges(copy: asyncpg.Pool) -> None:
    # Retail national peak calls: the first minute's price edited in place, 0.20 → 0.25.
    await as_dba(copy, """
        UPDATE tariff_versions SET definition = jsonb_set(definition,
            '{rates,0,steps,0,price}', '"0.25"')
        WHERE tariff_id = 'retail' AND effective_from = '2026-01-01T00:00:00Z'""")
    affected = await copy.fetch(
        "SELECT c.account_id, c.charge_id, u.duration_s FROM charges c JOIN usage_records u"
        " USING (account_id, event_time, usage_id) JOIN tariff_versions v"
        " ON v.tariff_version_id = c.tariff_version_id"
        " WHERE v.tariff_id = 'retail' AND c.zone = 'national' AND c.band = 'peak'")
    assert affected
    failed = failing(await run_all(copy))
    assert set(failed) == {"rating.rerate_sample"}
    rerate = failed["rating.rerate_sample"]
    assert rerate.offending == len(affected)
    # 0.05 EUR more per call for the first (whole) minute of each of them.
    assert rerate.at_stake == {"EUR": _text(50_000 * len(affected))}
    objects = {e["object"] for e in rerate.evidence}
    assert objects <= {f"charge:{r['account_id']}/{r['charge_id']}" for r in affected}
    assert "the catalog in force gives" in rerate.evidence[0]["detail"]


async def test_an_invoice_line_deleted(copy: asyncpg.Pool) -> None:
    line = await copy.fetchrow(
        "SELECT l.account_id, l.invoice_id, l.line_no, l.net_micros FROM invoice_lines l"
        " WHERE l.kind = 'usage' ORDER BY l.net_micros DESC LIMIT 1")
    await as_dba(copy, f"DELETE FROM invoice_lines WHERE account_id = '{line['account_id']}'"
                       f" AND invoice_id = {line['invoice_id']} AND line_no = {line['line_no']}")
    failed = failing(await run_all(copy))
    assert set(failed) == {"billing.invoice_totals"}
    totals = failed["billing.invoice_totals"]
    assert totals.evidence[0]["object"] == f"invoice:{line['account_id']}/{line['invoice_id']}"
    assert totals.at_stake == {"EUR": _text(line["net_micros"])}


async def test_charges_unlinked_from_their_invoice_line(copy: asyncpg.Pool) -> None:
    line = await copy.fetchrow(
        "SELECT account_id, invoice_id, line_no FROM invoice_line_charges"
        " ORDER BY account_id, invoice_id, line_no LIMIT 1")
    unlinked = await copy.fetchval(
        "SELECT sum(c.amount_micros) FROM invoice_line_charges l JOIN charges c USING"
        " (account_id, charge_id) WHERE l.account_id = $1 AND l.invoice_id = $2"
        " AND l.line_no = $3", line["account_id"], line["invoice_id"], line["line_no"])
    await as_dba(copy, "DELETE FROM invoice_line_charges WHERE account_id ="
                       f" '{line['account_id']}' AND invoice_id = {line['invoice_id']}"
                       f" AND line_no = {line['line_no']}")
    failed = failing(await run_all(copy))
    assert set(failed) == {"billing.cycle_invoiced"}
    assert failed["billing.cycle_invoiced"].at_stake == {"EUR": _text(unlinked)}


async def test_unlinked_charges_hidden_behind_links_with_the_same_count_and_id_sum(
        copy: asyncpg.Pool) -> None:
    # Two charges of a closed cycle lose their links; two links to charges no cycle holds
    # take their place, with the same count and the same sum of ids: the per-account
    # checksum of the ids must still send the account to the charge-by-charge check.
    two = await copy.fetch(
        "SELECT l.account_id, l.charge_id, l.invoice_id, l.line_no, c.amount_micros"
        " FROM invoice_line_charges l JOIN charges c USING (account_id, charge_id)"
        " ORDER BY l.account_id, l.charge_id LIMIT 2")
    account, invoice, line = two[0]["account_id"], two[0]["invoice_id"], two[0]["line_no"]
    assert two[1]["account_id"] == account
    ids = [r["charge_id"] for r in two]
    other = -1_000_000_007
    stand_ins = [other, sum(ids) - other]
    await as_dba(copy, *(f"DELETE FROM invoice_line_charges WHERE account_id = '{account}'"
                         f" AND charge_id = {i}" for i in ids),
                 *(f"INSERT INTO invoice_line_charges VALUES ('{account}', {i}, {invoice},"
                   f" {line})" for i in stand_ins))
    failed = failing(await run_all(copy))
    assert set(failed) == {"billing.cycle_invoiced"}
    cycle = failed["billing.cycle_invoiced"]
    assert sorted(e["object"] for e in cycle.evidence) == sorted(
        f"charge:{account}/{i}" for i in ids)
    assert cycle.at_stake == {"EUR": _text(sum(r["amount_micros"] for r in two))}


async def test_a_charge_deleted(copy: asyncpg.Pool) -> None:
    gone = await copy.fetchrow(
        "SELECT account_id, charge_id, usage_id, amount_micros FROM charges"
        " WHERE event_time >= '2026-02-01' ORDER BY charge_id LIMIT 1")
    await as_dba(copy, f"DELETE FROM charges WHERE account_id = '{gone['account_id']}'"
                       f" AND charge_id = {gone['charge_id']}")
    failed = failing(await run_all(copy))
    # Two identities break: the usage has no charge, and its file's total is short.
    assert set(failed) == {"conservation.usage_charged", "conservation.file_totals"}
    usage = failed["conservation.usage_charged"]
    assert [e["object"] for e in usage.evidence] == [
        f"usage:{gone['account_id']}/{gone['usage_id']}"]
    assert failed["conservation.file_totals"].at_stake == {"EUR": _text(gone["amount_micros"])}


async def test_two_charges_of_one_amount_carried_to_each_others_file(copy: asyncpg.Pool
                                                                     ) -> None:
    """What ``file_totals`` cannot see, as each file still sums the same: the original
    charges' files against their usage records' (``usage_charged``)."""
    pair = await copy.fetchrow(
        "SELECT x.account_id AS xa, x.charge_id AS xc, x.source_file_id AS xf,"
        " y.account_id AS ya, y.charge_id AS yc, y.source_file_id AS yf, x.amount_micros"
        " FROM charges x JOIN charges y ON y.amount_micros = x.amount_micros"
        " AND y.currency = x.currency AND y.source_file_id > x.source_file_id"
        " WHERE x.amount_micros > 0 ORDER BY x.charge_id, y.charge_id LIMIT 1")
    await as_dba(copy, *(f"UPDATE charges SET source_file_id = {file} WHERE account_id = '{a}'"
                         f" AND charge_id = {c}"
                         for a, c, file in ((pair["xa"], pair["xc"], pair["yf"]),
                                            (pair["ya"], pair["yc"], pair["xf"]))))
    failed = failing(await run_all(copy))
    assert set(failed) == {"conservation.usage_charged"}
    moved = failed["conservation.usage_charged"]
    assert sorted(e["object"] for e in moved.evidence) == sorted(
        [f"charge:{pair['xa']}/{pair['xc']}", f"charge:{pair['ya']}/{pair['yc']}"])
    assert f"carries file {pair['yf']}" in " ".join(e["detail"] for e in moved.evidence)
    assert moved.at_stake == {"EUR": _text(2 * pair["amount_micros"])}


async def test_a_payment_lost_after_import(copy: asyncpg.Pool) -> None:
    pid = await copy.fetchval("SELECT payment_id FROM payments")
    await as_dba(copy, f"DELETE FROM payment_allocations WHERE payment_id = {pid}",
                 f"DELETE FROM ledger_entries WHERE payment_id = {pid}",
                 f"DELETE FROM payments WHERE payment_id = {pid}")
    failed = failing(await run_all(copy))
    # the journal's days kept the entry deleted behind the ledger's back
    assert set(failed) == {"ledger.payments_booked", "ledger.journal_days"}
    lost = failed["ledger.payments_booked"]
    assert lost.evidence[0]["object"] == "bank_entry:FR7630006000011234567890189/STMT1-1"
    assert lost.at_stake == {"EUR": "10.00"}
    assert failed["ledger.journal_days"].at_stake == {"EUR": "10.00"}


async def test_an_invoice_missing_from_the_ledger(copy: asyncpg.Pool) -> None:
    row = await copy.fetchrow(
        "SELECT account_id, invoice_id, payable_micros FROM invoices"
        " WHERE status = 'finalised' AND account_id = 'A2'")
    await as_dba(copy, f"DELETE FROM ledger_entries WHERE kind = 'invoice'"
                       f" AND invoice_id = {row['invoice_id']}")
    failed = failing(await run_all(copy))
    assert set(failed) == {"ledger.documents_booked", "ledger.journal_days"}
    assert failed["ledger.documents_booked"].at_stake == {"EUR": _text(row["payable_micros"])}


async def test_a_subscription_never_billed(copy: asyncpg.Pool) -> None:
    # A second plan for A2 since January, on the same tariff: nobody billed it.
    sub = await copy.fetchval(
        "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from)"
        " VALUES ('A2', 'retail', 'business-pro', '2026-01-01') RETURNING subscription_id")
    failed = failing(await run_all(copy))
    assert set(failed) == {"billing.subscriptions_billed"}
    missed = failed["billing.subscriptions_billed"]
    assert missed.evidence[0]["object"] == f"subscription:A2/{sub}/2026-01"
    assert missed.at_stake == {"EUR": "29.00"}


async def test_a_call_charged_by_two_switches(copy: asyncpg.Pool, tmp_path: Path) -> None:
    # msc2 saw a call msc1 already charged, one second later.
    seen = calls("msc2", "m2-dup", dt.date(2026, 2, 3), 1, offset_s=1)
    await ingest(copy, tmp_path, "msc2", "MSC2_00003.jsonl", 3, seen)
    usage = await copy.fetchrow(
        "SELECT u.account_id, u.usage_id, c.amount_micros FROM usage_records u JOIN charges c"
        " USING (account_id, event_time, usage_id) WHERE u.record_key = 'm2-dup-0'")
    failed = failing(await run_all(copy))
    assert set(failed) == {"duplicates.cross_source"}
    dup = failed["duplicates.cross_source"]
    assert dup.evidence[0]["object"] == f"usage:{usage['account_id']}/{usage['usage_id']}"
    assert "from msc1 (m1s5-0)" in dup.evidence[0]["detail"]
    assert dup.at_stake == {"EUR": _text(usage["amount_micros"])}


async def test_a_file_for_an_earlier_period_arriving_late(copy: asyncpg.Pool,
                                                          tmp_path: Path) -> None:
    # msc1 had delivered 3 February; its file of 1 February (seq 6) arrives after it.
    await ingest(copy, tmp_path, "msc1", "MSC1_00006.jsonl", 6,
                 calls("msc1", "m1s6", dt.date(2026, 2, 1), 3))
    file_id, charged = await copy.fetchrow(
        "SELECT f.source_file_id, sum(c.amount_micros) FROM source_files f"
        " JOIN usage_records u USING (source_file_id)"
        " JOIN charges c USING (account_id, event_time, usage_id)"
        " WHERE f.name = 'MSC1_00006.jsonl' GROUP BY 1")
    failed = failing(await run_all(copy))
    assert set(failed) == {"collection.late_files"}
    late = failed["collection.late_files"]
    assert late.offending == 1 and late.evidence[0]["object"] == f"source_file:{file_id}"
    assert "MSC1_00006.jsonl of msc1" in late.evidence[0]["detail"]
    assert "2 days" in late.evidence[0]["detail"]  # 1 Feb 09:44 against 3 Feb 09:44
    assert charged > 0 and late.at_stake == {"EUR": _text(charged)}


async def test_a_file_holding_fewer_records_than_its_header_declares(
        copy: asyncpg.Pool, tmp_path: Path) -> None:
    # Two 32.297 files from an SGSN: the first whole, the second's header declares 8 CDRs
    # (its byte length right) but the switch wrote 7.
    for seq, n, declared in ((1, 5, 5), (2, 7, 8)):
        path = tmp_path / f"SGSN1_{seq:04d}.dat"
        with path.open("wb") as fh:
            assert write_fast_3gpp(fh, n, seed=seq, sequence_number=seq) == n
        data = bytearray(path.read_bytes())
        data[18:22] = declared.to_bytes(4, "big")
        path.write_bytes(bytes(data))
        out = await assurance_seed.pipeline(copy).ingest_file(
            path, source="sgsn1", format="3gpp", name=path.name)
        assert not out.replay
    rows = await copy.fetch("SELECT name, declared_records, count_in, state FROM source_files"
                            " WHERE source = 'sgsn1' ORDER BY name")
    assert [tuple(r) for r in rows] == [("SGSN1_0001.dat", 5, 5, "done"),
                                        ("SGSN1_0002.dat", 8, 7, "done")]
    file_id = await copy.fetchval(
        "SELECT source_file_id FROM source_files WHERE name = 'SGSN1_0002.dat'")
    failed = failing(await run_all(copy))
    assert set(failed) == {"collection.record_counts"}
    short = failed["collection.record_counts"]
    assert short.checked == 2 and short.offending == 1 and short.unpriced == 1
    assert short.evidence[0]["object"] == f"source_file:{file_id}"
    assert "header declares 8 records, 7 came in (1 missing)" in short.evidence[0]["detail"]
    assert short.at_stake == {}


async def test_a_source_gone_silent(copy: asyncpg.Pool) -> None:
    # An SFTP source that sent a file every hour stopped two days ago.
    await copy.execute(
        "INSERT INTO source_files (source, name, format, sha256, state, received_at,"
        " completed_at) SELECT 'sftp-old', 'F' || i, 'csv', 'sha' || i, 'done',"
        " now() - interval '2 days' - i * interval '1 hour', now() - interval '2 days'"
        " FROM generate_series(1, 10) i")
    failed = failing(await run_all(copy))
    assert set(failed) == {"collection.silent_sources"}
    assert failed["collection.silent_sources"].evidence[0]["object"] == "source:sftp-old"


async def test_a_record_left_in_suspense(copy: asyncpg.Pool) -> None:
    # The unknown caller turns out to be A1's second line; the record sat for ten days.
    sid = await copy.fetchval("SELECT suspense_id FROM suspense WHERE state = 'open'")
    await copy.execute("UPDATE suspense SET created_at = now() - interval '10 days'")
    await copy.execute(
        "INSERT INTO account_identifiers (identifier, account_id) VALUES ($1, 'A1')",
        assurance_seed.UNKNOWN_CALLER)
    failed = failing(await run_all(copy))
    assert set(failed) == {"rating.suspense_aging"}
    aged = failed["rating.suspense_aging"]
    assert aged.evidence[0]["object"] == f"suspense:{sid}"
    # Two minutes national peak at A1's retail tariff: connect 0.10, then 0.20 + 0.10.
    assert aged.at_stake == {"EUR": "0.40"} and aged.unpriced == 0


async def test_a_chart_that_books_the_bank_on_the_receivables_account(
        copy: asyncpg.Pool) -> None:
    # The GL export configured with the bank account number equal to the receivables one:
    # A1's payment of 10.00 (10 February) then debits and credits 411 at once, and the
    # export's receivables no longer move as the receivables ledger does.
    chart = LedgerConfig(bank="411")
    ctx = Context(as_of=dt.datetime.now(dt.UTC), settings=Settings(), chart=chart)
    assert not failing(await run_all(copy, context()))
    failed = failing(await run_all(copy, ctx))
    assert set(failed) == {"ledger.gl_balanced"}
    gl = failed["ledger.gl_balanced"]
    assert gl.offending == 1 and gl.evidence[0]["object"] == "gl:2026-02/EUR/receivables"
    assert "by 0, the receivables ledger by -10000000" in gl.evidence[0]["detail"]
    assert gl.at_stake == {"EUR": "10.00"}
    assert gl.checked == await copy.fetchval(
        "SELECT count(DISTINCT (date_trunc('month', entry_date), currency))"
        " FROM ledger_entries")


async def test_tap_audit_totals_that_do_not_add_up(copy: asyncpg.Pool) -> None:
    await copy.execute("UPDATE settlement_files SET total_charge = 2300")
    failed = failing(await run_all(copy))
    assert set(failed) == {"settlement.tap_totals"}
    tap = failed["settlement.tap_totals"]
    assert tap.evidence[0]["object"].startswith("settlement_file:")
    assert tap.at_stake == {"SDR": "0.55"}  # 2.300 declared, 1.750 in the events


async def test_a_partner_return_that_does_not_net(copy: asyncpg.Pool) -> None:
    # DEUD1 returns the first event (1.000 SDR) in a RAP file: the netting holds.
    tap = await copy.fetchval("SELECT file_id FROM settlement_files WHERE name ="
                              " 'CDFRAF1DEUD100001'")
    rap = await copy.fetchval(
        "INSERT INTO settlement_files (partner, direction, file_type, kind, name, fsn, rap_fsn,"
        " content, sha256, event_count, total_charge, decimal_places, tap_currency, state,"
        " answers) VALUES ('DEUD1', 'in', 'rap', 'chargeable', 'RDDEUD1FRAF100001', 1, 1,"
        " '\\x00', 'r', 1, 1000, 3, 'SDR', 'received', $1) RETURNING file_id", tap)
    await copy.execute("UPDATE settlement_events SET state = 'returned', error_code = 34,"
                       " return_file_id = $1 WHERE event_index = 0", rap)
    assert not failing(await run_all(copy))
    # The RAP file's severe return value says 1.000, but the event marked returned by it is
    # the 0.750 one: the report's net position is 0.750, the events' 1.000.
    await copy.execute("UPDATE settlement_events SET state = CASE event_index WHEN 1 THEN"
                       " 'returned' ELSE 'sent' END, return_file_id = CASE event_index WHEN 1"
                       " THEN $1::bigint END, error_code = CASE event_index WHEN 1 THEN 34 END",
                       rap)
    failed = failing(await run_all(copy))
    assert set(failed) == {"settlement.netting"}
    net = failed["settlement.netting"]
    period = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    assert net.offending == 1 and net.evidence[0]["object"] == f"partner:DEUD1/{period}"
    assert "RDDEUD1FRAF100001" in net.evidence[0]["detail"]
    assert net.at_stake == {"SDR": "0.25"}


async def test_an_audit_row_altered(copy: asyncpg.Pool) -> None:
    await audit.chain_pending(copy)  # the seeded rows take their place in the chain
    await as_dba(copy, "UPDATE audit_log SET after = '{\"tampered\": true}' WHERE seq = 3")
    failed = failing(await run_all(copy))
    assert set(failed) == {"audit.chain"}
    chain = failed["audit.chain"]
    assert chain.evidence[0]["object"] == "audit:3"
    assert "does not match its hash" in chain.evidence[0]["detail"]


async def test_the_audit_tail_truncated_is_caught_by_the_checkpoint(
    copy: asyncpg.Pool, tmp_path: Path
) -> None:
    key = checkpoints.signing_key(tmp_path / "key.pem")
    async with copy.acquire() as conn:
        await checkpoints.create(conn, tmp_path / "cp", key)
    last = await copy.fetchval("SELECT max(pos) FROM audit_log")
    # Delete the last three rows and point the head at the new last row: the chain that is
    # left is perfectly consistent on its own.
    await as_dba(copy, f"DELETE FROM audit_log WHERE pos > {last - 3}",
                 f"UPDATE audit_head SET seq = {last - 3}, hash = (SELECT hash FROM audit_log"
                 f" WHERE pos = {last - 3})")
    assert (await audit.verify(copy)).ok
    failed = failing(await run_all(copy, context(tmp_path / "cp")))
    assert set(failed) == {"audit.chain"}
    assert failed["audit.chain"].evidence[0]["object"] == f"audit:{last}"
    assert "tail was deleted" in failed["audit.chain"].evidence[0]["detail"]


async def test_file_counts_that_do_not_reconcile(copy: asyncpg.Pool) -> None:
    fid = await copy.fetchval("SELECT source_file_id FROM source_files"
                              " WHERE name = 'MSC1_00002.jsonl'")
    await copy.execute("UPDATE source_files SET count_in = count_in + 1"
                       " WHERE source_file_id = $1", fid)
    failed = failing(await run_all(copy))
    assert set(failed) == {"conservation.file_balance"}
    balance = failed["conservation.file_balance"]
    assert balance.evidence[0]["object"] == f"source_file:{fid}"
    assert "in 10 but charged 9" in balance.evidence[0]["detail"]


async def test_a_reversal_with_the_wrong_sign(copy: asyncpg.Pool) -> None:
    cid = await copy.fetchval(
        "INSERT INTO charges (account_id, charge_id, event_time, kind, amount_micros, currency)"
        " VALUES ('A1', nextval('charge_id_seq'), '2026-02-04T10:00:00Z', 'reversal', 1500000,"
        " 'EUR') RETURNING charge_id")
    failed = failing(await run_all(copy))
    assert set(failed) == {"rating.sign"}
    assert failed["rating.sign"].evidence[0]["object"] == f"charge:A1/{cid}"
    assert failed["rating.sign"].at_stake == {"EUR": "1.50"}


async def test_a_zero_amount_where_the_tariff_charges(copy: asyncpg.Pool) -> None:
    gone = await copy.fetchrow(
        "SELECT account_id, charge_id, amount_micros FROM charges"
        " WHERE event_time >= '2026-02-01' AND amount_micros > 0 ORDER BY charge_id LIMIT 1")
    await copy.execute("UPDATE charges SET amount_micros = 0 WHERE account_id = $1"
                       " AND charge_id = $2", gone["account_id"], gone["charge_id"])
    failed = failing(await run_all(copy))
    # The sample re-rates it too, and its file's total is short by as much.
    assert set(failed) == {"rating.zero_amount", "rating.rerate_sample",
                           "conservation.file_totals"}
    zero = failed["rating.zero_amount"]
    assert [e["object"] for e in zero.evidence] == [
        f"charge:{gone['account_id']}/{gone['charge_id']}"]
    assert zero.at_stake == {"EUR": _text(gone["amount_micros"])}


async def test_a_return_left_open(copy: asyncpg.Pool) -> None:
    await copy.execute("UPDATE settlement_files SET created_at = now() - interval '10 days'")
    eid = await copy.fetchval("UPDATE settlement_events SET state = 'returned', error_code = 34"
                              " WHERE event_index = 1 RETURNING event_id")
    failed = failing(await run_all(copy))
    assert set(failed) == {"settlement.returns_open"}
    returned = failed["settlement.returns_open"]
    assert returned.evidence[0]["object"] == f"settlement_event:{eid}"
    assert returned.at_stake == {"EUR": "0.75"}


async def test_usage_outside_any_subscription(copy: asyncpg.Pool) -> None:
    # B1's plan is made to start on 20 January: its earlier calls had none.
    await copy.execute("UPDATE subscriptions SET valid_from = '2026-01-20' WHERE account_id = 'B1'")
    early = await copy.fetchval(
        "SELECT sum(c.amount_micros) FROM charges c WHERE c.account_id = 'B1'"
        " AND c.event_time < '2026-01-20'")
    failed = failing(await run_all(copy))
    # Re-rated now, those calls find no plan either: the sample names them too.
    assert set(failed) == {"rating.unsubscribed_usage", "rating.rerate_sample"}
    assert failed["rating.unsubscribed_usage"].at_stake == {"EUR": _text(early)}


async def test_a_failure_is_an_outbox_event_and_the_run_is_stored(copy: asyncpg.Pool) -> None:
    await copy.execute("UPDATE settlement_files SET total_charge = 2300")
    run = await run_all(copy)
    event = await copy.fetchrow(
        "SELECT stream, payload::text FROM outbox_events WHERE type = 'control.failed'")
    assert event["stream"] == "control:settlement.tap_totals"
    assert f'"run_id": {run.run_id}' in event["payload"]
    stored = await repo.get(copy, run.run_id)
    assert stored.failed == 1 and [r.control for r in stored.results if r.status == "fail"] \
        == ["settlement.tap_totals"]
    result = next(r for r in stored.results if r.status == "fail")
    # The evidence query lists every offender when run as is.
    assert len(await copy.fetch(result.evidence_query)) == result.offending


def _text(micros: int) -> str:
    from billing_oss.server.assurance.model import decimal_text

    return decimal_text(micros)
