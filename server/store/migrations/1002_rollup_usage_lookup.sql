-- The rollup trigger finds each charge's usage by its primary key, one index probe per
-- charge: as a plain join, the planner hashed the whole month's usage partition for every
-- batch (a sequential scan that grows with the month), and JIT-compiled the statement for
-- large ones. LIMIT 1 in a LATERAL subquery keeps it a per-row lookup whatever the
-- statistics say; JIT is off for it (it cost more than the statement it compiled).
CREATE OR REPLACE FUNCTION roll_up_charges() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
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
    LEFT JOIN LATERAL (
        SELECT u.kind, u.duration_s, u.volume_up, u.volume_down, u.quantity
        FROM usage_records u
        WHERE u.account_id = n.account_id AND u.event_time = n.event_time
          AND u.usage_id = n.usage_id
        LIMIT 1
    ) u ON true
    GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END;
$$;
