"""Decode benchmark: native 32.297/32.298 and TAP3 decoders against asn1tools and pyasn1.

    python perf/bench_decode.py            # 1 M mixed CDRs, 200 k TAP3 events, 1 GB memory run
    python perf/bench_decode.py --quick    # small smoke run (CI)

All figures come from the same run on the same records. Two comparisons are printed:

- like for like (the headline): every side delivers one Python object per record. Ours is
  ``Cdr3gppFile.batches()`` (native walk + conversion to ``core.records.UsageRecord``, what
  the pipeline's object path uses); asn1tools and pyasn1 build their decoded values.
- columnar: the native walk into C-struct batches (``native_batches``), no Python object
  per record, beside the same peer figures. It is a different amount of work, so its ratio
  is printed for reference only.

Peers decode a sample of the same records one by one (pyasn1 is ~1000x slower; decoding all
of them would take minutes), and their rate is records per second on that sample. Every
side is timed the same number of times (``RUNS``) and the median is reported. Peak memory is
measured in a child process decoding a file of the given size (RSS high-water mark, VmHWM).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asn1tools  # noqa: E402
from pyasn1.codec.ber import decoder as pyasn1_decoder  # noqa: E402

from billing_oss.adapters.formats.asn1_3gpp import CallEventRecord  # noqa: E402
from billing_oss.adapters.formats.asn1_tap3 import CallEventDetail  # noqa: E402
from billing_oss.adapters.formats.tap3 import open_tap3  # noqa: E402
from billing_oss.adapters.formats.threegpp import open_3gpp  # noqa: E402
from billing_oss.native._records import RecordBatch  # noqa: E402
from billing_oss.native.tap3 import Tap3Walker  # noqa: E402
from tests.generators.tap3_files import fast_tap3_file  # noqa: E402
from tests.generators.threegpp_files import file_header, write_fast_3gpp  # noqa: E402

OUT = REPO / "perf" / "out"
ASN = REPO / "perf" / "asn1" / "cdr_subset.asn"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


RUNS = 3  # times each side is timed; the median is reported


def median_of(fn: object, runs: int = RUNS) -> tuple[int, float]:
    """(records, median seconds) over ``runs`` timed calls of ``fn``."""
    times: list[float] = []
    n = 0
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return n, statistics.median(times)


def make_3gpp(path: Path, n: int) -> None:
    if path.exists() and path.stat().st_size > 0:
        return
    with open(path, "wb") as fh:
        write_fast_3gpp(fh, n, distinct=min(n, 50_000))


def native_3gpp(path: Path) -> int:
    n = 0
    with open_3gpp(path, source="bench", batch_size=8192) as f:
        for batch, _buf, _base in f.native_batches():
            n += len(batch)
    return n


def full_3gpp(path: Path, limit: int) -> int:
    n = 0
    with open_3gpp(path, source="bench") as f:
        for batch in f.batches():
            n += len(batch.records)
            if n >= limit:
                break
    return n


def sample_records(path: Path, count: int) -> list[bytes]:
    out: list[bytes] = []
    with open_3gpp(path, source="bench", batch_size=count) as f:
        batch, buf, base = next(f.native_batches())
        for row in batch.rows()[:count]:
            start = row[1] - base
            out.append(bytes(buf[start : start + row[2]]))
    return out


def bench_3gpp(n: int, peer_sample: int, pyasn1_sample: int) -> dict[str, float]:
    path = OUT / f"mixed_{n}.cdr"
    t = time.perf_counter()
    make_3gpp(path, n)
    print(f"3GPP TS 32.297 file: {n:,} mixed records (pGW/sGW/MO/MT call/MO/MT SMS), "
          f"{path.stat().st_size / 1e6:.0f} MB, ready in {time.perf_counter() - t:.1f} s")
    count, secs = median_of(lambda: native_3gpp(path))
    assert count == n, (count, n)
    native = rate(count, secs)
    limit = min(n, 300_000)
    count2, secs2 = median_of(lambda: full_3gpp(path, limit))
    full = rate(count2, secs2)
    recs = sample_records(path, peer_sample)
    spec = asn1tools.compile_files(str(ASN), "ber")

    def run_asn1tools() -> int:
        for r in recs:
            spec.decode("CallEventRecord", r)
        return len(recs)

    def run_pyasn1() -> int:
        for r in recs[:pyasn1_sample]:
            pyasn1_decoder.decode(r, asn1Spec=CallEventRecord())
        return min(len(recs), pyasn1_sample)

    a_n, a_s = median_of(run_asn1tools)
    p_n, p_s = median_of(run_pyasn1)
    a_rate, p_rate = rate(a_n, a_s), rate(p_n, p_s)
    print(f"  like for like: one Python object per record on every side (median of {RUNS})")
    print(f"    ours: native + UsageRecord {full:>12,.0f} rec/s   ({count2:,} records)")
    print(f"    asn1tools                  {a_rate:>12,.0f} rec/s   ({a_n:,} records)   "
          f"ours is {full / a_rate:,.1f}x")
    print(f"    pyasn1                     {p_rate:>12,.0f} rec/s   ({p_n:,} records)   "
          f"ours is {full / p_rate:,.1f}x")
    print("  columnar: no Python object per record on our side (different work; reference)")
    print(f"    ours: native batches       {native:>12,.0f} rec/s   target >= 1,000,000")
    print(f"    vs asn1tools {native / a_rate:,.1f}x (target >= 15x), "
          f"vs pyasn1 {native / p_rate:,.1f}x (target >= 150x)")
    print(f"  headline (like for like): {full / a_rate:,.1f}x asn1tools, "
          f"{full / p_rate:,.1f}x pyasn1")
    return {"native": native, "asn1tools_ratio": native / a_rate,
            "pyasn1_ratio": native / p_rate}


def bench_tap3(n: int, pyasn1_sample: int) -> dict[str, float]:
    path = OUT / f"tap3_{n}.tap"
    if not path.exists():
        path.write_bytes(fast_tap3_file(n))
    data = path.read_bytes()
    print(f"TAP 3.12 TransferBatch: {n:,} call events (MOC/MTC/GPRS/SS), "
          f"{len(data) / 1e6:.0f} MB")

    def run_native() -> int:
        walker = Tap3Walker(data)
        batch = RecordBatch(8192)
        count, more = 0, True
        while more:
            batch.clear()
            more = walker.next_batch(batch)
            count += len(batch)
        return count

    def run_full() -> int:
        count = 0
        with open_tap3(path, source="bench", options={"check_audit": False}) as f:
            for decoded in f.batches():
                count += len(decoded.records) + len(decoded.problems)
        return count

    count, secs = median_of(run_native)
    assert count == n
    native = rate(count, secs)
    count2, secs2 = median_of(run_full)
    assert count2 == n, (count2, n)
    full = rate(count2, secs2)
    walker = Tap3Walker(data)
    batch = RecordBatch(pyasn1_sample)
    walker.next_batch(batch)
    events = [data[r[1] : r[1] + r[2]] for r in batch.rows()]

    def run_pyasn1() -> int:
        for ev in events:
            pyasn1_decoder.decode(ev, asn1Spec=CallEventDetail())
        return len(events)

    p_n, p_s = median_of(run_pyasn1)
    p_rate = rate(p_n, p_s)
    print(f"  like for like: one Python object per event on every side (median of {RUNS})")
    print(f"    ours: native + UsageRecord {full:>12,.0f} events/s")
    print(f"    pyasn1                     {p_rate:>12,.0f} events/s ({p_n:,} events)   "
          f"ours is {full / p_rate:,.1f}x")
    print("  columnar: no Python object per event on our side (different work; reference)")
    print(f"    ours: native batches       {native:>12,.0f} events/s   "
          f"vs pyasn1 {native / p_rate:,.1f}x")
    print(f"  headline (like for like): {full / p_rate:,.1f}x pyasn1")
    return {"native": native, "pyasn1_ratio": native / p_rate}


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the (big) parent.
CHILD = """
import sys
sys.path.insert(0, {repo!r})
from billing_oss.adapters.formats.threegpp import open_3gpp
from pathlib import Path
n = 0
with open_3gpp(Path({path!r}), source="bench") as f:
    if {full}:
        for b in f.batches():
            n += len(b.records)
    else:
        for b, _, _ in f.native_batches():
            n += len(b)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(n, hwm)
