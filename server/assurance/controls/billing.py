"""Billing controls: every cent charged in a closed cycle is invoiced, every plan billed,
every invoice adds up.

- ``billing.cycle_invoiced``: each charge of a closed cycle (in a finalised invoice's
  period, for its account and currency, stored before the invoice was finalised) is linked
  to an invoice line — Σ charges of the cycle = Σ usage lines. At stake: the unlinked
  charges, e.g. an invoice line deleted behind the application's back.
- ``billing.subscriptions_billed``: every subscription with a recurring fee in force during
  a finalised invoice's period has its recurring line on an invoice of that account and
  period. At stake: the plan's fee.
- ``billing.invoice_totals``: finalised invoices add up (EN 16931): BR-CO-10 Σ line net =
  line total, BR-CO-11 Σ allowances = allowance total, BR-CO-14 Σ tax per category = tax
  total (BR-CO-15 and the payable amount are table constraints). At stake: the largest gap.
"""

from __future__ import annotations

from billing_oss.server.assurance.sql_control import SqlControl

CYCLE_INVOICED = SqlControl(
    name="billing.cycle_invoiced", version=3, family="billing",
    title="Σ charges of a closed cycle = Σ usage lines of its invoices",
    # First over all closed cycles at once, without joining 10 M charges to 10 M links: how
    # many charges they hold and a sum of hashes of their keys (account, id), against the
    # same of the links. Only when these differ are the accounts summed one by one, and only
    # the accounts where those sums differ (an unlinked charge, or links to charges outside
    # a closed cycle, e.g. a draft's) looked at charge by charge.
    sql="""
WITH cycle_total AS MATERIALIZED (
    SELECT count(*) AS n, coalesce(sum(hashtextextended(c.account_id, c.charge_id)), 0) AS keys
    FROM invoices i
    JOIN charges c ON c.account_id = i.account_id AND c.currency = i.currency
         AND c.event_time >= i.period_start AND c.event_time < i.period_end
         AND c.created_at < i.finalised_at
    WHERE i.status = 'finalised' AND i.finalised_at <= $1),
link_total AS MATERIALIZED (
    SELECT count(*) AS n, coalesce(sum(hashtextextended(account_id, charge_id)), 0) AS keys
    FROM invoice_line_charges),
unbalanced AS (
    SELECT (c.n, c.keys) IS DISTINCT FROM (l.n, l.keys) AS yes
    FROM cycle_total c, link_total l),
cycle_sums AS (
    SELECT c.account_id, count(*) AS n, sum(c.charge_id) AS ids,
           sum(hashint8(c.charge_id)) AS hashes
    FROM invoices i
    JOIN charges c ON c.account_id = i.account_id AND c.currency = i.currency
         AND c.event_time >= i.period_start AND c.event_time < i.period_end
         AND c.created_at < i.finalised_at
    WHERE i.status = 'finalised' AND i.finalised_at <= $1 AND (SELECT yes FROM unbalanced)
    GROUP BY c.account_id),
link_sums AS (
    SELECT account_id, count(*) AS n, sum(charge_id) AS ids, sum(hashint8(charge_id)) AS hashes
    FROM invoice_line_charges WHERE (SELECT yes FROM unbalanced) GROUP BY account_id),
suspect AS (
    SELECT c.account_id FROM cycle_sums c LEFT JOIN link_sums l USING (account_id)
    WHERE (c.n, c.ids, c.hashes) IS DISTINCT FROM (l.n, l.ids, l.hashes))
SELECT format('charge:%s/%s', c.account_id, c.charge_id) AS object,
       trim(c.currency) AS currency, c.amount_micros AS at_stake_micros,
       format('%s of %s at %s in the period of invoice %s (invoice:%s/%s) is on no invoice line',
              c.kind, c.amount_micros, c.event_time, i.number_text, i.account_id,
              i.invoice_id) AS detail
FROM invoices i
JOIN charges c ON c.account_id = i.account_id AND c.currency = i.currency
     AND c.event_time >= i.period_start AND c.event_time < i.period_end
     AND c.created_at < i.finalised_at
WHERE i.status = 'finalised' AND i.finalised_at <= $1 AND $2::jsonb IS NOT NULL
  AND i.account_id IN (SELECT account_id FROM suspect)
  AND NOT EXISTS (SELECT 1 FROM invoice_line_charges l
                  WHERE l.account_id = c.account_id AND l.charge_id = c.charge_id)""",
    checked_sql="SELECT count(*) FROM invoices WHERE status = 'finalised'"
                " AND finalised_at <= $1",
)

