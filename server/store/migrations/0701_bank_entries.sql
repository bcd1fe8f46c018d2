-- Bank statement imports (camt.053 / camt.054): one row per transaction the bank reported,
-- keyed by the bank's own reference for it within the statement's account, so importing
-- the same statement twice changes nothing. Each row says what became of it: a payment
-- (imported), a return that reversed one (returned), or why not (unmatched, rejected,
-- ignored), for the operator to act on.
CREATE TABLE bank_entries (
    statement_account  text NOT NULL,
    entry_key          text NOT NULL,
    file_name          text NOT NULL,
    entry_no           integer NOT NULL,
    status             text NOT NULL CHECK (status IN ('imported', 'returned', 'unmatched',
                                                       'rejected', 'ignored')),
    reason             text,
    credit             boolean NOT NULL,
    amount_micros      bigint NOT NULL,
    currency           char(3) NOT NULL,
    booked_on          date,
    account_id         text,
    payment_id         bigint,
    invoice_id         bigint,
    remittance         text NOT NULL DEFAULT '',
    imported_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (statement_account, entry_key)
);
CREATE INDEX bank_entries_open ON bank_entries (imported_at) WHERE status = 'unmatched';

-- Remittance matching looks invoices up by number and by the body of their RF reference.
CREATE INDEX invoices_number_text ON invoices (number_text) WHERE number_text IS NOT NULL;
CREATE INDEX invoices_number_body ON invoices ((upper(regexp_replace(number_text, '[^A-Za-z0-9]', '', 'g'))))
    WHERE number_text IS NOT NULL;
-- Returns find the payment they undo by its end-to-end reference.
CREATE INDEX payments_reference ON payments (reference) WHERE reference IS NOT NULL;