"""


def bench_memory(base_records: int, target_bytes: int, full: bool) -> float:
    src = OUT / f"mixed_{base_records}.cdr"
    make_3gpp(src, base_records)
    header_len = int.from_bytes(src.read_bytes()[4:8], "big")
    body = src.read_bytes()[header_len:]
    repeat = max(1, target_bytes // len(body))
    big = OUT / f"big_{repeat}x{base_records}.cdr"
    if not big.exists():
        hdr = file_header(file_length=0, cdr_count=0, sequence_number=1)
        total = len(hdr) + repeat * len(body)
        with open(big, "wb") as fh:
            fh.write(file_header(file_length=total, cdr_count=(repeat * base_records) & 0xFFFFFFFF,
                                 sequence_number=1))
            for _ in range(repeat):
                fh.write(body)
    code = CHILD.format(repo=str(REPO), path=str(big), full=full)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    secs = time.perf_counter() - t
    records, peak_kb = int(out[0]), int(out[1])
    what = "native + UsageRecord" if full else "native batches"
    print(f"  {big.stat().st_size / 1e9:.2f} GB file, {records:,} records, {what}: "
          f"peak RSS {peak_kb / 1024:.0f} MB (target < 200 MB), {secs:.1f} s")
    return peak_kb / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    g = bench_3gpp(20_000 if quick else 1_000_000, 2_000 if quick else 20_000,
                   300 if quick else 3_000)
    t = bench_tap3(5_000 if quick else 200_000, 300 if quick else 3_000)
    print("Peak memory while decoding")
    mem = bench_memory(20_000, (20 if quick else 1000) * 10**6, full=False)
    if not quick:
        bench_memory(1_000_000, 100 * 10**6, full=True)
    ok = (g["native"] >= 1e6 and g["asn1tools_ratio"] >= 15 and g["pyasn1_ratio"] >= 150
          and t["pyasn1_ratio"] >= 150 and mem < 200)
    print("targets met" if ok else "targets NOT all met (see figures above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
