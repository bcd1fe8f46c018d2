"""perf/bench_ingest.py's event times: scattered over the month record by record, or nearly in
time order (``--order arrival``) as switches write them."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ingest", REPO / "perf" / "bench_ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_arrival_walks_the_months_peak_hours_in_order_up_to_an_hour_early() -> None:
    bench = _bench()
    span = 50_000
    times = [bench.event_time(i, "arrival", span) for i in range(span)]
    latest = 0
    for t in times:
        assert t >= latest - 3600  # never more than an hour before a record already written
        latest = max(latest, t)
    days = sorted({_when(t).day for t in times})
    assert days == bench._WEEKDAYS  # the whole month's weekdays, first to last
    hours = {_when(t).hour for t in times}
    assert min(hours) >= 7 and max(hours) <= 18  # 08:00-19:59 Paris: the peak band
    # a 10,000-record batch spans about a fifth of the month, not all of it
    assert len({_when(t).day for t in times[20_000:30_000]}) <= 6


def test_scattered_puts_consecutive_records_on_every_weekday() -> None:
    bench = _bench()
    times = [bench.event_time(i) for i in range(22)]
    assert sorted(_when(t).day for t in times) == bench._WEEKDAYS
    assert all(8 <= _when(t).hour <= 18 for t in times)
