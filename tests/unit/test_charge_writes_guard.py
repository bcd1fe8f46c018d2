"""Charges are written only by ``server.store.charge_writes.write``, which writes their
rollup deltas in the same transaction (no trigger does it any more: migration 1475).

Scanned: every module of the project (an ``INSERT INTO charges`` in a string, or a COPY
call naming the ``charges`` table) and the bodies of the SQL functions the migrations leave
defined (an ``INSERT INTO charges`` or ``COPY charges``); and no trigger is left on
``charges``. A writer found anywhere else fails the test, naming where it is.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "adapters", "server")
MIGRATIONS = ROOT / "server" / "store" / "migrations"
THE_WRITER = ("server.store.charge_writes", "write")

# The table or one of its month partitions (charges_2026_01), never charge_rollups.
_TABLE = r"charges(?:_\d{4}_\d{2})?\b"
INSERT = re.compile(rf"\bINSERT\s+INTO\s+(?:ONLY\s+)?(?:public\.)?{_TABLE}", re.I)
SQL_COPY = re.compile(rf"\bCOPY\s+(?:public\.)?{_TABLE}", re.I)
TABLE_NAME = re.compile(rf"^(?:public\.)?{_TABLE}$")


def string_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in node.values)
    return None


def copies_to(call: ast.Call, table: re.Pattern[str]) -> bool:
    """A call to a COPY helper (``copy_rows``, ``copy_records_to_table``, …) whose
    arguments name ``table``."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if "copy" not in name.lower():
        return False
    args = [*call.args, *(k.value for k in call.keywords)]
    return any((t := string_of(a)) is not None and table.match(t) for a in args)


def writers(module: str, source: str) -> Iterator[tuple[int, str | None]]:
    """(line, enclosing function) of each place ``source`` writes charges."""
    tree = ast.parse(source)
    enclosing: dict[ast.AST, str] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):  # walked outer first: the innermost one names it
                if node is not fn:
                    enclosing[node] = fn.name
    for node in ast.walk(tree):
        text = string_of(node)
        if (text is not None and INSERT.search(text)) or (
                isinstance(node, ast.Call) and copies_to(node, TABLE_NAME)):
            yield getattr(node, "lineno", 0), enclosing.get(node)


def source_violations(modules: Iterable[tuple[str, str]]) -> list[str]:
    """Writes of charges outside the one writer, as ``module:line``."""
    found: list[tuple[str, int]] = []
    for module, source in modules:
        for line, function in writers(module, source):
            if (module, function) != THE_WRITER:
                found.append((module, line))
    return [f"{module}:{line}" for module, line in sorted(found)]


def project_modules() -> Iterator[tuple[str, str]]:
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path.read_text()


_FUNCTION = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\((.*?)\).*?\bAS\s+(\$\w*\$)(.*?)\3",
    re.I | re.S)
_DROP_FUNCTION = re.compile(r"DROP\s+FUNCTION\s+(?:IF\s+EXISTS\s+)?(\w+)", re.I)
_TRIGGER = re.compile(r"CREATE\s+TRIGGER\s+(\w+)\s+.*?\bON\s+(\w+)", re.I | re.S)
_DROP_TRIGGER = re.compile(r"DROP\s+TRIGGER\s+(?:IF\s+EXISTS\s+)?(\w+)\s+ON\s+(\w+)", re.I)


def defined(migrations: Iterable[tuple[str, str]]) -> tuple[dict[str, tuple[str, str]],
                                                             set[tuple[str, str]]]:
    """The SQL functions (name → (migration, body) of its last definition) and the
    triggers (name, table) the migrations, applied in order, leave defined."""
    functions: dict[str, tuple[str, str]] = {}
    triggers: set[tuple[str, str]] = set()
    for name, sql in migrations:
        events = [(m.start(), "def", m) for m in _FUNCTION.finditer(sql)]
        events += [(m.start(), "drop", m) for m in _DROP_FUNCTION.finditer(sql)]
        events += [(m.start(), "trigger", m) for m in _TRIGGER.finditer(sql)]
        events += [(m.start(), "untrigger", m) for m in _DROP_TRIGGER.finditer(sql)]
        for _, what, m in sorted(events, key=lambda e: e[0]):
            if what == "def":
                functions[m.group(1).lower()] = (name, m.group(4))
            elif what == "drop":
                functions.pop(m.group(1).lower(), None)
            elif what == "trigger":
                triggers.add((m.group(1).lower(), m.group(2).lower()))
            else:
                triggers.discard((m.group(1).lower(), m.group(2).lower()))
    return functions, triggers


