"""Progress of long work without a terminal: log lines with the rate, and the ETA once the
total is known."""

from __future__ import annotations

import logging

import pytest

from billing_oss.server.commands.progress import progress


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


def test_the_end_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="billing_oss.progress")
    with progress("rerate job 8", "records", interactive=False, every_s=0) as report:
        for _ in range(3):  # a poller seeing the finished job until its worker exits
            report(10, 10)
    assert len(caplog.records) == 1


def test_rate_counts_from_where_the_work_resumed(caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="billing_oss.progress")
    now = [100.0]
    monkeypatch.setattr("billing_oss.server.commands.progress.time.monotonic", lambda: now[0])
    with progress("cdr.ber", "records", interactive=False, every_s=1) as report:
        report(900_000, 1_000_000)  # committed by an earlier, interrupted run
        now[0] = 102.0
        report(1_000_000, 1_000_000)  # 100 000 more in 2 s
    (line,) = caplog.records
    assert line.fields["rate"] == 50_000  # type: ignore[attr-defined]


def test_bar_goes_to_stderr_and_leaves_stdout_alone(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("cdr.ber", "records", interactive=True) as report:
        report(5, 10)
        report(10, 10)
    out, err = capsys.readouterr()
    assert out == "" and "10/10" in err
