"""One batch of a bill run, inside the caller's transaction: read the accounts' inputs
(locking them) and compute every (account, currency) invoice; ``drafts_repo`` stores the
drafts with their lines, taxes and charge links.

A draft of the same cycle is recomputed in place (same invoice id): its lines and links
are dropped and rebuilt from every charge not on another invoice, so computing a batch
again gives the same drafts (plus any late usage); its period follows the account's cycle,
which a change of billing day moves. A finalised invoice is never touched.
"""

from __future__ import annotations

import datetime as dt

from billing_oss.server.billing import inputs_repo
from billing_oss.server.billing.compute import compute
from billing_oss.server.billing.model import BillingInput, InvoiceDraft, Settings
from billing_oss.server.catalog.tax import TaxRate
from billing_oss.server.store.pool import Connection


async def compute_batch(conn: Connection, ids: list[str], period: str, settings: Settings,
                        rates: tuple[TaxRate, ...], frozen_before: dt.datetime | None,
                        ) -> tuple[inputs_repo.BatchInputs, list[InvoiceDraft]]:
    """The batch's inputs and its drafts (those with lines); call inside a transaction."""
    batch = await inputs_repo.read_batch(conn, ids, period, frozen_before)
    return batch, [d for d in compute_all(batch, settings, rates) if d.lines]


def compute_all(batch: inputs_repo.BatchInputs, settings: Settings,
                 rates: tuple[TaxRate, ...]) -> list[InvoiceDraft]:
    out = []
    for account_id, account in batch.accounts.items():
        cycle = batch.cycles[account_id]
        subs = tuple(batch.subscriptions.get(account_id, ()))
        adjustments = tuple(batch.adjustments.get(account_id, ()))
        currencies = {c for (a, c) in batch.usage if a == account_id}
        currencies |= {s.product.currency for s in subs if s.product.recurring_fee_micros}
        currencies |= {a.currency for a in adjustments}
        tax_day = cycle.end_local - dt.timedelta(days=1)
        for currency in sorted(currencies):
            out.append(compute(BillingInput(
                account=account, currency=currency,
                usage=tuple(batch.usage.get((account_id, currency), ())),
                subscriptions=subs, adjustments=adjustments,
                discounts=inputs_repo.discounts_on(batch, account_id, tax_day), tax_rates=rates,
                bill_recurring=(account_id, currency) not in batch.finalised,
                billed_quantity=batch.billed.get((account_id, currency), {}),
            ), cycle, settings))
    return out
