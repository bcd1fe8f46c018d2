"""Money after the invoice (collections): the receivables ledger holds every document and
payment, and its balance is what the aging says customers owe.

- ``ledger.documents_booked``: every finalised invoice (payable > 0) has its ledger entry of
  that amount, every credit note its entry of minus its total. At stake: the document.
- ``ledger.payments_booked``: every imported bank credit has its payment of the same amount,
  and every payment its ledger entry. At stake: the payment, e.g. one lost after import.
- ``ledger.aging_receivables``: per account and currency, Σ open items − Σ unapplied
  payments (what the aging reports) = Σ ledger entries (the receivables). At stake: the gap.

"The GL export balances" is ``ledger.gl_balanced`` (``controls.gl``).
"""

from __future__ import annotations

from billing_oss.server.assurance.sql_control import SqlControl

DOCUMENTS_BOOKED = SqlControl(
    name="ledger.documents_booked", version=1, family="ledger",
    title="every finalised invoice and credit note is in the ledger",
    sql="""
SELECT format('invoice:%s/%s', i.account_id, i.invoice_id) AS object, trim(i.currency) AS currency,
       abs(i.payable_micros - coalesce(e.amount_micros, 0)) AS at_stake_micros,
       format('invoice %s payable %s, ledger entry %s', i.number_text, i.payable_micros,
              coalesce(e.amount_micros::text, 'missing')) AS detail
FROM invoices i
LEFT JOIN ledger_entries e ON e.account_id = i.account_id AND e.kind = 'invoice'
     AND e.invoice_id = i.invoice_id
WHERE i.status = 'finalised' AND i.payable_micros > 0 AND i.finalised_at <= $1
  AND e.amount_micros IS DISTINCT FROM i.payable_micros AND $2::jsonb IS NOT NULL
UNION ALL
SELECT format('credit_note:%s/%s', n.account_id, n.credit_note_id), trim(n.currency),
       abs(n.total_micros + n.rounding_micros + coalesce(e.amount_micros, 0)),
       format('credit note %s of %s, ledger entry %s', n.number_text,
              n.total_micros + n.rounding_micros, coalesce(e.amount_micros::text, 'missing'))
FROM credit_notes n
LEFT JOIN ledger_entries e ON e.account_id = n.account_id AND e.kind = 'credit_note'
     AND e.credit_note_id = n.credit_note_id
WHERE n.total_micros + n.rounding_micros > 0 AND n.created_at <= $1
  AND EXISTS (SELECT 1 FROM ledger_entries x WHERE x.account_id = n.account_id
              AND x.kind = 'invoice' AND x.invoice_id = n.invoice_id)
  AND e.amount_micros IS DISTINCT FROM -(n.total_micros + n.rounding_micros)""",
)

PAYMENTS_BOOKED = SqlControl(
    name="ledger.payments_booked", version=1, family="ledger",
    title="every bank credit has its payment, every payment its ledger entry",
    sql="""
SELECT format('bank_entry:%s/%s', b.statement_account, b.entry_key) AS object,
       trim(b.currency) AS currency, b.amount_micros AS at_stake_micros,
       format('bank credit of %s %s booked %s (%s) for %s: payment %s %s', b.amount_micros,
              b.currency, b.booked_on, b.file_name, b.account_id, b.payment_id,
              CASE WHEN p.payment_id IS NULL THEN 'is missing'
                   ELSE 'is of ' || p.amount_micros END) AS detail
FROM bank_entries b
LEFT JOIN payments p ON p.account_id = b.account_id AND p.payment_id = b.payment_id
WHERE b.status = 'imported' AND b.credit AND b.payment_id IS NOT NULL
  AND b.imported_at <= $1 AND $2::jsonb IS NOT NULL
  AND p.amount_micros IS DISTINCT FROM b.amount_micros
UNION ALL
SELECT format('payment:%s/%s', p.account_id, p.payment_id), trim(p.currency), p.amount_micros,
       format('payment of %s received %s (%s) has ledger entry %s', p.amount_micros,
              p.received_on, p.method, coalesce(e.amount_micros::text, 'missing'))
FROM payments p
LEFT JOIN ledger_entries e ON e.account_id = p.account_id AND e.kind = 'payment'
     AND e.payment_id = p.payment_id
WHERE p.created_at <= $1 AND e.amount_micros IS DISTINCT FROM -p.amount_micros""",
)

AGING_RECEIVABLES = SqlControl(
    name="ledger.aging_receivables", version=1, family="ledger",
    title="aging total (open items − unapplied payments) = receivables (Σ ledger)",
    sql="""
WITH balance AS (
    SELECT account_id, currency, sum(amount_micros)::bigint AS micros FROM ledger_entries
    GROUP BY 1, 2),
open_items AS (
    SELECT account_id, currency,
           sum(collections_item_open(account_id, entry_id))::bigint AS micros
    FROM ledger_entries WHERE kind IN ('invoice', 'fee') GROUP BY 1, 2),
unapplied AS (
    SELECT account_id, currency,
           sum(collections_payment_unapplied(account_id, payment_id))::bigint AS micros
    FROM payments GROUP BY 1, 2),
aged AS (
    SELECT account_id, currency, sum(micros)::bigint AS micros FROM (
        SELECT account_id, currency, micros FROM open_items
        UNION ALL SELECT account_id, currency, -micros FROM unapplied) x GROUP BY 1, 2)
SELECT format('account:%s/%s', coalesce(b.account_id, a.account_id),
              trim(coalesce(b.currency, a.currency))) AS object,
       trim(coalesce(b.currency, a.currency)) AS currency,
       abs(coalesce(b.micros, 0) - coalesce(a.micros, 0)) AS at_stake_micros,
       format('ledger balance %s, aging total %s', coalesce(b.micros, 0), coalesce(a.micros, 0))
           AS detail
FROM balance b FULL JOIN aged a ON a.account_id = b.account_id AND a.currency = b.currency
WHERE coalesce(b.micros, 0) <> coalesce(a.micros, 0)
  AND $1::timestamptz IS NOT NULL AND $2::jsonb IS NOT NULL""",
)

CONTROLS = (DOCUMENTS_BOOKED, PAYMENTS_BOOKED, AGING_RECEIVABLES)
