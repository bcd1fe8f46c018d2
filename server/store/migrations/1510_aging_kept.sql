-- Aging as of today from state kept by the code that writes the ledger (issue #24), so that
-- it reads rows per account with something open, not every ledger entry and allocation.
--
-- Every ledger entry and allocation moves money between (account, currency, due date) cells:
--   an item (invoice, fee): + its amount into its own due date, from its entry date;
--   a payment, refund, reversal: its amount into the credit cell (due_date NULL);
--   an entry applied to an item (credit note, write-off and its reversal): its amount into
--     the item's due date, from the later of its date and the item's;
--   an allocation: − its amount out of the item's due date and + into credit, from the
--     later of its date and the item's.
-- That is the ledger's aging (repo._AGING) term by term, so Σ of the moves dated up to D
-- bucketed by D − due date is the aging as of D, to the micro-unit.
--
-- aging_open holds those moves as delta rows, appended by every writer of ledger entries
-- and allocations in its own transaction (server/collections/aging_kept_repo.py; the PL/pgSQL
-- writers below): inserts only, so concurrent writers never wait on a shared row. Each
-- carries from_on, the day it starts to count. Compaction folds an account's rows into one
-- per (currency, due date, from_on), from_on NULL for every day up to the day before it
-- runs, and drops the cells that net to zero, but for one credit cell per from_on kept
-- (even at zero) so that an account with history is still listed, as the ledger's aging
-- lists it. It moves the deltas it folds into aging_totals, the level without the account
-- that totals across accounts read (one row per currency and due date), in the same
-- transaction; readers add the deltas not folded yet (the partial index finds them).
-- A reader may use the kept rows for any date from the day before the last compaction on.

CREATE TABLE aging_open (
    account_id     text NOT NULL,
    currency       char(3) NOT NULL,
    due_date       date,      -- the item's due date; NULL: payment money (credit)
    from_on        date,      -- counts from this day; NULL: folded, counts on any day read
    amount_micros  bigint NOT NULL,
    compacted      boolean NOT NULL DEFAULT false
);
CREATE INDEX aging_open_account ON aging_open (account_id, currency);
CREATE INDEX aging_open_fresh ON aging_open (currency) WHERE NOT compacted;
-- the folded rows whose day has come, which the next compaction folds into from_on NULL
CREATE INDEX aging_open_dated ON aging_open (from_on) WHERE compacted AND from_on IS NOT NULL;

-- No account: on Citus it stays on the coordinator, written by compaction only.
CREATE TABLE aging_totals (
    currency       char(3) NOT NULL,
    due_date       date,
    from_on        date,
    amount_micros  bigint NOT NULL
);

-- The moves of the whole ledger, as the writers append them (backfill, rebuild, tests).
CREATE VIEW aging_moves AS
SELECT e.account_id, e.currency, coalesce(e.due_date, i.due_date) AS due_date,
       greatest(e.entry_date, i.entry_date) AS from_on, e.amount_micros
FROM ledger_entries e
LEFT JOIN ledger_entries i ON i.account_id = e.account_id AND i.entry_id = e.applies_to
UNION ALL
SELECT a.account_id, i.currency, m.due_date, greatest(a.allocated_on, i.entry_date),
       m.amount_micros
FROM payment_allocations a
JOIN ledger_entries i ON i.account_id = a.account_id AND i.entry_id = a.entry_id
CROSS JOIN LATERAL (VALUES (i.due_date, -a.amount_micros),
                           (NULL::date, a.amount_micros)) AS m(due_date, amount_micros);

-- Fold the deltas of every account that has some into its compacted rows, and into the
-- account-less level; rows folded away. Readers of the level beside the deltas take the
-- same lock shared (on Citus the coordinator and the workers commit one after the other).
CREATE FUNCTION compact_aging() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cutoff date := (now() AT TIME ZONE 'UTC')::date - 1;
    before bigint;
    after bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('compact_aging'));
    WITH touched AS (
        SELECT DISTINCT account_id FROM aging_open WHERE NOT compacted
        UNION SELECT DISTINCT account_id FROM aging_open
        WHERE compacted AND from_on <= cutoff
    ), gone AS MATERIALIZED (
        DELETE FROM aging_open o USING touched t WHERE o.account_id = t.account_id
        RETURNING o.account_id, o.currency, o.due_date,
                  CASE WHEN o.from_on <= cutoff THEN NULL ELSE o.from_on END AS from_on,
                  o.amount_micros, o.compacted
    ), folded AS (
        INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros,
                                compacted)
        SELECT account_id, currency, due_date, from_on, sum(amount_micros), true
        FROM gone WHERE due_date IS NOT NULL GROUP BY 1, 2, 3, 4
        HAVING sum(amount_micros) <> 0
        UNION ALL
        SELECT account_id, currency, NULL, from_on,
               coalesce(sum(amount_micros) FILTER (WHERE due_date IS NULL), 0), true
        FROM gone GROUP BY 1, 2, 4
        RETURNING 1
    ), old AS MATERIALIZED (
        DELETE FROM aging_totals RETURNING currency, due_date,
            CASE WHEN from_on <= cutoff THEN NULL ELSE from_on END AS from_on, amount_micros
    ), level AS (
        SELECT currency, due_date, from_on, amount_micros FROM old
        UNION ALL
        SELECT currency, due_date, from_on, amount_micros FROM gone WHERE NOT compacted
    ), moved AS (  -- run though unread: a data-modifying WITH always runs, once
        INSERT INTO aging_totals (currency, due_date, from_on, amount_micros)
        SELECT currency, due_date, from_on, sum(amount_micros) FROM level
        WHERE due_date IS NOT NULL GROUP BY 1, 2, 3 HAVING sum(amount_micros) <> 0
        UNION ALL
        SELECT currency, NULL, from_on,
               coalesce(sum(amount_micros) FILTER (WHERE due_date IS NULL), 0)
        FROM level GROUP BY 1, 3
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded) INTO before, after;
    RETURN before - after;
