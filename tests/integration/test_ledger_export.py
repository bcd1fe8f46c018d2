"""The general-ledger export on a seeded period (invoices with VAT and rounding, credit
notes, payments, a refund, a returned payment, a dunning fee, a write-off and its partial
reinstatement, and an entry in another currency): the FEC written by the CLI has the 18
columns of article A47 A-1 LPF and balances per entry and in total; the JSON journal loaded
into beancount balances (beancount checks every transaction) and its receivables account
holds the collections ledger's balance to the cent, per period and over all of history."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import os
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from beancount import loader
from beancount.core import realization

from billing_oss.server.collections import dunning, payments, postings, repo, write_offs
from billing_oss.server.collections.dunning import Step
from billing_oss.server.collections.model import NONE, NewPayment, Target
from billing_oss.server.config import LedgerConfig
from billing_oss.server.ledger import export
from billing_oss.server.store import api_keys
from tests.conftest import REPO, serving
from tests.integration import collections_seed as seed

EUR = 1_000_000
JAN, FEB, MAR = dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)
END = dt.date(2026, 3, 31)
SIREN = "552100554"
# Article A47 A-1 of the Livre des procédures fiscales: the 18 fields, in this order.
FEC_SPEC = ["JournalCode", "JournalLib", "EcritureNum", "EcritureDate", "CompteNum",
            "CompteLib", "CompAuxNum", "CompAuxLib", "PieceRef", "PieceDate", "EcritureLib",
            "Debit", "Credit", "EcritureLet", "DateLet", "ValidDate", "Montantdevise",
            "Idevise"]


async def invoice(conn: Any, account_id: str, net: int, tax: int, rounding: int,
                  issued: dt.date) -> int:
    """A finalised invoice whose payable is net + tax + rounding."""
    number = await conn.fetchval("SELECT count(*) + 1 FROM invoices")
    finalised = await conn.fetch(
        "INSERT INTO invoices (account_id, period, period_start, period_end, currency,"
        " rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,"
        " total_micros, rounding_micros, payable_micros, seller, buyer, status, series,"
        " number, number_text, issue_date, due_date) VALUES ($1, 'p', now(), now(), 'EUR',"
        " 'half-up', $2, 0, $2, $3, $2::bigint + $3::bigint, $4,"
        " $2::bigint + $3::bigint + $4::bigint, '{}', '{}', 'finalised', 'R', $5,"
        " 'R-' || $5::bigint, $6, $7) RETURNING account_id, invoice_id, number_text,"
        " currency, payable_micros, issue_date, due_date",
        account_id, net, tax, rounding, number, issued, issued + dt.timedelta(days=10))
    await postings.post_invoices(conn, finalised)
    invoice_id: int = finalised[0]["invoice_id"]
    return invoice_id


async def credit_note(conn: Any, account_id: str, invoice_id: int, net: int, tax: int,
                      issued: dt.date) -> None:
    number = await conn.fetchval("SELECT count(*) + 1 FROM credit_notes")
    credit_note_id = await conn.fetchval(
        "INSERT INTO credit_notes (account_id, invoice_id, series, number, number_text,"
        " reason, issue_date, currency, net_micros, tax_micros, total_micros, lines, taxes)"
        " VALUES ($1, $2, 'RC', $3, 'RC-' || $3::bigint, 'goodwill', $4, 'EUR', $5, $6,"
        " $5::bigint + $6::bigint, '[]', '[]') RETURNING credit_note_id", account_id,
        invoice_id, number, issued, net, tax)
    await postings.post_credit_note(
        conn, account_id=account_id, invoice_id=invoice_id, credit_note_id=credit_note_id,
        number_text=f"RC-{number}", currency="EUR", payable_micros=net + tax, issue_date=issued)


def pay(account_id: str, amount: int, on: dt.date, **kw: Any) -> NewPayment:
    return NewPayment(account_id=account_id, amount_micros=amount, received_on=on,
                      method="transfer", **kw)


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> asyncpg.Pool:
    return await seed_ledger(pool)


async def seed_ledger(pool: asyncpg.Pool) -> asyncpg.Pool:
    """The quarter's documents (the module's docstring) and one USD invoice."""
    async with pool.acquire() as conn:
        for a in ("C1", "C2", "C3"):
            await seed.account(conn, a)
        await seed.account(conn, "U1", currency="USD")
        # January: before the exported quarter's second half (opening balances)
        await invoice(conn, "C1", 100 * EUR, 20 * EUR, 0, dt.date(2026, 1, 5))
        await invoice(conn, "C2", 50 * EUR, 10 * EUR, 10_000, dt.date(2026, 1, 20))
        await seed.invoice(conn, "U1", 30 * EUR, dt.date(2026, 1, 7), currency="USD")
        # February and March
        i3 = await invoice(conn, "C3", 200 * EUR, 40 * EUR, -10_000, dt.date(2026, 2, 3))
        i4 = await invoice(conn, "C1", 33_330_000, 6_660_000, 0, dt.date(2026, 2, 10))
        await credit_note(conn, "C1", i4, 10 * EUR, 2 * EUR, dt.date(2026, 2, 12))
        await seed.credit_note(conn, "C3", i3, 5 * EUR, dt.date(2026, 2, 14))
    await payments.record(pool, "test", pay("C1", 120 * EUR, dt.date(2026, 1, 25)))
    p2, _ = await payments.record(pool, "test", pay("C2", 70 * EUR, dt.date(2026, 2, 2),
                                                     allocate=NONE))
    await payments.refund(pool, "test", p2.payment_id, 9_990_000, dt.date(2026, 2, 20),
                          "overpaid")
    p3, _ = await payments.record(pool, "test", pay("C3", 100 * EUR, dt.date(2026, 2, 15)))
    await payments.reverse(pool, "test", p3.payment_id, dt.date(2026, 2, 25), "AC04")
    async with pool.acquire() as conn, conn.transaction():
        await dunning.put_ladder(conn, "test", "default",
                                 [Step(day=5, action="fee", fee="15.00")])
        await dunning.run(conn, "test", dt.date(2026, 3, 1))
    await write_offs.write_off(pool, "test", i3, dt.date(2026, 3, 10), "insolvent")
    # a late payment named against the written-off invoice reinstates part of it
    await payments.record(pool, "test", pay("C3", 50 * EUR, dt.date(2026, 3, 20),
                                            targets=(Target(i3),)))
    return pool


async def cli(database_url: str, *args: str) -> tuple[int, bytes, str]:
    return await ledger_cli(database_url, "export", *args)


async def ledger_cli(database_url: str, *args: str) -> tuple[int, bytes, str]:
    env = {**os.environ, "BILLING_OSS_DATABASE_URL": database_url}
    python = REPO / ".venv/bin/python"
    proc = await asyncio.create_subprocess_exec(
        str(python) if python.exists() else "python3", "-m", "billing_oss", "ledger", *args,
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


def cents(text: str, mark: str = ".") -> int:
    assert re.fullmatch(rf"\d+\{mark}\d{{2}}", text), text
    return int(text.replace(mark, ""))


async def test_fec_has_the_legal_name_and_columns_and_balances(
        seeded: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    status, _, err = await cli(database_url, "--from", str(JAN), "--to", str(END),
                               "--format", "fec", "--siren", SIREN, "-o", str(tmp_path))
    assert status == 0, err
    (path,) = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert path.name == f"{SIREN}FEC20260331.txt"
    lines = (await asyncio.to_thread(path.read_bytes)).decode("iso-8859-15").split("\r\n")
    assert lines[-1] == ""
    header, rows = lines[0].split("|"), [line.split("|") for line in lines[1:-1]]
    assert header == FEC_SPEC
    assert rows and all(len(r) == 18 for r in rows)
    col = {name: i for i, name in enumerate(FEC_SPEC)}
    per_entry: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    numbers = []
    for r in rows:
        for date in ("EcritureDate", "PieceDate", "ValidDate"):
            assert re.fullmatch(r"2026\d{4}", r[col[date]]), r
        assert r[col["JournalCode"]] in ("VE", "BQ", "OD") and r[col["CompteNum"]]
        debit, credit = cents(r[col["Debit"]], ","), cents(r[col["Credit"]], ",")
        assert (debit == 0) != (credit == 0), r  # one side per line
        per_entry[r[col["EcritureNum"]]][0] += debit
        per_entry[r[col["EcritureNum"]]][1] += credit
        if r[col["CompteNum"]] == "411":
            assert r[col["CompAuxNum"]] in ("C1", "C2", "C3")
        if not numbers or numbers[-1] != int(r[col["EcritureNum"]]):
            numbers.append(int(r[col["EcritureNum"]]))
    assert numbers == list(range(1, len(numbers) + 1))  # a continuous sequence
    assert all(d == c for d, c in per_entry.values()), per_entry
    assert sum(d for d, _ in per_entry.values()) == sum(c for _, c in per_entry.values())
    kinds = {r[col["JournalCode"]] + ":" + r[col["CompteNum"]] for r in rows}
    # every kind of document reached the books on its account
    assert {"VE:411", "VE:706", "VE:44571", "VE:758", "VE:708", "BQ:512", "BQ:411",
            "OD:654", "OD:44571", "OD:411"} <= kinds
    assert "USD" in err  # the other currency is named, not silently left out


def to_beancount(journal: dict[str, Any], opening: dict[str, int], open_on: dt.date) -> str:
    """The journal as beancount transactions; PCG class 6 is expenses, 7 income, VAT a
    liability, the rest assets; receivables per customer under Assets:A411."""
    def name(line: dict[str, Any]) -> str:
        acct = line["account"]
        kind = ("Expenses" if acct.startswith("6") else "Income" if acct.startswith("7")
                else "Liabilities" if acct.startswith("445") else "Assets")
        aux = f":C{re.sub('[^A-Za-z0-9]', '', line['aux'])}" if line["aux"] else ""
        return f"{kind}:A{acct}{aux}"
    names = {name(ln) for e in journal["entries"] for ln in e["lines"]}
    names |= {f"Assets:A411:C{a}" for a in opening} | {"Assets:A411"}
    out = [f"{open_on} open {n}" for n in sorted(names)] + [f"{open_on} open Equity:Opening"]
    for account_id, micros in sorted(opening.items()):
        out.append(f'{open_on} * "opening balance"\n  Assets:A411:C{account_id}'
                   f"  {Decimal(micros) / EUR} EUR\n  Equity:Opening")
    for e in journal["entries"]:
        out.append(f'{e["date"]} * "{e["piece_ref"]}" "{e["label"]}"')
        for ln in e["lines"]:
            amount = Decimal(ln["debit"]) - Decimal(ln["credit"])
            out.append(f"  {name(ln)}  {amount} {journal['currency']}")
    return "\n".join(out) + "\n"


async def beancount_receivables(journal: dict[str, Any], opening: dict[str, int],
                                expect: int, on: dt.date) -> Decimal:
    """Load into beancount with a balance assertion of ``expect`` on the day after the
    period; beancount refuses an unbalanced transaction or a failed assertion."""
    text = to_beancount(journal, opening, JAN - dt.timedelta(days=1))
    text += f"{on + dt.timedelta(days=1)} balance Assets:A411  {Decimal(expect) / EUR} EUR\n"
    entries, errors, _ = loader.load_string(text)
    assert not errors, [str(e.message) for e in errors]
    root = realization.realize(entries)
    balance = realization.compute_balance(realization.get(root, "Assets:A411"))
    return Decimal(balance.get_currency_units("EUR").number)


async def test_json_journal_in_beancount_holds_the_collections_balance(
        seeded: asyncpg.Pool, database_url: str) -> None:
    status, out, err = await cli(database_url, "--from", str(JAN), "--to", str(END),
                                 "--format", "json")
    assert status == 0, err
    journal = json.loads(out)
    assert journal["debit"] == journal["credit"]
    ledger = (await repo.balance(seeded, END))["EUR"]
    assert ledger != 0
    got = await beancount_receivables(journal, {}, ledger, END)
    assert got == Decimal(ledger) / EUR

    # a later period on its own: opening balances carried in, same closing balance
    status, out, err = await cli(database_url, "--from", str(FEB), "--to", str(END),
                                 "--format", "json")
    assert status == 0, err
    rows = await seeded.fetch(
        "SELECT account_id, sum(amount_micros)::bigint AS b FROM ledger_entries"
        " WHERE entry_date < $1 AND currency = 'EUR' GROUP BY account_id", FEB)
    opening = {r["account_id"]: r["b"] for r in rows}
    got = await beancount_receivables(json.loads(out), opening, ledger, END)
    assert got == Decimal(ledger) / EUR
    # per customer too
    root = realization.realize(loader.load_string(
        to_beancount(journal, {}, JAN - dt.timedelta(days=1)))[0])
    for account_id in ("C1", "C2", "C3"):
        node = realization.get(root, f"Assets:A411:C{account_id}")
        mine = (await repo.balance(seeded, END, account_id))["EUR"]
        units = realization.compute_balance(node).get_currency_units("EUR").number
        assert Decimal(units) == Decimal(mine) / EUR, account_id


async def test_csv_rows_balance_and_a_missing_siren_is_a_usage_error(
        seeded: asyncpg.Pool, database_url: str) -> None:
    status, out, err = await cli(database_url, "--from", str(FEB), "--to", str(MAR),
                                 "--format", "csv")
    assert status == 0, err
    lines = out.decode().splitlines()
    assert lines[0].startswith("entry,journal,date,piece_ref")
    rows = list(csv.DictReader(lines))
    assert rows and sum(cents(r["debit"]) for r in rows) == sum(cents(r["credit"]) for r in rows)
    assert all(FEB.isoformat() <= r["date"] <= MAR.isoformat() for r in rows)
    status, _, err = await cli(database_url, "--from", str(JAN), "--to", str(END),
                               "--format", "fec")
    assert status == 2 and "SIREN" in err


@pytest.fixture(scope="module")
async def server(seeded: asyncpg.Pool, database_url: str) -> AsyncIterator[str]:
    async with serving(database_url, {"ledger.siren": SIREN}) as url:
        yield url


async def test_api_serves_the_journal_as_json_csv_and_fec(
        server: str, seeded: asyncpg.Pool) -> None:
    token = (await api_keys.create(seeded, "viewer", name="erp")).token
    auth = {"Authorization": f"Bearer {token}"}
    span = f"from={JAN}&to={END}"
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(f"{server}/v1/ledger/journal?{span}&limit=500") as r:
            assert r.status == 200
            journal = await r.json()
        async with http.get(f"{server}/v1/ledger/journal/totals?{span}") as r:
            assert r.status == 200
            totals = await r.json()
        async with http.get(f"{server}/v1/ledger/journal.fec?{span}&separator=tab") as r:
            assert r.status == 200
            assert f'filename="{SIREN}FEC20260331.txt"' in r.headers["Content-Disposition"]
            fec = (await r.read()).decode("iso-8859-15")
        async with http.get(f"{server}/v1/ledger/journal.csv?{span}") as r:
            assert r.status == 200 and r.content_type == "text/csv"
        for bad in (f"from={END}&to={JAN}", f"{span}&cursor=bm90LWEta2V5"):
            async with http.get(f"{server}/v1/ledger/journal?{bad}") as r:
                assert r.status == 422, bad
        for form in (".csv", ".fec", "/totals"):
            async with http.get(f"{server}/v1/ledger/journal{form}?from={END}&to={JAN}") as r:
                assert r.status == 422, form
    assert journal["next_cursor"] is None and journal["other_currencies"] == ["USD"]
    assert totals["debit"] == totals["credit"] and totals["other_currencies"] == ["USD"]
    assert totals["entries"] == len(journal["entries"])
    assert fec.split("\r\n")[0].split("\t") == FEC_SPEC
    lines = sum(len(e["lines"]) for e in journal["entries"])
    assert len(fec.split("\r\n")) == lines + 2  # header, lines, the final empty string


async def test_json_pages_walked_by_cursor_are_the_whole_period_and_its_totals(
        server: str, seeded: asyncpg.Pool) -> None:
    """Pages of 3 followed by cursor: every entry of the period once, in order, numbered
    1..n as the whole period's journal numbers them; the totals its debit and credit."""
    whole = await export.journal(seeded, LedgerConfig(), JAN, END)
    expected = export.json_document(whole)
    assert len(whole.entries) > 3 * 4  # several pages
    token = (await api_keys.create(seeded, "viewer", name="pages")).token
    walked: list[dict[str, Any]] = []
    url: str | None = f"{server}/v1/ledger/journal?from={JAN}&to={END}&limit=3"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        while url:
            async with http.get(url) as r:
                assert r.status == 200, await r.text()
                got = await r.json()
            assert len(got["entries"]) <= 3
            assert {k: got[k] for k in ("from", "to", "currency", "other_currencies")} == {
                k: expected[k] for k in ("from", "to", "currency", "other_currencies")}
            walked.extend(got["entries"])
            url = (f"{server}/v1/ledger/journal?from={JAN}&to={END}&limit=3&cursor="
                   f"{got['next_cursor']}" if got["next_cursor"] else None)
        async with http.get(f"{server}/v1/ledger/journal/totals?from={JAN}&to={END}") as r:
            totals = await r.json()
    assert walked == expected["entries"]
    assert [e["number"] for e in walked] == list(range(1, len(walked) + 1))
    assert (totals["entries"], totals["debit"], totals["credit"]) == (
        len(whole.entries), expected["debit"], expected["credit"])


