"""SFTP collection against a real asyncssh SFTP server on loopback (generated host key) and
the real pipeline: files ingested once, moved to done/ or error/, sequence alarms raised."""

import asyncio
import io
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import asyncssh
import msgspec
import pytest

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.adapters.formats.jsonl import decode_jsonl
from billing_oss.adapters.sftp import SftpPoller
from billing_oss.core import metrics
from billing_oss.core.errors import ConfigError, DecodeError
from billing_oss.core.ports import Item
from billing_oss.core.sources_config import SftpSource
from billing_oss.server import config
from billing_oss.server.commands import files as files_verb
from billing_oss.server.composition import check_sources, decoder_for, load_demo_catalog
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.pipeline.raters import build_rater
from billing_oss.server.store import files_repo
from tests.conftest import VECTORS
from tests.generators.tap3_files import tap3_file
from tests.generators.threegpp_files import cdr_header, fast_records, write_fast_3gpp
from tests.sftp_server import PASSWORD, sftp_server
from tests.unit.test_formats_tap3_edges import MOC


def strict_decoder(path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]:
    """A format whose files must start with a magic line; anything else is malformed."""
    with path.open("rb") as f:
        if f.readline().strip() != b"CDRS":
            raise DecodeError("missing CDRS header", offset=0)
    yield from decode_jsonl(path, source=source, chunk=chunk)


@pytest.fixture(scope="module")
async def sftp_root(tmp_path_factory: pytest.TempPathFactory
                    ) -> AsyncIterator[tuple[Path, int, str]]:
    root = tmp_path_factory.mktemp("sftp")
    (root / "out").mkdir()
    key = asyncssh.generate_private_key("ssh-ed25519")
    async with sftp_server(root, key) as port:
        yield root, port, key.export_public_key().decode().strip()


@pytest.fixture(scope="module")
async def pipeline(pool: asyncpg.Pool) -> Pipeline:
    cfg = config.load(env={})
    await load_demo_catalog(cfg, pool)
    return Pipeline(pool, cfg.pipeline, rater_factory=build_rater,
                    decoders={"jsonl": FormatDecoder("jsonl"), "strict": strict_decoder,
                              "3gpp": FormatDecoder("3gpp")})


def record(key: str) -> bytes:
    return msgspec.json.encode({"record_key": key, "source": "", "kind": "voice",
                                "event_time": "2026-03-02T10:00:00Z", "calling": "33611111111",
                                "called": "33612345678", "duration_s": 30})


def put(root: Path, name: str, keys: list[str], header: bytes = b"") -> None:
    (root / "out" / name).write_bytes(header + b"\n".join(record(k) for k in keys) + b"\n")


def poller(name: str, sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool,
           fmt: str = "jsonl", **extra: Any) -> SftpPoller:
    _, port, host_key = sftp_root
    # the tests' files are written whole under their final names, as after a rename
    settings: dict[str, Any] = {"known_host_key": host_key, "pattern": f"{name}_*.jsonl",
                                "min_age_s": 0, "completion": "rename", **extra}
    cfg = SftpSource(host="127.0.0.1", port=port, username="billing", password=PASSWORD,
                     remote_dir="/out", format=fmt, poll_interval_s=0.1, **settings)
    return SftpPoller(name, cfg, pipeline, pool)


async def poll_once(p: SftpPoller) -> int:
    async with p._connect() as conn, conn.start_sftp_client() as sftp:
        return await p.poll(sftp)


