"""Composing the WHERE clause of list queries from optional filters, with numbered params.

``Where().add("status = {}", "open").add("x > {}", None)`` keeps only the filters given;
``{}`` becomes the next ``$n``. Values always travel as parameters, never in the SQL text.
"""

from __future__ import annotations

from typing import Any


class Where:
    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def add(self, clause: str, value: Any) -> Where:
        if value is not None:
            self.args.append(value)
            self.clauses.append(clause.format(f"${len(self.args)}"))
        return self

    def when(self, condition: bool, clause: str) -> Where:
        """A clause without a parameter, kept only when ``condition`` holds."""
        if condition:
            self.clauses.append(clause)
        return self

    def keyset(self, columns: str, key: tuple[Any, ...] | None,
               descending: bool = False) -> Where:
        """Rows after ``key`` in the order of ``columns`` (a row comparison), or before it
        when the rows go ``descending``."""
        if key is not None:
            marks = []
            for value in key:
                self.args.append(value)
                marks.append(f"${len(self.args)}")
            self.clauses.append(f"({columns}) {'<' if descending else '>'} ({', '.join(marks)})")
        return self

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""

    def limit(self, n: int) -> str:
        """`` LIMIT $n`` for ``n`` rows (its parameter appended last)."""
        self.args.append(n)
        return f" LIMIT ${len(self.args)}"