@pytest.mark.parametrize("size", [1, 3, export.CHUNK])
async def test_streamed_csv_and_fec_are_the_whole_period_builders_bytes(
        server: str, seeded: asyncpg.Pool, size: int) -> None:
    """The chunks, whatever their size, concatenate to what the whole-period builders
    write; through the API too (its chunk size), for both FEC separators."""
    chart = LedgerConfig(siren=SIREN)
    whole = await export.journal(seeded, chart, JAN, END)
    async with seeded.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        parts = [j async for j in export.chunks(conn, chart, JAN, END, size)]
    assert len(parts) == -(-len(whole.entries) // size)
    assert export.csv_head() + "".join(export.csv_body(j) for j in parts) == \
        export.to_csv(whole)
    for sep in ("|", "\t"):
        assert export.fec_head(sep) + b"".join(export.fec_body(j, sep) for j in parts) == \
            export.to_fec(whole, sep)
    if size != export.CHUNK:
        return
    token = (await api_keys.create(seeded, "viewer", name="stream")).token
    span = f"from={JAN}&to={END}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(f"{server}/v1/ledger/journal.csv?{span}") as r:
            assert r.status == 200 and r.headers.get("Transfer-Encoding") == "chunked"
            assert await r.read() == export.to_csv(whole).encode()
        for name, sep in (("pipe", "|"), ("tab", "\t")):
            async with http.get(f"{server}/v1/ledger/journal.fec?{span}&separator={name}") as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == "text/plain; charset=iso-8859-15"
                assert await r.read() == export.to_fec(whole, sep)


async def test_a_stream_longer_than_the_request_timeout_runs_to_its_end(
        seeded: asyncpg.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``http.request_timeout_s`` once its first bytes are out, the CSV still ends
    whole (the timeout's 503 could no longer be sent; cancelling left the client waiting on
    a cut file): here the chunks arrive slower than the timeout."""
    chunks = export.chunks

    async def slow(*args: Any, **kw: Any) -> Any:
        async for j in chunks(*args, **{**kw, "size": 4}):
            yield j
            await asyncio.sleep(1.5)

    monkeypatch.setattr(export, "chunks", slow)
    whole = await export.journal(seeded, LedgerConfig(), JAN, END)
    token = (await api_keys.create(seeded, "viewer", name="slow")).token
    async with serving(database_url, {"http.request_timeout_s": 2}) as url, \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
            http.get(f"{url}/v1/ledger/journal.csv?from={JAN}&to={END}",
                     timeout=aiohttp.ClientTimeout(total=120)) as r:
        assert r.status == 200
        assert await r.read() == export.to_csv(whole).encode()


async def test_an_error_after_the_first_bytes_breaks_the_transfer(
        seeded: asyncpg.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure once the CSV is under way must not end as a file that looks whole: no
    problem response spliced into the body, the connection dropped."""
    chunks = export.chunks

    async def failing(*args: Any, **kw: Any) -> Any:
        async for j in chunks(*args, **{**kw, "size": 4}):
            yield j
            raise ConnectionResetError("the database went away")

    monkeypatch.setattr(export, "chunks", failing)
    token = (await api_keys.create(seeded, "viewer", name="broken")).token
    async with serving(database_url) as url, \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
            http.get(f"{url}/v1/ledger/journal.csv?from={JAN}&to={END}",
                     timeout=aiohttp.ClientTimeout(total=30)) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()


async def test_a_reader_that_stops_reading_is_dropped(
        seeded: asyncpg.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that stops reading a streamed export is dropped after the request timeout,
    and the export's database connection goes back to the pool (it held a snapshot)."""
    chunks = export.chunks

    async def endless(*args: Any, **kw: Any) -> Any:
        async for j in chunks(*args, **{**kw, "size": 4}):
            while True:
                yield j

    monkeypatch.setattr(export, "chunks", endless)
    monkeypatch.setattr(export, "csv_body", lambda j: "x" * 1_000_000)
    token = (await api_keys.create(seeded, "viewer", name="stalled")).token
    async with serving(database_url, {"http.request_timeout_s": 1}) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /v1/ledger/journal.csv?from={JAN}&to={END} HTTP/1.1\r\n"
                     f"Host: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        await writer.drain()
        await asyncio.sleep(4)  # reads nothing: the server's buffers fill, its write waits
        async with asyncio.timeout(30):  # then: what was sent, and the end of it
            while await reader.read(1 << 20):
                pass
        writer.close()
        held = await seeded.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_xid IS NULL AND state = 'idle in transaction'")
        assert held == 0
