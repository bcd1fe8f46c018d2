"""Settlement benchmark: outbound TAP 3.12 call events encoded by our native BER encoder,
beside pyasn1 (our twin) and asn1tools encoding the same events, and a 1 M-event TAP file
generated and written with its peak memory.

    python perf/bench_settlement.py            # 1 M events native, 20 k for the peers
    python perf/bench_settlement.py --quick    # small smoke run (CI)

Every side encodes the same events (a mix of MOC, MTC, SMS and GPRS) the same number of
times (``--runs``), and the median run is reported. The peers are ~100x slower, so they
encode a sample of the events and their rate is events per second on it; asn1tools gets its
values pre-built as dicts (its input form, outside the timing), pyasn1 builds its objects as
it must. asn1tools' bytes are checked equal to ours on the sample. The file run happens in a
child process (peak RSS = VmHWM): chunks of 8192 events (from a pool of distinct events) are
encoded, spooled, and the file written with its header and audit totals; two sizes show
whether memory stays flat.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asn1tools  # noqa: E402

from billing_oss.adapters.formats import reference_tap3_encode as twin  # noqa: E402
from billing_oss.native.tap3enc import encode_events  # noqa: E402

ASN = REPO / "perf" / "asn1" / "tap3_subset.asn"
OUT = REPO / "perf" / "out"
CHUNK = 8192


def event(i: int) -> tuple[Any, ...]:
    """A deterministic mix: 40 % MOC voice, 20 % MTC voice, 15 % SMS MO, 25 % GPRS."""
    imsi = f"26201{i % 10**10:010d}"
    msisdn = f"49170{i % 10**8:08d}"
    start = f"202601{1 + i % 28:02d}{i % 24:02d}{i % 60:02d}{(i * 7) % 60:02d}"
    charge = 1 + (i * 37) % 100_000
    slot = i % 20
    if slot < 8:
        return (9, imsi, msisdn, f"3361{i % 10**7:07d}", start, 1, 1 + i % 3600, "11", None,
                None, None, None, charge, 1, 1)
    if slot < 12:
        return (10, imsi, msisdn, f"3362{i % 10**7:07d}", start, 1, 1 + i % 900, "11", None,
                None, None, None, charge, 1, 1)
    if slot < 15:
        return (9, imsi, msisdn, f"3369{i % 10**7:07d}", start, 1, 0, "22", None, None, None,
                None, charge, 1, 1)
    return (14, imsi, msisdn, None, start, 1, 1 + i % 7200, None, (i * 131) % 10**9,
            (i * 17) % 10**8, "internet", i, charge, 1, 1)


def chunks(n: int) -> Iterator[list[tuple[Any, ...]]]:
    """``n`` events in chunks, drawn from a pool of one chunk of distinct events (building
    tuples in Python is the caller's cost, not the writer's: the pool keeps it out)."""
    pool = [event(i) for i in range(CHUNK)]
    for first in range(0, n, CHUNK):
        yield pool[: min(CHUNK, n - first)]


def _bcd(digits: str) -> bytes:
    return twin.bcd(digits)


def asn1tools_value(ev: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """The asn1tools input for one event (what its encoder needs to write our bytes)."""
    sub = ("simChargeableSubscriber", {"imsi": _bcd(ev[1]), "msisdn": _bcd(ev[2])})
    stamp = {"localTimeStamp": ev[4].encode(), "utcTimeOffsetCode": ev[5]}
    if ev[0] == 14:
        charge = [{"chargedItem": b"X", "exchangeRateCode": ev[13],
                   "chargeDetailList": [{"chargeType": b"00", "charge": ev[12]}]}]
        return "gprsCall", {
            "gprsBasicCallInformation": {
                "gprsChargeableSubscriber": {"chargeableSubscriber": sub},
                "gprsDestination": {"accessPointNameNI": ev[10].encode()},
                "callEventStartTimeStamp": stamp, "totalCallEventDuration": ev[6],
                "chargingId": ev[11]},
            "gprsLocationInformation": {"gprsNetworkLocation": {"recEntity": [ev[14]]}},
            "gprsServiceUsed": {"dataVolumeIncoming": ev[8], "dataVolumeOutgoing": ev[9],
                                "chargeInformationList": charge}}
    item = b"E" if ev[7][0] == "2" else b"D"
    party = ({"destination": {"calledNumber": _bcd(ev[3])}} if ev[0] == 9
             else {"callOriginator": {"callingNumber": _bcd(ev[3])}})
    return ("mobileOriginatedCall" if ev[0] == 9 else "mobileTerminatedCall"), {
        "basicCallInformation": {"chargeableSubscriber": sub, **party,
                                 "callEventStartTimeStamp": stamp,
                                 "totalCallEventDuration": ev[6]},
        "locationInformation": {"networkLocation": {"recEntityCode": ev[14]}},
        "basicServiceUsedList": [{
            "basicService": {"serviceCode": ("teleServiceCode", ev[7].encode())},
            "chargeInformationList": [{
                "chargedItem": item, "exchangeRateCode": ev[13],
                "chargeDetailList": [{"chargeType": b"00", "charge": ev[12]}]}]}]}


def median_rate(runs: int, count: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return count / statistics.median(times)


CHILD = """
import sys, time
sys.path.insert(0, {repo!r})
sys.path.insert(0, {perf!r})
from bench_settlement import chunks
from billing_oss.adapters.formats.tap3_writer import TapHeader, write_transfer_batch
h = TapHeader(sender="FRAF1", recipient="DEUD1", fsn=1, created="20260201000000",
              cutoff="20260201000000", available="20260201000000", utc_offset="+0100",
              exchange_rates=((1, 4, 12345),), rec_entities=((1, 1, "FRAF1MSC01"),))
