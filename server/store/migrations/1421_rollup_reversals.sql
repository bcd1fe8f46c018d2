-- Charge totals from the rollups (``GET /v1/charges/totals``, traffic_repo.totals): the
-- totals show charges and reversals apart (count and money of each), and the rollups kept
-- only their net (records = charges − reversals, amount = charged + reversed). Two more sums
-- per rollup row, the reversals' count and money, make the four derivable; the same trigger
-- writes them, in the charges' transaction, at both levels.
--
-- Rows written before have 0 in both; one delta row per key of the charges' reversals
-- (amount, records and units 0) adds what they missed, and compaction folds it in. Months
-- already archived (no charges left) keep 0: totals read the rollups only over months whose
-- charges are still in the database, as the raw sum did.
ALTER TABLE charge_rollups ADD COLUMN reversals bigint NOT NULL DEFAULT 0,
    ADD COLUMN reversed_micros bigint NOT NULL DEFAULT 0;
ALTER TABLE charge_rollups_monthly ADD COLUMN reversals bigint NOT NULL DEFAULT 0,
    ADD COLUMN reversed_micros bigint NOT NULL DEFAULT 0;

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
                                                  u.volume_down, u.quantity)), 0) AS units,
               count(*) FILTER (WHERE n.kind = 'reversal') AS reversals,
               coalesce(sum(n.amount_micros) FILTER (WHERE n.kind = 'reversal'), 0)
                   AS reversed
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
                                    tariff_version_id, amount_micros, records, units,
                          reversals, reversed_micros)
        SELECT account_id, day, kind, zone, currency, tariff_version_id, amount, records, units,
               reversals, reversed
        FROM facts
    )
    INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                        tariff_version_id, amount_micros, records, units,
                      reversals, reversed_micros)
    SELECT account_id, date_trunc('month', day)::date, kind, zone, currency,
           tariff_version_id, sum(amount), sum(records), sum(units),
           sum(reversals), sum(reversed)
    FROM facts GROUP BY 1, 2, 3, 4, 5, 6;
    ELSE
    EXECUTE format($sql$
    WITH facts AS MATERIALIZED (
        SELECT n.account_id, (n.event_time AT TIME ZONE 'UTC')::date AS day, u.kind,
               n.zone, n.currency, n.tariff_version_id, sum(n.amount_micros) AS amount,
               sum(CASE n.kind WHEN 'reversal' THEN -1 ELSE 1 END) AS records,
               coalesce(sum(CASE n.kind WHEN 'reversal' THEN -1 ELSE 1 END
                            * charge_rollup_units(u.kind, u.duration_s, u.volume_up,
                                                  u.volume_down, u.quantity)), 0) AS units,
               count(*) FILTER (WHERE n.kind = 'reversal') AS reversals,
               coalesce(sum(n.amount_micros) FILTER (WHERE n.kind = 'reversal'), 0)
                   AS reversed
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
                          tariff_version_id, amount_micros, records, units,
                          reversals, reversed_micros)
        SELECT account_id, day, kind, zone, currency, tariff_version_id, amount, records, units,
               reversals, reversed
        FROM facts
    )
    INSERT INTO %3$s (account_id, day, service, zone, currency,
                      tariff_version_id, amount_micros, records, units,
                      reversals, reversed_micros)
    SELECT account_id, date_trunc('month', day)::date, kind, zone, currency,
           tariff_version_id, sum(amount), sum(records), sum(units),
           sum(reversals), sum(reversed)
    FROM facts GROUP BY 1, 2, 3, 4, 5, 6 $sql$,
        colocated_shard('usage_records', 'charges', TG_TABLE_NAME),
        colocated_shard('charge_rollups', 'charges', TG_TABLE_NAME),
        colocated_shard('charge_rollups_monthly', 'charges', TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION compact_charge_rollups(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    WITH days AS (
        SELECT DISTINCT day FROM charge_rollups
        WHERE NOT compacted AND day BETWEEN first AND last
    ), gone AS (
        DELETE FROM charge_rollups r USING days d WHERE r.day = d.day
        RETURNING r.*
    ), folded AS (
        INSERT INTO charge_rollups (account_id, day, service, zone, currency,
                                    tariff_version_id, amount_micros, records, units,
                                    reversals, reversed_micros, compacted)
        SELECT account_id, day, service, zone, currency, tariff_version_id,
               sum(amount_micros), sum(records), sum(units), sum(reversals),
               sum(reversed_micros), true
        FROM gone GROUP BY 1, 2, 3, 4, 5, 6
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded) INTO before, after;
    RETURN before - after;
END;
$$;

CREATE OR REPLACE FUNCTION compact_charge_rollups_monthly(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    WITH days AS (
        SELECT DISTINCT day FROM charge_rollups_monthly
        WHERE NOT compacted AND day BETWEEN date_trunc('month', first)::date AND last
    ), gone AS (
        DELETE FROM charge_rollups_monthly r USING days d WHERE r.day = d.day
        RETURNING r.*
    ), folded AS (
        INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                    tariff_version_id, amount_micros, records, units,
                                    reversals, reversed_micros, compacted)
        SELECT account_id, day, service, zone, currency, tariff_version_id,
               sum(amount_micros), sum(records), sum(units), sum(reversals),
               sum(reversed_micros), true
        FROM gone GROUP BY 1, 2, 3, 4, 5, 6
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded) INTO before, after;
    RETURN before - after;
END;
$$;

INSERT INTO charge_rollups (account_id, day, service, zone, currency, tariff_version_id,
                            amount_micros, records, units, reversals, reversed_micros)
SELECT c.account_id, (c.event_time AT TIME ZONE 'UTC')::date, u.kind, c.zone, c.currency,
       c.tariff_version_id, 0, 0, 0, count(*), sum(c.amount_micros)
FROM charges c
LEFT JOIN usage_records u ON u.account_id = c.account_id
    AND u.event_time = c.event_time AND u.usage_id = c.usage_id
WHERE c.kind = 'reversal'
GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                    tariff_version_id, amount_micros, records, units,
                                    reversals, reversed_micros)
SELECT c.account_id, date_trunc('month', c.event_time AT TIME ZONE 'UTC')::date, u.kind,
       c.zone, c.currency, c.tariff_version_id, 0, 0, 0, count(*), sum(c.amount_micros)
FROM charges c
LEFT JOIN usage_records u ON u.account_id = c.account_id
    AND u.event_time = c.event_time AND u.usage_id = c.usage_id
WHERE c.kind = 'reversal'
GROUP BY 1, 2, 3, 4, 5, 6;
