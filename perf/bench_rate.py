"""Rating benchmark: native kernel vs. the Python reference rater, in the same run.

    python perf/bench_rate.py            # 10 M records, 100 k prefixes, 4 bands, 2 versions
    python perf/bench_rate.py --quick    # a smoke run (1 M records, 20 k prefixes)

The headline is like for like: the native rater and the ``Fraction`` reference rater on
the same path (``UsageRecord`` objects in, ``Charge`` outcomes out: columns + kernel +
outcomes for ours) over the same records, outcomes compared. Printed beside it, for
reference only: the kernel alone on columns (one call, GIL released) and the LPM alone,
whose ratio to the reference compares different work. Every side is timed the same number
of times (``RUNS``) and the median is reported. Then the time and peak memory of loading a
catalog with 1 M prefixes (in a child process), and, with that catalog stored in PostgreSQL,
how soon a newly created account is rated (``accounts_repo.create`` + its subscription to the
first charge committed by the pipeline; no tariff is compiled again) beside the full compile
a worker makes when a tariff changes (read, check and compile every stored version): each
``RUNS`` times, medians. ``--database-url`` (or ``BILLING_OSS_TEST_DATABASE_URL``) names a
server where a scratch database is created; without one an embedded PostgreSQL is started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncpg

    from billing_oss.server.pipeline.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog import catalog_from_dict, load_catalog
from billing_oss.server.rating import NativeRater, ReferenceRater

BANDS = [
    {"name": "peak", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "20:00"},
    {
        "name": "evening",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "from": "20:00",
        "to": "23:00",
    },
    {"name": "weekend", "days": ["sat", "sun"], "from": "00:00", "to": "24:00"},
    {"name": "night", "default": True},
]


def make_catalog(prefix_count: int, zone_count: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    prefixes: set[str] = set()
    while len(prefixes) < prefix_count:
        prefixes.add(
            str(rng.randrange(1, 10))
            + "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 8)))
        )
    zones: dict[str, list[str]] = {f"z{n}": [] for n in range(zone_count)}
    for prefix in sorted(prefixes):
        zones[f"z{rng.randrange(zone_count)}"].append(prefix)
    versions = []
    for effective, factor in (("2026-01-01T00:00:00Z", 1), ("2026-07-01T00:00:00+02:00", 2)):
        rates: list[dict[str, Any]] = []
        for n in range(zone_count):
            price = f"0.{rng.randrange(1, 99):02d}{factor}"
            rates.append(
                {
                    "kind": "voice",
                    "zone": f"z{n}",
                    "band": "*",
                    "connect_fee": "0.05",
                    "steps": [
                        {"from": 0, "price": price, "unit": 60, "increment": 60},
                        {"from": 60, "price": price, "unit": 60, "increment": 1},
                    ],
                    "minimum_charge": "0.10",
                    "rounding": {"decimals": 4, "method": "half-up"},
                }
            )
            if n % 3 == 0:
                rates.append(
                    {
                        "kind": "voice",
                        "zone": f"z{n}",
                        "band": "peak",
                        "connect_fee": "0.10",
                        "steps": [
                            {"from": 0, "price": "0.30", "unit": 60, "increment": 30},
                            {"from": 30, "price": "0.20", "unit": 60, "increment": 1},
                        ],
                    }
                )
        rates.append(
            {
                "kind": "sms",
                "zone": "*",
                "band": "*",
                "steps": [{"from": 0, "price": "0.05", "unit": 1, "increment": 1}],
            }
        )
        rates.append(
            {
                "kind": "data",
                "zone": "*",
                "band": "*",
                "maximum_charge": "25",
                "steps": [
                    {"from": 0, "price": "0.01", "unit": 1048576, "increment": 1024},
                    {"from": 10**9, "price": "0.002", "unit": 1048576, "increment": 1024},
                ],
            }
        )
        versions.append(
            {
                "effective_from": effective,
                "timezone": "Europe/Paris",
                "zones": zones,
                "time_bands": BANDS,
                "rates": rates,
            }
        )
    return {
        "currency": "EUR",
        "tariffs": [{"id": "retail", "versions": versions}],
        "accounts": [
            {"id": f"A{n}", "identifiers": [f"3360000{n:04d}"], "tariff": "retail"}
            for n in range(1000)
        ],
    }


def make_records(catalog: dict[str, Any], count: int, seed: int = 11) -> list[UsageRecord]:
    rng = random.Random(seed)
    prefixes = [p for zone in catalog["tariffs"][0]["versions"][0]["zones"].values() for p in zone]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for n in range(count):
        kind = rng.choices(("voice", "sms", "data"), weights=(6, 2, 2))[0]
        when = start + timedelta(seconds=rng.randrange(365 * 86400))
        account = f"3360000{rng.randrange(1000):04d}"
        called = rng.choice(prefixes) + str(rng.randrange(10**6)) if rng.random() < 0.97 else "0"
        fields: dict[str, Any] = {
            "record_key": f"r{n}",
            "source": "bench",
            "kind": kind,
            "event_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if kind == "data":
            fields.update(
                msisdn=account, volume_down=rng.randrange(10**9), volume_up=rng.randrange(10**7)
            )
        else:
            fields.update(calling=account, called=called)
            if kind == "voice":
                fields["duration_s"] = rng.randrange(3600)
        out.append(UsageRecord(**fields))
    return out


RUNS = 3  # times each side is timed; the median is reported
T = TypeVar("T")


def median_time(fn: Callable[[], T], runs: int = RUNS) -> tuple[T, float]:
    """(last result, median seconds) over ``runs`` timed calls of ``fn``."""
    times: list[float] = []
    for _ in range(runs):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return result, statistics.median(times)


def rate_per_s(count: int, seconds: float) -> str:
    return f"{count / seconds:>14,.0f} records/s"


def bench(total: int, unique: int, prefix_count: int, reference_count: int) -> None:
    catalog_dict = make_catalog(prefix_count, zone_count=200)
    catalog = catalog_from_dict(catalog_dict)
    native = NativeRater(catalog)
    records = make_records(catalog_dict, unique)
    cols = native.columns(records)
    repeat = total // unique
    tariff, event_us, kind = cols.tariff * repeat, cols.event_us * repeat, cols.kind * repeat
    usage, called = cols.usage * repeat, cols.called * repeat
    n = len(tariff)
    status = array("B", bytes(n))
    amount, version = array("q", bytes(8 * n)), array("i", bytes(4 * n))
    zone, band = array("i", bytes(4 * n)), array("i", bytes(4 * n))
    print(
        f"catalog: {prefix_count:,} prefixes, 200 zones, 4 bands, 2 versions; "
        f"{n:,} records ({unique:,} distinct)"
    )

    _, kernel_s = median_time(lambda: native.compiled.kernel.rate(
        tariff, event_us, kind, usage, called, status, amount, version, zone, band))
    charged = n - sum(1 for s in status[:unique] if s) * repeat
    _, lpm_s = median_time(lambda: native.compiled.lpms[0].lookup_batch(called, zone))

    sample = records[:reference_count]
    reference = ReferenceRater(catalog)
    native_outcomes, native_s = median_time(lambda: native.rate(sample))
    reference_outcomes, reference_s = median_time(lambda: reference.rate(sample))
    assert reference_outcomes == native_outcomes, "native and reference raters differ"
    like = reference_s / native_s
    print(f"like for like: UsageRecord -> Charge on both sides, the same {len(sample):,} "
          f"records, median of {RUNS}")
    print(f"  ours: native rater           {rate_per_s(len(sample), native_s)}"
          "  (columns -> kernel -> Charge objects)")
    print(f"  reference rater (Fraction)   {rate_per_s(len(sample), reference_s)}")
    print(f"  native / reference           {like:>14,.1f} x   (outcomes identical)")
    print("columnar, for reference (different work from the reference rater's)")
    print(f"  kernel (columns, 1 core)     {rate_per_s(n, kernel_s)}  ({charged:,} charged)")
    print(f"  LPM alone                    {rate_per_s(n, lpm_s)}")
    ratio = (n / kernel_s) / (len(sample) / reference_s)
    print(f"  kernel / reference           {ratio:>14,.0f} x   (columns vs record -> charge)")
    print(f"headline (like for like): native rater is {like:,.1f}x the reference")


def write_large(prefix_count: int, path: Path) -> None:
    data = make_catalog(prefix_count, zone_count=1000)
    data["tariffs"][0]["versions"] = data["tariffs"][0]["versions"][:1]
    path.write_text(json.dumps(data))


def load_large(path: Path) -> None:
    """Child process: time loading + compiling the catalog file at ``path``."""
    began = time.perf_counter()
    rater = NativeRater(load_catalog(path))
    seconds = time.perf_counter() - began
    peak = _peak_rss_kib()
    lpm = rater.compiled.lpms[0]
    prefixes = sum(len(p) for p in rater.catalog.tariffs["retail"].versions[0].zones.values())
    print(
        f"load {prefixes:,} prefixes (JSON -> checked catalog -> kernel): {seconds:.2f} s, "
        f"peak RSS of the loading process {peak / 1024:.0f} MB, "
        f"LPM {lpm.segments:,} segments / {lpm.nbytes / 2**20:.0f} MiB"
    )


async def new_account(data: dict[str, Any], admin_dsn: str) -> None:
    """Child process: the catalog ``data`` stored in a scratch database; time a new
    account's first charge, and a full rebuild of the pipeline's rater, ``RUNS`` times each.
    (The database side is imported here: the load child's peak RSS stays that of loading.)"""
    import asyncpg

    from billing_oss.server import config
    from billing_oss.server.pipeline.pipeline import Pipeline
    from billing_oss.server.pipeline.raters import build_rater
    from billing_oss.server.store import catalog_repo
    from billing_oss.server.store.dsn import with_database
    from billing_oss.server.store.migrate import migrate
    from billing_oss.server.store.pool import open_pool

    version = data["tariffs"][0]["versions"][0]
    prefixes = sum(len(p) for p in version["zones"].values())
    called = next(iter(version["zones"].values()))[0] + "123456"
    name = f"bench_rate_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await open_pool(with_database(admin_dsn, name))
        try:
            await migrate(pool)
            await catalog_repo.load_catalog(pool, data)
            pipeline = Pipeline(pool, config.load(env={}).pipeline, rater_factory=build_rater,
                                decoders={})
            compile_s = []
            for _ in range(RUNS):
                pipeline.raters.invalidate()
                began = time.perf_counter()
                await pipeline.raters.current()
                compile_s.append(time.perf_counter() - began)
            compiles = _compiles()
            rated_s = [await _first_charge(pool, pipeline, n, called) for n in range(RUNS)]
            recompiles = _compiles() - compiles
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    rated, full = statistics.median(rated_s), statistics.median(compile_s)
    print(f"new account, {prefixes:,} prefixes stored in PostgreSQL: charged "
          f"{rated * 1000:.0f} ms after its creation ({recompiles:.0f} recompiles) vs. the full "
          f"compile {full:.2f} s (read + check + compile): {full / rated:,.0f}x, "
          f"median of {RUNS}")


async def _first_charge(pool: asyncpg.Pool, pipeline: Pipeline, n: int, called: str) -> float:
    """Seconds from creating account ``NEW<n>`` (and its subscription) to its first charge
    committed by the pipeline."""
    from billing_oss.core.contract import Delivery
    from billing_oss.server.store import accounts_repo, subscriptions_repo
    from billing_oss.server.store.accounts_repo import AccountIdentifier, NewAccount

    identifier = f"3369{n:07d}"
    began = time.perf_counter()
    await accounts_repo.create(pool, "bench", NewAccount(
        account_id=f"NEW{n}", name="", status="active", currency="EUR", timezone="UTC",
        billing_day=1, identifiers=[AccountIdentifier(identifier)], attrs={}))
    await subscriptions_repo.create(pool, "bench", f"NEW{n}", "retail", "",
                                    datetime(2026, 1, 1, tzinfo=UTC), None)
    record = UsageRecord(record_key=f"new-{n}", source="bench", kind="voice",
                         event_time="2026-02-03T10:00:00Z", duration_s=60,
                         calling=identifier, called=called)
    [out] = await pipeline.commit([Delivery(source="bench", position=f"new-{n}",
                                            records=[record])])
    seconds = time.perf_counter() - began
    assert out.results[0].status == "charged", out
    return seconds


def _compiles() -> float:
    """Rebuilds of the pipeline's rater (tariff compilations) so far in this process."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("billing_rating_compile_seconds_count") or 0.0


@contextlib.contextmanager
def postgres(dsn: str | None) -> Iterator[str]:
    """``dsn``, else the DSN of an embedded PostgreSQL started for the run."""
    if dsn:
        yield dsn
        return
    from billing_oss.server.store.embedded import start_server

    with tempfile.TemporaryDirectory() as scratch:
        server = start_server(Path(scratch) / "data", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def _peak_rss_kib() -> int:
    """VmHWM of this process (ru_maxrss would carry over the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--database-url",
                        default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"),
                        help="a PostgreSQL server for the new-account run (else embedded)")
    parser.add_argument("--load-only", type=Path, metavar="CATALOG", help=argparse.SUPPRESS)
    parser.add_argument("--new-account", type=Path, metavar="CATALOG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        load_large(args.load_only)
        return
    if args.new_account:
        import asyncio  # here: with ssl it adds ~7 MB to the load child's peak RSS

        asyncio.run(new_account(json.loads(args.new_account.read_text()), args.database_url))
        return
    if args.quick:
        bench(total=200_000, unique=20_000, prefix_count=20_000, reference_count=1_000)
        load_prefixes = 100_000
    else:
        bench(total=10_000_000, unique=1_000_000, prefix_count=100_000, reference_count=20_000)
        load_prefixes = 1_000_000
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "catalog.json"
        write_large(load_prefixes, path)
        subprocess.run([sys.executable, __file__, "--load-only", str(path)], check=True)
        with postgres(args.database_url) as dsn:
            subprocess.run([sys.executable, __file__, "--new-account", str(path),
                            "--database-url", dsn], check=True)


if __name__ == "__main__":
    main()
