"""Settlement with a roaming partner, end to end against real PostgreSQL and an in-process
asyncssh SFTP server: visiting usage ingested → TAP files generated and uploaded → a RAP
with one fatal and one severe return collected → the file regenerated, the event corrected
and resubmitted → a report that nets to the hand-computed figure. Bad input changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import asyncssh
import msgspec
import pytest
from pycrate_asn1dir.TAP3 import RAP_0105, TAP_0312

from billing_oss.adapters.formats import rap as rapfmt
from billing_oss.adapters.formats import tap3_writer as writer
from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.adapters.formats.tap3 import Tap3File
from billing_oss.core.errors import (
    BillingError,
    ConfigError,
    Conflict,
    InvalidRequest,
    NotFound,
)
from billing_oss.native.tap3enc import encode_events
from billing_oss.server import config, rerate
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.pipeline.raters import build_rater, load_rater
from billing_oss.server.settlement import (
    exchange,
    inbound,
    outbound,
    partners,
    repo,
    report,
    tapin,
)
from billing_oss.server.settlement.model import PartnerIn, RateIn, SftpEndpoint
from billing_oss.server.settlement.wholesale import MissingRate
from billing_oss.server.store.catalog_repo import load_catalog
from tests.conftest import VECTORS
from tests.sftp_server import PASSWORD, sftp_server

ACTOR = "test:settlement"
US, THEM = "FRAF1", "DEUD1"
RATE = {"kind": "*", "zone": "*", "band": "*", "connect_fee": "0"}
CATALOG = {
    "currency": "EUR",
    "tariffs": [
        {"id": "retail", "versions": [_v := {
            "effective_from": "2026-01-01T00:00:00Z", "timezone": "UTC",
            "zones": {"any": list("0123456789")},
            "time_bands": [{"name": "all", "default": True}],
            "rates": [
                RATE | {"kind": "voice", "steps": [
                    {"from": 0, "price": "0.12", "unit": 60, "increment": 60}]},
                RATE | {"kind": "sms", "steps": [
                    {"from": 0, "price": "0.05", "unit": 1, "increment": 1}]},
                RATE | {"kind": "data", "steps": [
                    {"from": 0, "price": "0.01", "unit": 1048576, "increment": 1024}]}]}]},
        {"id": "wholesale-de", "versions": [_v]},
    ],
    "accounts": [{"id": "OWN1", "identifiers": ["33611111111"], "tariff": "retail"}],
}
VISITOR, VISITOR2 = "262011111111111", "262012222222222"


def usage(key: str, **fields: Any) -> dict[str, Any]:
    return {"record_key": key, "source": "", **fields}


# Hand-computed: voice 90 s → 2 × 0.12 = 0.24 EUR, SMS 0.05, data 2 MiB → 0.02, MT voice
# 30 s → 0.12; at 1.25 EUR per SDR, 3 decimals: 0.192, 0.040, 0.016, 0.096 SDR.
RECORDS = [
    usage("v1", kind="voice", event_time="2026-01-05T10:00:00Z", calling="4917011111111",
          called="33612345678", imsi=VISITOR, duration_s=90),
    usage("s1", kind="sms", event_time="2026-01-06T11:00:00Z", calling="4917011111111",
          called="33699999999", imsi=VISITOR),
    usage("d1", kind="data", event_time="2026-01-20T12:00:00Z", msisdn="4917022222222",
          imsi=VISITOR2, volume_up=1048576, volume_down=1048576),
    usage("m1", kind="voice", event_time="2026-01-21T13:00:00Z", calling="33655555555",
          called="4917011111111", imsi=VISITOR, duration_s=30, attrs={"direction": "mt"}),
    usage("own", kind="voice", event_time="2026-01-07T10:00:00Z", calling="33611111111",
          called="33612345678", duration_s=60),
    usage("other", kind="voice", event_time="2026-01-07T10:00:00Z", calling="4470000000",
          called="33612345678", imsi="234150000000000", duration_s=60),
]
JAN, MID, FEB, MAR = (dt.datetime(2026, m, d, tzinfo=dt.UTC)
                      for m, d in ((1, 1), (1, 16), (2, 1), (3, 1)))


@pytest.fixture(scope="module")
def host_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="module")
async def partner_sftp(tmp_path_factory: pytest.TempPathFactory, host_key: asyncssh.SSHKey
                       ) -> AsyncIterator[tuple[Path, int]]:
    root = tmp_path_factory.mktemp("partner")
    (root / "in").mkdir()
    (root / "out").mkdir()
    async with sftp_server(root, host_key) as port:
        yield root, port


@pytest.fixture(scope="module")
async def setup(pool: asyncpg.Pool, partner_sftp: tuple[Path, int],
                tmp_path_factory: pytest.TempPathFactory, host_key: asyncssh.SSHKey
                ) -> asyncpg.Pool:
    await load_catalog(pool, CATALOG)
    cfg = config.load(env={})
    pipeline = Pipeline(pool, cfg.pipeline, rater_factory=build_rater,
                        decoders={"jsonl": FormatDecoder("jsonl")})
    path = tmp_path_factory.mktemp("usage") / "visitors.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in RECORDS))
    outcome = await pipeline.ingest_file(path, source="msc1", format="jsonl")
    assert (outcome.counts.charged, outcome.counts.suspense) == (1, 5)
    _root, port = partner_sftp
    async with pool.acquire() as conn, conn.transaction():
        await partners.put(conn, ACTOR, PartnerIn(
            tadig=THEM, our_tadig=US, name="Deutsche Demo", local_currency="EUR",
            wholesale_tariff="wholesale-de", imsi_prefixes=["26201"], utc_offset="+0100",
            sftp=SftpEndpoint(host="127.0.0.1", port=port, username="billing",
                              password=PASSWORD, outbound_dir="in", inbound_dir="out",
                              known_hosts=host_key.export_public_key().decode().strip())))
        await partners.put_rate(conn, ACTOR, RateIn(local_currency="EUR",
                                                    valid_from=dt.date(2026, 1, 1),
                                                    rate="1.25"))
    return pool


async def _generate(pool: asyncpg.Pool, start: dt.datetime, end: dt.datetime,
                    ) -> outbound.Generated:
    async with pool.acquire() as conn, conn.transaction():
        return await outbound.generate(conn, ACTOR, THEM, start, end)


async def test_missing_exchange_rate_writes_nothing_and_keeps_the_number(
        setup: asyncpg.Pool) -> None:
    async with setup.acquire() as conn, conn.transaction():
        await partners.put(conn, ACTOR, PartnerIn(
            tadig="GBRX1", our_tadig=US, local_currency="EUR", wholesale_tariff="wholesale-de",
            imsi_prefixes=["23415"], rate_source="ECB"))
    with pytest.raises(MissingRate, match=r"no exchange rate SDR→EUR from source 'ECB' on or "
                                          r"before 2026-02-01 \(field exchange_rates."
                                          r"valid_from\)"):
        async with setup.acquire() as conn, conn.transaction():
            await outbound.generate(conn, ACTOR, "GBRX1", JAN, FEB,
                                    now=dt.datetime(2026, 2, 2, tzinfo=dt.UTC))
    assert await repo.last_fsn(setup, "GBRX1", "out", "chargeable") == 0
    assert await repo.list_files(setup, partner="GBRX1", state=None, after=None, limit=9) == []
    open_other = await setup.fetchval("SELECT count(*) FROM suspense WHERE state = 'open' "
                                      "AND record->>'imsi' LIKE '23415%'")
    assert open_other == 1


async def test_partner_with_unknown_tariff_is_refused(setup: asyncpg.Pool) -> None:
    with pytest.raises(InvalidRequest, match="wholesale_tariff 'nope' is no tariff"):
        async with setup.acquire() as conn, conn.transaction():
            await partners.put(conn, ACTOR, PartnerIn(
                tadig="ITAX1", our_tadig=US, local_currency="EUR", wholesale_tariff="nope",
                imsi_prefixes=["22201"]))


def _decoded(content: bytes) -> list[tuple[str | None, str, str]]:
    with Tap3File(content, source="check") as f:
        return [(r.imsi, r.event_time, r.charge or "") for b in f.batches() for r in b.records]


def _event_ber(content: bytes, index: int) -> bytes:
    top = TAP_0312.DataInterChange
    top.from_ber(content)
    _name, batch = top.get_val()
    ev = batch["callEventDetails"][index]
    one = TAP_0312.CallEventDetail
    one.set_val(ev)
    return one.to_ber()


async def test_a_settlement_cycle_end_to_end(setup: asyncpg.Pool,
                                             partner_sftp: tuple[Path, int]) -> None:
    pool = setup
    root, _port = partner_sftp
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    # 1. Two TAP files of the visitors' usage, then a Notification for an empty period.
    first = await _generate(pool, JAN, MID)
    second = await _generate(pool, MID, FEB)
    empty = await _generate(pool, FEB, MAR)
    assert [f.file.name for f in (first, second, empty)] == [
        "CDFRAF1DEUD100001", "CDFRAF1DEUD100002", "CDFRAF1DEUD100003"]
    assert (first.file.event_count, first.file.total()) == (2, "0.232")
    assert (second.file.event_count, second.file.total()) == (2, "0.112")
    assert (empty.file.file_type, empty.file.event_count) == ("notification", 0)
    content = await repo.file_content(pool, first.file.file_id)
    assert content is not None
    assert _decoded(content) == [(VISITOR, "2026-01-05T10:00:00Z", "0.192"),
                                 (VISITOR, "2026-01-06T11:00:00Z", "0.040")]
    settled = await pool.fetchval("SELECT count(*) FROM suspense WHERE state = 'retried' AND "
                                  "resolution LIKE 'settlement: sent to DEUD1%'")
    assert settled == 4
    # 2. Uploaded under a temporary name, renamed; marked sent.
    sent = await exchange.send(pool, ACTOR, THEM)
    assert [s.name for s in sent] == [first.file.name, second.file.name, empty.file.name]
    assert sorted(p.name for p in (root / "in").iterdir()) == [s.name for s in sent]
    assert (root / "in" / first.file.name).read_bytes() == content
    assert await exchange.send(pool, ACTOR, THEM) == []
    (root / "collected").mkdir()
    for taken in (root / "in").iterdir():  # the partner collects them
        taken.rename(root / "collected" / taken.name)
    # 3. The partner returns file 1 whole (fatal) and the MT call of file 2 (severe).
    second_content = await repo.file_content(pool, second.file.file_id)
    assert second_content is not None
    rap = rapfmt.encode_return_batch(
        sender=THEM, recipient=US, rap_fsn=1, created="20260203100000",
        available="20260203100000", utc_offset="+0100", tap_decimal_places=3,
        tap_currency="SDR", returns=[
            rapfmt.ReturnSpec(kind="fatal", fsn="00001", error_codes=(33,),
                              part="transferBatch"),
            rapfmt.ReturnSpec(kind="severe", fsn="00002", error_codes=(231,),
                              event_ber=_event_ber(second_content, 1), charge=96)])
    (root / "out" / "RCDEUD1FRAF100001").write_bytes(rap)
    collected = await exchange.collect(pool, ACTOR, THEM)
    assert [(c.name, c.ok) for c in collected] == [("RCDEUD1FRAF100001", True)]
    assert (root / "out" / "done" / "RCDEUD1FRAF100001").exists()
    files = {f.file_id: f for f in await repo.list_files(pool, partner=THEM, state=None,
                                                         after=None, limit=100)}
    assert files[first.file.file_id].state == "superseded"
    again = next(f for f in files.values() if f.supersedes == first.file.file_id)
    assert (again.name, again.fsn, again.rap_fsn, again.state, again.total()) == (
        "CDFRAF1DEUD100001", 1, 1, "generated", "0.232")
    regenerated = await repo.file_content(pool, again.file_id)
    assert regenerated is not None and regenerated != content
    with Tap3File(regenerated, source="check") as f:
        assert f.walker.batch_control["RapFileSequenceNumber"] == "00001"
    async with pool.acquire() as conn:
        returned = await repo.events_in_state(conn, THEM, "returned")
    assert [(e.record_key, e.error_code) for e in returned] == [("m1", 231)]
    # 4. Corrected and resubmitted in the next file; the regenerated file and our
    #    acknowledgement of the RAP go out with it.
    async with pool.acquire() as conn, conn.transaction():
        assert await inbound.correct(conn, ACTOR, THEM) == 1
    resubmitted = await _generate(pool, MAR, MAR + dt.timedelta(days=31))
    assert (resubmitted.file.fsn, resubmitted.file.event_count,
            resubmitted.file.total()) == (4, 1, "0.096")
    sent = await exchange.send(pool, ACTOR, THEM)
    assert [s.name for s in sent] == ["CDFRAF1DEUD100001", "AKFRAF1DEUD100001",
                                      "CDFRAF1DEUD100004"]
    assert (root / "in" / "CDFRAF1DEUD100001").read_bytes() == regenerated
    # 5. The report nets to the hand-computed figure: 0.344 SDR of usage.
    async with pool.acquire() as conn:
        built = await report.build(conn, THEM, started,
                                   dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    assert (built.sent.files, built.sent.events, built.sent.charges) == (4, 5, "0.440")
    assert (built.returned.files, built.returned.events, built.returned.charges) == (
        1, 1, "0.096")
    assert built.fatal_returns == 1 and built.received.charges == "0.000"
    assert built.net == "0.344"
    assert all(c["ok"] for c in built.checks)
    assert report.to_csv(built).splitlines()[-1].endswith("net,,,0.344,SDR")
    pdf = report.to_pdf(built)
    assert pdf[:5] == b"%PDF-"
    printed = (await asyncio.to_thread(subprocess.run, ["pdftotext", "-", "-"], input=pdf,
                                       capture_output=True, check=True)).stdout.decode()
    assert "0.344" in printed and "CDFRAF1DEUD100001" in printed, printed
    # 6. The lifecycle is in the audit log.
    actions = [r[0] for r in await pool.fetch(
        "SELECT action FROM audit_log WHERE entity LIKE 'settlement_file:%' ORDER BY seq")]
    for action in ("settlement.file.generated", "settlement.file.sent",
                   "settlement.rap.received", "settlement.file.superseded",
                   "settlement.file.resubmitted"):
        assert action in actions


async def test_a_rap_naming_an_unknown_file_changes_nothing(setup: asyncpg.Pool,
                                                           partner_sftp: tuple[Path, int]
                                                           ) -> None:
    before = await setup.fetch("SELECT event_id, state FROM settlement_events ORDER BY 1")
    ev = (9, VISITOR, None, None, "20260105110000", 1, 90, "11", None, None, None, None, 192,
          1, 1)
    rap = rapfmt.encode_return_batch(
        sender=THEM, recipient=US, rap_fsn=2, created="20260204100000",
        available="20260204100000", utc_offset="+0100", tap_decimal_places=3,
        tap_currency="SDR", returns=[
            rapfmt.ReturnSpec(kind="severe", fsn="00099", error_codes=(200,),
                              event_ber=encode_events([ev]), charge=192)])
    with pytest.raises(NotFound, match="ReturnDetail 0: FileSequenceNumber 00099 names no "
                                       "TAP file we sent to DEUD1"):
        await inbound.receive(setup, ACTOR, "RCDEUD1FRAF100002", rap)
    after = await setup.fetch("SELECT event_id, state FROM settlement_events ORDER BY 1")
    assert before == after
    kept = await repo.list_files(setup, partner=THEM, state="rejected", after=None, limit=9)
    assert [(k.name, json.loads(json.dumps(k.detail))["reason"][:13]) for k in kept] == [
        ("RCDEUD1FRAF100002", "ReturnDetail ")]
    assert await repo.last_fsn(setup, THEM, "in", "rap") == 1


async def test_a_repeated_rap_sequence_number_is_refused(setup: asyncpg.Pool) -> None:
    rap = rapfmt.encode_return_batch(
        sender=THEM, recipient=US, rap_fsn=1, created="20260205100000",
        available="20260205100000", utc_offset="+0100", tap_decimal_places=3,
        tap_currency="SDR", returns=[])
    with pytest.raises(Conflict, match="sequence number 00001 was already received in "
                                       "RCDEUD1FRAF100001"):
        await inbound.receive(setup, ACTOR, "RCDEUD1FRAF100001b", rap)


async def test_sequence_numbers_recycle_after_99999(setup: asyncpg.Pool) -> None:
    async with setup.acquire() as conn, conn.transaction():
        await repo.set_last_fsn(conn, THEM, "out", "test", 99998)
        assert await repo.next_fsn(conn, THEM, "out", "test") == (99999, 0)
        assert await repo.next_fsn(conn, THEM, "out", "test") == (1, 1)
        made = await outbound.generate(conn, ACTOR, THEM, FEB, MAR, kind="test")
        assert (made.file.name, made.file.cycle) == ("TDFRAF1DEUD100002", 1)


async def test_inbound_tap_with_audit_mismatch_is_answered_by_a_fatal_rap(
        setup: asyncpg.Pool) -> None:
    # libxfsx's TransferBatch WERFD → XLKJE declares TotalCharge 2.300; its events sum to 71.2.
    async with setup.acquire() as conn, conn.transaction():
        await partners.put(conn, ACTOR, PartnerIn(
            tadig="WERFD", our_tadig="XLKJE", local_currency="EUR",
            wholesale_tariff="wholesale-de", imsi_prefixes=["999"]))
    data = (VECTORS / "tap_3_12_valid.ber").read_bytes()
    got = await inbound.receive(setup, ACTOR, "CDWERFDXLKJE31707", data)
    assert isinstance(got, tapin.TapReceived)
    assert got.file.state == "rejected" and got.rap == "RCXLKJEWERFD00001"
    assert got.fatal == ["TotalCharge is 2300 but the call events' charges sum to 71200"]
    answer = await setup.fetchrow("SELECT file_id, content FROM settlement_files "
                                  "WHERE name = $1", got.rap)
    rap = rapfmt.decode_rap(answer["content"])
    (fatal,) = rap.returns
    assert (rap.sender, rap.recipient, fatal.fsn, fatal.part, fatal.error_codes) == (
        "XLKJE", "WERFD", "31707", "auditControlInfo", (100,))
    top = RAP_0105.RapDataInterChange
    top.from_ber(answer["content"])
    assert top.get_val()[1]["returnDetails"][0][1]["auditControlInfoError"][
        "auditControlInfo"]["totalCharge"] == 2300
    again = await inbound.receive(setup, ACTOR, "CDWERFDXLKJE31707", data)
    assert again.duplicate


async def test_inbound_tap_is_stored_and_a_bad_event_returned_severe(
        setup: asyncpg.Pool) -> None:
    good = (9, "208010000000001", "33611111111", "4930123", "20260301100000", 1, 60, "11",
            None, None, None, None, 1500, 1, 1)
    bad = (*good[:5], 9, *good[6:12], 700, *good[13:])  # UTC offset code 9 is not declared
    h = writer.TapHeader(sender=THEM, recipient=US, fsn=1, created="20260302000000",
                         cutoff="20260302000000", available="20260302000000",
                         utc_offset="+0100", tap_currency="SDR", decimal_places=3)
    data, _ = writer.encode_transfer_batch(h, [good, bad, good])
    got = await inbound.receive(setup, ACTOR, "CDDEUD1FRAF100001", data)
    assert isinstance(got, tapin.TapReceived)
    assert (got.file.state, got.accepted, got.severe, got.file.total()) == (
        "accepted", 2, 1, "3.700")
    stored = await repo.events_of_file(setup, got.file.file_id)
    assert [(e.state, e.tap_charge) for e in stored] == [("received", 1500)] * 2
    content = await setup.fetchval("SELECT content FROM settlement_files WHERE name = $1",
                                   got.rap)
    rap = rapfmt.decode_rap(content)
    (severe,) = rap.returns
    assert (severe.kind, severe.fsn, severe.error_codes, severe.charge) == (
        "severe", "00001", (10,), 700)
    assert rap.total_severe_return == 700


async def test_a_gap_raises_an_alarm_and_an_acknowledgement_closes_our_rap(
        setup: asyncpg.Pool) -> None:
    ev = (9, "208010000000001", None, None, "20260305100000", 1, 60, "11", None, None, None,
          None, 1500, 1, 1)
    h = writer.TapHeader(sender=THEM, recipient=US, fsn=3, created="20260306000000",
                         cutoff="20260306000000", available="20260306000000",
                         utc_offset="+0100", decimal_places=3)
    data, _ = writer.encode_transfer_batch(h, [ev])
    got = await inbound.receive(setup, ACTOR, "CDDEUD1FRAF100003", data)
    assert got.file.state == "accepted"
    gap = await setup.fetchval("SELECT payload::text FROM outbox_events WHERE type = "
                               "'settlement.sequence_gap' AND stream = 'partner:DEUD1'")
    payload = json.loads(gap)
    assert (payload["expected"], payload["received"], payload["file_type"]) == (
        2, 3, "tap-chargeable")
    ours = await repo.find_file(setup, partner=THEM, direction="out", file_type="rap", fsn=1)
    assert ours is not None and ours.name == "RCFRAF1DEUD100001" and ours.state == "generated"
    ack = rapfmt.encode_acknowledgement(sender=THEM, recipient=US, rap_fsn="00001",
                                        created="20260307000000", available="20260307000000",
                                        utc_offset="+0100")
    acked = await inbound.receive(setup, ACTOR, "AKDEUD1FRAF100001", ack)
    assert isinstance(acked, inbound.Received) and acked.acknowledged == ["RCFRAF1DEUD100001"]
    closed = await repo.get_file(setup, ours.file_id)
    assert closed is not None and closed.state == "acknowledged" and closed.closed_at
    async with setup.acquire() as conn:
        built = await report.build(conn, THEM, dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                                   dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    # received: 3.700 (3 events, one returned by our RAP at 0.700) + 1.500
    assert (built.received.files, built.received.charges) == (2, "5.200")
    assert (built.returned_by_us.files, built.returned_by_us.charges) == (1, "0.700")
    assert built.net == "-4.156"  # 0.344 of our usage − 4.500 of theirs


async def test_send_after_a_crash_between_rename_and_mark_uploads_nothing_twice(
        setup: asyncpg.Pool, partner_sftp: tuple[Path, int]) -> None:
    root, _port = partner_sftp
    await exchange.send(setup, ACTOR, THEM)  # what earlier tests left to send
    for taken in (root / "in").iterdir():  # the partner collected everything so far
        taken.rename(root / "collected" / taken.name)
    made = await _generate(setup, dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
                           dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    content = await repo.file_content(setup, made.file.file_id)
    assert content is not None
    # the previous send renamed the file, then died before marking it sent
    (root / "in" / made.file.name).write_bytes(content)
    before = (root / "in" / made.file.name).stat().st_mtime_ns
    sent = await exchange.send(setup, ACTOR, THEM)
    assert [s.name for s in sent] == [made.file.name]
    assert (root / "in" / made.file.name).stat().st_mtime_ns == before
    marked = await repo.get_file(setup, made.file.file_id)
    assert marked is not None and marked.state == "sent"
    # a different file under a name the partner has not collected is never overwritten
    again = await _generate(setup, dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
                            dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    (root / "in" / again.file.name).write_bytes(b"someone else's file")
    with pytest.raises(BillingError, match=r"with other content .* not overwritten"):
        await exchange.send(setup, ACTOR, THEM)
    assert (root / "in" / again.file.name).read_bytes() == b"someone else's file"
    still = await repo.get_file(setup, again.file.file_id)
    assert still is not None and still.state == "generated"


async def test_inbound_tap_reusing_a_sequence_number_with_other_content_is_returned_fatal(
        setup: asyncpg.Pool) -> None:
    """FileSequenceNumber 00001 of the partner was received (the severe-return test above);
    another file under that number is rejected whole (error 201, BatchControlInfo), stores no
    event and leaves the first file as it was."""
    first = await repo.find_file(setup, partner=THEM, direction="in", file_type="tap", fsn=1)
    assert first is not None and first.state == "accepted"
    stored = await repo.events_of_file(setup, first.file_id)
    ev = (9, "208010000000001", "33611111111", "4930123", "20260310100000", 1, 60, "11",
          None, None, None, None, 900, 1, 1)
    h = writer.TapHeader(sender=THEM, recipient=US, fsn=1, created="20260311000000",
                         cutoff="20260311000000", available="20260311000000",
                         utc_offset="+0100", tap_currency="SDR", decimal_places=3)
    data, _ = writer.encode_transfer_batch(h, [ev])
    events_before = await setup.fetchval("SELECT count(*) FROM settlement_events")
    got = await inbound.receive(setup, ACTOR, "CDDEUD1FRAF100001b", data)
    assert isinstance(got, tapin.TapReceived) and not got.duplicate
    assert got.file.state == "rejected" and got.accepted == 0
    assert got.fatal == ["FileSequenceNumber 00001 was already received in CDDEUD1FRAF100001 "
                         "with other content"]
    assert await setup.fetchval("SELECT count(*) FROM settlement_events") == events_before
    assert await repo.events_of_file(setup, first.file_id) == stored
    assert (await repo.get_file(setup, first.file_id)) == first
    content = await setup.fetchval("SELECT content FROM settlement_files WHERE name = $1",
                                   got.rap)
    (fatal,) = rapfmt.decode_rap(content).returns
    assert (fatal.kind, fatal.fsn, fatal.part, fatal.error_codes) == (
        "fatal", "00001", "batchControlInfo", (201,))


async def test_a_partner_endpoint_without_a_host_key_is_refused_unless_explicitly_insecure(
        setup: asyncpg.Pool, partner_sftp: tuple[Path, int],
        caplog: pytest.LogCaptureFixture) -> None:
    _root, port = partner_sftp
    endpoint = SftpEndpoint(host="127.0.0.1", port=port, username="billing", password=PASSWORD,
                            outbound_dir="in", inbound_dir="out")
    async with setup.acquire() as conn, conn.transaction():
        await partners.put(conn, ACTOR, PartnerIn(
            tadig="XXNO1", our_tadig=US, local_currency="EUR", wholesale_tariff="wholesale-de",
            imsi_prefixes=["99901"], sftp=endpoint))
    made = await setup.fetchval("SELECT count(*) FROM settlement_files")
    with pytest.raises(ConfigError, match=r"^partner XXNO1 sftp.known_hosts: the server's host "
                                          r"key is required, or sftp.insecure_skip_host_key = "
                                          r"true$"):
        await exchange.send(setup, ACTOR, "XXNO1")
    with pytest.raises(ConfigError, match=r"sftp\.known_hosts"):
        await exchange.collect(setup, ACTOR, "XXNO1")
    async with setup.acquire() as conn, conn.transaction():
        await partners.put(conn, ACTOR, PartnerIn(
            tadig="XXNO1", our_tadig=US, local_currency="EUR", wholesale_tariff="wholesale-de",
            imsi_prefixes=["99901"], sftp=msgspec.structs.replace(
                endpoint, insecure_skip_host_key=True)))
    with caplog.at_level("WARNING", logger="billing_oss.server.settlement.exchange"):
        assert await exchange.send(setup, ACTOR, "XXNO1") == []
        assert await exchange.collect(setup, ACTOR, "XXNO1") == []
    warned = [r for r in caplog.records if "host key not checked" in r.getMessage()]
    assert len(warned) == 2  # each connection
    assert await setup.fetchval("SELECT count(*) FROM settlement_files") == made


SPAIN, ROAMER_MSISDN, ROAMER_IMSI = "ESPV1", "33633333333", "208010000000033"


async def _roamer(pool: asyncpg.Pool) -> None:
    """Our subscriber ROAM1 (loading it again changes nothing)."""
    from tests.integration import billing_seed

    await load_catalog(pool, {"currency": "EUR", "tax_rates": billing_seed.TAX_RATES,
                              "accounts": [{"id": "ROAM1", "tariff": "retail",
                                            "identifiers": [ROAMER_MSISDN, ROAMER_IMSI]}]})


async def test_partner_charges_for_our_subscriber_reach_the_invoice_once(
        setup: asyncpg.Pool) -> None:
    """Inbound TAP (we are the home network): each accepted event becomes our subscriber's
    usage, priced at the partner's charge × our SDR rate × (1 + markup), in the transaction
    that accepts the file; the bill run puts it on the invoice as roaming lines."""
    from billing_oss.server.billing import issuing
    from billing_oss.server.billing.bill_runs import bill_run
    from tests.integration import billing_seed

    await _roamer(setup)
    async with setup.acquire() as conn, conn.transaction():
        await partners.put(conn, ACTOR, PartnerIn(
            tadig=SPAIN, our_tadig=US, name="Iberia Demo", local_currency="EUR",
            wholesale_tariff="wholesale-de", imsi_prefixes=["21407"],
            retail_markup_percent="10"))
    moc = (9, ROAMER_IMSI, ROAMER_MSISDN, "34911111111", "20260405100000", 1, 95, "11",
           None, None, None, None, 2000, 1, 1)
    mtc = (10, ROAMER_IMSI, ROAMER_MSISDN, "34922222222", "20260406100000", 1, 30, "11",
           None, None, None, None, 800, 1, 1)
    sms = (9, ROAMER_IMSI, ROAMER_MSISDN, "34933333333", "20260407100000", 1, 0, "22",
           None, None, None, None, 101, 1, 1)
    gprs = (14, ROAMER_IMSI, ROAMER_MSISDN, None, "20260408100000", 1, 600, None,
            3_000_000, 1_000_000, "internet", 77, 1500, 1, 1)
    stranger = (9, "208019999999999", "33699990000", "34944444444", "20260409100000", 1, 60,
                "11", None, None, None, None, 500, 1, 1)
    h = writer.TapHeader(sender=SPAIN, recipient=US, fsn=1, created="20260410000000",
                         cutoff="20260410000000", available="20260410000000",
                         utc_offset="+0000", tap_currency="SDR", decimal_places=3)
    data, _ = writer.encode_transfer_batch(h, [moc, mtc, sms, gprs, stranger])

    got = await inbound.receive(setup, ACTOR, "CDESPV1FRAF100001", data)
    assert isinstance(got, tapin.TapReceived)
    assert (got.file.state, got.accepted, got.billed, got.unbilled) == ("accepted", 5, 4, 1)
    again = await inbound.receive(setup, ACTOR, "CDESPV1FRAF100001", data)
    assert isinstance(again, tapin.TapReceived) and again.duplicate
    source = f"roaming:{SPAIN}"
    # Hand-computed at 1.25 EUR per SDR, +10 %: 2.000 → 2.75, 0.800 → 1.10,
    # 0.101 → 0.138875, 1.500 → 2.0625 EUR; the stranger's 0.500 SDR is in suspense.
    charged = await setup.fetch(
        "SELECT u.kind, c.amount_micros, c.currency, c.zone FROM usage_records u JOIN charges c"
        " ON c.usage_id = u.usage_id AND c.account_id = u.account_id WHERE u.source = $1"
        " ORDER BY u.event_time", source)
    assert [tuple(r) for r in charged] == [
        ("voice", 2_750_000, "EUR", "Roaming ESPV1"), ("voice", 1_100_000, "EUR",
                                                       "Roaming ESPV1"),
        ("sms", 138_875, "EUR", "Roaming ESPV1"), ("data", 2_062_500, "EUR", "Roaming ESPV1")]
    (suspended,) = await setup.fetch(
        "SELECT reason, detail FROM suspense WHERE source = $1", source)
    assert suspended["reason"] == "UNKNOWN_ACCOUNT"
    assert "33699990000" in suspended["detail"] and "CDESPV1FRAF100001" in suspended["detail"]

    run = await bill_run(setup, "2026-04", billing_seed.SETTINGS, accounts=["ROAM1"],
                         actor="test")
    (invoice_id,) = run.invoice_ids
    async with setup.acquire() as conn:
        content = (await issuing.load(conn, invoice_id)).content
    roaming = {ln.description: ln.gross_micros for ln in content.lines
               if ln.kind == "usage" and "Roaming" in ln.description}
    assert roaming == {"Voice — Roaming ESPV1": 3_850_000, "Sms — Roaming ESPV1": 138_875,
                       "Data — Roaming ESPV1": 2_062_500}
    async with setup.acquire() as conn:
        built = await report.build(conn, SPAIN, dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                                   dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    stored = await repo.events_of_file(setup, got.file.file_id)
    assert sum(e.tap_charge for e in stored) == 4901

    # A catalog rerate of the account leaves the partner-priced usage as it is.
    class Current:
        async def current(self) -> Any:
            async with setup.acquire() as conn:
                return await load_rater(conn)

    await rerate.submit(setup, ACTOR, "ROAM1", dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
                        dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    assert await rerate.run_next(setup, Current())
    assert await setup.fetchval(
        "SELECT count(*) FROM charges WHERE account_id = 'ROAM1' AND kind = 'reversal'") == 0
    # ... and the rating controls do not take the partner's price for a wrong catalog price.
    from billing_oss.server.assurance import engine
    from billing_oss.server.assurance.model import Context, Settings

    checked = await engine.run(
        setup, Context(as_of=dt.datetime.now(dt.UTC), settings=Settings(), checkpoint_dir=""),
        controls=["rating.rerate_sample", "rating.zero_amount"], trigger="cli", actor="test")
    assert [(r.control, r.status) for r in checked.results] == [
        ("rating.rerate_sample", "pass"), ("rating.zero_amount", "pass")]
    assert (built.received.events, built.received.charges) == (5, "4.901")


async def _partner(pool: asyncpg.Pool, tadig: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await partners.put(conn, ACTOR, PartnerIn(
            tadig=tadig, our_tadig=US, local_currency="EUR", wholesale_tariff="wholesale-de",
            imsi_prefixes=["22201"], max_event_age_days=30))


async def test_inbound_tap_in_another_currency_or_without_local_currency_is_returned_fatal(
        setup: asyncpg.Pool) -> None:
    await _partner(setup, "ITAV1")
    event = (9, ROAMER_IMSI, ROAMER_MSISDN, "39061111111", "20260301100000", 1, 60, "11",
             None, None, None, None, 1000, 1, 1)
    h = writer.TapHeader(sender="ITAV1", recipient=US, fsn=1, created="20260302000000",
                         cutoff="20260302000000", available="20260302000000",
                         utc_offset="+0100", local_currency="", tap_currency="EUR",
                         decimal_places=3)
    data, _ = writer.encode_transfer_batch(h, [event])
    got = await inbound.receive(setup, ACTOR, "CDITAV1FRAF100001", data)
    assert isinstance(got, tapin.TapReceived)
    assert got.file.state == "rejected"
    assert got.fatal == ["AccountingInfo.LocalCurrency is missing",
                         "TapCurrency EUR is not the agreed SDR"]
    assert await repo.events_of_file(setup, got.file.file_id) == []
    assert await setup.fetchval("SELECT count(*) FROM usage_records WHERE source = $1",
                                "roaming:ITAV1") == 0
    content = await setup.fetchval("SELECT content FROM settlement_files WHERE name = $1",
                                   got.rap)
    returns = rapfmt.decode_rap(content).returns
    assert [(r.kind, r.part, r.error_codes) for r in returns] == [
        ("fatal", "accountingInfo", (32,)), ("fatal", "accountingInfo", (100,))]


async def test_inbound_tap_events_with_bad_dates_or_missing_items_are_returned_severe(
        setup: asyncpg.Pool) -> None:
    """Created 2026-03-02 00:00 +0100 with a 30-day limit: an event after the creation and
    one before 2026-01-31 are returned, as are events missing an item TD.57 makes
    mandatory for their type; a zero charge that is declared stays."""
    await _partner(setup, "ITAV2")
    await _roamer(setup)

    def moc(start: str, charge: int) -> tuple[Any, ...]:
        return (9, ROAMER_IMSI, ROAMER_MSISDN, "39061111111", start, 1, 60, "11", None, None,
                None, None, charge, 1, 1)
    gprs = (14, ROAMER_IMSI, ROAMER_MSISDN, None, "20260301110000", 1, 60, None, 1000, 2000,
            "internet", 7, 300, 1, 1)
    events = [moc("20260301100000", 1000), moc("20260302120000", 200),
              moc("20260115100000", 400), moc("20260301120000", 0), gprs,
              moc("20260301130000", 0)]
    h = writer.TapHeader(sender="ITAV2", recipient=US, fsn=1, created="20260302000000",
                         cutoff="20260302000000", available="20260302000000",
                         utc_offset="+0100", decimal_places=3)
    data, _ = writer.encode_transfer_batch(h, events)
    top = TAP_0312.DataInterChange
    top.from_ber(data)
    name, batch = top.get_val()
    del batch["callEventDetails"][3][1]["basicServiceUsedList"][0]["chargeInformationList"]
    del batch["callEventDetails"][4][1]["gprsBasicCallInformation"][
        "gprsChargeableSubscriber"]
    top.set_val((name, batch))
    data = top.to_ber()

    got = await inbound.receive(setup, ACTOR, "CDITAV2FRAF100001", data)
    assert isinstance(got, tapin.TapReceived)
    assert (got.file.state, got.accepted, got.severe, got.billed) == ("accepted", 2, 4, 2)
    stored = await repo.events_of_file(setup, got.file.file_id)
    assert [(e.record_key, e.tap_charge) for e in stored] == [
        ("ITAV2:FRAF1:00001:0", 1000), ("ITAV2:FRAF1:00001:5", 0)]
    kept = await repo.get_file(setup, got.file.file_id)
    assert kept is not None
    severe = kept.detail["severe"]
    assert [line.split(": ", 1)[0] for line in severe] == [
        f"ITAV2:FRAF1:00001:{i}" for i in (1, 2, 3, 4)]
    assert "after the file's creation/transfer cut-off 2026-03-01T23:00:00+00:00" in severe[0]
    assert "more than 30 days before the file's creation" in severe[1]
    assert severe[2].endswith("MobileOriginatedCall: ChargeInformation is missing")
    assert severe[3].endswith("GprsCall: ChargeableSubscriber (IMSI) is missing")
    content = await setup.fetchval("SELECT content FROM settlement_files WHERE name = $1",
                                   got.rap)
    rap = rapfmt.decode_rap(content)
    assert [(r.kind, r.error_codes, r.charge) for r in rap.returns] == [
        ("severe", (100,), 200), ("severe", (261,), 400), ("severe", (30,), 0),
        ("severe", (30,), 300)]
    assert rap.total_severe_return == 900


async def test_inbound_tap_without_a_retail_exchange_rate_writes_nothing(
        setup: asyncpg.Pool) -> None:
    """Billing our subscriber needs our rate for the TAP currency: without it the file is
    refused whole, neither the partner charges nor the usage are written."""
    await _roamer(setup)
    async with setup.acquire() as conn, conn.transaction():
        await partners.put(conn, ACTOR, PartnerIn(
            tadig="ITAV3", our_tadig=US, local_currency="EUR", wholesale_tariff="wholesale-de",
            imsi_prefixes=["22203"], rate_source="ECB"))
    event = (9, ROAMER_IMSI, ROAMER_MSISDN, "39061111111", "20260301100000", 1, 60, "11",
             None, None, None, None, 1000, 1, 1)
    h = writer.TapHeader(sender="ITAV3", recipient=US, fsn=1, created="20260302000000",
                         cutoff="20260302000000", available="20260302000000",
                         utc_offset="+0100", decimal_places=3)
    data, _ = writer.encode_transfer_batch(h, [event])
    with pytest.raises(MissingRate, match="no ECB exchange rate SDR → EUR on 2026-03-01"):
        await inbound.receive(setup, ACTOR, "CDITAV3FRAF100001", data)
    assert await setup.fetchval(
        "SELECT count(*) FROM settlement_files WHERE partner = 'ITAV3'") == 0
    assert await setup.fetchval(
        "SELECT count(*) FROM usage_keys WHERE source = 'roaming:ITAV3'") == 0
