-- Invoicing (DESIGN.md §4): products and their recurring fees and usage pricing, tax rates,
-- discounts, adjustments, bill runs, invoices with gapless numbers, lines, tax summaries,
-- the line ↔ charge links that make every figure traceable, and credit notes.
-- Money is bigint micro-units of the document's currency, like charges.amount_micros.

-- A product a subscription names (subscriptions.product): its recurring fee per billing
-- cycle and the periodic pricing of aggregated usage (jsonb list of usage components).
CREATE TABLE products (
    product_id            text PRIMARY KEY,
    name                  text NOT NULL,
    currency              char(3) NOT NULL,
    recurring_fee_micros  bigint NOT NULL DEFAULT 0,
    tax_class             text NOT NULL DEFAULT 'standard',
    usage_pricing         jsonb NOT NULL DEFAULT '[]'
);

-- VAT/GST rates by jurisdiction (ISO 3166 country) and tax class, with validity dates.
-- category: UNCL 5305 code (S standard, Z zero, E exempt, AE reverse charge, ...).
CREATE TABLE tax_rates (
    jurisdiction  text NOT NULL,
    tax_class     text NOT NULL,
    category      text NOT NULL,
    rate          numeric(7, 4) NOT NULL CHECK (rate >= 0),
    valid_from    date NOT NULL,
    valid_to      date,
    PRIMARY KEY (jurisdiction, tax_class, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

-- Discount definitions. account_id NULL: applies to every account. scope line: reduces the
-- lines of `service` (or all lines); scope invoice: a document-level allowance.
CREATE TABLE discounts (
    discount_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     text REFERENCES accounts,
    kind           text NOT NULL CHECK (kind IN ('percentage', 'fixed', 'volume')),
    scope          text NOT NULL CHECK (scope IN ('line', 'invoice')),
    service        text,
    percent        numeric(9, 4),
    amount_micros  bigint,
    currency       char(3),
    -- volume: [{"from_micros": int, "percent": "decimal"}, ...] on the discounted base
    tiers          jsonb,
    description    text NOT NULL DEFAULT '',
    valid_from     date NOT NULL DEFAULT '-infinity',
    valid_to       date
);
CREATE INDEX discounts_account ON discounts (account_id);

-- One-off credits or debits an operator books for an account; billed on the next invoice.
CREATE TABLE adjustments (
    account_id     text NOT NULL REFERENCES accounts,
    adjustment_id  bigint GENERATED ALWAYS AS IDENTITY,
    amount_micros  bigint NOT NULL,
    currency       char(3) NOT NULL,
    description    text NOT NULL,
    tax_class      text NOT NULL DEFAULT 'standard',
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, adjustment_id)
);

-- Gapless numbering: the next number is taken by an UPDATE inside the finalising
-- transaction, so a rollback or a crash gives it back and concurrent finalisers queue.
CREATE TABLE document_series (
    series       text PRIMARY KEY,
    next_number  bigint NOT NULL DEFAULT 1 CHECK (next_number >= 1)
);

CREATE TABLE bill_runs (
    bill_run_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period          text NOT NULL,
    accounts        text[],
    dry_run         boolean NOT NULL DEFAULT false,
    state           text NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'done', 'failed')),
    invoices        integer NOT NULL DEFAULT 0,
    charges         bigint NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    error           text
);

CREATE TABLE invoices (
    account_id        text NOT NULL REFERENCES accounts,
    invoice_id        bigint GENERATED ALWAYS AS IDENTITY,
    bill_run_id       bigint REFERENCES bill_runs,
    period            text NOT NULL,
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL,
    currency          char(3) NOT NULL,
    status            text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'finalised')),
    series            text,
    number            bigint,
    number_text       text,
    issue_date        date,
    due_date          date,
    tax_inclusive     boolean NOT NULL DEFAULT false,
    reverse_charge    boolean NOT NULL DEFAULT false,
    rounding_method   text NOT NULL,
    line_total_micros bigint NOT NULL,
    allowance_micros  bigint NOT NULL,
    net_micros        bigint NOT NULL,
    tax_micros        bigint NOT NULL,
    total_micros      bigint NOT NULL,
    rounding_micros   bigint NOT NULL,
    payable_micros    bigint NOT NULL,
    seller            jsonb NOT NULL,
    buyer             jsonb NOT NULL,
    notes             text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finalised_at      timestamptz,
    PRIMARY KEY (account_id, invoice_id),
    UNIQUE (series, number),
    CHECK ((status = 'finalised') = (number IS NOT NULL)),
    CHECK (net_micros = line_total_micros - allowance_micros),
    CHECK (total_micros = net_micros + tax_micros),
    CHECK (payable_micros = total_micros + rounding_micros)
);
CREATE INDEX invoices_id ON invoices (invoice_id);
-- At most one open draft per account, period and currency (recomputed, never doubled).
CREATE UNIQUE INDEX invoices_one_draft ON invoices (account_id, period, currency)
    WHERE status = 'draft';

CREATE TABLE invoice_lines (
    account_id      text NOT NULL,
    invoice_id      bigint NOT NULL,
    line_no         integer NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('usage', 'recurring', 'adjustment')),
    service         text NOT NULL,
    description     text NOT NULL,
    quantity        numeric NOT NULL,
    unit            text NOT NULL,
    charges         bigint NOT NULL DEFAULT 0,
    -- exact sum before rounding, the discount taken off it, then the rounded line amount
    gross_micros    bigint NOT NULL,
    discount_micros bigint NOT NULL DEFAULT 0,
    net_micros      bigint NOT NULL,
    -- tax-inclusive invoices: the price the customer sees, tax included
    inclusive_micros bigint,
    tax_category    text NOT NULL,
    tax_rate        numeric(7, 4) NOT NULL,
    subscription_id bigint,
    adjustment_id   bigint,
    detail          jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (account_id, invoice_id, line_no),
    FOREIGN KEY (account_id, invoice_id) REFERENCES invoices ON DELETE CASCADE
);
-- An adjustment is billed on one invoice only.
CREATE UNIQUE INDEX invoice_lines_adjustment ON invoice_lines (account_id, adjustment_id)
    WHERE adjustment_id IS NOT NULL;

