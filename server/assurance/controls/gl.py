"""The general-ledger export (``server.ledger``) balanced, and equal to the receivables
ledger it is drawn from.

- ``ledger.gl_balanced``: for every month (of the entries' dates) and currency with ledger
  entries, the journal the export would write, on the configured chart of accounts
  (``[ledger]``), is rebuilt; each of its journals (sales, bank, misc) must book as much
  debit as credit, every ledger entry must turn into a balanced journal entry, and the
  movement of the receivables account (Σ debit − Σ credit of its lines) must equal Σ of the
  period's ledger entries. Offenders: ``gl:<month>/<currency>/<journal>`` for an unbalanced
  journal, ``gl:<month>/<currency>/receivables`` for a receivables total that differs (a
  chart that books another role on the receivables account, an export that drops or
  misreads an entry), ``ledger_entry:<account>/<id>`` for an entry the export cannot book.
  At stake: the difference, or the entry's amount.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import msgspec

from billing_oss.server.assurance import repo
from billing_oss.server.assurance.model import Context, Offender, Outcome
from billing_oss.server.ledger import repo as ledger_repo
from billing_oss.server.ledger.journal import Unbalanced, build
from billing_oss.server.store.pool import Connection


class GlBalanced(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "ledger.gl_balanced"
    version: int = 2
    family: str = "ledger"
    title: str = "the GL export is balanced per journal, month and currency, and its" \
                 " receivables total = the receivables ledger"

    async def evaluate(self, conn: Connection, ctx: Context) -> Outcome:
        chart = ctx.chart
        offenders: list[Offender] = []
        periods = await repo.ledger_months(conn, ctx.as_of)
        for month, currency, ledger_total, cutoff in periods:
            start = month
            # The month's entries up to the run's as-of date, as its total counts them: a
            # payment dated later this month is not in the books yet.
            end = min(cutoff, (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
                      - dt.timedelta(days=1))
            rows = await ledger_repo.entries(conn, start, end, currency)
            label = f"{month:%Y-%m}/{currency.strip()}"
            books = msgspec.structs.replace(chart, currency=currency.strip())
            debit: dict[str, int] = defaultdict(int)
            credit: dict[str, int] = defaultdict(int)
            receivables = 0  # the ledger's own sum, not the export's rows: a dropped row shows
            for row in rows:
                try:
                    entry = build([row], books, start, end).entries[0]
                except (Unbalanced, ValueError) as exc:
                    offenders.append(Offender(
                        object=f"ledger_entry:{row['account_id']}/{row['entry_id']}",
                        currency=currency.strip(), at_stake_micros=abs(int(row["amount_micros"])),
                        detail=f"{label}: the export cannot book it: {exc}"))
                    receivables += int(row["amount_micros"])  # counted once, here
                    continue
                debit[entry.journal] += entry.debit_micros
                credit[entry.journal] += entry.credit_micros
                receivables += sum(line.debit_micros - line.credit_micros
                                   for line in entry.lines if line.account == books.receivables)
            for journal in sorted(debit.keys() | credit.keys()):
                if debit[journal] != credit[journal]:
                    offenders.append(Offender(
                        object=f"gl:{label}/{journal}", currency=currency.strip(),
                        at_stake_micros=abs(debit[journal] - credit[journal]),
                        detail=f"journal {journal} of {label}: debit {debit[journal]},"
                               f" credit {credit[journal]} (micro-units)"))
            if receivables != ledger_total:
                offenders.append(Offender(
                    object=f"gl:{label}/receivables", currency=currency.strip(),
                    at_stake_micros=abs(receivables - ledger_total),
                    detail=f"{label}: the export moves receivables account"
                           f" {books.receivables} by {receivables}, the receivables ledger by"
                           f" {ledger_total} (micro-units)"))
        offenders.sort(key=lambda o: o.object)
        stake: dict[str, int] = defaultdict(int)
        for o in offenders:
            if o.currency is not None and o.at_stake_micros is not None:
                stake[o.currency] += o.at_stake_micros
        return Outcome(checked=len(periods), offending=len(offenders), unpriced=0,
                       at_stake_micros=dict(stake),
                       evidence=offenders[:ctx.settings.evidence_limit],
                       query=repo.LEDGER_MONTHS_SQL.strip() + ";\n-- then, per month and"
                       " currency, the export's entries (server/ledger/repo.py) rebuilt as"
                       " journal entries")


CONTROLS = (GlBalanced(),)
