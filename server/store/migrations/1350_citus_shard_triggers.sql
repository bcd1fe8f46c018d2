-- The statement triggers that join their transition table to another traffic table, made to
-- work on Citus too (DESIGN.md §7; server/store/citus.py). On Citus such a trigger fires on
-- a shard of its table, on a worker, where a query naming the distributed table cannot be
-- planned against a transition table. Every row of the statement belongs to that shard's
-- accounts, and the rows it needs of the other table are on that table's co-located shard,
-- on the same worker: so there the trigger runs the same statement on the shards by name.
-- On one PostgreSQL the trigger fires on the table itself (TG_TABLE_NAME is its name): the
-- rollup and the ledger entries run their statements as before, word for word; the link
-- checks run the same queries built with the table names (EXECUTE).

-- The name of ``target``'s shard co-located with ``fired_on``, the shard of ``logical`` a
-- trigger fired on (Citus names shards <table>_<shard id>; co-located shards cover the same
-- hash range).
CREATE FUNCTION colocated_shard(target regclass, logical regclass, fired_on name)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    shard bigint := substring(fired_on FROM length(logical::text) + 2)::bigint;
    other bigint;
BEGIN
    EXECUTE 'SELECT o.shardid FROM pg_dist_shard s JOIN pg_dist_shard o'
            ' ON o.logicalrelid = $1 AND o.shardminvalue = s.shardminvalue'
            ' WHERE s.shardid = $2' INTO other USING target, shard;
    IF other IS NULL THEN
        RAISE EXCEPTION 'no shard of % co-located with %', target, fired_on;
    END IF;
    RETURN format('%I', target::text || '_' || other);
END;
$$;

CREATE OR REPLACE FUNCTION roll_up_charges() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    IF TG_TABLE_NAME = 'charges' THEN
    WITH facts AS MATERIALIZED (
        SELECT n.account_id, (n.event_time AT TIME ZONE 'UTC')::date AS day, u.kind,
               n.zone, n.currency, n.tariff_version_id, sum(n.amount_micros) AS amount,
               sum(CASE n.kind WHEN 'reversal' THEN -1 ELSE 1 END) AS records,
               coalesce(sum(CASE n.kind WHEN 'reversal' THEN -1 ELSE 1 END
                            * charge_rollup_units(u.kind, u.duration_s, u.volume_up,
                                                  u.volume_down, u.quantity)), 0) AS units
        FROM new_charges n
        LEFT JOIN LATERAL (
            SELECT u.kind, u.duration_s, u.volume_up, u.volume_down, u.quantity
            FROM usage_records u
            WHERE u.account_id = n.account_id AND u.event_time = n.event_time
              AND u.usage_id = n.usage_id
            LIMIT 1
        ) u ON true
        GROUP BY 1, 2, 3, 4, 5, 6
    ), daily AS (
        INSERT INTO charge_rollups (account_id, day, service, zone, currency,
                                    tariff_version_id, amount_micros, records, units)
        SELECT account_id, day, kind, zone, currency, tariff_version_id, amount, records, units
        FROM facts
    )
    INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                        tariff_version_id, amount_micros, records, units)
    SELECT account_id, date_trunc('month', day)::date, kind, zone, currency,
           tariff_version_id, sum(amount), sum(records), sum(units)
    FROM facts GROUP BY 1, 2, 3, 4, 5, 6;
    ELSE
    EXECUTE format($sql$
    WITH facts AS MATERIALIZED (
        SELECT n.account_id, (n.event_time AT TIME ZONE 'UTC')::date AS day, u.kind,
               n.zone, n.currency, n.tariff_version_id, sum(n.amount_micros) AS amount,
               sum(CASE n.kind WHEN 'reversal' THEN -1 ELSE 1 END) AS records,
               coalesce(sum(CASE n.kind WHEN 'reversal' THEN -1 ELSE 1 END
                            * charge_rollup_units(u.kind, u.duration_s, u.volume_up,
                                                  u.volume_down, u.quantity)), 0) AS units
        FROM new_charges n
        LEFT JOIN LATERAL (
            SELECT u.kind, u.duration_s, u.volume_up, u.volume_down, u.quantity
            FROM %1$s u
            WHERE u.account_id = n.account_id AND u.event_time = n.event_time
              AND u.usage_id = n.usage_id
            LIMIT 1
        ) u ON true
        GROUP BY 1, 2, 3, 4, 5, 6
    ), daily AS (
        INSERT INTO %2$s (account_id, day, service, zone, currency,
                          tariff_version_id, amount_micros, records, units)
        SELECT account_id, day, kind, zone, currency, tariff_version_id, amount, records, units
        FROM facts
    )
    INSERT INTO %3$s (account_id, day, service, zone, currency,
                      tariff_version_id, amount_micros, records, units)
    SELECT account_id, date_trunc('month', day)::date, kind, zone, currency,
           tariff_version_id, sum(amount), sum(records), sum(units)
    FROM facts GROUP BY 1, 2, 3, 4, 5, 6 $sql$,
        colocated_shard('usage_records', 'charges', TG_TABLE_NAME),
        colocated_shard('charge_rollups', 'charges', TG_TABLE_NAME),
        colocated_shard('charge_rollups_monthly', 'charges', TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION refuse_links_to_finalised() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    lines text := 'invoice_lines';
    invoices text := 'invoices';
    bad boolean;
BEGIN
    IF TG_TABLE_NAME <> 'invoice_line_charges' THEN
        lines := colocated_shard('invoice_lines', 'invoice_line_charges', TG_TABLE_NAME);
        invoices := colocated_shard('invoices', 'invoice_line_charges', TG_TABLE_NAME);
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT account_id, invoice_id,'
                   ' line_no FROM new_links) n LEFT JOIN %s l'
                   ' USING (account_id, invoice_id, line_no) WHERE l.line_no IS NULL)', lines)
        INTO bad;
    IF bad THEN
        RAISE EXCEPTION 'a charge link names no invoice line'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT account_id, invoice_id'
                   ' FROM new_links) n JOIN %s i USING (account_id, invoice_id)'
                   ' WHERE i.status = ''finalised'')', invoices) INTO bad;
    IF bad THEN
        RAISE EXCEPTION 'charges cannot be linked to a finalised invoice'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION refuse_finalised_link_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    invoices text := 'invoices';
    bad boolean;
