"""Revenue assurance: scheduled controls that prove every cent (DESIGN.md §3 invariant 7,
§10), and the audit chain anchored outside the database by signed checkpoints."""

from __future__ import annotations

import datetime as dt

from billing_oss.server.assurance.model import Context, Settings
from billing_oss.server.config import AssuranceConfig, LedgerConfig


def context(config: AssuranceConfig, as_of: dt.datetime | None = None,
            ledger: LedgerConfig | None = None) -> Context:
    """The run context from the ``[assurance]`` configuration (and ``[ledger]``'s chart of
    accounts, which the GL control rebuilds the export on)."""
    settings = Settings(
        evidence_limit=config.evidence_limit, duplicate_tolerance_s=config.duplicate_tolerance_s,
        suspense_age_days=config.suspense_age_days, silent_factor=config.silent_factor,
        silent_min_s=config.silent_min_s, late_after_h=config.late_after_h,
        rerate_sample=config.rerate_sample, rollup_days=config.rollup_days)
    return Context(as_of=as_of or dt.datetime.now(dt.UTC), settings=settings,
                   checkpoint_dir=config.checkpoint_dir, chart=ledger or LedgerConfig(),
                   parallel=config.parallel)
