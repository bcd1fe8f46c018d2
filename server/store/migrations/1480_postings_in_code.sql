-- Nothing relies on a trigger that does work or reads another table (DESIGN.md §7): on Citus
-- such a trigger runs on a shard, where the account's other tables are reachable only as
-- their co-located shards by name (migration 1350). The code that writes the rows does it,
-- in the same transaction, on one PostgreSQL and on Citus alike:
-- - the ledger entries of a finalised invoice and of an issued credit note, and the
--   settling of unapplied payment money against the new items (server/collections/postings.py,
--   called by server/billing/issuing.py);
-- - the rules tying lines, allowances, taxes and charge links to their invoice: written only
--   for drafts, under their row locks; a link names a line written with it; a draft is not
--   deleted while links name it (server/billing/drafts_repo.py, inputs_repo.py).
-- The row triggers that look only at the row they guard (invoices_immutable, the append-only
-- refuse_change ones, outbox_events_immutable) stay: they run on the row's own shard.
--
-- As in 1475: each DDL statement runs on its own from PL/pgSQL (Citus refuses to send a
-- text of several statements to the workers of a table already distributed), and the
-- distributed functions are dropped over one connection per node.
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
DO $$
BEGIN
    DROP TRIGGER invoices_to_ledger_insert ON invoices;
    DROP TRIGGER invoices_to_ledger_update ON invoices;
    DROP TRIGGER credit_notes_to_ledger ON credit_notes;
    DROP TRIGGER invoice_line_charges_insert ON invoice_line_charges;
    DROP TRIGGER invoice_line_charges_delete ON invoice_line_charges;
    DROP TRIGGER invoice_line_charges_update ON invoice_line_charges;
    DROP TRIGGER invoice_lines_orphans ON invoice_lines;
    DROP TRIGGER invoice_lines_immutable ON invoice_lines;
    DROP TRIGGER invoice_allowances_immutable ON invoice_allowances;
    DROP TRIGGER taxes_immutable ON taxes;
    DROP FUNCTION collections_invoices_finalised();
    DROP FUNCTION collections_credit_notes_issued();
    DROP FUNCTION refuse_links_to_finalised();
    DROP FUNCTION refuse_finalised_link_change();
    DROP FUNCTION refuse_orphaned_links();
    DROP FUNCTION refuse_finalised_part_change();
END;
$$;
