-- The collections helpers that read one account's ledger, as PL/pgSQL: Citus cannot plan a
-- statement of an SQL-language function whose filters are the function's parameters (it
-- sees them as unbound), while PL/pgSQL hands them over as values and each statement is a
-- query routed to the account's shard. Same statements, same results on one PostgreSQL.

CREATE OR REPLACE FUNCTION collections_item_open(p_account text, p_entry bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT e.amount_micros
         + coalesce((SELECT sum(c.amount_micros) FROM ledger_entries c
                     WHERE c.account_id = p_account AND c.applies_to = p_entry), 0)
         - coalesce((SELECT sum(a.amount_micros) FROM payment_allocations a
                     WHERE a.account_id = p_account AND a.entry_id = p_entry), 0)
    FROM ledger_entries e WHERE e.account_id = p_account AND e.entry_id = p_entry);
END;
$$;

CREATE OR REPLACE FUNCTION collections_payment_unapplied(p_account text, p_payment bigint)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT p.amount_micros
         - coalesce((SELECT sum(a.amount_micros) FROM payment_allocations a
                     WHERE a.account_id = p_account AND a.payment_id = p_payment), 0)
         - coalesce((SELECT sum(e.amount_micros) FROM ledger_entries e
                     WHERE e.account_id = p_account AND e.payment_id = p_payment
                     AND e.kind IN ('refund', 'reversal')), 0)
    FROM payments p WHERE p.account_id = p_account AND p.payment_id = p_payment);
END;
$$;

CREATE OR REPLACE FUNCTION collections_item_released_on(p_account text, p_entry bigint)
RETURNS date LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT max(allocated_on) FROM payment_allocations
            WHERE account_id = p_account AND entry_id = p_entry AND amount_micros < 0);
END;
$$;
