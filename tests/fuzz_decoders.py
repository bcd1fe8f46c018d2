"""Mutation fuzzing of every decoder: ``python -m tests.fuzz_decoders --count N``.

Each decoder (3GPP native and reference, TAP3 native and reference, CSV, JSON lines) reads
``N`` inputs made from valid seed files by bit flips, truncation, length corruption,
byte insertion/deletion and splices. Allowed outcomes: records, per-record problems that name
an offset (CSV/JSON lines: a line), a file-level ``DecodeError`` that names one; for the
pyasn1 reference twins, which report no positions by design, their file-level
``MalformedTap3`` / framing message.
Anything else — another exception, an error without an offset — is a finding, printed with
the input in hex. A watchdog (``faulthandler``) ends the process if one input takes longer
than ``--hang-seconds``: a hang fails the run instead of stalling it. Prints one JSON line
of counts per decoder; exits 1 on any finding.
"""

from __future__ import annotations

import argparse
import faulthandler
import io
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from billing_oss.adapters.formats import decode_bytes, reference_3gpp, reference_tap3
from billing_oss.adapters.formats.jsonl import decode_jsonl
from billing_oss.core.errors import DecodeError, NotUsageFile
from tests.generators.tap3_files import tap3_file
from tests.generators.threegpp_files import write_fast_3gpp

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "tests" / "vectors"
LENGTH_OCTETS = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x88, 0xFF)


class Finding(Exception):
    """An outcome the decoder's contract does not allow."""


def seeds_3gpp() -> list[bytes]:
    out = []
    for n, seed in ((3, 1), (6, 2)):
        buf = io.BytesIO()
        write_fast_3gpp(buf, n, seed=seed)
        out.append(buf.getvalue())
    raw = io.BytesIO()
    write_fast_3gpp(raw, 2, seed=3)
    out.append(raw.getvalue()[int.from_bytes(raw.getvalue()[4:8], "big"):])  # bare records
    return out


def seeds_tap3() -> list[bytes]:
    moc = {"type": "moc", "imsi": "208011234567890", "msisdn": "33611111111",
           "called": "33140000000", "start": "20260115102030", "utc_code": 1, "duration": 60,
           "teleservice": "11", "charges": [("00", 1500)]}
    gprs = {"type": "gprs", "imsi": "208011234567890", "start": "20260115102030",
            "utc_code": 1, "up": 1000, "down": 5000, "apn": "internet", "charging_id": 7,
            "charges": [("00", 20)]}
    lib = VECTORS / "libxfsx"
    return [tap3_file([moc, gprs]), (lib / "tap_3_12_valid.ber").read_bytes(),
            (lib / "tap_3_12_valid_some_cdr_indefinite.ber").read_bytes()]


def seeds_csv() -> list[bytes]:
    asterisk = VECTORS / "asterisk"
    return [(asterisk / "master_a13_forked.csv").read_bytes(),
            (asterisk / "master_18_forked.csv").read_bytes()]


def seeds_jsonl() -> list[bytes]:
    decoded = decode_bytes("csv", seeds_csv()[0], source="pbx")
    import msgspec

    return [b"".join(msgspec.json.encode(r) + b"\n" for r in decoded.records)]


