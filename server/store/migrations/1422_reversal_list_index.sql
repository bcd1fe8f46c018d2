-- ``GET /v1/charges?kind=reversal`` over all accounts (traffic_repo.charges): reversals are
-- a sliver of the charges, so walking charges_time for them read the whole period to find a
-- page (1.6 s at 1 M charges and none reversed). Partial: ingest writes only 'charge' rows,
-- which never enter it; rerates and credits write the reversals.
CREATE INDEX charges_reversals_time ON charges (event_time, charge_id) WHERE kind = 'reversal';
