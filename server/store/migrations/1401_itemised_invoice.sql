-- Whether an account's invoice PDFs carry the itemised list of the calls and sessions they
-- bill (telecom customers expect one; others want a short invoice).
ALTER TABLE accounts ADD COLUMN itemised_invoice boolean NOT NULL DEFAULT false;