def mutate(data: bytes, seeds: list[bytes], rng: random.Random) -> bytes:
    """One to three mutations of ``data``."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not out:
            out = bytearray(rng.choice(seeds))
        op = rng.randrange(7)
        at = rng.randrange(len(out))
        if op == 0:  # bit flips
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncation
            del out[rng.randrange(len(out)):]
        elif op == 2:  # length corruption: a length-like octet, or a 2-octet length
            if rng.random() < 0.7:
                out[at] = rng.choice(LENGTH_OCTETS)
            else:
                out[at:at + 2] = rng.randrange(65536).to_bytes(2, "big")
        elif op == 3:  # splice from another seed
            other = rng.choice(seeds)
            j = rng.randrange(len(other))
            chunk = other[j:j + rng.randint(1, 64)]
            out[at:at + rng.randint(0, 64)] = chunk
        elif op == 4:  # delete a run
            del out[at:at + rng.randint(1, 16)]
        elif op == 5:  # insert random bytes
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        else:  # duplicate a run (repeated elements, concatenated batches)
            out[at:at] = out[at:at + rng.randint(1, 200)]
    return bytes(out)


def _check_decoded(format: str, data: bytes) -> str:
    try:
        decoded = decode_bytes(format, data, source="fuzz")
    except NotUsageFile:
        return "not-usage"
    except DecodeError as exc:
        if exc.offset is None:
            raise Finding(f"file error without an offset: {exc.message}") from None
        return "file-error"
    for p in decoded.problems:
        if not isinstance(p.offset, int) or p.offset < 0:
            raise Finding(f"problem without an offset: {p.detail}")
    if decoded.error is not None:
        if decoded.error.offset is None:
            raise Finding(f"file error without an offset: {decoded.error.message}")
        return "part-way"
    return "problems" if decoded.problems else "clean"


def native_3gpp(data: bytes) -> str:
    return _check_decoded("3gpp", data)


def native_tap3(data: bytes) -> str:
    return _check_decoded("tap3", data)


def csv_decoder(data: bytes) -> str:
    return _check_decoded("csv", data)


def reference_3gpp_decoder(data: bytes) -> str:
    framed = data[:1] not in (b"",) and not 0xA0 <= data[0] <= 0xBF
    start = min(len(data), max(0, int.from_bytes(data[4:8], "big"))) if framed else 0
    rows, error = reference_3gpp.decode_records(data, framed=framed, start=start)
    if any(row[3] and row[1] is None for row in rows):
        raise Finding("reference problem row without an offset")
    return "part-way" if error else ("problems" if any(r[3] for r in rows) else "clean")


def reference_tap3_decoder(data: bytes) -> str:
    try:
        rows = reference_tap3.decode_events(data)
    except reference_tap3.MalformedTap3:
        return "file-error"
    return "problems" if any(r[3] for r in rows) else "clean"


def jsonl_decoder(data: bytes, _scratch: list[Path] = []) -> str:  # noqa: B006
    if not _scratch:
        _scratch.append(Path(tempfile.mkdtemp(prefix="fuzz-jsonl-")) / "in.jsonl")
    path = _scratch[0]
    path.write_bytes(data)
    outcome = "clean"
    for items in decode_jsonl(path, source="fuzz", chunk=1000):
        for item in items:
            where = getattr(item, "where", None)
            if where is not None:
                if not where.startswith("line "):
                    raise Finding(f"reject without a line: {item}")
                outcome = "problems"
    return outcome


DECODERS: dict[str, tuple[Callable[[bytes], str], Callable[[], list[bytes]]]] = {
    "3gpp-native": (native_3gpp, seeds_3gpp),
    "3gpp-reference": (reference_3gpp_decoder, seeds_3gpp),
    "tap3-native": (native_tap3, seeds_tap3),
    "tap3-reference": (reference_tap3_decoder, seeds_tap3),
    "csv": (csv_decoder, seeds_csv),
    "jsonl": (jsonl_decoder, seeds_jsonl),
}


def run(name: str, count: int, seed: int, hang_seconds: float) -> dict[str, object]:
    decode, make_seeds = DECODERS[name]
    seeds = make_seeds()
    rng = random.Random(f"{name}:{seed}")
    outcomes: Counter[str] = Counter()
    findings: list[str] = []
    kinds: Counter[str] = Counter()
    slowest = 0.0
    started = time.perf_counter()
    for i in range(count):
        data = mutate(rng.choice(seeds), seeds, rng)
        faulthandler.dump_traceback_later(hang_seconds, exit=True)
        t0 = time.perf_counter()
        try:
            outcomes[decode(data)] += 1
        except Finding as exc:
            kinds[str(exc)[:60]] += 1
            findings.append(f"input {i}: {exc}: {data.hex()}")
        except Exception as exc:  # every other exception is a finding
            kinds[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
            findings.append(f"input {i}: {type(exc).__name__}: {exc}: {data.hex()}")
        finally:
            faulthandler.cancel_dump_traceback_later()
        slowest = max(slowest, time.perf_counter() - t0)
    return {"decoder": name, "inputs": count, "outcomes": dict(outcomes),
            "findings": len(findings), "finding_kinds": dict(kinds),
            "first_findings": [f[:2000] for f in findings[:3]],
            "slowest_s": round(slowest, 4), "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="inputs per decoder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--decoder", action="append", choices=sorted(DECODERS))
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    failed = False
    for name in args.decoder or list(DECODERS):
        result = run(name, args.count, args.seed, args.hang_seconds)
        print(json.dumps(result), flush=True)
        failed = failed or bool(result["findings"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
