-- Analytics rollups (DESIGN.md §10): the money and usage of charges per UTC day × account ×
-- service × zone × currency × tariff version, so that reports over a year answer from here
-- and never scan the charges.
--
-- A statement trigger on charges keeps them in the transaction that writes the charges,
-- whoever writes them (pipeline batches, merged partials, suspense retries, rerates): one
-- INSERT … SELECT per statement over its transition table, joined to the usage row for the
-- service (usage_records.kind) and its units. A reversal counts -1 record and minus its
-- units, so a rerated usage stays one record in the rollup while its money moves from the
-- old tariff version to the new.
--
-- Rows are deltas, appended without locks (concurrent batches of one account and day never
-- wait on each other): a report sums them. ``compact_charge_rollups`` folds the deltas of
-- each day into one row per key, in one statement that keeps every sum.

CREATE TABLE charge_rollups (
    account_id         text NOT NULL,
    day                date NOT NULL,
    service            text,            -- usage_records.kind: voice | sms | data | event
    zone               text,
    currency           char(3) NOT NULL,
    tariff_version_id  bigint,
    amount_micros      bigint NOT NULL, -- Σ charges.amount_micros (reversals negative)
    records            bigint NOT NULL, -- charges − reversals: the usage records charged
    units              numeric NOT NULL, -- seconds (voice), bytes (data), messages (sms),
                                         -- quantity (event), signed like ``records``
    compacted          boolean NOT NULL DEFAULT false
);
CREATE INDEX charge_rollups_day ON charge_rollups (day, account_id);
CREATE INDEX charge_rollups_fresh ON charge_rollups (day) WHERE NOT compacted;

CREATE FUNCTION charge_rollup_units(kind text, duration_s bigint, volume_up bigint,
                                    volume_down bigint, quantity numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE kind
        WHEN 'voice' THEN coalesce(duration_s, 0)
        WHEN 'data' THEN coalesce(volume_up, 0) + coalesce(volume_down, 0)
        WHEN 'sms' THEN 1
        ELSE coalesce(quantity, 1)
    END
$$;

CREATE FUNCTION roll_up_charges() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO charge_rollups (account_id, day, service, zone, currency, tariff_version_id,
                                amount_micros, records, units)
    SELECT n.account_id, (n.event_time AT TIME ZONE 'UTC')::date, u.kind, n.zone, n.currency,
           n.tariff_version_id, sum(n.amount_micros),
           sum(CASE n.kind WHEN 'reversal' THEN -1 ELSE 1 END),
           coalesce(sum(CASE n.kind WHEN 'reversal' THEN -1 ELSE 1 END
                        * charge_rollup_units(u.kind, u.duration_s, u.volume_up,
                                              u.volume_down, u.quantity)), 0)
    FROM new_charges n
    LEFT JOIN usage_records u ON u.account_id = n.account_id
        AND u.event_time = n.event_time AND u.usage_id = n.usage_id
    GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END;
$$;

CREATE TRIGGER charges_roll_up AFTER INSERT ON charges
    REFERENCING NEW TABLE AS new_charges
    FOR EACH STATEMENT EXECUTE FUNCTION roll_up_charges();

-- Fold the deltas of the days [first, last] that have any into one row per key. Rows
-- appended meanwhile by other transactions are not in this statement's snapshot: they
-- stay, as deltas, for the next run. Returns the number of rows folded away.
CREATE FUNCTION compact_charge_rollups(first date, last date) RETURNS bigint
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
                                    compacted)
        SELECT account_id, day, service, zone, currency, tariff_version_id,
               sum(amount_micros), sum(records), sum(units), true
        FROM gone GROUP BY 1, 2, 3, 4, 5, 6
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded) INTO before, after;
    RETURN before - after;
END;
$$;

-- Backfill: the charges already written, compacted.
INSERT INTO charge_rollups (account_id, day, service, zone, currency, tariff_version_id,
                            amount_micros, records, units, compacted)
SELECT c.account_id, (c.event_time AT TIME ZONE 'UTC')::date, u.kind, c.zone, c.currency,
       c.tariff_version_id, sum(c.amount_micros),
       sum(CASE c.kind WHEN 'reversal' THEN -1 ELSE 1 END),
       coalesce(sum(CASE c.kind WHEN 'reversal' THEN -1 ELSE 1 END
                    * charge_rollup_units(u.kind, u.duration_s, u.volume_up, u.volume_down,
                                          u.quantity)), 0),
       true
FROM charges c
LEFT JOIN usage_records u ON u.account_id = c.account_id
    AND u.event_time = c.event_time AND u.usage_id = c.usage_id
GROUP BY 1, 2, 3, 4, 5, 6;
