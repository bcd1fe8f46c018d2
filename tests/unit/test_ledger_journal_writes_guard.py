"""Whoever writes ledger entries appends their journal to the kept days in the same place
(migration 1543, ``server.collections.journal_days_repo``): the journal's totals are read
from those days, which equal the export's only if no write skips them.

Scanned as the kept aging's writers are (``test_ledger_writes_guard``): every function of the
project's modules that writes ``ledger_entries`` (an ``INSERT INTO`` in a string, or a COPY
naming it) must also write ``ledger_journal_deltas`` (a string inserting into it, or a call of
``journal_days_repo.write*``); and every SQL function the migrations leave defined that
inserts into ``ledger_entries`` must insert into ``ledger_journal_deltas`` too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from tests.unit.test_charge_writes_guard import (
    copies_to,
    defined,
    migration_texts,
    project_modules,
    string_of,
)
from tests.unit.test_ledger_writes_guard import kept_violations, sql_kept_violations

INSERT = re.compile(r"\bINSERT\s+INTO\s+(?:ONLY\s+)?(?:public\.)?ledger_entries\b", re.I)
SQL_COPY = re.compile(r"\bCOPY\s+(?:public\.)?ledger_entries\b", re.I)
TABLE_NAME = re.compile(r"^(?:public\.)?ledger_entries$")
KEPT_INSERT = re.compile(r"\bINSERT\s+INTO\s+(?:public\.)?ledger_journal_deltas\b", re.I)


def _writes_ledger(node: ast.AST) -> bool:
    text = string_of(node)
    return (text is not None and INSERT.search(text) is not None) or (
        isinstance(node, ast.Call) and copies_to(node, TABLE_NAME))


def _keeps_days(node: ast.AST) -> bool:
    text = string_of(node)
    if text is not None and KEPT_INSERT.search(text):
        return True
    if isinstance(node, ast.Call):
        func = node.func
        return (isinstance(func, ast.Attribute) and func.attr.startswith("write")
                and isinstance(func.value, ast.Name) and func.value.id == "journal_days_repo")
    return False


def source_violations(modules: Iterable[tuple[str, str]]) -> list[str]:
    """Writes of ledger entries in functions that do not keep the days, as ``module:line``."""
    return kept_violations(modules, _writes_ledger, _keeps_days)


def sql_violations(migrations: Iterable[tuple[str, str]]) -> list[str]:
    """SQL functions still defined that write ledger entries without keeping the days."""
    return sql_kept_violations(migrations, (INSERT, SQL_COPY), KEPT_INSERT)


def test_every_ledger_writer_keeps_the_journal_days() -> None:
    assert source_violations(project_modules()) == []


def test_every_sql_function_writing_the_ledger_keeps_the_journal_days() -> None:
    assert sql_violations(migration_texts()) == []


def test_the_writers_are_seen_by_the_scan() -> None:
    """The scan finds the known writers (so an empty answer is not a blind one)."""
    tree = ast.parse(dict(project_modules())["server.collections.repo"])
    writers = {fn.name for fn in ast.walk(tree)
               if isinstance(fn, ast.AsyncFunctionDef)
               and any(_writes_ledger(n) for n in ast.walk(fn))}
    assert {"insert_payment", "insert_entry", "post_invoices", "post_credit_note",
            "insert_payments", "take_due_steps"} <= writers
    functions, _ = defined(migration_texts())
    assert INSERT.search(functions["collections_release_excess"][1])


def test_the_scan_catches_a_writer_that_skips_the_days() -> None:
    bypass = '''
async def sneaky(conn, rows):
    await conn.execute("INSERT INTO ledger_entries (account_id) VALUES ($1)", "A")
    await conn.copy_records_to_table("ledger_entries", records=rows)

async def kept(conn, rows):
    await conn.execute("INSERT INTO ledger_entries (account_id) VALUES ($1)", "A")
    await journal_days_repo.write(conn, ["A"], [1])
'''
    assert source_violations([("server.collections.sneaky", bypass)]) == [
        "server.collections.sneaky:3", "server.collections.sneaky:4"]
    migrations = [("0001", "CREATE FUNCTION fee(a text) RETURNS void LANGUAGE plpgsql AS $$\n"
                           "BEGIN INSERT INTO ledger_entries VALUES (a); END $$;")]
    assert sql_violations(migrations) == ["fee (0001)"]
