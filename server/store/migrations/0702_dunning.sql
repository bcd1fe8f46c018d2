-- Dunning (DESIGN.md §9): ladders of steps per account class, the steps taken per overdue
-- invoice (each at most once: the primary key), disputes that pause dunning for one invoice,
-- and the suspensions dunning imposed and lifted. An account's class is its
-- attrs->>'dunning_class' ('default' when absent).

CREATE TABLE dunning_ladders (
    class       text PRIMARY KEY,
    -- [{"day": 3, "action": "reminder"}, {"day": 10, "action": "fee", "fee": "5.00"},
    --  {"day": 20, "action": "suspend"}, {"day": 60, "action": "terminate"}]
    steps       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO dunning_ladders (class, steps) VALUES ('default', '[
    {"day": 3, "action": "reminder"},
    {"day": 10, "action": "fee", "fee": "5.00"},
    {"day": 20, "action": "suspend"},
    {"day": 60, "action": "terminate"}]');

CREATE TABLE dunning_events (
    account_id     text NOT NULL,
    entry_id       bigint NOT NULL,  -- the overdue item (an invoice's ledger entry)
    step_no        integer NOT NULL,  -- 1-based position in the ladder
    action         text NOT NULL,
    invoice_id     bigint,
    run_on         date NOT NULL,
    days_past_due  integer NOT NULL,
    open_micros    bigint NOT NULL,
    fee_entry_id   bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entry_id, step_no),
    FOREIGN KEY (account_id, entry_id) REFERENCES ledger_entries (account_id, entry_id)
);

CREATE TABLE disputes (
    account_id   text NOT NULL,
    dispute_id   bigint GENERATED ALWAYS AS IDENTITY,
    entry_id     bigint NOT NULL,
    invoice_id   bigint NOT NULL,
    reason       text NOT NULL,
    opened_on    date NOT NULL,
    closed_on    date,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, dispute_id),
    FOREIGN KEY (account_id, entry_id) REFERENCES ledger_entries (account_id, entry_id)
);
CREATE UNIQUE INDEX disputes_open ON disputes (account_id, entry_id) WHERE closed_on IS NULL;

-- Suspensions dunning imposed: lifted_on is set when the debt that caused it is cleared.
CREATE TABLE dunning_suspensions (
    account_id    text NOT NULL,
    suspension_id bigint GENERATED ALWAYS AS IDENTITY,
    suspended_on  date NOT NULL,
    lifted_on     date,
    lifted_by     text,
    PRIMARY KEY (account_id, suspension_id)
);
CREATE UNIQUE INDEX dunning_suspensions_active ON dunning_suspensions (account_id)
    WHERE lifted_on IS NULL;
