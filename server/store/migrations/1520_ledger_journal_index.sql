-- ``GET /v1/ledger/journal?from=&to=`` pages the books' currency's entries of a period in
-- (entry_date, entry_id) order after a cursor, and the CSV and FEC forms stream the same
-- walk (server/ledger/repo.py: entries_after); ``other_currencies`` probes it per currency.
-- ledger_entries_account leads with the account, so a page sorted the whole period's entries
-- (100,000 a month for 100,000 invoices) to serve 50. On Citus the index is created on every
-- shard; each shard walks its own entries in order and the coordinator merges the pages.
CREATE INDEX ledger_entries_journal ON ledger_entries (currency, entry_date, entry_id);
