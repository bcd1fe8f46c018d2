"""The controls, one module per family; ``ALL`` in the order a run takes them."""

from __future__ import annotations

from billing_oss.server.assurance.controls import (
    audit_chain,
    billing,
    collection,
    conservation,
    duplicates,
    gl,
    journal_days,
    ledger,
    rating,
    retention,
    rollups,
    settlement,
)
from billing_oss.server.assurance.model import Control

ALL: tuple[Control, ...] = (
    *collection.CONTROLS, *conservation.CONTROLS, *rating.CONTROLS, *billing.CONTROLS,
    *ledger.CONTROLS, *journal_days.CONTROLS, *gl.CONTROLS, *settlement.CONTROLS,
    *duplicates.CONTROLS, *audit_chain.CONTROLS, *retention.CONTROLS, *rollups.CONTROLS,
)
BY_NAME: dict[str, Control] = {c.name: c for c in ALL}
