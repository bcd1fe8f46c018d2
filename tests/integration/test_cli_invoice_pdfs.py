"""`billing-oss invoice pdfs`: a cycle's finalised invoices written as the very files
`invoice pdf ID` writes, one an invoice named by its number, whatever the threads and the
chunks; drafts left out and counted; an empty cycle said so."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from billing_oss.server.billing.bill_runs import bill_run
from tests.integration import billing_seed

UTC = dt.UTC
FINALISED = ("PLAIN1", "PLAIN2", "ITEM1")
DRAFT = "DRAFT1"
# A small chunk, so the three invoices take two chunks (one typeset while the next is read).
SMALL_CHUNKS = ("import sys; from billing_oss.server.commands import invoice_export; "
                "invoice_export.CHUNK = 2; from billing_oss.server.cli import main; "
                "sys.exit(main(sys.argv[1:]))")


@dataclass(frozen=True)
class Cycle:
    database_url: str
    numbers: dict[str, int]  # printed number -> invoice id, finalised invoices only


@pytest.fixture(scope="module")
async def cycle(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Cycle]:
    async with pool.acquire() as conn:
        await billing_seed.base(conn)
        for n, account in enumerate((*FINALISED, DRAFT)):
            await billing_seed.account(conn, account)
            for day in (3, 9, 17):
                await billing_seed.charge(conn, account, dt.datetime(2026, 1, day, 10, n,
                                                                     tzinfo=UTC),
                                          100_000 * (n + 1) + day)
        await conn.execute("UPDATE accounts SET itemised_invoice = true "
                           "WHERE account_id = 'ITEM1'")
    await bill_run(pool, "2026-01", billing_seed.SETTINGS, accounts=list(FINALISED),
                   finalize=True, force=True, actor="test")
    await bill_run(pool, "2026-01", billing_seed.SETTINGS, accounts=[DRAFT], actor="test")
    rows = await pool.fetch("SELECT invoice_id, number_text, status FROM invoices "
                            "WHERE period = '2026-01'")
    assert sorted(r["status"] for r in rows) == ["draft"] + ["finalised"] * 3
    yield Cycle(database_url, {r["number_text"]: r["invoice_id"] for r in rows
                               if r["status"] == "finalised"})


def cli(cycle: Cycle, *args: str, chunk_of_two: bool = False
        ) -> subprocess.CompletedProcess[str]:
    program = ["-c", SMALL_CHUNKS] if chunk_of_two else ["-m", "billing_oss"]
    return subprocess.run([sys.executable, *program, *args, "--database-url",
                           cycle.database_url], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))


def export(cycle: Cycle, out: Path, *args: str, chunk_of_two: bool = False
           ) -> subprocess.CompletedProcess[str]:
    out.mkdir(exist_ok=True)
    done = cli(cycle, "invoice", "pdfs", "--output-dir", str(out), *args,
               chunk_of_two=chunk_of_two)
    assert done.returncode == 0, done.stderr
    return done


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


async def test_each_file_is_the_invoice_pdf_verb_s_and_drafts_are_left_out(
        cycle: Cycle, tmp_path: Path) -> None:
    done = export(cycle, tmp_path / "all", "--period", "2026-01", "--threads", "2",
                  chunk_of_two=True)
    assert "exported 3 invoice PDFs" in done.stdout and "2 threads" in done.stdout
    assert "1 draft invoice of 2026-01 not exported" in done.stdout
    exported = files(tmp_path / "all")
    assert sorted(exported) == sorted(f"{number}.pdf" for number in cycle.numbers)
    for number, invoice_id in cycle.numbers.items():
        single = tmp_path / f"single-{invoice_id}.pdf"
        printed = cli(cycle, "invoice", "pdf", str(invoice_id), "--output", str(single))
        assert printed.returncode == 0, printed.stderr
        assert exported[f"{number}.pdf"] == single.read_bytes(), number
    # The itemised account's file carries its list, the others do not: the setting is read.
    sizes = {n: len(exported[f"{n}.pdf"]) for n in cycle.numbers}
    item = await _number_of(cycle, "ITEM1")
    assert all(sizes[item] > size for n, size in sizes.items() if n != item)


async def test_one_thread_and_two_write_the_same_bytes(cycle: Cycle, tmp_path: Path) -> None:
    export(cycle, tmp_path / "one", "--period", "2026-01", "--threads", "1")
    export(cycle, tmp_path / "two", "--period", "2026-01", "--threads", "2")
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert len(one) == 3 and one == two


async def test_an_account_alone_and_a_second_export_rewrites(cycle: Cycle,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "item"
    done = export(cycle, out, "--period", "2026-01", "--account", "ITEM1")
    assert "exported 1 invoice PDF " in done.stdout and "draft" not in done.stdout
    name = f"{await _number_of(cycle, 'ITEM1')}.pdf"
    (pdf,) = out.iterdir()
    assert pdf.name == name
    good = pdf.read_bytes()
    pdf.write_bytes(good[: len(good) // 2])  # a cut file from elsewhere
    export(cycle, out, "--period", "2026-01", "--account", "ITEM1")
    assert files(out) == {name: good}  # rewritten whole, no temporary file left


async def test_an_empty_cycle_says_so(cycle: Cycle, tmp_path: Path) -> None:
    done = export(cycle, tmp_path / "empty", "--period", "2026-05")
    assert done.stdout.strip() == "no finalised invoices in 2026-05"
    drafts_only = export(cycle, tmp_path / "drafts", "--period", "2026-01", "--account", DRAFT)
    assert "1 draft invoice of 2026-01 of account DRAFT1 not exported" in drafts_only.stdout
    assert "no finalised invoices in 2026-01 of account DRAFT1" in drafts_only.stdout
    assert files(tmp_path / "empty") == {} == files(tmp_path / "drafts")


async def test_usage_errors_stop_before_the_database(cycle: Cycle, tmp_path: Path) -> None:
    for args, message in [
            (("--output-dir", str(tmp_path)), "pdfs needs --period YYYY-MM"),
            (("--period", "2026-13", "--output-dir", str(tmp_path)), "--period must be"),
            (("--period", "2026-01"), "pdfs needs --output-dir DIR"),
            (("--period", "2026-01", "-o", str(tmp_path / "all.pdf")), "not -o"),
            (("--period", "2026-01", "--output-dir", str(tmp_path / "no")), "no such dir"),
            (("--period", "2026-01", "--output-dir", str(tmp_path), "--threads", "0"),
             "--threads must be between 1 and 64"),
            (("7", "--period", "2026-01", "--output-dir", str(tmp_path)), "pdfs takes no ID")]:
        done = cli(cycle, "invoice", "pdfs", *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    for args, message in [(("7",), "list takes no ID"),
                          (("-o", str(tmp_path / "list.txt")), "list prints to stdout")]:
        done = cli(cycle, "invoice", "list", *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)


async def _number_of(cycle: Cycle, account_id: str) -> str:
    conn = await asyncpg.connect(cycle.database_url)
    try:
        number: str = await conn.fetchval(
            "SELECT number_text FROM invoices WHERE account_id = $1 AND period = '2026-01'",
            account_id)
        return number
    finally:
        await conn.close()
