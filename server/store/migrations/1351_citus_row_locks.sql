-- Row locks on invoices that name no account. Citus takes a row lock (FOR UPDATE) only
-- in a statement routed to one shard, i.e. one that names the account; these functions
-- lock what the callers locked before, in the same order, with one statement on one
-- PostgreSQL and one statement per account (or per invoice) on a Citus coordinator.

-- The drafts of ``p_period`` of these accounts, in (account, invoice) order.
CREATE FUNCTION lock_draft_invoices(accounts text[], p_period text) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    one text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN QUERY SELECT i.invoice_id FROM invoices i WHERE i.account_id = ANY(accounts)
            AND i.period = p_period AND i.status = 'draft'
            ORDER BY i.account_id, i.invoice_id FOR UPDATE;
        RETURN;
    END IF;
    FOR one IN SELECT DISTINCT a FROM unnest(accounts) a ORDER BY 1 LOOP
        RETURN QUERY SELECT i.invoice_id FROM invoices i WHERE i.account_id = one
            AND i.period = p_period AND i.status = 'draft' ORDER BY i.invoice_id FOR UPDATE;
    END LOOP;
END;
$$;

-- These invoices (account, id, status), locked in id order.
CREATE FUNCTION lock_invoices(ids bigint[])
RETURNS TABLE (account_id text, invoice_id bigint, status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    one record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN QUERY SELECT i.account_id, i.invoice_id, i.status FROM invoices i
            WHERE i.invoice_id = ANY(ids) ORDER BY i.invoice_id FOR UPDATE;
        RETURN;
    END IF;
    FOR one IN SELECT i.account_id AS a, i.invoice_id AS id FROM invoices i
               WHERE i.invoice_id = ANY(ids) ORDER BY i.invoice_id LOOP
        RETURN QUERY SELECT i.account_id, i.invoice_id, i.status FROM invoices i
            WHERE i.account_id = one.a AND i.invoice_id = one.id FOR UPDATE;
    END LOOP;
END;
$$;
