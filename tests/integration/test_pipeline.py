"""The mediation pipeline against a real PostgreSQL: exactly-once files and deliveries,
reconciliation, suspense and retry, partial records, a dropped connection mid-batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import ClassVar

import asyncpg
import msgspec
import pytest

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.core.contract import Delivery, Reject
from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure, FileHeader
from billing_oss.core.records import UsageRecord
from billing_oss.server import config
from billing_oss.server.composition import rater_factory, read_catalog_file
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo
from billing_oss.server.store.pool import Connection
from billing_oss.server.store.usage_repo import CheckpointMoved
from tests.conftest import REPO
from tests.pipeline_doubles import FlatRater

CALLER = "33611111111"  # an identifier of account A1 in the demo catalog


def voice(key: str, *, calling: str = CALLER, called: str = "33612345678", seconds: int = 60,
          when: str = "2026-02-03T10:00:00Z", **extra: object) -> UsageRecord:
    return UsageRecord(record_key=key, source="msc1", kind="voice", event_time=when,
                       duration_s=seconds, calling=calling, called=called, **extra)  # type: ignore[arg-type]


def write_jsonl(path: Path, records: list[UsageRecord], extra_lines: list[bytes] = ()) -> Path:  # type: ignore[assignment]
    with path.open("wb") as f:
        for r in records:
            f.write(msgspec.json.encode(r) + b"\n")
        for line in extra_lines:
            f.write(line + b"\n")
    return path


@pytest.fixture(scope="module")
async def pipeline(pool: asyncpg.Pool) -> AsyncIterator[Pipeline]:
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    cfg = config.load(env={}).pipeline
    cfg = msgspec.structs.replace(cfg, batch_size=7, retry_backoff_s=0.01)
    yield Pipeline(pool, cfg, rater_factory=FlatRater, decoders={"jsonl": FormatDecoder("jsonl")})


async def table_counts(pool: asyncpg.Pool) -> dict[str, int]:
    out = {}
    for table in ("usage_records", "charges", "suspense", "usage_keys", "source_files"):
        out[table] = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return out


async def test_file_reconciles_and_replay_changes_nothing(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    records = [voice(f"f1-{i}", seconds=i) for i in range(20)]
    records.append(voice("f1-3", seconds=999))  # same key again: a duplicate
    path = write_jsonl(tmp_path / "cdr1.jsonl", records, [b'{"not": "a record"}', b"{broken"])
    out = await pipeline.ingest_file(path, source="msc1", format="jsonl")
    c = out.counts
    assert (c.in_, c.charged, c.suspense, c.duplicates, c.pending) == (23, 20, 2, 1, 0)
    assert c.in_ == c.charged + c.suspense + c.duplicates + c.filtered + c.pending
    assert out.totals == {"EUR": "0.19"}  # Σ i·1000 micros for i < 20
    assert not out.replay
    before = await table_counts(pool)

    again = await pipeline.ingest_file(path, source="msc1", format="jsonl")
    assert again.replay and again.counts == out.counts and again.totals == out.totals
    assert await table_counts(pool) == before

    # The same records in another file (another name, other bytes) are all duplicates.
    copy = write_jsonl(tmp_path / "cdr1-copy.jsonl", records[:20])
    dup = await pipeline.ingest_file(copy, source="msc1", format="jsonl")
    assert (dup.counts.in_, dup.counts.duplicates, dup.counts.charged) == (20, 20, 0)
    stored = await pool.fetchval(
        "SELECT sum(amount_micros) FROM charges c "
        "JOIN usage_records u USING (account_id, usage_id) WHERE u.record_key LIKE 'f1-%'")
    assert stored == 190_000
    # Each charge carries its file, written with it (conservation.file_totals sums by it).
    files = await pool.fetch(
        "SELECT DISTINCT c.source_file_id FROM charges c"
        " JOIN usage_records u USING (account_id, event_time, usage_id)"
        " WHERE u.record_key LIKE 'f1-%'")
    assert [r[0] for r in files] == [out.source_file_id]


async def test_progress_counts_up_to_the_files_own_total(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "progress.jsonl", [voice(f"pr-{i}") for i in range(30)],
                       [b"{broken"])
    seen: list[tuple[int, int | None]] = []
    await pipeline.ingest_file(path, source="msc1", format="jsonl",
                               progress=lambda done, total: seen.append((done, total)))
    # where the run starts, each batch of 7, and the end
    assert [done for done, _ in seen] == [0, 7, 14, 21, 28, 31, 31]
    assert {total for _, total in seen} == {31}  # known before the first commit


class _LyingHeader(FormatDecoder):
    def header(self, path: Path, *, count: bool) -> FileHeader:
        return FileHeader(None, 3)  # declares 3 items; the file holds 20


async def test_a_header_that_undercounts_gives_no_total(pool: asyncpg.Pool, tmp_path: Path) -> None:
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, batch_size=7)
    lying = Pipeline(pool, cfg, rater_factory=FlatRater, decoders={"lying": _LyingHeader("jsonl")})
    path = write_jsonl(tmp_path / "lying.jsonl", [voice(f"ly-{i}") for i in range(20)])
    seen: list[tuple[int, int | None]] = []
    await lying.ingest_file(path, source="msc1", format="lying",
                            progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 3)  # believed until shown wrong
    assert all(total is None or total >= done for done, total in seen)
    assert seen[-1] == (20, 20)  # the end: the exact count


async def test_a_writer_whose_checkpoint_moved_stops_without_writing(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Another worker advanced the file (this writer's lock went with a dropped connection):
    the writer's next commit must fail whole instead of writing the same items again."""
    path = write_jsonl(tmp_path / "moved.jsonl", [voice(f"mv-{i}") for i in range(30)])
    tasks = []

    async def bump() -> None:
        async with pool.acquire() as conn:
            await conn.execute("UPDATE source_files SET committed_records = committed_records "
                               "+ 1 WHERE name = 'moved.jsonl'")

    def progress(done: int, total: int | None) -> None:
        if done == 0:  # the run starts: the other worker moves on behind its back
            tasks.append(asyncio.get_running_loop().create_task(bump()))

    with pytest.raises(CheckpointMoved):
        await pipeline.ingest_file(path, source="msc1", format="jsonl", progress=progress)
    await asyncio.gather(*tasks)
    committed = await pool.fetchval(
        "SELECT committed_records FROM source_files WHERE name = 'moved.jsonl'")
    stored = await pool.fetchval(
        "SELECT count(*) FROM usage_records WHERE record_key LIKE 'mv-%'")
    assert stored == committed - 1  # only what committed before the move; none after


