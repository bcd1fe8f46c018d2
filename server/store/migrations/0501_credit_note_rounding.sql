-- A credit note carries its share of the credited invoice's rounding amount (BT-114), so
-- an invoice's credit notes together refund what was payable, never more: a tax-inclusive
-- invoice's payable amount can be one minor unit below its total. Amount credited (what
-- is refunded) = total_micros + rounding_micros.
ALTER TABLE credit_notes ADD COLUMN rounding_micros bigint NOT NULL DEFAULT 0;