async def test_files_ingested_once_moved_and_sequence_alarms(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    root = sftp_root[0]
    put(root, "msc_0001.jsonl", ["f1-a", "f1-b"])
    put(root, "msc_0002.jsonl", ["f2-a"])
    put(root, "msc_0004.jsonl", ["f4-a"])  # 3 never came
    p = poller("msc", sftp_root, pipeline, pool)
    assert await poll_once(p) == 3
    assert sorted(x.name for x in (root / "out" / "done").iterdir()) == [
        "msc_0001.jsonl", "msc_0002.jsonl", "msc_0004.jsonl"]
    assert not list((root / "out").glob("msc_*"))
    rows = await pool.fetch("SELECT name, sequence_no, count_in, state FROM source_files"
                            " WHERE source = 'msc' ORDER BY name")
    assert [tuple(r) for r in rows] == [("msc_0001.jsonl", 1, 2, "done"),
                                        ("msc_0002.jsonl", 2, 1, "done"),
                                        ("msc_0004.jsonl", 4, 1, "done")]
    # the same content again under a new name, and a reused number with other content
    (root / "out" / "msc_0005.jsonl").write_bytes(
        (root / "out" / "done" / "msc_0002.jsonl").read_bytes())
    put(root, "msc_0004-bis_0004.jsonl", ["other"])
    assert await poll_once(p) == 2
    alarms = await pool.fetch("SELECT kind, name, first_missing, last_missing FROM"
                              " source_file_alarms WHERE source = 'msc' ORDER BY alarm_id")
    assert [tuple(a) for a in alarms] == [("gap", "msc_0004.jsonl", 3, 3),
                                          ("reused", "msc_0004-bis_0004.jsonl", None, None),
                                          ("repeat", "msc_0005.jsonl", None, None)]
    usage = await pool.fetchval("SELECT count(*) FROM usage_keys WHERE source = 'msc'")
    assert usage == 5  # the repeated content added nothing
    told = await pool.fetch("SELECT type, payload::text AS payload FROM outbox_events"
                            " WHERE stream = 'source:msc' ORDER BY seq")
    gaps = [msgspec.json.decode(e["payload"]) for e in told if e["type"] == "usage.file_gap"]
    assert gaps == [{"source": "msc", "name": "msc_0004.jsonl", "sequence": 4,
                     "first_missing": 3, "last_missing": 3}]
    ingested = [msgspec.json.decode(e["payload"])["name"] for e in told
                if e["type"] == "usage.file_ingested"]
    assert sorted(ingested) == ["msc_0001.jsonl", "msc_0002.jsonl", "msc_0004-bis_0004.jsonl",
                                "msc_0004.jsonl"]  # msc_0005 repeats msc_0002's content


async def test_alarms_between_files_of_one_poll_ingested_together(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    """With several files in flight a file is checked before the ones ahead of it are
    registered: the alarms still see them."""
    root = sftp_root[0]
    put(root, "par_0001.jsonl", [f"p1-{i}" for i in range(3000)])
    (root / "out" / "par_0002.jsonl").write_bytes((root / "out" / "par_0001.jsonl").read_bytes())
    put(root, "par_0002-bis_0002.jsonl", ["p2-other"])
    put(root, "par_0003.jsonl", ["p3"])
    p = poller("par", sftp_root, pipeline, pool, files_in_flight=4)
    assert await poll_once(p) == 4
    alarms = await pool.fetch("SELECT kind, name FROM source_file_alarms WHERE source = 'par'"
                              " ORDER BY alarm_id")
    # in name order: par_0002-bis_0002 (sequence 2), then par_0002 (sequence 2 again, and
    # the content of par_0001) — checked while par_0001 may still be ingesting
    assert sorted(tuple(a) for a in alarms) == [("repeat", "par_0002.jsonl"),
                                                ("reused", "par_0002.jsonl")]
    usage = await pool.fetchval("SELECT count(*) FROM usage_keys WHERE source = 'par'")
    assert usage == 3002  # the repeated content added nothing
    assert len(list((root / "out" / "done").glob("par_*"))) == 4


async def test_a_file_modified_recently_waits_for_a_later_poll(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    root = sftp_root[0]
    put(root, "upl_0001.jsonl", ["u1"])  # just written: maybe still uploading
    p = poller("upl", sftp_root, pipeline, pool, min_age_s=60)
    assert await poll_once(p) == 0
    assert (root / "out" / "upl_0001.jsonl").exists()
    assert await pool.fetchval("SELECT count(*) FROM source_files WHERE source = 'upl'") == 0
    minutes_ago = time.time() - 120
    os.utime(root / "out" / "upl_0001.jsonl", (minutes_ago, minutes_ago))
    assert await poll_once(p) == 1
    assert (root / "out" / "done" / "upl_0001.jsonl").exists()


class _PathListingServer(asyncssh.SFTPServer):
    """A hostile server: its listing also names files that are paths, not names."""

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        async for entry in super().scandir(path):
            yield entry
        regular = asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_REGULAR, permissions=0o100644,
                                     size=10)
        for name in (b"../victim_0001.jsonl", b"..", b"sub\\x_0002.jsonl"):
            yield asyncssh.SFTPName(name, attrs=regular)


async def test_remote_names_that_are_paths_are_skipped(
        tmp_path: Path, pipeline: Pipeline, pool: asyncpg.Pool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root, downloads = tmp_path / "root", tmp_path / "downloads"
    (root / "out").mkdir(parents=True)
    downloads.mkdir()
    (root / "out" / "trv_0001.jsonl").write_bytes(record("trv-1") + b"\n")
    (root / "victim_0001.jsonl").write_bytes(record("trv-evil") + b"\n")
    victim = downloads / "victim_0001.jsonl"  # where "../victim_0001.jsonl" would land
    victim.write_text("precious local data\n")
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    key = asyncssh.generate_private_key("ssh-ed25519")
    async with sftp_server(root, key, _PathListingServer) as port:
        p = poller("trv", (root, port, key.export_public_key().decode().strip()), pipeline,
                   pool, pattern="*")
        skipped = metrics.SFTP_FILES.labels("trv", "unsafe_name")._value.get()
        assert await poll_once(p) == 1
    assert victim.read_text() == "precious local data\n"
    assert (root / "victim_0001.jsonl").exists()
    assert metrics.SFTP_FILES.labels("trv", "unsafe_name")._value.get() == skipped + 3
    keys = await pool.fetch("SELECT record_key FROM usage_keys WHERE source = 'trv'")
    assert [k["record_key"] for k in keys] == ["trv-1"]


async def test_malformed_file_goes_to_error_with_reason(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    root = sftp_root[0]
    put(root, "bad_0001.jsonl", ["b1"], header=b"XXXX\n")
    put(root, "bad_0002.jsonl", ["b2"], header=b"CDRS\n")
    p = poller("bad", sftp_root, pipeline, pool, fmt="strict")
    assert await poll_once(p) == 2
    reason = (root / "out" / "error" / "bad_0001.jsonl.reason").read_text()
    assert "missing CDRS header at offset 0" in reason
    assert (root / "out" / "done" / "bad_0002.jsonl").exists()
    states = await pool.fetch("SELECT name, state FROM source_files WHERE source = 'bad'"
                              " ORDER BY name")
    assert [tuple(s) for s in states] == [("bad_0001.jsonl", "error"),
                                          ("bad_0002.jsonl", "done")]


async def test_two_workers_on_one_source_process_each_file_once(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    root = sftp_root[0]
    for i in range(1, 13):
        put(root, f"dual_{i:04d}.jsonl", [f"d{i}-{j}" for j in range(200)])
    a, b = (poller("dual", sftp_root, pipeline, pool) for _ in range(2))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in (a, b)]
    for _ in range(200):
        if len(list((root / "out" / "done").glob("dual_*"))) == 12:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)
    assert a.processed + b.processed == 12
    files = await pool.fetchval("SELECT count(*) FROM source_files WHERE source = 'dual'")
    usage = await pool.fetchval("SELECT count(*) FROM usage_keys WHERE source = 'dual'")
    alarms = await pool.fetchval("SELECT count(*) FROM source_file_alarms WHERE source = 'dual'")
    assert (files, usage, alarms) == (12, 2400, 0)


async def test_wrong_host_key_is_refused(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    p = poller("hk", sftp_root, pipeline, pool, known_host_key=other)
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await poll_once(p)


async def test_files_list_alarms_shows_alarms(pool: asyncpg.Pool) -> None:
    lines = await files_verb.render(pool, source="msc", alarms=True, as_json=True)
    kinds = [msgspec.json.decode(line)["kind"] for line in lines]
    assert kinds == ["gap", "reused", "repeat"]


async def test_files_list_gaps_forgets_a_gap_a_later_file_filled(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    """``files list --gaps`` answers what is missing now, as ``GET /v1/files/gaps`` does."""
    root = sftp_root[0]
    put(root, "fill_0001.jsonl", ["fill-1"])
    put(root, "fill_0003.jsonl", ["fill-3"])
    p = poller("fill", sftp_root, pipeline, pool)
    assert await poll_once(p) == 2
    lines = await files_verb.render(pool, source="fill", gaps=True, as_json=True)
    assert [(g["first_missing"], g["last_missing"]) for g in map(msgspec.json.decode, lines)
            ] == [(2, 2)]
    text = await files_verb.render(pool, source="fill", gaps=True)
    assert len(text) == 1 and "missing 2" in text[0]
    put(root, "fill_0002.jsonl", ["fill-2"])  # late, but it came
    assert await poll_once(p) == 1
    assert await files_verb.render(pool, source="fill", gaps=True) == []
    assert await files_repo.gaps(pool, source="fill", limit=10) == []
    alarms = await files_verb.render(pool, source="fill", alarms=True, as_json=True)
    assert [msgspec.json.decode(a)["kind"] for a in alarms] == ["gap"]  # the history stays


def test_a_source_without_a_host_key_does_not_start(tmp_path: Path, pipeline: Pipeline,
                                                    pool: asyncpg.Pool) -> None:
    conf = tmp_path / "c.toml"
    table = ('[sources.nokey]\ntype = "sftp"\nhost = "127.0.0.1"\nusername = "billing"\n'
             'remote_dir = "/out"\nformat = "jsonl"\n')
    conf.write_text(table + 'known_host_key = ""\n')
    with pytest.raises(ConfigError) as refused:
        config.load(conf, env={})
    assert "sources.nokey.known_host_key" in refused.value.message
    assert "insecure_skip_host_key = true" in refused.value.message
    with pytest.raises(ConfigError):
        SftpPoller("nokey", SftpSource(host="h", username="u", remote_dir="/", format="jsonl"),
                   pipeline, pool)
    conf.write_text(table + "insecure_skip_host_key = true\n")
    assert config.load(conf, env={}).sources["nokey"].insecure_skip_host_key


async def test_a_format_no_decoder_reads_is_refused_at_start(pipeline: Pipeline,
                                                             pool: asyncpg.Pool) -> None:
    cfg = SftpSource(host="h", username="u", remote_dir="/", format="asn1",
                     insecure_skip_host_key=True)
    with pytest.raises(ConfigError) as refused:
        SftpPoller("partner-b", cfg, pipeline, pool)
    assert refused.value.message == ("sources.partner-b.format: unknown format 'asn1' "
                                     "(known: 3gpp, jsonl, strict)")


async def test_insecure_skip_host_key_is_explicit_and_warns_each_poll(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool,
        caplog: pytest.LogCaptureFixture) -> None:
    root = sftp_root[0]
    put(root, "ins_0001.jsonl", ["ins-1"])
    p = poller("ins", sftp_root, pipeline, pool, known_host_key="",
               insecure_skip_host_key=True)
    with caplog.at_level("WARNING", logger="billing_oss.adapters.sftp"):
        assert await poll_once(p) == 1
        assert await poll_once(p) == 0
    warned = [r for r in caplog.records if "host key not checked" in r.getMessage()]
    assert len(warned) == 2
    assert (root / "out" / "done" / "ins_0001.jsonl").exists()



def cdr_file(records: int, seed: int = 1) -> tuple[bytes, list[int]]:
    """A 32.297 file of ``records`` CDRs and the offset each CDR ends at."""
    buffer = io.BytesIO()
    write_fast_3gpp(buffer, records, seed=seed)
    data = buffer.getvalue()
    ends, end = [], len(data)
    for cdr in reversed(list(fast_records(records, seed=seed))):
        ends.append(end)
        end -= len(cdr_header(cdr)) + len(cdr)
    return data, ends[::-1]


async def alarms_of(pool: asyncpg.Pool, source: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch("SELECT kind, name, detail FROM source_file_alarms WHERE source = $1"
                            " ORDER BY alarm_id", source)
    return [(r["kind"], r["name"], r["detail"]) for r in rows]


@pytest.mark.parametrize("cut", ["boundary", "mid-record"])
async def test_a_stalled_upload_is_left_until_its_header_is_satisfied(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool,
        cut: str) -> None:
    """A 500-CDR upload pauses half-way (on a CDR boundary, or inside a CDR): it is not taken,
    not moved, and alarmed once it stays incomplete past the limit; finished, it is taken
    whole."""
    root = sftp_root[0]
    name = "stall" + cut.replace("-", "")
    data, ends = cdr_file(500)
    half = ends[249] if cut == "boundary" else ends[249] + 7
    p = poller(name, sftp_root, pipeline, pool, fmt="3gpp", pattern=f"{name}_*.cdr",
               completion="", incomplete_alarm_s=0.5)
    assert p.gate.mode == "header"  # the default for a format that declares its length
    async with p._connect() as conn, conn.start_sftp_client() as sftp:
        async with sftp.open(f"/out/{name}_0001.cdr", "wb") as upload:
            await upload.write(data[:half])  # the partner's upload stalls here
            for _ in range(3):
                assert await p.poll(sftp) == 0
                await asyncio.sleep(0.3)
            assert (root / "out" / f"{name}_0001.cdr").stat().st_size == half
            assert not (root / "out" / "done" / f"{name}_0001.cdr").exists()
            assert not (root / "out" / "error" / f"{name}_0001.cdr").exists()
            assert await pool.fetchval("SELECT count(*) FROM source_files WHERE source = $1",
                                       name) == 0
            [(kind, file, detail)] = await alarms_of(pool, name)
            assert (kind, file) == ("incomplete", f"{name}_0001.cdr")
            assert f"file ends at offset {half}" in detail and str(len(data)) in detail
            await upload.write(data[half:])
        assert await p.poll(sftp) == 1
    assert (root / "out" / "done" / f"{name}_0001.cdr").read_bytes() == data
    row = await pool.fetchrow("SELECT state, count_in FROM source_files WHERE source = $1", name)
    assert (row["state"], row["count_in"]) == ("done", 500)
    assert len(await alarms_of(pool, name)) == 1  # alarmed once


async def test_stable_mode_waits_for_size_and_mtime_to_hold_across_two_polls(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    root = sftp_root[0]
    p = poller("stab", sftp_root, pipeline, pool, completion="stable")
    async with p._connect() as conn, conn.start_sftp_client() as sftp:
        async with sftp.open("/out/stab_0001.jsonl", "wb") as upload:
            await upload.write(record("st-1") + b"\n" + record("st-2")[:20])
            assert await p.poll(sftp) == 0  # first seen
            await upload.write(record("st-2")[20:] + b"\n")
            assert await p.poll(sftp) == 0  # grew since
        assert await p.poll(sftp) == 1  # as at the poll before: taken
    assert (root / "out" / "done" / "stab_0001.jsonl").exists()
    assert await pool.fetchval("SELECT count(*) FROM usage_keys WHERE source = 'stab'") == 2


async def test_rename_mode_leaves_temporary_names_alone(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    root = sftp_root[0]
    p = poller("ren", sftp_root, pipeline, pool, pattern="ren_*")
    put(root, "ren_0001.jsonl.part", ["rn-1"])
    put(root, ".ren_0002.jsonl", ["rn-2"])
    assert await poll_once(p) == 0
    (root / "out" / "ren_0001.jsonl.part").rename(root / "out" / "ren_0001.jsonl")
    assert await poll_once(p) == 1
    assert (root / "out" / "done" / "ren_0001.jsonl").exists()
    assert (root / "out" / ".ren_0002.jsonl").exists()


async def test_marker_mode_takes_a_file_once_its_marker_appears_and_moves_both(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    root = sftp_root[0]
    p = poller("mrk", sftp_root, pipeline, pool, completion="marker", pattern="mrk_*")
    put(root, "mrk_0001.jsonl", ["mk-1"])
    assert await poll_once(p) == 0
    (root / "out" / "mrk_0001.jsonl.done").write_bytes(b"")
    assert await poll_once(p) == 1
    assert (root / "out" / "done" / "mrk_0001.jsonl").exists()
    assert (root / "out" / "done" / "mrk_0001.jsonl.done").exists()
    assert not list((root / "out").glob("mrk_*"))
    assert await pool.fetchval("SELECT count(*) FROM source_files WHERE source = 'mrk'") == 1


async def test_a_lost_claim_connection_does_not_end_the_poll(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    """The connection holding a file's claim is terminated while the file is ingested: the
    poll finishes the file and carries on instead of failing with the dead connection."""
    root = sftp_root[0]
    put(root, "lost_0001.jsonl", [f"lost-{i}" for i in range(30000)])
    p = poller("lost", sftp_root, pipeline, pool)
    polled = asyncio.create_task(poll_once(p))
    killed = 0
    for _ in range(600):
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l JOIN source_files f"
            " ON f.source = 'lost' AND f.state = 'claimed'"
            " WHERE l.locktype = 'advisory'"
            " AND l.objid::int = hashtext('sftp:lost:lost_0001.jsonl')")
        if killed or polled.done():
            break
        await asyncio.sleep(0.02)
    assert killed == 1, "the file was ingested before its claim could be cut"
    assert await polled == 1
    assert (root / "out" / "done" / "lost_0001.jsonl").exists()
    assert await pool.fetchval("SELECT count(*) FROM usage_keys WHERE source = 'lost'") == 30000


async def test_a_rap_file_among_tap_files_is_kept_where_it_is_and_alarmed_once(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    """A partner's RAP file in a TAP3 source is settlement's: not ingested, not filed in
    ``error/``, left in place and named once (alarm ``not_usage``); TAP files beside it are
    collected as usual."""
    root = sftp_root[0]
    tap3 = Pipeline(pool, config.load(env={}).pipeline, rater_factory=build_rater,
                    decoders={"tap3": FormatDecoder("tap3")})
    rap = root / "out" / "RCBBBBBAAAAA00001"
    rap.write_bytes((VECTORS / "rap_mini.ber").read_bytes())
    tap = root / "out" / "CDAAAAABBBBB00001"
    tap.write_bytes(tap3_file([MOC]))
    p = poller("roam", sftp_root, tap3, pool, fmt="tap3", pattern="[CR][DC]*", completion="",
               incomplete_alarm_s=0)  # a file kept aside is not mistaken for a stalled one
    assert await poll_once(p) == 1  # the TAP file
    await asyncio.sleep(0.05)
    assert await poll_once(p) == 0
    assert rap.read_bytes() == (VECTORS / "rap_mini.ber").read_bytes()
    assert not (root / "out" / "error" / rap.name).exists()
    assert not (root / "out" / "done" / rap.name).exists()
    assert (root / "out" / "done" / tap.name).exists()
    assert await pool.fetchval("SELECT array_agg(name) FROM source_files WHERE source = 'roam'"
                               ) == [tap.name]
    assert await alarms_of(pool, "roam") == [
        ("not_usage", rap.name, "RAP file: handled by settlement (ReturnBatch); "
                                "kept, not ingested")]
    again = SftpPoller("roam", p.config, tap3, pool)  # a restarted server names it once
    assert await poll_once(again) == 0
    assert rap.exists() and len(await alarms_of(pool, "roam")) == 1


CSV_OPTIONS = {"delimiter": ";", "columns": ["id", "from", "to", "begin", "secs"],
               "mapping": {"calling": "from", "called": "to", "duration_s": "secs",
                           "event_time": ["begin"], "record_key": "id"},
               "time_format": "%Y-%m-%dT%H:%M:%S"}


async def test_a_source_reads_its_files_with_its_format_options(
        sftp_root: tuple[Path, int, str], pool: asyncpg.Pool) -> None:
    cfg = config.load(env={})
    await load_demo_catalog(cfg, pool)
    csv_pipeline = Pipeline(pool, cfg.pipeline, rater_factory=build_rater,
                            decoders={"csv": FormatDecoder("csv")}, decoder_for=decoder_for)
    root = sftp_root[0]
    (root / "out" / "pbx_0001.csv").write_text(
        "id;from;to;begin;secs\n"
        "c1;33611111111;33612345678;2026-03-02T10:00:00;61\n"
        "c2;33611111111;33612345678;2026-03-02T11:00:00;5\n")
    p = poller("pbx", sftp_root, csv_pipeline, pool, fmt="csv", pattern="pbx_*.csv",
               options=CSV_OPTIONS)
    assert await poll_once(p) == 1
    rows = await pool.fetch("SELECT record_key, duration_s FROM usage_records"
                            " WHERE source = 'pbx' ORDER BY record_key")
    assert [tuple(r) for r in rows] == [("c1", 61), ("c2", 5)]
    assert (root / "out" / "done" / "pbx_0001.csv").exists()


async def test_an_option_the_format_does_not_take_is_refused_at_start(
        pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path) -> None:
    cfg = SftpSource(host="h", username="u", remote_dir="/", format="3gpp",
                     insecure_skip_host_key=True, options={"delimiter": ";"})
    with pytest.raises(ConfigError) as refused:
        SftpPoller("msc9", cfg, pipeline, pool)
    assert refused.value.message == (
        "sources.msc9.options: option 'delimiter' is not a 3gpp option (known: framing)")
    conf = tmp_path / "c.toml"
    conf.write_text('[sources.pbx]\ntype = "sftp"\nhost = "h"\nusername = "u"\n'
                    'remote_dir = "/"\nformat = "csv"\ninsecure_skip_host_key = true\n'
                    'options = { delimiter = ";;" }\n')
    with pytest.raises(ConfigError) as bad_value:
        check_sources(config.load(conf, env={}))
    assert bad_value.value.message.startswith("sources.pbx.options: option delimiter: ")


class _FreezableProxy:
    """A loopback TCP relay to the SFTP server that can stop relaying: a partner that went
    silent (hung, or behind a dead link) while a session is open."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()  # swallow: the partner answers nothing more
                dst.write(data)
                await dst.drain()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_a_stop_does_not_wait_on_a_partner_that_stopped_answering(
        sftp_root: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    """The session's close goes unanswered; the source still stops within a few seconds (it
    waited on the close for as long as the partner stayed silent)."""
    root, port, host_key = sftp_root
    proxy = _FreezableProxy(port)
    relay_port = await proxy.start()
    put(root, "mute_0001.jsonl", ["m1"])
    p = poller("mute", (root, relay_port, host_key), pipeline, pool)
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    try:
        for _ in range(200):
            if p.processed == 1:
                break
            await asyncio.sleep(0.05)
        assert p.processed == 1
        proxy.frozen.set()
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(asyncio.shield(task), 10)
        assert time.monotonic() - started < 5
    finally:
        task.cancel()
        await proxy.close()
