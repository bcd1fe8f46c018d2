"""What a control is and what one run of it finds.

A control is a named, versioned check (``collection.sequence_gaps`` v1). Most are one SQL
query listing the offenders, one row each: ``object`` (what breaks the identity, e.g.
``invoice:A1/42``), ``currency`` and ``at_stake_micros`` (the money involved, NULL when it
cannot be priced), ``detail`` (why, in words). The query takes ``$1`` the as-of time and
``$2`` the settings (jsonb). A control that needs Python (re-rating, the audit chain)
implements ``evaluate`` itself and still documents the query that lists its population.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from billing_oss.server.config import LedgerConfig
from billing_oss.server.store.pool import Connection

MICROS = Decimal(1_000_000)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Tolerances the controls read (``[assurance]`` in the configuration)."""

    evidence_limit: int = 20
    duplicate_tolerance_s: int = 2
    suspense_age_days: int = 7
    silent_factor: int = 3
    silent_min_s: int = 3600
    late_after_h: int = 24
    rerate_sample: int = 500
    rollup_days: int = 2  # the rollup levels control's window (0: every day still stored)

    def params(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


class Offender(msgspec.Struct, frozen=True, kw_only=True):
    object: str
    currency: str | None
    at_stake_micros: int | None
    detail: str


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one control found: every offender counted, the first ``evidence_limit`` kept."""

    checked: int | None
    offending: int
    unpriced: int
    at_stake_micros: dict[str, int]
    evidence: list[Offender]
    query: str


class Context(msgspec.Struct, frozen=True, kw_only=True):
    as_of: dt.datetime
    settings: Settings
    checkpoint_dir: str = ""
    chart: LedgerConfig = msgspec.field(default_factory=LedgerConfig)  # the GL export's
    parallel: int = 2  # controls run at once, each on its own connection


class Control(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def family(self) -> str: ...
    @property
    def title(self) -> str: ...

    async def evaluate(self, conn: Connection, ctx: Context) -> Outcome: ...


def decimal_text(micros: int) -> str:
    """Micro-units as an exact decimal string with at least the cents: 1234500 → "1.2345"."""
    text = format(Decimal(micros) / MICROS, "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"


def bind(sql: str, as_of: dt.datetime, settings: Settings) -> str:
    """The control's query with its parameters written in, to run as is in psql."""
    literal_time = "'" + as_of.astimezone(dt.UTC).isoformat() + "'::timestamptz"
    literal_settings = "'" + msgspec.json.encode(settings.params()).decode().replace(
        "'", "''") + "'::jsonb"
    return sql.replace("$1", literal_time).replace("$2", literal_settings).strip()
