"""The format registry (adapters.formats.registry): one entry per format, read by decode,
ingest, the pipeline's decoders, completeness and the start-up check of sources."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pytest

from billing_oss.adapters.formats import decode_bytes
from billing_oss.adapters.formats.api import DecodedBatch, FileInfo, RecordProblem
from billing_oss.adapters.formats.completeness import is_complete
from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.adapters.formats.options import Option, choice, describe, parse_options
from billing_oss.adapters.formats.registry import (
    SNIFF_BYTES,
    Format,
    formats,
    guess,
    names,
    register,
    unregister,
)
from billing_oss.adapters.sources import check_formats
from billing_oss.core.contract import Reject
from billing_oss.core.errors import BillingError, ConfigError, DecodeError, Reason
from billing_oss.core.records import UsageRecord
from billing_oss.core.sources_config import SftpSource
from billing_oss.server import cli, config
from billing_oss.server.composition import check_sources, decoders
from tests.conftest import REPO, VECTORS

SAMPLES = {  # vendored files, one or two per built-in format
    "3gpp": [REPO / "config/demo/msc-2026-03.cdr"],
    "tap3": [VECTORS / "tap_3_12_valid.ber",
             REPO / "tests/vectors/tap3/CDAAAAABBBBB00001_00002.tap"],
    "csv": [REPO / "config/demo/asterisk-2026-03.csv",
            REPO / "tests/vectors/asterisk/master_a13_forked.csv"],
    "jsonl": [REPO / "config/demo/usage-2026-03.jsonl"],
}


def test_every_format_declares_itself() -> None:
    assert names()[:4] == ["3gpp", "tap3", "csv", "jsonl"]
    for fmt in formats():
        assert fmt.name and fmt.title and fmt.suffixes, fmt.name
        assert all(s.startswith(".") for s in fmt.suffixes), fmt.name
        assert describe(fmt.name).startswith(f"{fmt.name} options:")
        assert set(parse_options(fmt.name, None)) == {o.name for o in fmt.options}
    assert set(decoders()) == set(names())  # the pipeline decodes every registered format


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sniffing_tells_each_builtin_format_from_the_others(name: str) -> None:
    by_name = {fmt.name: fmt for fmt in formats()}
    for path in SAMPLES[name]:
        head = path.read_bytes()[:SNIFF_BYTES]
        recognised = {other for other, fmt in by_name.items() if fmt.sniff(head)}
        assert recognised == {name}, path.name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_sample_without_its_name_ending_is_guessed_by_its_bytes(
        name: str, tmp_path: Path) -> None:
    for path in SAMPLES[name]:
        anonymous = tmp_path / f"{path.stem}.incoming"
        anonymous.write_bytes(path.read_bytes())
        assert guess(anonymous) == name
        assert decode_bytes(name, path.read_bytes(), source="s").records


def test_a_shared_ending_nobody_recognises_goes_to_its_first_claimant(tmp_path: Path) -> None:
    odd = tmp_path / "x.dat"
    odd.write_bytes(b"\x00\x00")
    assert guess(odd) == "3gpp"  # the decoder then names the damage
    unknown = tmp_path / "x.bin"
    unknown.write_bytes(b"\x00\x00")
    with pytest.raises(BillingError, match="cannot tell the format from the name"):
        guess(unknown)


def test_completeness_is_the_formats_own() -> None:
    assert is_complete("3gpp", SAMPLES["3gpp"][0]).complete
    assert is_complete("tap3", SAMPLES["tap3"][0]).complete
    assert is_complete("jsonl", SAMPLES["jsonl"][0]).state == "unknown"
    assert is_complete("nonesuch", SAMPLES["jsonl"][0]).state == "unknown"


def test_a_name_is_registered_once() -> None:
    fmt = next(f for f in formats() if f.name == "csv")
    with pytest.raises(ValueError, match="registered already"):
        register(fmt)


# A format defined here and nowhere else: "key|calling|called|seconds|time" lines.


class _PipeFile:
    def __init__(self, stream: IO[bytes], *, source: str,
                 options: Mapping[str, Any] | None = None, batch_size: int = 4096) -> None:
        self.kind = parse_options("pipes", options)["kind"]
        self._fh, self.source, self.batch_size = stream, source, batch_size
        self.info = FileInfo(format="pipes", sequence_number=41)

    def __enter__(self) -> _PipeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def batches(self) -> Iterator[DecodedBatch]:
        out = DecodedBatch(first_index=0, records=[])
        for index, line in enumerate(self._fh):
            fields = line.decode().strip().split("|")
            if len(fields) != 5:
                out.problems.append(RecordProblem(index=index, offset=index + 1, raw=line,
                                                  reason=Reason.MALFORMED,
                                                  detail=f"{len(fields)} fields, 5 expected"))
                continue
            key, calling, called, seconds, when = fields
            out.records.append(UsageRecord(
                record_key=key, source=self.source, kind=self.kind, calling=calling,
                called=called, duration_s=int(seconds),
                event_time=dt.datetime.fromisoformat(when).strftime("%Y-%m-%dT%H:%M:%SZ")))
            out.indexes.append(index)
        yield out


PIPES = Format(
    name="pipes", title="pipe-separated calls (a test's own format)", suffixes=(".pipes",),
    sniff=lambda head: head.count(b"|") >= 4 and not head.startswith((b"{", b'"')),
    open=lambda path, **kw: _PipeFile(path.open("rb"), **kw),
    read=lambda data, **kw: _PipeFile(io.BytesIO(data), **kw),
    options=(Option(name="kind", type="one of voice, sms", default="voice",
                    parse=choice("voice", "sms"), help="what every line records"),),
    item_count="lines", located_by="line")

CALLS = (b"p-1|33611111111|33612345678|185|2026-03-02T10:00:00+00:00\n"
         b"p-2|33611111111\n"
         b"p-3|33611111111|33612345678|60|2026-03-02T11:00:00+00:00\n")


@pytest.fixture
def pipes() -> Iterator[Format]:
    register(PIPES)
    try:
        yield PIPES
    finally:
        unregister(PIPES.name)


def test_one_entry_makes_a_format_known_everywhere(pipes: Format, tmp_path: Path) -> None:
    path = tmp_path / "calls.pipes"
    path.write_bytes(CALLS)
    assert guess(path) == "pipes"
    assert "pipes" in decoders()
    decoder = FormatDecoder("pipes")
    items = [item for chunk in decoder(path, source="s", chunk=10) for item in chunk]
    assert [type(i) for i in items] == [UsageRecord, Reject, UsageRecord]
    assert isinstance(items[1], Reject) and items[1].where == "line 2"
    header = decoder.header(path, count=True)
    assert (header.sequence_no, header.items) == (41, 3)
    with pytest.raises(ConfigError, match=r"'colour' is not a pipes option \(known: kind\)"):
        parse_options("pipes", {"colour": "red"})
    check_formats({"drop": SftpSource(host="h", username="u", remote_dir="/", format="pipes")},
                  names())


def test_decode_reads_a_registered_format(pipes: Format, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "calls.pipes"
    path.write_bytes(CALLS)
    assert cli.main(["decode", "--format", "pipes", "--option", "kind=sms", str(path)]) == 3
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["record_key"], r["kind"]) for r in records] == [("p-1", "sms"), ("p-3", "sms")]
    assert "line 2 (record 2): MALFORMED: 2 fields, 5 expected" in err
    assert cli.main(["decode", "--list-options", "pipes"]) == 0
    assert "kind=<one of voice, sms> (default voice)" in capsys.readouterr().out


def test_an_unregistered_format_is_gone_again() -> None:
    assert "pipes" not in names()
    with pytest.raises(DecodeError, match="unknown format 'pipes'"):
        FormatDecoder("pipes")


def test_a_source_with_an_unknown_format_is_refused_at_start(tmp_path: Path) -> None:
    toml = tmp_path / "sources.toml"
    toml.write_text('[sources.partner-a]\ntype = "sftp"\nhost = "h"\nusername = "u"\n'
                    'remote_dir = "/out"\nformat = "asn1"\ninsecure_skip_host_key = true\n')
    cfg = config.load(toml, env={})  # the file itself is well formed
    with pytest.raises(ConfigError) as refused:
        check_sources(cfg)
    assert refused.value.message == ("sources.partner-a.format: unknown format 'asn1' "
                                     "(known: 3gpp, csv, jsonl, tap3)")
