-- What invoicing needs, loaded by operators (catalog file sections, admin API) instead of
-- raw SQL: a stable identity for discounts so reloading a file updates rather than doubles
-- them, and an optional operator reference that makes booking an adjustment idempotent.

-- A discount is named by its code (catalog files, API). Rows written before codes existed
-- get one from their id.
ALTER TABLE discounts ADD COLUMN code text;
UPDATE discounts SET code = 'discount-' || discount_id WHERE code IS NULL;
ALTER TABLE discounts ALTER COLUMN code SET NOT NULL;
ALTER TABLE discounts ADD CONSTRAINT discounts_code UNIQUE (code);
-- Ending a discount sets valid_to; valid_to = valid_from is a discount that never applied.
ALTER TABLE discounts ADD CONSTRAINT discounts_period
    CHECK (valid_to IS NULL OR valid_to >= valid_from) NOT VALID;

-- The same reference booked twice for an account is the same adjustment (a retried request
-- or command), never a second one.
ALTER TABLE adjustments ADD COLUMN reference text;
CREATE UNIQUE INDEX adjustments_reference ON adjustments (account_id, reference)
    WHERE reference IS NOT NULL;