SUBSCRIPTIONS_BILLED = SqlControl(
    name="billing.subscriptions_billed", version=1, family="billing",
    title="every subscription with a fee in force is billed for every closed cycle",
    sql="""
WITH cycles AS (
    SELECT DISTINCT account_id, period, period_start, period_end FROM invoices
    WHERE status = 'finalised' AND finalised_at <= $1)
SELECT format('subscription:%s/%s/%s', s.account_id, s.subscription_id, c.period) AS object,
       trim(p.currency) AS currency, p.recurring_fee_micros AS at_stake_micros,
       format('%s (%s) was in force in %s but no invoice of %s bills it', p.name,
              p.product_id, c.period, s.account_id) AS detail
FROM cycles c
JOIN subscriptions s ON s.account_id = c.account_id AND s.valid_from < c.period_end
     AND (s.valid_to IS NULL OR s.valid_to > c.period_start)
JOIN products p ON p.product_id = s.product AND p.recurring_fee_micros > 0
WHERE $2::jsonb IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM invoice_lines l JOIN invoices i USING (account_id, invoice_id)
    WHERE l.account_id = s.account_id AND l.subscription_id = s.subscription_id
      AND l.kind = 'recurring' AND i.status = 'finalised' AND i.period = c.period)""",
)

INVOICE_TOTALS = SqlControl(
    name="billing.invoice_totals", version=1, family="billing",
    title="invoice totals = lines − allowances + taxes (EN 16931 BR-CO-10, -11, -14)",
    sql="""
SELECT format('invoice:%s/%s', i.account_id, i.invoice_id) AS object,
       trim(i.currency) AS currency,
       greatest(abs(i.line_total_micros - coalesce(l.net, 0)),
                abs(i.allowance_micros - coalesce(a.amount, 0)),
                abs(i.tax_micros - coalesce(t.tax, 0)))::bigint AS at_stake_micros,
       format('%s: lines %s / line total %s (BR-CO-10), allowances %s / %s (BR-CO-11),'
              ' taxes %s / %s (BR-CO-14)', i.number_text, coalesce(l.net, 0),
              i.line_total_micros, coalesce(a.amount, 0), i.allowance_micros,
              coalesce(t.tax, 0), i.tax_micros) AS detail
FROM invoices i
LEFT JOIN (SELECT account_id, invoice_id, sum(net_micros) AS net FROM invoice_lines
           GROUP BY 1, 2) l ON l.account_id = i.account_id AND l.invoice_id = i.invoice_id
LEFT JOIN (SELECT account_id, invoice_id, sum(amount_micros) AS amount FROM invoice_allowances
           GROUP BY 1, 2) a ON a.account_id = i.account_id AND a.invoice_id = i.invoice_id
LEFT JOIN (SELECT account_id, invoice_id, sum(tax_micros) AS tax FROM taxes
           GROUP BY 1, 2) t ON t.account_id = i.account_id AND t.invoice_id = i.invoice_id
WHERE i.status = 'finalised' AND i.finalised_at <= $1 AND $2::jsonb IS NOT NULL
  AND (i.line_total_micros <> coalesce(l.net, 0) OR i.allowance_micros <> coalesce(a.amount, 0)
       OR i.tax_micros <> coalesce(t.tax, 0))""",
)

CONTROLS = (CYCLE_INVOICED, SUBSCRIPTIONS_BILLED, INVOICE_TOTALS)
