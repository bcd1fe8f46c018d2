"""Whoever writes ledger entries or payment allocations appends their moves to the kept
aging in the same place (migration 1510, ``server.collections.aging_kept_repo``): aging as of
today is read from that state, which equals the ledger's aging only if no write skips it.

Scanned: every function of the project's modules that writes either table (an ``INSERT
INTO`` in a string, or a COPY call naming it) must also write ``aging_open`` (a string
inserting into it, a COPY naming it, or a call of ``aging_kept_repo.write*``); and the body of
every SQL function the migrations leave defined that inserts into either table must insert
into ``aging_open`` too. A writer found without it fails the test, naming where it is.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable

from tests.unit.test_charge_writes_guard import (
    copies_to,
    defined,
    migration_texts,
    project_modules,
    string_of,
)

_LEDGER = r"(?:ledger_entries|payment_allocations)\b"
INSERT = re.compile(rf"\bINSERT\s+INTO\s+(?:ONLY\s+)?(?:public\.)?{_LEDGER}", re.I)
SQL_COPY = re.compile(rf"\bCOPY\s+(?:public\.)?{_LEDGER}", re.I)
TABLE_NAME = re.compile(rf"^(?:public\.)?{_LEDGER}$")
KEPT_INSERT = re.compile(r"\bINSERT\s+INTO\s+(?:public\.)?aging_open\b", re.I)


def _writes_ledger(node: ast.AST) -> bool:
    text = string_of(node)
    return (text is not None and INSERT.search(text) is not None) or (
        isinstance(node, ast.Call) and copies_to(node, TABLE_NAME))


def _keeps_aging(node: ast.AST) -> bool:
    text = string_of(node)
    if text is not None and KEPT_INSERT.search(text):
        return True
    if isinstance(node, ast.Call):
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr.startswith("write")
                and isinstance(func.value, ast.Name) and func.value.id == "aging_kept_repo"):
            return True
        return copies_to(node, re.compile(r"^aging_open$"))
    return False


def source_violations(modules: Iterable[tuple[str, str]]) -> list[str]:
    """Writes of the ledger in functions that do not keep the aging, as ``module:line``."""
    return kept_violations(modules, _writes_ledger, _keeps_aging)


def kept_violations(modules: Iterable[tuple[str, str]], writes: Callable[[ast.AST], bool],
                    keeps: Callable[[ast.AST], bool]) -> list[str]:
    """The nodes that ``writes`` in functions none of whose nodes ``keeps``, as
    ``module:line`` (the innermost function enclosing the write is the one that must)."""
    found: list[str] = []
    for module, source in modules:
        tree = ast.parse(source)
        enclosing: dict[ast.AST, ast.AST] = {}
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):  # outer first: the innermost one names it
                    if node is not fn:
                        enclosing[node] = fn
        for node in ast.walk(tree):
            if not writes(node):
                continue
            fn = enclosing.get(node)
            if fn is None or not any(keeps(n) for n in ast.walk(fn)):
                found.append(f"{module}:{getattr(node, 'lineno', 0)}")
    return sorted(found)


def sql_violations(migrations: Iterable[tuple[str, str]]) -> list[str]:
    """SQL functions still defined that write the ledger without keeping the aging."""
    return sql_kept_violations(migrations, (INSERT, SQL_COPY), KEPT_INSERT)


def sql_kept_violations(migrations: Iterable[tuple[str, str]],
                        writes: tuple[re.Pattern[str], ...],
                        kept: re.Pattern[str]) -> list[str]:
    """SQL functions still defined whose body matches one of ``writes`` and not ``kept``."""
    functions, _ = defined(migrations)
    return [f"{function} ({where})" for function, (where, body) in sorted(functions.items())
            if any(w.search(body) for w in writes) and not kept.search(body)]


def test_every_ledger_writer_keeps_the_aging() -> None:
    assert source_violations(project_modules()) == []


def test_every_sql_function_writing_the_ledger_keeps_the_aging() -> None:
    assert sql_violations(migration_texts()) == []


def test_the_writers_are_seen_by_the_scan() -> None:
    """The scan finds the known writers (so an empty answer is not a blind one)."""
    modules = dict(project_modules())
    repo = modules["server.collections.repo"]
    tree = ast.parse(repo)
    writers = {fn.name for fn in ast.walk(tree)
               if isinstance(fn, ast.AsyncFunctionDef)
               and any(_writes_ledger(n) for n in ast.walk(fn))}
    assert {"insert_payment", "insert_entry", "post_invoices", "post_credit_note", "allocate",
            "insert_payments", "take_due_steps"} <= writers
    functions, _ = defined(migration_texts())
    assert INSERT.search(functions["collections_settle"][1])
    assert INSERT.search(functions["collections_release_excess"][1])


def test_the_scan_catches_a_writer_that_skips_the_aging() -> None:
    bypass = '''
async def sneaky(conn, rows):
    await conn.execute("INSERT INTO ledger_entries (account_id) VALUES ($1)", "A")
    await conn.copy_records_to_table("payment_allocations", records=rows)

async def kept(conn, rows):
    await conn.execute("INSERT INTO payment_allocations (account_id) VALUES ($1)", "A")
    await aging_kept_repo.write(conn, rows)

async def kept_by_sql(conn):
    await conn.execute("INSERT INTO ledger_entries SELECT 1")
    await conn.execute("INSERT INTO aging_open SELECT 1")
'''
    assert source_violations([("server.collections.sneaky", bypass)]) == [
        "server.collections.sneaky:3", "server.collections.sneaky:4"]


def test_the_scan_catches_a_sql_function_that_skips_the_aging() -> None:
    migrations = [
        ("0001", "CREATE FUNCTION settle(a text) RETURNS void LANGUAGE plpgsql AS $$\n"
                 "BEGIN INSERT INTO payment_allocations VALUES (a); END $$;"),
        ("0002", "CREATE FUNCTION fee(a text) RETURNS void LANGUAGE plpgsql AS $$\n"
                 "BEGIN INSERT INTO ledger_entries VALUES (a);"
                 " INSERT INTO aging_open VALUES (a); END $$;"),
    ]
    assert sql_violations(migrations) == ["settle (0001)"]
    migrations.append(("0003", "CREATE OR REPLACE FUNCTION settle(a text) RETURNS void"
                               " LANGUAGE plpgsql AS $$ BEGIN INSERT INTO payment_allocations"
                               " VALUES (a); INSERT INTO aging_open VALUES (a); END $$;"))
    assert sql_violations(migrations) == []
