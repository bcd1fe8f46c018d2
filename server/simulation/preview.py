"""Invoice preview: one account's invoice of one cycle (the next, or a past one) priced by
the simulation engine under the catalog in force or a candidate, as the bill run would
draft it, and as the usual PDF headed "PREVIEW INVOICE". Nothing is stored.

The cycle's usage is the usage whose event time falls in it; a bill run's draft also takes
charges of earlier cycles not yet invoiced, which a preview leaves out.
"""

from __future__ import annotations

from typing import Any

from billing_oss.server.billing.model import InvoiceDraft, Settings
from billing_oss.server.billing.render import content, typst_pdf
from billing_oss.server.simulation import engine
from billing_oss.server.store.pool import Connection


async def drafts(conn: Connection, account_id: str, period: str,
                 candidate: dict[str, Any] | None, settings: Settings) -> list[InvoiceDraft]:
    """The account's drafts of ``period`` (one per currency), under ``candidate`` laid over
    the catalog in force (None: the catalog in force)."""
    request = engine.Request(candidate=candidate or {}, period_from=period, period_to=period,
                             accounts=[account_id])
    outcome = await engine.simulate(conn, request, settings)
    return [d for _, d in sorted(outcome.candidate.drafts.items())]


def pdf(draft: InvoiceDraft) -> bytes:
    doc = content.Rendition(
        type_code=content.INVOICE, heading="PREVIEW INVOICE",
        number=f"PREVIEW-{draft.account_id}-{draft.period}", issue_date=None, due_date=None,
        content=draft, omitted=content.noise(draft.lines))
    return typst_pdf.render_rendition(doc)
