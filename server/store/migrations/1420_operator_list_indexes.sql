-- Indexes for the operator's lists across accounts (traffic_repo.usage and traffic_repo.charges
-- with no account): ``GET /v1/usage`` and ``GET /v1/charges`` order by (event_time, id) and
-- resume after a cursor's key. The primary keys lead with the account, so without these a
-- page over all accounts was a parallel scan of the month and a top-N sort (seconds at 3 M
-- records, minutes 50 pages deep); with them a page reads its rows in index order, at any
-- depth. Per-account lists keep using the primary keys.
CREATE INDEX usage_records_time ON usage_records (event_time, usage_id);
CREATE INDEX charges_time ON charges (event_time, charge_id);

-- ``GET /v1/charges?rerate_job_id=`` (traffic_repo.charges, a rerate's reversals and new
-- charges): partial, so charges written by ingest (no rerate job) never enter it.
CREATE INDEX charges_rerate_job ON charges (rerate_job_id, event_time, charge_id)
    WHERE rerate_job_id IS NOT NULL;