t = time.perf_counter()
with open({path!r}, "wb") as out:
    totals = write_transfer_batch(out, h, chunks({n}))
secs = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(totals.count, totals.size, secs, hwm)
"""


def file_run(n: int) -> tuple[float, float, int]:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"CDFRAF1DEUD1_{n}.tap"
    code = CHILD.format(repo=str(REPO), perf=str(REPO / "perf"), path=str(path), n=n)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    count, size, secs, peak_kb = int(out[0]), int(out[1]), float(out[2]), int(out[3])
    assert count == n and path.stat().st_size == size
    path.unlink()
    print(f"  {n:>9,} events: {size / 1e6:7.1f} MB file written in {secs:5.2f} s "
          f"({n / secs:,.0f} events/s end to end), peak RSS {peak_kb / 1024:.0f} MB")
    return secs, peak_kb / 1024, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (median)")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 1_000_000
    sample = 2_000 if args.quick else 20_000
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; {args.runs} runs per side, median")
    all_chunks = [[event(i) for i in range(first, min(n, first + CHUNK))]
                  for first in range(0, n, CHUNK)]
    some = [event(i) for i in range(sample)]
    spec = asn1tools.compile_files(str(ASN), "ber")
    values = [asn1tools_value(ev) for ev in some]
    ours = encode_events(some)
    theirs = b"".join(spec.encode("CallEventDetail", v) for v in values)
    assert theirs == ours, "asn1tools writes other bytes for the same events"
    assert twin.encode_events(some[:200]) == encode_events(some[:200])

    native = median_rate(args.runs, n, lambda: [encode_events(c) for c in all_chunks])
    a_rate = median_rate(args.runs, sample,
                         lambda: [spec.encode("CallEventDetail", v) for v in values])
    p_sample = some[: sample // 4]
    p_rate = median_rate(args.runs, len(p_sample), lambda: twin.encode_events(p_sample))
    print(f"TAP 3.12 call event encoding ({n:,} events native; peers on {sample:,} and "
          f"{len(p_sample):,})")
    print(f"  native (tap3enc)  {native:>12,.0f} events/s")
    print(f"  asn1tools         {a_rate:>12,.0f} events/s   native is {native / a_rate:,.1f}x")
    print(f"  pyasn1 (twin)     {p_rate:>12,.0f} events/s   native is {native / p_rate:,.1f}x")
    print("TAP file written by the streaming writer (child process)")
    _secs, small_mb, _ = file_run(n // 10)
    big_secs, big_mb, _ = file_run(n)
    ok = native >= 500_000 and (args.quick or big_secs <= 10) and big_mb < small_mb * 1.5 + 20
    print("targets met" if ok else "targets NOT all met (see figures above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
