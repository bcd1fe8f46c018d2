"""The layer rules of the README's Architecture section, read from every module's AST.

- `core/` imports nothing of the project but itself; `native/` nothing but itself.
- `adapters/` imports `core/`, `native/`, itself and, of `server`, only the repositories of
  `server/store/` (the ledgers a source keeps: files, meter readings).
- In `server/`, only `server/composition.py` imports the network adapters (`adapters.mqtt`,
  `adapters.sftp` and its completion gate, `adapters.sources`, which builds them);
  `adapters.formats` is a codec library any module may import, and `adapters.intake` /
  `adapters.meters` (a message or a meter reading → a delivery) are shared by MQTT and the
  HTTP ingest route.
- A SQL statement is written only in a repo module: `server/store/` (the core tables and the
  store's own machinery), a domain package's `repo.py` / `<thing>_repo.py`, or a revenue
  assurance control under `server/assurance/controls/` (a control is its query).
- No cycle between packages (`server.billing`, `server.store`, …; a module directly under
  `server/` counts as its own package).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "native", "adapters", "server")
NETWORK_ADAPTERS = ("adapters.mqtt", "adapters.sftp", "adapters.sftp_completion",
                    "adapters.sources")
COMPOSITION_ROOT = "server.composition"

# A statement, not prose: the keyword opens the string (docstrings and messages that merely
# mention a verb do not), upper case as every statement in the tree is written.
SQL = re.compile(
    r"^\s*(?:SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+(?:\s+\w+)?\s+SET\s|DELETE\s+FROM\s|"
    r"WITH\s+(?:RECURSIVE\s+)?\w+(?:\s*\([^)]*\))?\s+AS\s*(?:MATERIALIZED\s*)?\(|"
    r"CREATE\s|ALTER\s|DROP\s|TRUNCATE\s|LOCK\s+TABLE\s|COPY\s|SET\s+(?:LOCAL\s+)?\w+\s*(?:=|TO)\s|"
    r"SHOW\s|ANALYZE\b|VACUUM\b|NOTIFY\s|LISTEN\s|PREPARE\s|EXPLAIN\s)"
)


def _modules() -> Iterator[tuple[str, Path]]:
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def _imports(module: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every name `module` imports (at any depth), relative imports made absolute."""
    package = module.split(".") if _is_package(module) else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def _is_package(module: str) -> bool:
    return (ROOT / module.replace(".", "/") / "__init__.py").exists()


def _project(name: str) -> str | None:
    if name.startswith("billing_oss."):
        name = name[len("billing_oss.") :]
    return name if name.split(".")[0] in LAYERS else None


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _sql_allowed(module: str) -> bool:
    last = module.split(".")[-1]
    return (
        _within(module, "server.store")
        or _within(module, "server.assurance.controls")
        or (module.startswith("server.") and (last == "repo" or last.endswith("_repo")))
    )


def _strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value if isinstance(part, ast.Constant) else "{}" for part in node.values
            )
            yield node.lineno, text


def _package(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("server", "adapters") and len(parts) >= 2:
        return ".".join(parts[:2])
    return parts[0]


def _trees() -> list[tuple[str, Path, ast.Module]]:
    return [(m, p, ast.parse(p.read_text(), str(p))) for m, p in _modules()]


def _resolved(module: str, tree: ast.Module, modules: set[str]) -> Iterator[tuple[int, str]]:
    """The project modules `module` imports: `from pkg import name` names a module or an
    attribute, so the longest module name wins."""
    for line, raw in _imports(module, tree):
        name = _project(raw)
        if name is None:
            continue
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        yield line, name


def layer_violations() -> list[str]:
    found: list[str] = []
    modules = {m for m, _ in _modules()}
    for module, path, tree in _trees():
        layer = module.split(".")[0]
        where = path.relative_to(ROOT)
        for line, name in _resolved(module, tree, modules):
            target = name.split(".")[0]
            if layer in ("core", "native") and target != layer:
                found.append(f"{where}:{line} {layer}/ imports {name}")
            elif layer == "adapters" and target == "server" and not _within(name, "server.store"):
                found.append(f"{where}:{line} adapters/ imports {name}")
            elif (
                layer == "server"
                and module != COMPOSITION_ROOT
                and any(_within(name, a) for a in NETWORK_ADAPTERS)
            ):
                found.append(f"{where}:{line} only {COMPOSITION_ROOT} imports {name}")
    return sorted(set(found))


def sql_outside_repos() -> list[str]:
    found: list[str] = []
    for module, path, tree in _trees():
        if _sql_allowed(module):
            continue
        for line, text in _strings(tree):
            if SQL.match(text):
                found.append(f"{path.relative_to(ROOT)}:{line} {text.strip().splitlines()[0]}")
    return sorted(set(found))


def package_edges() -> dict[tuple[str, str], set[str]]:
    """(importing package, imported package) → the modules that make the edge."""
    modules = {m for m, _ in _modules()}
    edges: dict[tuple[str, str], set[str]] = {}
    for module, _, tree in _trees():
        source = _package(module)
        for _, name in _resolved(module, tree, modules):
            target = _package(name)
            if target != source:
                edges.setdefault((source, target), set()).add(f"{module} -> {name}")
    return edges


def package_cycles() -> list[str]:
    edges: dict[str, set[str]] = {}
    for source, target in package_edges():
        edges.setdefault(source, set()).add(target)
    return [" -> ".join(cycle) for cycle in _strongly_connected(edges) if len(cycle) > 1]


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_imports_follow_the_layers() -> None:
    assert layer_violations() == []


def test_sql_lives_in_repo_modules() -> None:
    assert sql_outside_repos() == []


def test_no_package_import_cycle() -> None:
    assert package_cycles() == []


def test_the_scan_sees_a_statement_and_skips_prose() -> None:
    assert SQL.match("\n    SELECT id FROM accounts WHERE id = $1")
    assert SQL.match("INSERT INTO charges (a) VALUES ($1)")
    assert SQL.match("UPDATE invoices i SET status = 'x'")
    assert SQL.match("WITH moved AS (DELETE FROM x RETURNING *) SELECT 1")
    assert not SQL.match("Select the accounts whose sums differ.")
    assert not SQL.match("the SELECT below reads one partition")


if __name__ == "__main__":
    for title, lines in (
        ("layers", layer_violations()),
        ("sql", sql_outside_repos()),
        ("cycles", package_cycles()),
    ):
        print(f"## {title}: {len(lines)}")
        print("\n".join(lines))
