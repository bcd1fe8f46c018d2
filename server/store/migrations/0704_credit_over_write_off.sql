-- A credit note on an invoice that was written off takes the place of the write-off first
-- (a write-off reversal of what the note would over-credit), then releases payments'
-- allocations as before: the invoice's open amount never goes below zero.
CREATE OR REPLACE FUNCTION collections_release_excess(p_account text, p_entry bigint, p_on date)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    excess bigint := -collections_item_open(p_account, p_entry);
    written_off bigint;
    alloc record;
    take bigint;
BEGIN
    IF excess <= 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(-sum(amount_micros), 0) INTO written_off FROM ledger_entries
    WHERE account_id = p_account AND applies_to = p_entry
      AND kind IN ('write_off', 'write_off_reversal');
    IF written_off > 0 THEN
        take := least(excess, written_off);
        INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,
                                    applies_to, invoice_id, description, reason)
        SELECT p_account, 'write_off_reversal', e.currency, take, greatest(p_on, e.entry_date),
               p_entry, e.invoice_id, 'Write-off replaced by a credit note', 'credit note'
        FROM ledger_entries e WHERE e.account_id = p_account AND e.entry_id = p_entry;
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
        INSERT INTO payment_allocations (account_id, payment_id, entry_id, amount_micros,
                                         allocated_on)
        VALUES (p_account, alloc.payment_id, p_entry, -take, greatest(p_on, alloc.last_on));
        excess := excess - take;
    END LOOP;
END;
$$;
