-- Our subscribers' roaming usage in a partner's network is billed at the partner's charge
-- plus this margin, in percent (server/settlement/roaming.py); an inbound call event older
-- than max_event_age_days before the partner's file was created is returned (error 261).
ALTER TABLE partners ADD COLUMN retail_markup_percent numeric(8, 4) NOT NULL DEFAULT 0
    CHECK (retail_markup_percent >= 0);
ALTER TABLE partners ADD COLUMN max_event_age_days integer NOT NULL DEFAULT 30
    CHECK (max_event_age_days > 0);
