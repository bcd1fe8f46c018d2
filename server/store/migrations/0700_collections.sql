-- Collections (DESIGN.md §9): the receivables ledger, payments and their allocations.
--
-- ledger_entries holds every money movement between an account and the operator, signed
-- (+ the customer owes more, − owes less), in micro-units of the entry's currency like the
-- rest of the schema (always a whole number of the currency's minor unit). An account's
-- balance is the sum of its entries as of a date and is never stored apart from them.
--
-- Debit items (invoices, fees) are what payments are allocated to. A credit entry that
-- reduces one item (a credit note, a write-off) names it in applies_to. An item's open
-- amount = amount + Σ entries applied to it − Σ allocations to it, ≥ 0; a payment's
-- unapplied money = amount − Σ its allocations − refunds − reversals, ≥ 0. Allocations are
-- append-only signed rows: releasing one (refund, reversal, a credit note on a paid
-- invoice) adds a negative row, so the ledger can be read as of any date.
--
-- Finalised invoices and issued credit notes enter the ledger through the triggers below,
-- in the transaction that finalises or issues them, whoever does it.

CREATE TABLE payments (
    account_id     text NOT NULL REFERENCES accounts,
    payment_id     bigint GENERATED ALWAYS AS IDENTITY,
    amount_micros  bigint NOT NULL CHECK (amount_micros > 0),
    currency       char(3) NOT NULL,
    received_on    date NOT NULL,
    method         text NOT NULL,
    -- the payer's or the operator's reference (a bank's end-to-end id, a cheque number)
    reference      text,
    -- who told us: manual (API, CLI), camt, psp; with that source's own id for it, which
    -- makes recording idempotent
    source         text NOT NULL DEFAULT 'manual',
    external_id    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, payment_id)
);
CREATE INDEX payments_id ON payments (payment_id);
CREATE UNIQUE INDEX payments_external ON payments (account_id, source, external_id)
    WHERE external_id IS NOT NULL;

CREATE TABLE ledger_entries (
    account_id      text NOT NULL REFERENCES accounts,
    entry_id        bigint GENERATED ALWAYS AS IDENTITY,
    kind            text NOT NULL CHECK (kind IN ('invoice', 'credit_note', 'payment', 'refund',
                        'reversal', 'fee', 'write_off', 'write_off_reversal')),
    currency        char(3) NOT NULL,
    amount_micros   bigint NOT NULL,
    entry_date      date NOT NULL,
    due_date        date,   -- debit items: when it falls due
    applies_to      bigint, -- credit notes, write-offs: the item they reduce
    invoice_id      bigint,
    credit_note_id  bigint,
    payment_id      bigint,
    description     text NOT NULL DEFAULT '',
    -- refunds, reversals, write-offs, fees: the reason code (AC04, MD06, ...) or label
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entry_id),
    CHECK ((kind IN ('invoice', 'fee')) = (due_date IS NOT NULL)),
    CHECK (kind NOT IN ('invoice', 'fee', 'refund', 'reversal', 'write_off_reversal')
           OR amount_micros > 0),
    CHECK (kind NOT IN ('credit_note', 'payment', 'write_off') OR amount_micros < 0),
    CHECK ((kind IN ('credit_note', 'write_off', 'write_off_reversal'))
           = (applies_to IS NOT NULL)),
    CHECK ((kind IN ('payment', 'refund', 'reversal')) = (payment_id IS NOT NULL)),
    FOREIGN KEY (account_id, applies_to) REFERENCES ledger_entries (account_id, entry_id),
    FOREIGN KEY (account_id, payment_id) REFERENCES payments (account_id, payment_id)
);
CREATE UNIQUE INDEX ledger_entries_invoice ON ledger_entries (account_id, invoice_id)
    WHERE kind = 'invoice';
CREATE UNIQUE INDEX ledger_entries_credit_note ON ledger_entries (account_id, credit_note_id)
    WHERE kind = 'credit_note';
CREATE UNIQUE INDEX ledger_entries_payment ON ledger_entries (account_id, payment_id)
    WHERE kind = 'payment';
CREATE INDEX ledger_entries_account ON ledger_entries (account_id, currency, entry_date);
CREATE INDEX ledger_entries_applied ON ledger_entries (account_id, applies_to)
    WHERE applies_to IS NOT NULL;
CREATE INDEX ledger_entries_payment_all ON ledger_entries (account_id, payment_id)
    WHERE payment_id IS NOT NULL;

CREATE TABLE payment_allocations (
    account_id     text NOT NULL,
    allocation_id  bigint GENERATED ALWAYS AS IDENTITY,
    payment_id     bigint NOT NULL,
    entry_id       bigint NOT NULL,  -- the debit item (invoice or fee entry)
    amount_micros  bigint NOT NULL CHECK (amount_micros <> 0),  -- < 0: a release
    allocated_on   date NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, allocation_id),
    FOREIGN KEY (account_id, payment_id) REFERENCES payments,
    FOREIGN KEY (account_id, entry_id) REFERENCES ledger_entries (account_id, entry_id)
);
CREATE INDEX payment_allocations_payment ON payment_allocations (account_id, payment_id);
CREATE INDEX payment_allocations_entry ON payment_allocations (account_id, entry_id);

CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER payment_allocations_immutable BEFORE UPDATE OR DELETE ON payment_allocations
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER payments_immutable BEFORE UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- An item's open amount now (its amount, what was applied to it, what was allocated).
CREATE FUNCTION collections_item_open(p_account text, p_entry bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT e.amount_micros
         + coalesce((SELECT sum(c.amount_micros) FROM ledger_entries c
                     WHERE c.account_id = p_account AND c.applies_to = p_entry), 0)
         - coalesce((SELECT sum(a.amount_micros) FROM payment_allocations a
                     WHERE a.account_id = p_account AND a.entry_id = p_entry), 0)
    FROM ledger_entries e WHERE e.account_id = p_account AND e.entry_id = p_entry
$$;

-- A payment's money not allocated, refunded or reversed now.
CREATE FUNCTION collections_payment_unapplied(p_account text, p_payment bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT p.amount_micros
         - coalesce((SELECT sum(a.amount_micros) FROM payment_allocations a
                     WHERE a.account_id = p_account AND a.payment_id = p_payment), 0)
         - coalesce((SELECT sum(e.amount_micros) FROM ledger_entries e
                     WHERE e.account_id = p_account AND e.payment_id = p_payment
                     AND e.kind IN ('refund', 'reversal')), 0)
    FROM payments p WHERE p.account_id = p_account AND p.payment_id = p_payment
$$;

-- Allocate unapplied money (oldest payment first) to open items (oldest due first) of one
-- account and currency; only_payment limits it to one payment. The allocation is dated when
-- both sides existed (and after the payment's last release), so the ledger read as of an
-- earlier date never sees it. Returns the micro-units allocated. The caller holds the
-- account's collections lock (collections_lock).
CREATE FUNCTION collections_settle(p_account text, p_currency char(3),
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
            SELECT e.entry_id, e.entry_date, collections_item_open(e.account_id, e.entry_id) AS open
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
                             coalesce(pay.released_on, pay.received_on)));
            left_over := left_over - take;
            total := total + take;
        END LOOP;
    END LOOP;
    RETURN total;
END;
$$;

-- Serialises every change to one account's receivables (payments, allocations, entries).
CREATE FUNCTION collections_lock(p_account text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('collections:' || p_account, 0))
$$;

-- Release allocations of an item (newest first) until its open amount is back to ≥ 0:
-- a credit note on a paid invoice gives the money back to the payments as unapplied credit.
CREATE FUNCTION collections_release_excess(p_account text, p_entry bigint, p_on date)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    excess bigint := -collections_item_open(p_account, p_entry);
    alloc record;
    take bigint;
BEGIN
    IF excess <= 0 THEN
        RETURN;
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

-- Finalised invoices enter the ledger for what they made payable, due on their due date;
-- an account holding unapplied payment money has it allocated to them at once.
CREATE FUNCTION collections_invoices_finalised() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    acct record;
BEGIN
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
END;
$$;
CREATE TRIGGER invoices_to_ledger_update AFTER UPDATE ON invoices
    REFERENCING NEW TABLE AS new_invoices
    FOR EACH STATEMENT EXECUTE FUNCTION collections_invoices_finalised();
CREATE TRIGGER invoices_to_ledger_insert AFTER INSERT ON invoices
    REFERENCING NEW TABLE AS new_invoices
    FOR EACH STATEMENT EXECUTE FUNCTION collections_invoices_finalised();

-- Issued credit notes reduce their invoice; what was already paid on it becomes the
-- payments' unapplied credit again.
CREATE FUNCTION collections_credit_notes_issued() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    note record;
    item bigint;
BEGIN
    FOR note IN SELECT * FROM new_notes ORDER BY credit_note_id LOOP
        SELECT e.entry_id INTO item FROM ledger_entries e
        WHERE e.account_id = note.account_id AND e.kind = 'invoice'
          AND e.invoice_id = note.invoice_id;
        CONTINUE WHEN item IS NULL OR note.total_micros + note.rounding_micros <= 0;
        PERFORM collections_lock(note.account_id);
        INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,
                                    applies_to, invoice_id, credit_note_id, description)
        VALUES (note.account_id, 'credit_note', note.currency,
                -(note.total_micros + note.rounding_micros),
                greatest(note.issue_date, (SELECT entry_date FROM ledger_entries
                                           WHERE account_id = note.account_id
                                           AND entry_id = item)),
                item, note.invoice_id, note.credit_note_id, 'Credit note ' || note.number_text);
        PERFORM collections_release_excess(note.account_id, item, note.issue_date);
    END LOOP;
    RETURN NULL;
END;
$$;
CREATE TRIGGER credit_notes_to_ledger AFTER INSERT ON credit_notes
    REFERENCING NEW TABLE AS new_notes
    FOR EACH STATEMENT EXECUTE FUNCTION collections_credit_notes_issued();

-- Documents that existed before the ledger did.
INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date, due_date,
                            invoice_id, description)
SELECT account_id, 'invoice', currency, payable_micros, issue_date,
       coalesce(due_date, issue_date), invoice_id, 'Invoice ' || number_text
FROM invoices WHERE status = 'finalised' AND payable_micros > 0 ORDER BY invoice_id;
INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date, applies_to,
                            invoice_id, credit_note_id, description)
SELECT c.account_id, 'credit_note', c.currency, -(c.total_micros + c.rounding_micros),
       greatest(c.issue_date, e.entry_date), e.entry_id, c.invoice_id, c.credit_note_id,
       'Credit note ' || c.number_text
FROM credit_notes c JOIN ledger_entries e ON e.account_id = c.account_id
     AND e.kind = 'invoice' AND e.invoice_id = c.invoice_id
WHERE c.total_micros + c.rounding_micros > 0 ORDER BY c.credit_note_id;
