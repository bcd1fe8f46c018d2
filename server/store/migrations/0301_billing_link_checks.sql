-- Line ↔ charge links are written a million per bill run. Checking them row by row (a
-- foreign-key probe with a row lock, an immutability trigger per row) costs more than the
-- writes themselves, so the same rules are checked once per statement on the transition
-- tables: a link names an existing line of a draft invoice; links of a finalised invoice
-- are neither changed nor deleted; a line is not deleted while links still name it.
ALTER TABLE invoice_line_charges
    DROP CONSTRAINT invoice_line_charges_account_id_invoice_id_line_no_fkey;
DROP TRIGGER invoice_line_charges_immutable ON invoice_line_charges;
DROP TRIGGER invoice_line_charges_insert ON invoice_line_charges;

CREATE OR REPLACE FUNCTION refuse_links_to_finalised() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT account_id, invoice_id, line_no FROM new_links) n
               LEFT JOIN invoice_lines l USING (account_id, invoice_id, line_no)
               WHERE l.line_no IS NULL) THEN
        RAISE EXCEPTION 'a charge link names no invoice line'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
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

CREATE FUNCTION refuse_finalised_link_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT account_id, invoice_id FROM old_links) o
               JOIN invoices i USING (account_id, invoice_id) WHERE i.status = 'finalised') THEN
        RAISE EXCEPTION 'links of a finalised invoice cannot change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER invoice_line_charges_delete AFTER DELETE ON invoice_line_charges
    REFERENCING OLD TABLE AS old_links
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_finalised_link_change();
CREATE TRIGGER invoice_line_charges_update AFTER UPDATE ON invoice_line_charges
    REFERENCING OLD TABLE AS old_links
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_finalised_link_change();

CREATE FUNCTION refuse_orphaned_links() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_lines o JOIN invoice_line_charges l
               USING (account_id, invoice_id, line_no)) THEN
        RAISE EXCEPTION 'invoice lines still linked to charges cannot be deleted'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER invoice_lines_orphans AFTER DELETE ON invoice_lines
    REFERENCING OLD TABLE AS old_lines
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_orphaned_links();
