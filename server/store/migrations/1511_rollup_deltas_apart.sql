-- The rollup deltas pay for one index each, not for every index of the folded rows (issue
-- #24: the write set per ingested record). Ingest appends about one daily and a fraction of
-- a monthly delta per charge; each delta row updated every index of its table (daily: three,
-- monthly: two) though only compaction looks for deltas by day, and the other indexes serve
-- readers of folded rows. Both levels become partitioned by ``compacted``: the deltas
-- (``…_deltas``, false) and the folded rows (``…_kept``, true) have the columns, the names
-- and the readers they had — a query of ``charge_rollups`` reads both partitions, one with
-- ``NOT compacted`` or ``compacted`` reads one — and each partition has the indexes its
-- readers need:
--
-- charge_rollups_deltas (day): compaction's search for the days holding deltas and its
--   fold of each (compact_charge_rollups, fold_charge_rollups: ``WHERE NOT compacted AND day
--   BETWEEN``, ``DELETE … WHERE day = d``), and the readers adding the deltas not folded yet
--   over a range of days (traffic_repo._rolled_all, analytics.repo's account-less levels).
--   A reader of one account's deltas filters this range: compaction keeps it to about a
--   minute of traffic (``analytics.compact_interval_s``).
-- charge_rollups_kept (day, account_id): the fold's delete of a day's rows, the counts of a
--   day's compacted rows (count_charge_groups, the week level), reports over days across
--   accounts (analytics.repo report rows, daily_series).
-- charge_rollups_kept (account_id, day): one account's days — the console's account chart
--   (console.repo), an account's charge totals (traffic_repo._rolled), a flag's detail
--   (analytics.repo.daily_zones).
-- charge_rollups_monthly_deltas (day): as charge_rollups_deltas, for the monthly level.
-- charge_rollups_monthly_kept (day, account_id): the monthly fold, counts and
--   sum_charge_account_months, monthly reports, an account's whole months (traffic_repo).
--
-- Writers COPY into the parent (server/store/charge_writes.py), which routes each row to its
-- partition; compaction's DELETE … RETURNING and INSERT of folded rows do the same. The rows
-- of both tables move as they are. On Citus the new tables are placed by account after the
-- migrations (server/store/citus.py), their partitions with them. Citus sends a DDL
-- statement's text to the workers and refuses a text holding several statements, as a
-- migration file does: each runs on its own, from PL/pgSQL (as in migration 1475).
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
DO $$
BEGIN
    ALTER TABLE charge_rollups RENAME TO charge_rollups_before_1511;
    ALTER TABLE charge_rollups_monthly RENAME TO charge_rollups_monthly_before_1511;

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
        compacted          boolean NOT NULL DEFAULT false,
        reversals          bigint NOT NULL DEFAULT 0,
        reversed_micros    bigint NOT NULL DEFAULT 0
    ) PARTITION BY LIST (compacted);
    CREATE TABLE charge_rollups_deltas PARTITION OF charge_rollups FOR VALUES IN (false);
    CREATE TABLE charge_rollups_kept PARTITION OF charge_rollups FOR VALUES IN (true);
    CREATE INDEX charge_rollups_deltas_day ON charge_rollups_deltas (day);
    CREATE INDEX charge_rollups_kept_day ON charge_rollups_kept (day, account_id);
    CREATE INDEX charge_rollups_kept_account ON charge_rollups_kept (account_id, day);

    CREATE TABLE charge_rollups_monthly (LIKE charge_rollups INCLUDING DEFAULTS)
        PARTITION BY LIST (compacted);
    CREATE TABLE charge_rollups_monthly_deltas PARTITION OF charge_rollups_monthly
        FOR VALUES IN (false);
    CREATE TABLE charge_rollups_monthly_kept PARTITION OF charge_rollups_monthly
        FOR VALUES IN (true);
    CREATE INDEX charge_rollups_monthly_deltas_day ON charge_rollups_monthly_deltas (day);
    CREATE INDEX charge_rollups_monthly_kept_day ON charge_rollups_monthly_kept (day, account_id);

    INSERT INTO charge_rollups (account_id, day, service, zone, currency, tariff_version_id,
                                amount_micros, records, units, compacted, reversals,
                                reversed_micros)
    SELECT account_id, day, service, zone, currency, tariff_version_id, amount_micros, records,
           units, compacted, reversals, reversed_micros
    FROM charge_rollups_before_1511;
    INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                        tariff_version_id, amount_micros, records, units,
                                        compacted, reversals, reversed_micros)
    SELECT account_id, day, service, zone, currency, tariff_version_id, amount_micros, records,
           units, compacted, reversals, reversed_micros
    FROM charge_rollups_monthly_before_1511;

    DROP TABLE charge_rollups_before_1511;
    DROP TABLE charge_rollups_monthly_before_1511;
END;
$$;
