-- Suspense distributes with the traffic (DESIGN.md §7): on Citus it is distributed by
-- account_id, co-located with usage, so a suspended record of a known account (no tariff,
-- a rating error, a bad field) lands on that account's shard and one account's suspense is
-- one shard's query. A record whose account is unknown (UNKNOWN_ACCOUNT, undecodable
-- bytes) is stored under the reserved account '' — no account has an empty id, and a
-- distributed table holds no NULL in its distribution column. Those rows share one shard:
-- they are the exception traffic, and what the roaming settlement and triage read of them
-- (reason UNKNOWN_ACCOUNT) becomes a query routed to that shard. The repository reads ''
-- back as no account.
--
-- The primary key takes the account first (Citus requires it); ids stay unique (one
-- identity hands them out on the coordinator) and an index on the id finds a row by it.
-- Row locks name the account on Citus (a FOR UPDATE must be routed to one shard):
-- lock_suspense and claim_suspense lock what the callers locked before, with one
-- statement on one PostgreSQL and one per account on a Citus coordinator (as 1351 does
-- for invoices).

UPDATE suspense SET account_id = '' WHERE account_id IS NULL;
ALTER TABLE suspense ALTER COLUMN account_id SET DEFAULT '';
ALTER TABLE suspense ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE suspense DROP CONSTRAINT suspense_pkey;
ALTER TABLE suspense ADD PRIMARY KEY (account_id, suspense_id);
CREATE INDEX suspense_by_id ON suspense (suspense_id);

-- These rows, locked in id order; returns the ids locked.
CREATE FUNCTION lock_suspense(ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    one record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN QUERY SELECT s.suspense_id FROM suspense s WHERE s.suspense_id = ANY(ids)
            ORDER BY s.suspense_id FOR UPDATE;
        RETURN;
    END IF;
    FOR one IN SELECT s.account_id AS a, s.suspense_id AS id FROM suspense s
               WHERE s.suspense_id = ANY(ids) ORDER BY s.suspense_id LOOP
        RETURN QUERY SELECT s.suspense_id FROM suspense s
            WHERE s.account_id = one.a AND s.suspense_id = one.id FOR UPDATE;
    END LOOP;
END;
$$;

-- Up to ``lim`` open rows holding a record (of ``ids`` when given, of ``why`` when given),
-- locked for a retry; rows another transaction holds are skipped. On Citus the candidates
-- are read first, then locked account by account with SKIP LOCKED, still open.
CREATE FUNCTION claim_suspense(ids bigint[], why text, lim integer) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    one record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN QUERY SELECT s.suspense_id FROM suspense s
            WHERE s.state = 'open' AND s.record IS NOT NULL
              AND (ids IS NULL OR s.suspense_id = ANY(ids)) AND (why IS NULL OR s.reason = why)
            ORDER BY s.suspense_id LIMIT lim FOR UPDATE SKIP LOCKED;
        RETURN;
    END IF;
    FOR one IN SELECT s.account_id AS a, array_agg(s.suspense_id) AS found FROM (
                   SELECT s.account_id, s.suspense_id FROM suspense s
                   WHERE s.state = 'open' AND s.record IS NOT NULL
                     AND (ids IS NULL OR s.suspense_id = ANY(ids))
                     AND (why IS NULL OR s.reason = why)
                   ORDER BY s.suspense_id LIMIT lim) s
               GROUP BY s.account_id ORDER BY s.account_id LOOP
        RETURN QUERY SELECT s.suspense_id FROM suspense s
            WHERE s.account_id = one.a AND s.suspense_id = ANY(one.found)
              AND s.state = 'open' ORDER BY s.suspense_id FOR UPDATE SKIP LOCKED;
    END LOOP;
END;
$$;