async def test_suspense_keeps_raw_form_and_retry_charges_after_fix(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    records = [voice("s-unknown", calling="33699999999"), voice("s-zone", called="99912"),
               voice("s-time", when="yesterday")]
    path = write_jsonl(tmp_path / "susp.jsonl", records, [b"{broken"])
    out = await pipeline.ingest_file(path, source="msc1", format="jsonl")
    assert (out.counts.in_, out.counts.suspense) == (4, 4)
    rows = await pool.fetch(
        "SELECT record_key, reason, detail, raw, source_position, account_id FROM suspense "
        "WHERE source_file_id = $1 ORDER BY source_position", out.source_file_id)
    by_key = {r["record_key"]: r for r in rows}
    assert by_key["s-unknown"]["reason"] == Reason.UNKNOWN_ACCOUNT
    assert by_key["s-zone"]["reason"] == Reason.NO_ZONE and by_key["s-zone"]["account_id"] == "A1"
    assert by_key["s-time"]["reason"] == Reason.BAD_FIELD
    assert "event_time" in by_key["s-time"]["detail"]
    assert by_key[None]["raw"] == b"{broken" and by_key[None]["reason"] == Reason.MALFORMED
    assert by_key[None]["source_position"] == "susp.jsonl#3"

    # Replaying one of them through another file does not add a second suspense row.
    again = write_jsonl(tmp_path / "susp2.jsonl", records[:1])
    assert (await pipeline.ingest_file(again, source="msc1", format="jsonl")).counts.duplicates == 1

    # Fix the catalog: the unknown caller becomes an identifier of A1; retry charges it once.
    await pool.execute("INSERT INTO account_identifiers VALUES ('33699999999', 'A1', 'msisdn')")
    report = await pipeline.retry_suspense(reason=Reason.UNKNOWN_ACCOUNT)
    assert (report.retried, report.charged) == (1, 1)
    assert report.results[0].amount == "0.06"
    assert (await pipeline.retry_suspense(reason=Reason.UNKNOWN_ACCOUNT)).retried == 0
    report = await pipeline.retry_suspense(reason=Reason.NO_ZONE)
    assert (report.retried, report.still_open) == (1, 1)
    charged = await pool.fetch(
        "SELECT c.source_file_id FROM charges c JOIN usage_records u USING (account_id, usage_id) "
        "WHERE u.record_key = 's-unknown'")
    assert [r[0] for r in charged] == [out.source_file_id]  # charged once, of its file
    state = await pool.fetchval("SELECT state FROM suspense WHERE record_key = 's-unknown'")
    assert state == "retried"


async def test_deliveries_commit_once_and_replays_answer_the_same(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    first = Delivery(source="mqtt", position="msg-1",
                     records=[voice("d-1", seconds=10), voice("d-2", calling="1")],
                     rejects=[Reject(reason=Reason.MALFORMED, detail="not JSON", raw=b"\x00",
                                     where="payload")])
    second = Delivery(source="mqtt", position="msg-2", records=[voice("d-1", seconds=10)])
    outcomes = await pipeline.commit([first, second, first])
    assert [o.replay for o in outcomes] == [False, False, True]
    one = outcomes[0]
    assert [r.status for r in one.results] == ["charged", "suspense", "suspense"]
    assert one.results[0].amount == "0.01" and one.results[1].reason == "UNKNOWN_ACCOUNT"
    assert one.counts.in_ == 3 and outcomes[1].counts.duplicates == 1
    assert outcomes[2].results == one.results
    assert await pool.fetchval(  # a message is no file
        "SELECT array_agg(c.source_file_id) FROM charges c JOIN usage_records u"
        " USING (account_id, event_time, usage_id) WHERE u.record_key = 'd-1'") == [None]
    before = await table_counts(pool)

    replay = await pipeline.commit([first])
    assert replay[0].replay and replay[0].results == one.results
    assert await table_counts(pool) == before


async def test_a_commit_of_plain_and_refused_messages_writes_each_its_way(
    pool: asyncpg.Pool, pipeline: Pipeline
) -> None:
    # With the native rater, the plain messages go by column (server.pipeline.json_columns)
    # and the one with a record of no account as objects, in the same transaction.
    native = Pipeline(pool, pipeline.config, rater_factory=rater_factory(),
                      decoders={"jsonl": FormatDecoder("jsonl")})
    plain = [Delivery(source="msc1", position=f"mix-{i}",
                      records=[voice(f"mix-{i}-{j}", seconds=60 + j) for j in range(3)])
             for i in (0, 2)]
    refused = Delivery(source="msc1", position="mix-1",
                       records=[voice("mix-1-0"), voice("mix-1-1", calling="1")])
    outcomes = await native.commit([plain[0], refused, plain[1]])
    assert [[r.status for r in o.results] for o in outcomes] == [
        ["charged"] * 3, ["charged", "suspense"], ["charged"] * 3]
    assert outcomes[1].results[1].reason == "UNKNOWN_ACCOUNT"
    assert outcomes[0].results[2].amount == outcomes[2].results[2].amount
    rows = await pool.fetch(
        "SELECT u.record_key, c.amount_micros FROM charges c JOIN usage_records u"
        " USING (account_id, event_time, usage_id) WHERE u.record_key LIKE 'mix-%' ORDER BY 1")
    assert [r["record_key"] for r in rows] == [
        "mix-0-0", "mix-0-1", "mix-0-2", "mix-1-0", "mix-2-0", "mix-2-1", "mix-2-2"]
    assert await pool.fetchval(
        "SELECT array_agg(source_position) FROM suspense WHERE record_key = 'mix-1-1'"
    ) == ["mix-1#1"]
    before = await table_counts(pool)
    replay = await native.commit([plain[1], refused])
    assert [o.results for o in replay] == [outcomes[2].results, outcomes[1].results]
    assert await table_counts(pool) == before


class CountingRater(FlatRater):
    """FlatRater that counts its calls: a commit's deliveries are rated together."""

    calls: ClassVar[list[int]] = []

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        self.calls.append(len(records))
        return super().rate(records)


async def test_a_commit_rates_its_deliveries_in_one_call_and_keeps_each_ones_outcome(
    pool: asyncpg.Pool, pipeline: Pipeline
) -> None:
    counting = Pipeline(pool, pipeline.config, rater_factory=CountingRater,
                        decoders={"jsonl": FormatDecoder("jsonl")})
    CountingRater.calls.clear()
    nameless = Reject(reason=Reason.MALFORMED, detail="not JSON", raw=b"{", where="payload")
    first = Delivery(source="mq-a", position="one-1",
                     records=[voice("one-a"), voice("one-b", calling="1")], rejects=[nameless])
    second = Delivery(source="mq-b", position="one-2", records=[], rejects=[nameless])
    third = Delivery(source="mq-c", position="one-3",
                     records=[voice("one-c", called="99912"), voice("one-d")])
    outcomes = await counting.commit([first, second, third])
    assert CountingRater.calls == [4]  # one call for the four records of three messages
    assert [[r.status for r in o.results] for o in outcomes] == [
        ["charged", "suspense", "suspense"], ["suspense"], ["suspense", "charged"]]
    assert [[r.record_key for r in o.results] for o in outcomes] == [
        ["one-a", "one-b", None], [None], ["one-c", "one-d"]]
    assert [o.counts.in_ for o in outcomes] == [3, 1, 2]
    rows = await pool.fetch(
        "SELECT source, record_key, reason, source_position FROM suspense"
        " WHERE source_position LIKE 'one-%' ORDER BY source_position")
    # where each suspense item came from: its message and its index there; a reject naming
    # no source is filed under its message's
    assert [tuple(r) for r in rows] == [
        ("msc1", "one-b", "UNKNOWN_ACCOUNT", "one-1#1"), ("mq-a", None, "MALFORMED", "one-1#2"),
        ("mq-b", None, "MALFORMED", "one-2#0"), ("msc1", "one-c", "NO_ZONE", "one-3#0")]


async def test_partial_records_merge_into_one_usage(pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    def part(seq: int, last: bool, seconds: int) -> UsageRecord:
        return voice(f"cid77-{seq}", seconds=seconds, partial_seq=seq,
                     attrs={"charging_id": "cid77", "partial_last": last},
                     when=f"2026-02-03T10:0{seq}:00Z")

    out = await pipeline.commit([Delivery(source="mqtt", position="p-1",
                                          records=[part(1, False, 100), part(3, True, 5)])])
    assert out[0].counts.pending == 2
    out = await pipeline.commit([Delivery(source="mqtt", position="p-2",
                                          records=[part(2, False, 50), part(1, False, 100)])])
    assert (out[0].counts.charged, out[0].counts.duplicates) == (1, 1)
    row = await pool.fetchrow(
        "SELECT u.duration_s, u.event_time, c.amount_micros FROM usage_records u "
        "JOIN charges c USING (account_id, usage_id) WHERE u.record_key = 'cid77/merged'")
    assert row["duration_s"] == 155 and row["amount_micros"] == 155_000
    assert row["event_time"].minute == 1


async def test_a_bearer_closed_for_max_change_cond_waits_for_its_next_part(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    """causeForRecClosing 19 (maxChangeCond) means more parts follow, as the 3GPP decoder
    reads it: a JSON/MQTT part carrying it must not close the group."""
    def part(seq: int, cause: object, seconds: int) -> UsageRecord:
        return voice(f"cid19-{seq}", seconds=seconds, partial_seq=seq,
                     attrs={"charging_id": "cid19", "cause_for_record_closing": cause},
                     when=f"2026-02-03T12:0{seq}:00Z")

    out = await pipeline.commit([Delivery(source="mqtt", position="c19-1",
                                          records=[part(1, 19, 30)])])
    assert (out[0].counts.pending, out[0].counts.charged) == (1, 0)
    out = await pipeline.commit([Delivery(source="mqtt", position="c19-2",
                                          records=[part(2, "normalRelease", 12)])])
    assert out[0].counts.charged == 1
    row = await pool.fetchrow(
        "SELECT u.duration_s FROM usage_records u WHERE u.record_key = 'cid19/merged'")
    assert row["duration_s"] == 42


async def test_incomplete_partial_group_expires_to_suspense(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    lone = voice("cid88-2", partial_seq=2, attrs={"charging_id": "cid88", "partial_last": True})
    await pipeline.commit([Delivery(source="mqtt", position="p-3", records=[lone])])
    assert await pipeline.expire_partials() == 0  # not stale yet
    await pool.execute("UPDATE partial_records SET received_at = now() - interval '2 days' "
                       "WHERE group_key = 'cid88'")
    assert await pipeline.expire_partials() == 1
    row = await pool.fetchrow(
        "SELECT reason, detail FROM suspense WHERE record_key = 'cid88/merged'")
    assert row["reason"] == Reason.PARTIAL_INCOMPLETE and "missing parts [1]" in row["detail"]


def late_part(group: str, seq: int, last: bool, seconds: int) -> UsageRecord:
    return voice(f"{group}-{seq}", seconds=seconds, partial_seq=seq,
                 attrs={"charging_id": group, "partial_last": last},
                 when=f"2026-02-03T11:0{seq}:00Z")


async def expire_group(pipeline: Pipeline, pool: asyncpg.Pool, group: str) -> int:
    """Age the group past the timeout, sweep; the id of its PARTIAL_INCOMPLETE row."""
    await pool.execute("UPDATE partial_records SET received_at = now() - interval '2 days' "
                       "WHERE group_key = $1", group)
    await pipeline.expire_partials()
    return int(await pool.fetchval(
        "SELECT suspense_id FROM suspense WHERE record_key = $1 AND state = 'open' "
        "AND reason = 'PARTIAL_INCOMPLETE'", f"{group}/merged"))


async def test_late_part_reopens_an_expired_group_and_completes_it(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    await pipeline.commit([Delivery(source="mqtt", position="late-1", records=[
        late_part("cidL1", 1, False, 100), late_part("cidL1", 3, True, 5)])])
    suspense_id = await expire_group(pipeline, pool, "cidL1")

    out = await pipeline.commit([Delivery(source="mqtt", position="late-2",
                                          records=[late_part("cidL1", 2, False, 500)])])
    c = out[0].counts
    assert (c.in_, c.charged, c.suspense, c.pending) == (1, 1, 0, 0)
    assert await pool.fetchval("SELECT duration_s FROM usage_records "
                               "WHERE record_key = 'cidL1/merged'") == 605
    row = await pool.fetchrow("SELECT state, resolution FROM suspense WHERE suspense_id = $1",
                              suspense_id)
    assert row["state"] == "retried" and "late part(s) [2]" in row["resolution"]
    assert await pool.fetchval("SELECT count(*) FROM suspense WHERE state = 'open' "
                               "AND record_key LIKE 'cidL1%'") == 0
    states = await pool.fetch("SELECT state FROM partial_records WHERE group_key = 'cidL1'")
    assert {r["state"] for r in states} == {"merged"} and len(states) == 3


async def test_late_part_after_the_incomplete_merge_was_charged_goes_to_suspense(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    await pipeline.commit([Delivery(source="mqtt", position="late-3", records=[
        late_part("cidL2", 1, False, 100), late_part("cidL2", 3, True, 5)])])
    suspense_id = await expire_group(pipeline, pool, "cidL2")
    report = await pipeline.retry_suspense(ids=[suspense_id])
    assert [r.status for r in report.results] == ["charged"]
    usage_id = await pool.fetchval("SELECT usage_id FROM usage_records "
                                   "WHERE record_key = 'cidL2/merged'")

    out = await pipeline.commit([Delivery(source="mqtt", position="late-4",
                                          records=[late_part("cidL2", 2, False, 500)])])
    c = out[0].counts
    assert (c.in_, c.charged, c.suspense, c.duplicates, c.pending) == (1, 0, 1, 0, 0)
    assert [(r.status, r.reason) for r in out[0].results] == [("suspense", "PARTIAL_LATE")]
    row = await pool.fetchrow("SELECT suspense_id, reason, detail FROM suspense "
                              "WHERE record_key = 'cidL2-2' AND state = 'open'")
    assert row["reason"] == Reason.PARTIAL_LATE
    assert f"cidL2/merged was closed (charged as usage {usage_id})" in row["detail"]
    # It starts no new group: nothing to expire again under the charged merged key.
    assert await pool.fetchval("SELECT count(*) FROM partial_records "
                               "WHERE group_key = 'cidL2' AND state = 'open'") == 0
    # An operator may charge it on its own: it is not a duplicate of the merged usage.
    report = await pipeline.retry_suspense(ids=[row["suspense_id"]])
    assert [r.status for r in report.results] == ["charged"]
    assert await pool.fetchval("SELECT sum(duration_s) FROM usage_records "
                               "WHERE record_key LIKE 'cidL2%'") == 605


async def test_connection_dropped_mid_batch_is_retried_and_committed_once(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    records = [voice(f"drop-{i}", seconds=1) for i in range(30)]
    path = write_jsonl(tmp_path / "drop.jsonl", records)
    killed: list[int] = []

    async def kill_once(conn: Connection) -> None:
        # The batch's rows are written, the checkpoint too; the COMMIT never happens.
        if len(killed) < 2:
            pid = conn.get_server_pid()
            killed.append(pid)
            await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
            await conn.fetchval("SELECT 1")  # the dead connection fails here

    out = await pipeline.ingest_file(path, source="msc1", format="jsonl", fault=kill_once)
    assert len(killed) == 2
    assert (out.counts.in_, out.counts.charged) == (30, 30)
    n = await pool.fetchval("SELECT count(*) FROM usage_records WHERE record_key LIKE 'drop-%'")
    c = await pool.fetchval("SELECT count(*) FROM charges c JOIN usage_records u "
                            "USING (account_id, usage_id) WHERE u.record_key LIKE 'drop-%'")
    assert (n, c) == (30, 30)
    done = await pool.fetchrow("SELECT state, committed_records FROM source_files "
                               "WHERE source_file_id = $1", out.source_file_id)
    assert tuple(done) == ("done", 30)


async def test_a_new_identifier_is_rated_without_a_rebuild(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    before = await pipeline.raters.current()
    generations = pipeline.raters.generations
    await pool.execute("INSERT INTO account_identifiers VALUES ('33600000001', 'A1', 'msisdn')")
    after = await pipeline.raters.current()
    assert after is before  # the same rater: its accounts directory caught up in place
    assert generations is not None and pipeline.raters.generations is not None
    assert pipeline.raters.generations[0] == generations[0]
    assert pipeline.raters.generations[1] > generations[1]
    out = await pipeline.commit([Delivery(source="mqtt", position="gen-1",
                                          records=[voice("gen-1", calling="33600000001")])])
    assert out[0].results[0].status == "charged"


async def test_a_tariff_change_rebuilds_the_rater(pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    before = await pipeline.raters.current()
    await pool.execute("UPDATE tariffs SET description = 'touched' WHERE tariff_id = 'retail'")
    assert await pipeline.raters.current() is not before


async def test_usage_ids_handed_out_from_blocks_never_twice(pool: asyncpg.Pool) -> None:
    import asyncio

    from billing_oss.server.pipeline.deliveries import UsageIds

    ids = UsageIds(pool, block=100)
    taken = await asyncio.gather(*(ids.take(n) for n in (30, 70, 1, 250, 99, 0)))
    flat = [i for chunk in taken for i in chunk]
    assert [len(chunk) for chunk in taken] == [30, 70, 1, 250, 99, 0]
    assert len(set(flat)) == len(flat)
    # ids from the database sequence: a plain reservation afterwards never meets them
    async with pool.acquire() as conn:
        later = await conn.fetchval("SELECT nextval('usage_id_seq')")
    assert later > max(flat)


async def test_keys_lost_on_a_rolled_back_attempt_are_charged_on_the_retry(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Another writer holds two of the batch's keys during the first attempt, which then rolls
    back; that writer's keys are gone before the retry. The retry must write every record:
    rows dropped for keys lost the first time must not stay dropped."""
    records = [voice(f"race-{i}", seconds=1) for i in range(5)]
    path = write_jsonl(tmp_path / "race.jsonl", records)
    await pool.execute(
        "INSERT INTO usage_keys (source, record_key, event_time, usage_id) VALUES"
        " ('msc1', 'race-1', now(), nextval('usage_id_seq')),"
        " ('msc1', 'race-3', now(), nextval('usage_id_seq'))")
    attempts: list[int] = []

    async def other_writer_rolls_back(conn: Connection) -> None:
        if not attempts:
            attempts.append(conn.get_server_pid())
            await pool.execute("DELETE FROM usage_keys WHERE record_key IN ('race-1', 'race-3')")
            await pool.fetchval("SELECT pg_terminate_backend($1)", attempts[0])
            await conn.fetchval("SELECT 1")

    out = await pipeline.ingest_file(path, source="msc1", format="jsonl",
                                     fault=other_writer_rolls_back)
    assert attempts
    assert (out.counts.in_, out.counts.charged, out.counts.duplicates) == (5, 5, 0)
    stored = await pool.fetchval(
        "SELECT count(*) FROM usage_records u JOIN charges c USING (account_id, usage_id)"
        " WHERE u.record_key LIKE 'race-%'")
    assert stored == 5


async def test_batches_in_flight_keep_the_first_copy_of_a_key(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Batches of a file are written on several connections at once (pipeline.write_lanes);
    a key repeated in the next batches is a duplicate of its first copy, whichever batch
    reaches the database first. (Taking keys out of file order would also deadlock two
    batches: the crash test's files, keys repeated across batches, would hang.)"""
    assert pipeline.config.write_lanes >= 2
    records = []
    for i in range(60):  # batch size 7: copies land in the next batches, often in flight
        records.append(voice(f"lane-{i}", seconds=i + 1))
        if i >= 3:
            records.append(voice(f"lane-{i - 3}", seconds=9999))
    out = await pipeline.ingest_file(write_jsonl(tmp_path / "lanes.jsonl", records),
                                     source="msc1", format="jsonl")
    assert (out.counts.in_, out.counts.charged, out.counts.duplicates) == (117, 60, 57)
    durations = await pool.fetch(
        "SELECT record_key, duration_s FROM usage_records WHERE record_key LIKE 'lane-%'")
    assert {r["record_key"]: r["duration_s"] for r in durations} == {
        f"lane-{i}": i + 1 for i in range(60)}


async def test_a_failure_in_flight_rolls_back_the_later_batches_and_retries_them(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    records = [voice(f"fly-{i}", seconds=1) for i in range(100)]
    path = write_jsonl(tmp_path / "fly.jsonl", records)
    calls: ClassVar[list[int]] = []

    async def kill_some(conn: Connection) -> None:
        calls.append(conn.get_server_pid())
        if len(calls) in (3, 4, 9):  # the 4th: the retry of the 3rd's window fails again
            await pool.fetchval("SELECT pg_terminate_backend($1)", calls[-1])
            await conn.fetchval("SELECT 1")

    out = await pipeline.ingest_file(path, source="msc1", format="jsonl", fault=kill_some)
    assert len(calls) > 15  # 15 batches, plus those run again
    assert (out.counts.in_, out.counts.charged, out.counts.duplicates) == (100, 100, 0)
    rows = await pool.fetchval(
        "SELECT count(*) FROM usage_records u JOIN charges c USING (account_id, usage_id)"
        " WHERE u.record_key LIKE 'fly-%'")
    assert rows == 100
    done = await pool.fetchrow("SELECT state, committed_records, count_charged FROM"
                               " source_files WHERE source_file_id = $1", out.source_file_id)
    assert tuple(done) == ("done", 100, 100)
