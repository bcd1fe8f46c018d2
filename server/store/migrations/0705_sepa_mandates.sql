-- SEPA direct debit (DESIGN.md §9): the mandates customers signed, one per account, and the
-- pain.008 batches generated from them. A batch's transactions are payments of source
-- 'sepa_dd' whose reference is the transaction's EndToEndId, so a return (camt RtrInf or
-- pain.002) finds and reverses the payment it undoes.
CREATE TABLE sepa_mandates (
    account_id     text PRIMARY KEY REFERENCES accounts (account_id),
    mandate_id     text NOT NULL UNIQUE,
    iban           text NOT NULL,
    bic            text,
    signed_on      date NOT NULL,
    -- the sequence type of the next collection: FRST becomes RCUR once collected; OOFF and
    -- FNAL end the mandate (ended_on) once collected
    sequence_type  text NOT NULL CHECK (sequence_type IN ('FRST', 'RCUR', 'OOFF', 'FNAL')),
    ended_on       date,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sepa_batches (
    batch_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id       text NOT NULL UNIQUE,
    due_by           date NOT NULL,
    collection_date  date NOT NULL,
    transactions     integer NOT NULL,
    total_micros     bigint NOT NULL,
    document         text NOT NULL,  -- the pain.008 XML as sent
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
