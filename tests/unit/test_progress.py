"""Progress of long work without a terminal: log lines with the rate, and the ETA once the
total is known."""

from __future__ import annotations

import logging

import pytest

from server.commands.progress import progress


def test_unknown_total_logs_count_and_rate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="billing_oss.progress")
    with progress("cdr.ber", "records", interactive=False, every_s=0) as report:
        report(10_000, None)
    (line,) = caplog.records
    assert line.getMessage().startswith("cdr.ber: 10000 records (")
    assert "ETA" not in line.getMessage()
    assert line.fields["done"] == 10_000 and "total" not in line.fields  # type: ignore[attr-defined]


def test_known_total_logs_eta_and_always_the_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="billing_oss.progress")
    with progress("rerate job 7", "records", interactive=False, every_s=3600) as report:
        report(0, None)  # not yet counted: too soon to say anything
        report(50, 100)  # within the interval: quiet
        report(100, 100)  # the end is always said
    (line,) = caplog.records
    assert line.getMessage().startswith("rerate job 7: 100/100 records (")
    assert "ETA 0 s" in line.getMessage()
    assert line.fields["eta_s"] == 0  # type: ignore[attr-defined]
