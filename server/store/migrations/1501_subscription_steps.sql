-- The MRR report's monthly counts kept as steps per account, rewritten for the accounts a
-- statement on subscriptions touched, in its transaction (``report mrr``; DESIGN.md §10).
-- The report recomputed every subscription's span of months and, per account, the union of
-- its spans (an account counts once) at every read: a window over all subscriptions, a
-- year of 100,000 of them took 1.5–6 s. Here each account's spans are reduced once to steps:
-- +n at the first month a count holds, −n after its last, and the report sums the steps up
-- to each month of its range (a few rows per subscription, no window over them).
--
-- Months are UTC calendar months; with M(t) the month holding t, a subscription is active at
-- an instant t when valid_from < t <= valid_to (no valid_to: to 'infinity'):
--   subscription_product_steps, per account × product:
--     subscriptions  active at the month's close: M(valid_from) .. M(valid_to) − 1
--     accounts       the account holds the product at the close (the union of its spans)
--   subscription_account_steps, per account (any product):
--     opening        active at the month's open:  M(valid_from) + 1 .. M(valid_to)
--     during         at some moment of the month: M(valid_from) .. M(valid_to − 1 µs)
--     touched        at some instant from the open to the close: M(valid_from) .. M(valid_to)
--     starts         1 at the first month of each run of consecutive months with `opening`
-- Money, currency and the account's currency are not stored: the report joins the products
-- (recurring fee, currency) and the accounts (currency) as they are when it runs.
--
-- On Citus, subscriptions and these tables stay on the coordinator (no distribution column
-- placed for them), with their triggers as on one PostgreSQL.

CREATE TABLE subscription_product_steps (
    account_id     text NOT NULL,
    product        text NOT NULL,
    month          date NOT NULL,   -- 'infinity': never undone
    subscriptions  bigint NOT NULL,
    accounts       bigint NOT NULL
);
CREATE INDEX subscription_product_steps_account ON subscription_product_steps (account_id);
CREATE INDEX subscription_product_steps_month ON subscription_product_steps (month);

CREATE TABLE subscription_account_steps (
    account_id  text NOT NULL,
    month       date NOT NULL,
    opening     bigint NOT NULL,
    during      bigint NOT NULL,
    touched     bigint NOT NULL,
    starts      bigint NOT NULL
);
CREATE INDEX subscription_account_steps_account ON subscription_account_steps (account_id);
CREATE INDEX subscription_account_steps_month ON subscription_account_steps (month);

-- Rewrite the steps of ``touched_accounts`` from their subscriptions. Of spans (key, account, f, t)
-- the part of each not covered by the same key and account's earlier spans is pf .. t
-- (empty when pf > t), and a span starts a run when it is not adjacent to an earlier one.
CREATE FUNCTION refresh_subscription_steps(touched_accounts text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- One writer at a time: each statement below then reads what the one before committed
    -- (subscription writers already serialise on account_generation, migration 1250).
    PERFORM pg_advisory_xact_lock(hashtext('subscription_steps'));
    DELETE FROM subscription_product_steps WHERE account_id = ANY (touched_accounts);
    DELETE FROM subscription_account_steps WHERE account_id = ANY (touched_accounts);
    WITH subs AS (
        SELECT s.account_id COLLATE "C" AS account_id, s.product,
               date_trunc('month', s.valid_from AT TIME ZONE 'UTC') AS mf,
               coalesce(date_trunc('month', s.valid_to AT TIME ZONE 'UTC'), 'infinity') AS mt,
               coalesce(date_trunc('month', (s.valid_to AT TIME ZONE 'UTC')
                                            - interval '1 microsecond'), 'infinity') AS mx
        FROM subscriptions s WHERE s.account_id = ANY (touched_accounts)
    ), spans AS (
        SELECT 'p' AS kind, product, account_id, mf AS f, mt - interval '1 month' AS t
        FROM subs
        UNION ALL SELECT 'o', '', account_id, mf + interval '1 month', mt FROM subs
        UNION ALL SELECT 'd', '', account_id, mf, mx FROM subs
        UNION ALL SELECT 'j', '', account_id, mf, mt FROM subs
    ), pieces AS (
        SELECT *, greatest(f, coalesce(covered + interval '1 month', f)) AS pf,
               (covered IS NULL OR f > covered + interval '1 month') AS starts
        FROM (SELECT *, max(t) OVER (PARTITION BY kind, product, account_id ORDER BY f, t
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                        AS covered
              FROM spans WHERE f <= t) c
    ), steps AS (
        -- +1 from the first month, −1 after the last: n of the spans, u of their union
        SELECT p.kind, p.product, p.account_id, e.month, e.n, e.u
        FROM pieces p, LATERAL (VALUES
            (p.f, 1, 0), (p.t + interval '1 month', -1, 0),
            (p.pf, 0, CASE WHEN p.pf <= p.t THEN 1 ELSE 0 END),
            (p.t + interval '1 month', 0, CASE WHEN p.pf <= p.t THEN -1 ELSE 0 END))
            AS e(month, n, u)
        UNION ALL
        SELECT 's', '', account_id, f, 0, 1 FROM pieces WHERE kind = 'o' AND starts
    ), product AS (
        INSERT INTO subscription_product_steps (account_id, product, month, subscriptions,
                                                accounts)
        SELECT account_id, product, month::date, sum(n), sum(u) FROM steps WHERE kind = 'p'
        GROUP BY 1, 2, 3 HAVING sum(n) <> 0 OR sum(u) <> 0
        RETURNING 1
    )
    INSERT INTO subscription_account_steps (account_id, month, opening, during, touched,
                                            starts)
    SELECT account_id, month::date, coalesce(sum(u) FILTER (WHERE kind = 'o'), 0),
           coalesce(sum(u) FILTER (WHERE kind = 'd'), 0),
           coalesce(sum(u) FILTER (WHERE kind = 'j'), 0),
           coalesce(sum(u) FILTER (WHERE kind = 's'), 0)
    FROM steps WHERE kind <> 'p' GROUP BY 1, 2 HAVING sum(abs(u)) > 0;
END;
$$;

CREATE FUNCTION subscription_steps_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM refresh_subscription_steps(ARRAY(SELECT DISTINCT account_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM refresh_subscription_steps(ARRAY(SELECT DISTINCT account_id FROM old_rows));
    ELSE
        PERFORM refresh_subscription_steps(ARRAY(SELECT account_id FROM new_rows
                                                 UNION SELECT account_id FROM old_rows));
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER subscriptions_steps_inserted AFTER INSERT ON subscriptions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscription_steps_changed();
CREATE TRIGGER subscriptions_steps_updated AFTER UPDATE ON subscriptions
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscription_steps_changed();
CREATE TRIGGER subscriptions_steps_deleted AFTER DELETE ON subscriptions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscription_steps_changed();

-- Backfill: every account's subscriptions.
SELECT refresh_subscription_steps(ARRAY(SELECT DISTINCT account_id FROM subscriptions));
