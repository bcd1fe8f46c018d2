-- An allocation is dated no earlier than the last release of an allocation to the same item:
-- money re-allocated to an invoice a reversal re-opened must not count, read as of an
-- earlier date, beside the allocation that was released later (the invoice would read as
-- overpaid). Replaces collections_settle of 0700 with that rule.
CREATE FUNCTION collections_item_released_on(p_account text, p_entry bigint) RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT max(allocated_on) FROM payment_allocations
    WHERE account_id = p_account AND entry_id = p_entry AND amount_micros < 0
$$;

CREATE OR REPLACE FUNCTION collections_settle(p_account text, p_currency char(3),
                                              only_payment bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    pay record;
    item record;
    left_over bigint;
    take bigint;
    total bigint := 0;
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
            SELECT e.entry_id, e.entry_date, collections_item_open(e.account_id, e.entry_id) AS open,
                   collections_item_released_on(e.account_id, e.entry_id) AS item_released_on
            FROM ledger_entries e
            WHERE e.account_id = p_account AND e.currency = p_currency
              AND e.kind IN ('invoice', 'fee')
            ORDER BY e.due_date, e.entry_id
        LOOP
            EXIT WHEN left_over = 0;
            CONTINUE WHEN item.open <= 0;
            take := least(left_over, item.open);
            INSERT INTO payment_allocations (account_id, payment_id, entry_id, amount_micros,
                                             allocated_on)
            VALUES (p_account, pay.payment_id, item.entry_id, take,
                    greatest(pay.received_on, item.entry_date,
                             coalesce(pay.released_on, pay.received_on),
                             coalesce(item.item_released_on, pay.received_on)));
            left_over := left_over - take;
            total := total + take;
        END LOOP;
    END LOOP;
    RETURN total;
END;
$$;