def sql_violations(migrations: Iterable[tuple[str, str]]) -> list[str]:
    """Functions still defined that write charges, and triggers still on charges."""
    functions, triggers = defined(migrations)
    found = [f"{function} ({where})" for function, (where, body) in sorted(functions.items())
             if INSERT.search(body) or SQL_COPY.search(body)]
    found += [f"trigger {name} on {table}" for name, table in sorted(triggers)
              if TABLE_NAME.match(table)]
    return found


def migration_texts() -> list[tuple[str, str]]:
    return [(p.stem, p.read_text()) for p in sorted(MIGRATIONS.glob("*.sql"))]


def test_only_the_writer_of_rollups_writes_charges() -> None:
    assert source_violations(project_modules()) == []


def test_the_writer_writes_every_rollup_level() -> None:
    source = (ROOT / "server" / "store" / "charge_writes.py").read_text()
    tree = ast.parse(source)
    write = next(n for n in ast.walk(tree)
                 if isinstance(n, ast.AsyncFunctionDef) and n.name == THE_WRITER[1])
    names = {string_of(n) for n in ast.walk(write)}
    assert {"charge_rollups", "charge_rollups_monthly", "charge_hour_totals"} <= names
    assert list(writers(THE_WRITER[0], source)), "the writer itself is seen by the scan"


def test_no_sql_function_or_trigger_writes_charges() -> None:
    assert sql_violations(migration_texts()) == []


def test_the_scan_catches_a_writer_that_skips_the_rollups() -> None:
    bypass = '''
async def store(conn, rows):
    await usage_repo.copy_rows(conn, "charges", COLUMNS, rows)
    await conn.execute("INSERT INTO charges (account_id) VALUES ($1)", "A")
    await conn.copy_records_to_table(table_name="charges_2026_01", records=rows)
    await conn.execute(f"INSERT INTO charge_rollups SELECT 1")  # another table: fine
'''
    assert source_violations([("server.pipeline.sneaky", bypass)]) == [
        "server.pipeline.sneaky:3", "server.pipeline.sneaky:4", "server.pipeline.sneaky:5"]
    # The same code inside the writer's module but another of its functions is caught too.
    assert len(source_violations([(THE_WRITER[0], bypass)])) == 3


def test_the_scan_catches_a_sql_function_or_trigger_that_writes_charges() -> None:
    migrations = [
        ("0001", "CREATE FUNCTION keep() RETURNS void LANGUAGE sql AS $$ SELECT 1 $$;"),
        ("0002", "CREATE OR REPLACE FUNCTION recharge(a text) RETURNS void\n"
                 "LANGUAGE plpgsql AS $body$ BEGIN INSERT INTO charges (account_id)"
                 " VALUES (a); END $body$;"),
        ("0003", "CREATE FUNCTION gone() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                 "BEGIN INSERT INTO charges SELECT * FROM x; RETURN NULL; END $$;\n"
                 "CREATE TRIGGER t AFTER INSERT ON charges FOR EACH STATEMENT"
                 " EXECUTE FUNCTION gone();"),
    ]
    assert sql_violations(migrations) == [
        "gone (0003)", "recharge (0002)", "trigger t on charges"]
    migrations.append(("0004", "DROP TRIGGER t ON charges; DROP FUNCTION IF EXISTS gone();"))
    assert sql_violations(migrations) == ["recharge (0002)"]