END;
$$;

-- The kept rows formed anew from the ledger (this migration's backfill; seeds that write
-- the ledger by plain SQL). One statement, one snapshot: a writer committing meanwhile has
-- both its ledger rows and its deltas seen, or neither.
CREATE FUNCTION rebuild_aging() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('compact_aging'));
    WITH gone AS (DELETE FROM aging_open RETURNING 1),
         old AS (DELETE FROM aging_totals RETURNING 1)
    INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)
    SELECT account_id, currency, due_date, from_on, sum(amount_micros)
    FROM aging_moves GROUP BY 1, 2, 3, 4;  -- the deletes run though unread
    PERFORM compact_aging();
END;
$$;

-- The PL/pgSQL writers of allocations and entries append their moves too (the rule above:
-- every writer of the ledger keeps the aging in its transaction). Same bodies as 0703 and
-- 0704 otherwise.
CREATE OR REPLACE FUNCTION collections_settle(p_account text, p_currency char(3),
                                              only_payment bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    pay record;
    item record;
    left_over bigint;
    take bigint;
    total bigint := 0;
    on_day date;
BEGIN
    FOR pay IN
        SELECT p.payment_id, p.received_on,
               collections_payment_unapplied(p.account_id, p.payment_id) AS unapplied,
               (SELECT max(a.allocated_on) FROM payment_allocations a
                WHERE a.account_id = p.account_id AND a.payment_id = p.payment_id
                AND a.amount_micros < 0) AS released_on
        FROM payments p
        WHERE p.account_id = p_account AND p.currency = p_currency
          AND (only_payment IS NULL OR p.payment_id = only_payment)
        ORDER BY p.received_on, p.payment_id
    LOOP
        left_over := pay.unapplied;
        CONTINUE WHEN left_over <= 0;
        FOR item IN
            SELECT e.entry_id, e.entry_date, e.due_date,
                   collections_item_open(e.account_id, e.entry_id) AS open,
                   collections_item_released_on(e.account_id, e.entry_id) AS item_released_on
            FROM ledger_entries e
            WHERE e.account_id = p_account AND e.currency = p_currency
              AND e.kind IN ('invoice', 'fee')
            ORDER BY e.due_date, e.entry_id
        LOOP
            EXIT WHEN left_over = 0;
            CONTINUE WHEN item.open <= 0;
            take := least(left_over, item.open);
            on_day := greatest(pay.received_on, item.entry_date,
                               coalesce(pay.released_on, pay.received_on),
                               coalesce(item.item_released_on, pay.received_on));
            INSERT INTO payment_allocations (account_id, payment_id, entry_id, amount_micros,
                                             allocated_on)
            VALUES (p_account, pay.payment_id, item.entry_id, take, on_day);
            INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)
            VALUES (p_account, p_currency, item.due_date, on_day, -take),
                   (p_account, p_currency, NULL, on_day, take);
            left_over := left_over - take;
            total := total + take;
        END LOOP;
    END LOOP;
    RETURN total;
END;
$$;

CREATE OR REPLACE FUNCTION collections_release_excess(p_account text, p_entry bigint, p_on date)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    excess bigint := -collections_item_open(p_account, p_entry);
    written_off bigint;
    alloc record;
    take bigint;
    item record;
    on_day date;
BEGIN
    IF excess <= 0 THEN
        RETURN;
    END IF;
    SELECT e.currency, e.due_date, e.entry_date, e.invoice_id INTO item FROM ledger_entries e
    WHERE e.account_id = p_account AND e.entry_id = p_entry;
    SELECT coalesce(-sum(amount_micros), 0) INTO written_off FROM ledger_entries
    WHERE account_id = p_account AND applies_to = p_entry
      AND kind IN ('write_off', 'write_off_reversal');
    IF written_off > 0 THEN
        take := least(excess, written_off);
        on_day := greatest(p_on, item.entry_date);
        INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,
                                    applies_to, invoice_id, description, reason)
        VALUES (p_account, 'write_off_reversal', item.currency, take, on_day, p_entry,
                item.invoice_id, 'Write-off replaced by a credit note', 'credit note');
        INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)
        VALUES (p_account, item.currency, item.due_date, on_day, take);
        excess := excess - take;
    END IF;
    FOR alloc IN
        SELECT a.payment_id, sum(a.amount_micros) AS net, max(a.allocated_on) AS last_on,
               max(a.allocation_id) AS last_id
        FROM payment_allocations a
        WHERE a.account_id = p_account AND a.entry_id = p_entry
        GROUP BY a.payment_id HAVING sum(a.amount_micros) > 0
        ORDER BY max(a.allocation_id) DESC
    LOOP
        EXIT WHEN excess = 0;
        take := least(excess, alloc.net);
        on_day := greatest(p_on, alloc.last_on);
        INSERT INTO payment_allocations (account_id, payment_id, entry_id, amount_micros,
                                         allocated_on)
        VALUES (p_account, alloc.payment_id, p_entry, -take, on_day);
        INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)
        VALUES (p_account, item.currency, item.due_date, greatest(on_day, item.entry_date),
                take),
               (p_account, item.currency, NULL, greatest(on_day, item.entry_date), -take);
        excess := excess - take;
    END LOOP;
END;
$$;

SELECT rebuild_aging();