-- Which charges make up which line. The primary key bills a charge at most once; charges
-- themselves stay append-only (never updated to point at an invoice).
CREATE TABLE invoice_line_charges (
    account_id  text NOT NULL,
    charge_id   bigint NOT NULL,
    invoice_id  bigint NOT NULL,
    line_no     integer NOT NULL,
    PRIMARY KEY (account_id, charge_id),
    FOREIGN KEY (account_id, invoice_id, line_no) REFERENCES invoice_lines ON DELETE CASCADE
);
CREATE INDEX invoice_line_charges_line ON invoice_line_charges (account_id, invoice_id, line_no);

-- Document-level allowances (invoice-scope discounts), per tax category (EN 16931 BG-20).
CREATE TABLE invoice_allowances (
    account_id     text NOT NULL,
    invoice_id     bigint NOT NULL,
    seq            integer NOT NULL,
    discount_id    bigint,
    reason         text NOT NULL,
    amount_micros  bigint NOT NULL,
    tax_category   text NOT NULL,
    tax_rate       numeric(7, 4) NOT NULL,
    PRIMARY KEY (account_id, invoice_id, seq),
    FOREIGN KEY (account_id, invoice_id) REFERENCES invoices ON DELETE CASCADE
);

-- Tax summary per category and rate (EN 16931 BG-23): tax on the category's net sum.
CREATE TABLE taxes (
    account_id       text NOT NULL,
    invoice_id       bigint NOT NULL,
    category         text NOT NULL,
    rate             numeric(7, 4) NOT NULL,
    taxable_micros   bigint NOT NULL,
    tax_micros       bigint NOT NULL,
    exemption_reason text,
    PRIMARY KEY (account_id, invoice_id, category, rate),
    FOREIGN KEY (account_id, invoice_id) REFERENCES invoices ON DELETE CASCADE
);

CREATE TABLE credit_notes (
    account_id      text NOT NULL,
    credit_note_id  bigint GENERATED ALWAYS AS IDENTITY,
    invoice_id      bigint NOT NULL,
    series          text NOT NULL,
    number          bigint NOT NULL,
    number_text     text NOT NULL,
    reason          text NOT NULL,
    issue_date      date NOT NULL,
    currency        char(3) NOT NULL,
    net_micros      bigint NOT NULL CHECK (net_micros >= 0),
    tax_micros      bigint NOT NULL CHECK (tax_micros >= 0),
    total_micros    bigint NOT NULL,
    lines           jsonb NOT NULL,
    taxes           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, credit_note_id),
    UNIQUE (series, number),
    FOREIGN KEY (account_id, invoice_id) REFERENCES invoices,
    CHECK (total_micros = net_micros + tax_micros)
);
CREATE INDEX credit_notes_invoice ON credit_notes (account_id, invoice_id);

-- Finalised is immutable (DESIGN.md §3.5), enforced here too: a finalised invoice, its
-- lines, links, allowances and taxes refuse UPDATE and DELETE; credit notes are never
-- changed once issued.
CREATE FUNCTION refuse_finalised_invoice_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'finalised' THEN
        RAISE EXCEPTION 'invoice % is finalised and cannot be changed', OLD.invoice_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION refuse_finalised_invoice_change();

CREATE FUNCTION refuse_finalised_part_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    part record := CASE WHEN TG_OP = 'INSERT' THEN NEW ELSE OLD END;
BEGIN
    IF EXISTS (SELECT 1 FROM invoices i WHERE i.account_id = part.account_id
               AND i.invoice_id = part.invoice_id AND i.status = 'finalised') THEN
        RAISE EXCEPTION 'invoice % is finalised: its % cannot change',
            part.invoice_id, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
CREATE TRIGGER invoice_lines_immutable BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_finalised_part_change();
CREATE TRIGGER invoice_allowances_immutable
    BEFORE INSERT OR UPDATE OR DELETE ON invoice_allowances
    FOR EACH ROW EXECUTE FUNCTION refuse_finalised_part_change();
CREATE TRIGGER taxes_immutable BEFORE INSERT OR UPDATE OR DELETE ON taxes
    FOR EACH ROW EXECUTE FUNCTION refuse_finalised_part_change();
CREATE TRIGGER invoice_line_charges_immutable BEFORE UPDATE OR DELETE ON invoice_line_charges
    FOR EACH ROW EXECUTE FUNCTION refuse_finalised_part_change();

-- Links are inserted in bulk (a million per run): checked once per statement.
CREATE FUNCTION refuse_links_to_finalised() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT account_id, invoice_id FROM new_links) n
               JOIN invoices i USING (account_id, invoice_id) WHERE i.status = 'finalised') THEN
        RAISE EXCEPTION 'charges cannot be linked to a finalised invoice'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER invoice_line_charges_insert AFTER INSERT ON invoice_line_charges
    REFERENCING NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_links_to_finalised();

CREATE FUNCTION refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER credit_notes_immutable BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER adjustments_immutable BEFORE UPDATE OR DELETE ON adjustments
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
