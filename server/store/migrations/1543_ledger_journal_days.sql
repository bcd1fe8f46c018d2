-- The journal's totals kept at posting (issue #24): per (currency, entry date) the journal
-- entries the export books (server/ledger/journal.py: one per ledger entry) and their debit
-- and credit, so that a period's totals read a row per day, not every entry of the period.
--
-- ledger_journal_sides is the builder's per-entry debit and credit in SQL: each line of an
-- entry as a signed amount (+ debit, − credit; the builder books a negative amount on the
-- other side), the debit the sum of the positive ones, the credit of the negative ones.
--   invoice: +A, −net, −tax, −(A − net − tax)       (net, tax: the invoice's)
--   credit note: −A, +net, +tax, +(A − net − tax)    (net, tax: the note's)
--   payment, refund, reversal, fee: +A, −A
--   write-off: +(A − r), +r, −A; its reversal: the opposite
-- A = |amount|; r, the VAT relief, = ⌊A·tax / payable⌋ rounded down to the currency's minor
-- unit (0 when the invoice's tax or payable is 0 or unknown), in exact numeric arithmetic
-- (div and mod, never a rounded quotient). tests/integration/test_ledger_journal_sides.py
-- proves it equal to the builder's, entry kind by kind, on generated amounts.
--
-- The minor unit comes from currency_minor_steps, babel's CLDR / ISO 4217 data written out
-- (tests/integration/test_ledger_journal_sides.py fails, naming the currencies, if babel says
-- otherwise: a new migration then writes them).
--
-- Every writer of ledger_entries appends the moves of the entries it wrote to
-- ledger_journal_deltas in its own transaction (server/collections/journal_days_repo.py;
-- the PL/pgSQL writer below): inserts only, so the concurrent postings of a bill run never
-- wait on a shared day row (one row per day updated by each posting would hold every posting
-- of the day behind the first until it commits). fold_ledger_journal, on serve's compaction clock,
-- moves them into ledger_journal_days, the level without the account (a row per currency
-- and day); readers add the deltas not folded yet, under the fold's lock shared.

CREATE TABLE currency_minor_steps (
    currency     char(3) PRIMARY KEY,
    step_micros  bigint NOT NULL CHECK (step_micros > 0)  -- micro-units in one minor unit
);
INSERT INTO currency_minor_steps (currency, step_micros) VALUES
    ('ADP', 1000000), ('AED', 10000), ('AFA', 10000), ('AFN', 1000000), ('ALK', 10000),
    ('ALL', 1000000), ('AMD', 10000), ('ANG', 10000), ('AOA', 10000), ('AOK', 10000),
    ('AON', 10000), ('AOR', 10000), ('ARA', 10000), ('ARL', 10000), ('ARM', 10000),
    ('ARP', 10000), ('ARS', 10000), ('ATS', 10000), ('AUD', 10000), ('AWG', 10000),
    ('AZM', 10000), ('AZN', 10000), ('BAD', 10000), ('BAM', 10000), ('BAN', 10000),
    ('BBD', 10000), ('BDT', 10000), ('BEC', 10000), ('BEF', 10000), ('BEL', 10000),
    ('BGL', 10000), ('BGM', 10000), ('BGN', 10000), ('BGO', 10000), ('BHD', 1000),
    ('BIF', 1000000), ('BMD', 10000), ('BND', 10000), ('BOB', 10000), ('BOL', 10000),
    ('BOP', 10000), ('BOV', 10000), ('BRB', 10000), ('BRC', 10000), ('BRE', 10000),
    ('BRL', 10000), ('BRN', 10000), ('BRR', 10000), ('BRZ', 10000), ('BSD', 10000),
    ('BTN', 10000), ('BUK', 10000), ('BWP', 10000), ('BYB', 10000), ('BYN', 10000),
    ('BYR', 1000000), ('BZD', 10000), ('CAD', 10000), ('CDF', 10000), ('CHE', 10000),
    ('CHF', 10000), ('CHW', 10000), ('CLE', 10000), ('CLF', 100), ('CLP', 1000000),
    ('CNH', 10000), ('CNY', 10000), ('COP', 1000000), ('COU', 10000), ('CRC', 10000),
    ('CSD', 10000), ('CSK', 10000), ('CUC', 10000), ('CUP', 10000), ('CVE', 10000),
    ('CYP', 10000), ('CZK', 10000), ('DDM', 10000), ('DEM', 10000), ('DJF', 1000000),
    ('DKK', 10000), ('DOP', 10000), ('DZD', 10000), ('ECS', 10000), ('ECV', 10000),
    ('EEK', 10000), ('EGP', 10000), ('ERN', 10000), ('ESA', 10000), ('ESB', 10000),
    ('ESP', 1000000), ('ETB', 10000), ('EUR', 10000), ('FIM', 10000), ('FJD', 10000),
    ('FKP', 10000), ('FRF', 10000), ('GBP', 10000), ('GEK', 10000), ('GEL', 10000),
    ('GHC', 10000), ('GHS', 10000), ('GIP', 10000), ('GMD', 10000), ('GNF', 1000000),
    ('GNS', 10000), ('GQE', 10000), ('GRD', 10000), ('GTQ', 10000), ('GWE', 10000),
    ('GWP', 10000), ('GYD', 10000), ('HKD', 10000), ('HNL', 10000), ('HRD', 10000),
    ('HRK', 10000), ('HTG', 10000), ('HUF', 1000000), ('IDR', 1000000), ('IEP', 10000),
    ('ILP', 10000), ('ILR', 10000), ('ILS', 10000), ('INR', 10000), ('IQD', 1000000),
    ('IRR', 1000000), ('ISJ', 10000), ('ISK', 1000000), ('ITL', 1000000), ('JMD', 10000),
    ('JOD', 1000), ('JPY', 1000000), ('KES', 10000), ('KGS', 10000), ('KHR', 10000),
    ('KMF', 1000000), ('KPW', 1000000), ('KRH', 10000), ('KRO', 10000), ('KRW', 1000000),
    ('KWD', 1000), ('KYD', 10000), ('KZT', 10000), ('LAK', 1000000), ('LBP', 1000000),
    ('LKR', 10000), ('LRD', 10000), ('LSL', 10000), ('LTL', 10000), ('LTT', 10000),
    ('LUC', 10000), ('LUF', 1000000), ('LUL', 10000), ('LVL', 10000), ('LVR', 10000),
    ('LYD', 1000), ('MAD', 10000), ('MAF', 10000), ('MCF', 10000), ('MDC', 10000),
    ('MDL', 10000), ('MGA', 1000000), ('MGF', 1000000), ('MKD', 10000), ('MKN', 10000),
    ('MLF', 10000), ('MMK', 1000000), ('MNT', 10000), ('MOP', 10000), ('MRO', 1000000),
    ('MRU', 10000), ('MTL', 10000), ('MTP', 10000), ('MUR', 10000), ('MVP', 10000),
    ('MVR', 10000), ('MWK', 10000), ('MXN', 10000), ('MXP', 10000), ('MXV', 10000),
    ('MYR', 10000), ('MZE', 10000), ('MZM', 10000), ('MZN', 10000), ('NAD', 10000),
    ('NGN', 10000), ('NIC', 10000), ('NIO', 10000), ('NLG', 10000), ('NOK', 10000),
    ('NPR', 10000), ('NZD', 10000), ('OMR', 1000), ('PAB', 10000), ('PEI', 10000),
    ('PEN', 10000), ('PES', 10000), ('PGK', 10000), ('PHP', 10000), ('PKR', 10000),
    ('PLN', 10000), ('PLZ', 10000), ('PTE', 10000), ('PYG', 1000000), ('QAR', 10000),
    ('RHD', 10000), ('ROL', 10000), ('RON', 10000), ('RSD', 10000), ('RUB', 10000),
    ('RUR', 10000), ('RWF', 1000000), ('SAR', 10000), ('SBD', 10000), ('SCR', 10000),
    ('SDD', 10000), ('SDG', 10000), ('SDP', 10000), ('SEK', 10000), ('SGD', 10000),
    ('SHP', 10000), ('SIT', 10000), ('SKK', 10000), ('SLE', 10000), ('SLL', 1000000),
    ('SOS', 1000000), ('SRD', 10000), ('SRG', 10000), ('SSP', 10000), ('STD', 1000000),
    ('STN', 10000), ('SUR', 10000), ('SVC', 10000), ('SYP', 1000000), ('SZL', 10000),
    ('THB', 10000), ('TJR', 10000), ('TJS', 10000), ('TMM', 1000000), ('TMT', 10000),
    ('TND', 1000), ('TOP', 10000), ('TPE', 10000), ('TRL', 1000000), ('TRY', 10000),
    ('TTD', 10000), ('TWD', 10000), ('TZS', 10000), ('UAH', 10000), ('UAK', 10000),
    ('UGS', 10000), ('UGX', 1000000), ('USD', 10000), ('USN', 10000), ('USS', 10000),
    ('UYI', 1000000), ('UYP', 10000), ('UYU', 10000), ('UYW', 100), ('UZS', 10000),
    ('VEB', 10000), ('VED', 10000), ('VEF', 10000), ('VES', 10000), ('VND', 1000000),
    ('VNN', 10000), ('VUV', 1000000), ('WST', 10000), ('XAD', 10000), ('XAF', 1000000),
    ('XAG', 10000), ('XAU', 10000), ('XBA', 10000), ('XBB', 10000), ('XBC', 10000),
    ('XBD', 10000), ('XCD', 10000), ('XCG', 10000), ('XDR', 10000), ('XEU', 10000),
    ('XFO', 10000), ('XFU', 10000), ('XOF', 1000000), ('XPD', 10000), ('XPF', 1000000),
    ('XPT', 10000), ('XRE', 10000), ('XSU', 10000), ('XTS', 10000), ('XUA', 10000),
    ('XXX', 10000), ('YDD', 10000), ('YER', 1000000), ('YUD', 10000), ('YUM', 10000),
    ('YUN', 10000), ('YUR', 10000), ('ZAL', 10000), ('ZAR', 10000), ('ZMK', 1000000),
    ('ZMW', 10000), ('ZRN', 10000), ('ZRZ', 10000), ('ZWD', 1000000), ('ZWG', 10000),
    ('ZWL', 10000), ('ZWR', 10000);

CREATE FUNCTION ledger_journal_sides(
    p_kind text, p_amount bigint, p_invoice_net bigint, p_invoice_tax bigint,
    p_invoice_payable bigint, p_note_net bigint, p_note_tax bigint, p_step bigint)
RETURNS TABLE (debit_micros bigint, credit_micros bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
-- No step (a currency outside currency_minor_steps, which core.money refuses too): no sides,
-- so that the NOT NULL of the deltas and days refuses the posting instead of booking it short.
SELECT CASE WHEN p_step IS NOT NULL THEN sum(greatest(s, 0))::bigint END,
       CASE WHEN p_step IS NOT NULL THEN sum(greatest(-s, 0))::bigint END
FROM (SELECT abs(p_amount)::numeric AS a,
             coalesce(p_invoice_net, 0)::numeric AS inet,
             coalesce(p_invoice_tax, 0)::numeric AS itax,
             coalesce(p_note_net, 0)::numeric AS nnet,
             coalesce(p_note_tax, 0)::numeric AS ntax) v
CROSS JOIN LATERAL (  -- q = ⌊A·tax / payable⌋ (Python's //: toward −∞)
    SELECT CASE WHEN coalesce(p_invoice_tax, 0) = 0 OR coalesce(p_invoice_payable, 0) = 0
                THEN NULL
                ELSE div(v.a * p_invoice_tax, p_invoice_payable)
                     - CASE WHEN mod(v.a * p_invoice_tax, p_invoice_payable) <> 0
                             AND (v.a * p_invoice_tax < 0) <> (p_invoice_payable < 0)
                            THEN 1 ELSE 0 END END AS q) f
CROSS JOIN LATERAL (  -- r = q − q mod step (Python's %: the step's sign, here +)
    SELECT CASE WHEN f.q IS NULL THEN 0
                ELSE f.q - mod(f.q, p_step)
                     - CASE WHEN mod(f.q, p_step) < 0 THEN p_step ELSE 0 END END AS r) w
CROSS JOIN LATERAL unnest(CASE p_kind
    WHEN 'invoice' THEN ARRAY[v.a, -v.inet, -v.itax, -(v.a - v.inet - v.itax)]
    WHEN 'credit_note' THEN ARRAY[-v.a, v.nnet, v.ntax, v.a - v.nnet - v.ntax]
    WHEN 'payment' THEN ARRAY[v.a, -v.a]
    WHEN 'refund' THEN ARRAY[v.a, -v.a]
    WHEN 'reversal' THEN ARRAY[v.a, -v.a]
    WHEN 'fee' THEN ARRAY[v.a, -v.a]
    WHEN 'write_off' THEN ARRAY[v.a - w.r, w.r, -v.a]
    WHEN 'write_off_reversal' THEN ARRAY[-(v.a - w.r), -w.r, v.a]
END) AS s
$$;

-- Each ledger entry's journal debit and credit, read with its documents as the export reads
-- them (server/ledger/repo.py: _ENTRIES).
CREATE VIEW ledger_journal_moves AS
SELECT e.account_id, e.entry_id, e.kind, e.payment_id, e.currency, e.entry_date,
       s.debit_micros, s.credit_micros
FROM ledger_entries e
LEFT JOIN invoices i ON i.account_id = e.account_id AND i.invoice_id = e.invoice_id
LEFT JOIN credit_notes c ON c.account_id = e.account_id AND c.credit_note_id = e.credit_note_id
LEFT JOIN currency_minor_steps m ON m.currency = e.currency
CROSS JOIN LATERAL ledger_journal_sides(e.kind, e.amount_micros, i.net_micros, i.tax_micros,
                                        i.payable_micros, c.net_micros, c.tax_micros,
                                        m.step_micros) s;

-- Appended by the writers: a row per account, currency and day for one account's entries
-- (on Citus distributed by account beside the ledger, so that the insert runs on the
-- account's shard), per currency and day under no account ('') for a batch of many
-- accounts' (a bill run's, a bank file's).
CREATE TABLE ledger_journal_deltas (
    account_id     text NOT NULL,
    currency       char(3) NOT NULL,
    entry_date     date NOT NULL,
    entries        bigint NOT NULL,
    debit_micros   bigint NOT NULL,
    credit_micros  bigint NOT NULL
);
CREATE INDEX ledger_journal_deltas_day ON ledger_journal_deltas (currency, entry_date);

-- No account: on Citus it stays on the coordinator, written by the fold only.
CREATE TABLE ledger_journal_days (
    currency       char(3) NOT NULL,
    entry_date     date NOT NULL,
    entries        bigint NOT NULL,
    debit_micros   bigint NOT NULL,
    credit_micros  bigint NOT NULL,
    PRIMARY KEY (currency, entry_date)
);

-- Move every delta into its day; deltas folded. Readers of the level beside the deltas take
-- the same lock shared (on Citus the coordinator and the workers commit one after the other).
CREATE FUNCTION fold_ledger_journal() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('fold_ledger_journal'));
    WITH gone AS MATERIALIZED (
        DELETE FROM ledger_journal_deltas
        RETURNING currency, entry_date, entries, debit_micros, credit_micros
    ), moved AS (  -- run though unread: a data-modifying WITH always runs, once
        INSERT INTO ledger_journal_days AS d (currency, entry_date, entries, debit_micros,
                                              credit_micros)
        SELECT currency, entry_date, sum(entries), sum(debit_micros), sum(credit_micros)
        FROM gone GROUP BY 1, 2
        ON CONFLICT (currency, entry_date) DO UPDATE
        SET entries = d.entries + excluded.entries,
            debit_micros = d.debit_micros + excluded.debit_micros,
            credit_micros = d.credit_micros + excluded.credit_micros
        RETURNING 1
    )
    SELECT count(*) FROM gone INTO folded;
    RETURN folded;
END;
$$;

-- The level formed anew from the ledger (this migration's backfill; seeds that write the
-- ledger by plain SQL; a repair). Its three statements read three snapshots, so the writers'
-- deltas are locked out first: a posting whose delta is written waits for the rebuild to
-- commit (its delta then stands beside the rebuilt days), one written before is committed
-- when the lock is granted and read as a ledger entry, its delta deleted.
CREATE FUNCTION rebuild_ledger_journal() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('fold_ledger_journal'));
    LOCK TABLE ledger_journal_deltas IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM ledger_journal_deltas;
    DELETE FROM ledger_journal_days;
    INSERT INTO ledger_journal_days (currency, entry_date, entries, debit_micros, credit_micros)
    SELECT currency, entry_date, count(*), sum(debit_micros), sum(credit_micros)
    FROM ledger_journal_moves GROUP BY 1, 2;
END;
$$;

-- The PL/pgSQL writer of ledger entries appends its entries' moves too (every writer of the
-- ledger keeps the level in its transaction). Same body as 1510 otherwise.
CREATE OR REPLACE FUNCTION collections_release_excess(p_account text, p_entry bigint, p_on date)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    excess bigint := -collections_item_open(p_account, p_entry);
    written_off bigint;
    alloc record;
    take bigint;
    item record;
    on_day date;
    new_entry bigint;
BEGIN
    IF excess <= 0 THEN
        RETURN;
    END IF;
    SELECT e.currency, e.due_date, e.entry_date, e.invoice_id INTO item FROM ledger_entries e
    WHERE e.account_id = p_account AND e.entry_id = p_entry;
    SELECT coalesce(-sum(amount_micros), 0) INTO written_off FROM ledger_entries
    WHERE account_id = p_account AND applies_to = p_entry
      AND kind IN ('write_off', 'write_off_reversal');
    IF written_off > 0 THEN
        take := least(excess, written_off);
        on_day := greatest(p_on, item.entry_date);
        INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,
                                    applies_to, invoice_id, description, reason)
        VALUES (p_account, 'write_off_reversal', item.currency, take, on_day, p_entry,
                item.invoice_id, 'Write-off replaced by a credit note', 'credit note')
        RETURNING entry_id INTO new_entry;
        INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)
        VALUES (p_account, item.currency, item.due_date, on_day, take);
        INSERT INTO ledger_journal_deltas (account_id, currency, entry_date, entries,
                                           debit_micros, credit_micros)
        SELECT account_id, currency, entry_date, 1, debit_micros, credit_micros
        FROM ledger_journal_moves WHERE account_id = p_account AND entry_id = new_entry;
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
        on_day := greatest(p_on, alloc.last_on);
        INSERT INTO payment_allocations (account_id, payment_id, entry_id, amount_micros,
                                         allocated_on)
        VALUES (p_account, alloc.payment_id, p_entry, -take, on_day);
        INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)
        VALUES (p_account, item.currency, item.due_date, greatest(on_day, item.entry_date),
                take),
               (p_account, item.currency, NULL, greatest(on_day, item.entry_date), -take);
        excess := excess - take;
    END LOOP;
END;
$$;

SELECT rebuild_ledger_journal();