BEGIN
    IF TG_TABLE_NAME <> 'invoice_line_charges' THEN
        invoices := colocated_shard('invoices', 'invoice_line_charges', TG_TABLE_NAME);
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT account_id, invoice_id'
                   ' FROM old_links) o JOIN %s i USING (account_id, invoice_id)'
                   ' WHERE i.status = ''finalised'')', invoices) INTO bad;
    IF bad THEN
        RAISE EXCEPTION 'links of a finalised invoice cannot change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION refuse_orphaned_links() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    links text := 'invoice_line_charges';
    bad boolean;
BEGIN
    IF TG_TABLE_NAME <> 'invoice_lines' THEN
        links := colocated_shard('invoice_line_charges', 'invoice_lines', TG_TABLE_NAME);
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM old_lines o JOIN %s l'
                   ' USING (account_id, invoice_id, line_no))', links) INTO bad;
    IF bad THEN
        RAISE EXCEPTION 'invoice lines still linked to charges cannot be deleted'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

-- On a shard the ledger entries are inserted through the distributed table, row by row
-- (routed to the co-located shard, on this worker): their ids come from its sequence.
CREATE OR REPLACE FUNCTION collections_invoices_finalised() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    acct record;
    inv record;
BEGIN
    IF TG_TABLE_NAME = 'invoices' THEN
    INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date, due_date,
                                invoice_id, description)
    SELECT n.account_id, 'invoice', n.currency, n.payable_micros, n.issue_date,
           coalesce(n.due_date, n.issue_date), n.invoice_id, 'Invoice ' || n.number_text
    FROM new_invoices n
    WHERE n.status = 'finalised' AND n.payable_micros > 0
      AND NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.account_id = n.account_id
                      AND e.kind = 'invoice' AND e.invoice_id = n.invoice_id);
    FOR acct IN
        SELECT DISTINCT n.account_id, n.currency FROM new_invoices n
        WHERE n.status = 'finalised' AND n.payable_micros > 0
          AND EXISTS (SELECT 1 FROM payments p WHERE p.account_id = n.account_id
                      AND p.currency = n.currency
                      AND collections_payment_unapplied(p.account_id, p.payment_id) > 0)
        ORDER BY 1, 2
    LOOP
        PERFORM collections_lock(acct.account_id);
        PERFORM collections_settle(acct.account_id, acct.currency);
    END LOOP;
    RETURN NULL;
    END IF;

    FOR inv IN EXECUTE format(
        'SELECT n.account_id, n.currency, n.payable_micros, n.issue_date, n.due_date,'
        '       n.invoice_id, n.number_text FROM new_invoices n'
        ' WHERE n.status = ''finalised'' AND n.payable_micros > 0'
        '   AND NOT EXISTS (SELECT 1 FROM %s e WHERE e.account_id = n.account_id'
        '                   AND e.kind = ''invoice'' AND e.invoice_id = n.invoice_id)'
        ' ORDER BY n.invoice_id',
        colocated_shard('ledger_entries', 'invoices', TG_TABLE_NAME))
    LOOP
        INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,
                                    due_date, invoice_id, description)
        VALUES (inv.account_id, 'invoice', inv.currency, inv.payable_micros, inv.issue_date,
                coalesce(inv.due_date, inv.issue_date), inv.invoice_id,
                'Invoice ' || inv.number_text);
    END LOOP;
    FOR acct IN EXECUTE format(
        'SELECT DISTINCT n.account_id, n.currency FROM new_invoices n'
        ' WHERE n.status = ''finalised'' AND n.payable_micros > 0'
        '   AND EXISTS (SELECT 1 FROM %s p WHERE p.account_id = n.account_id'
        '               AND p.currency = n.currency'
        '               AND collections_payment_unapplied(p.account_id, p.payment_id) > 0)'
        ' ORDER BY 1, 2', colocated_shard('payments', 'invoices', TG_TABLE_NAME))
    LOOP
        PERFORM collections_lock(acct.account_id);
        PERFORM collections_settle(acct.account_id, acct.currency);
    END LOOP;
    RETURN NULL;
END;
$$;
