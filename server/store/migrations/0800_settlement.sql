-- Settlement with carriers (DESIGN.md §11): roaming partners, the exchange rates of their
-- files, the ledger of TAP/RAP files exchanged with them, and the call events each outbound
-- TAP file carried (whose returns are the settlement suspense).

CREATE TABLE partners (
    tadig               text PRIMARY KEY CHECK (tadig ~ '^[A-Z0-9]{5}$'),
    our_tadig           text NOT NULL CHECK (our_tadig ~ '^[A-Z0-9]{5}$'),
    name                text NOT NULL DEFAULT '',
    tap_currency        text NOT NULL DEFAULT 'SDR' CHECK (tap_currency ~ '^[A-Z]{3}$'),
    local_currency      char(3) NOT NULL,
    tap_decimal_places  smallint NOT NULL DEFAULT 3 CHECK (tap_decimal_places BETWEEN 0 AND 6),
    rate_source         text NOT NULL DEFAULT 'SDR',
    wholesale_tariff    text NOT NULL,
    imsi_prefixes       text[] NOT NULL,
    utc_offset          text NOT NULL DEFAULT '+0000' CHECK (utc_offset ~ '^[+-][0-9]{4}$'),
    file_kind           text NOT NULL DEFAULT 'chargeable'
                        CHECK (file_kind IN ('chargeable', 'test')),
    sftp                jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One rate per source, currency pair and day it takes effect: a file uses the latest rate on
-- or before its date. `rate` is local currency units per one TAP currency unit.
CREATE TABLE exchange_rates (
    source          text NOT NULL,
    tap_currency    text NOT NULL,
    local_currency  char(3) NOT NULL,
    valid_from      date NOT NULL,
    rate            numeric NOT NULL CHECK (rate > 0),
    PRIMARY KEY (source, tap_currency, local_currency, valid_from)
);

-- File sequence numbers per partner, direction and kind, handed out without gaps: the row is
-- locked by the transaction that stores the file, so a rolled-back file frees its number.
-- After 99999 numbering starts again at 1 in the next `cycle`.
CREATE TABLE settlement_sequences (
    partner    text NOT NULL REFERENCES partners,
    direction  text NOT NULL CHECK (direction IN ('out', 'in')),
    kind       text NOT NULL,
    last_fsn   integer NOT NULL DEFAULT 0,
    cycle      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (partner, direction, kind)
);

-- The file ledger. Outbound files are stored before they are sent and their content never
-- changes: a fatal return regenerates the file under the same FSN with the RAP file sequence
-- number that rejected it, as a new row superseding the old one.
CREATE TABLE settlement_files (
    file_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner         text NOT NULL REFERENCES partners,
    direction       text NOT NULL CHECK (direction IN ('out', 'in')),
    file_type       text NOT NULL CHECK (file_type IN ('tap', 'notification', 'rap', 'ack')),
    kind            text NOT NULL CHECK (kind IN ('chargeable', 'test')),
    name            text NOT NULL,
    fsn             integer NOT NULL,
    cycle           integer NOT NULL DEFAULT 0,
    rap_fsn         integer,
    content         bytea NOT NULL,
    sha256          text NOT NULL,
    event_count     bigint NOT NULL DEFAULT 0,
    total_charge    bigint NOT NULL DEFAULT 0,
    decimal_places  smallint NOT NULL DEFAULT 0,
    tap_currency    text NOT NULL DEFAULT '',
    period_from     timestamptz,
    period_to       timestamptz,
    state           text NOT NULL CHECK (state IN (
                        'generated', 'sent', 'acknowledged', 'returned', 'superseded',
                        'received', 'accepted', 'rejected')),
    supersedes      bigint REFERENCES settlement_files,
    answers         bigint REFERENCES settlement_files,
    detail          jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    closed_at       timestamptz
);
-- A rejected inbound file is kept for the record but takes no sequence number.
CREATE UNIQUE INDEX settlement_files_identity
    ON settlement_files (partner, direction, file_type, kind, cycle, fsn, coalesce(rap_fsn, -1))
    WHERE state <> 'rejected';
CREATE INDEX settlement_files_state ON settlement_files (partner, state);

CREATE FUNCTION settlement_files_content_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.content IS DISTINCT FROM OLD.content OR NEW.fsn IS DISTINCT FROM OLD.fsn
       OR NEW.name IS DISTINCT FROM OLD.name THEN
        RAISE EXCEPTION 'a settlement file''s name, sequence number and content never change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER settlement_files_fixed BEFORE UPDATE ON settlement_files
    FOR EACH ROW EXECUTE FUNCTION settlement_files_content_fixed();

-- The call events of the TAP files, one row per event per file that carried it (so a file's
-- rows always sum to its audit totals). `state` follows the event: 'sent'; 'returned' by a
-- severe return (the settlement suspense: error code, RAP file); 'corrected' once rerated
-- (`corrected_micros`), waiting for the next file; 'resent' when a later file's row
-- (`previous_event_id`) carries it; 'superseded' when its file was rejected whole and
-- regenerated; 'received' for inbound TAP events (partner charges). `record` is the
-- normalised usage record; `charge_micros` is in micro-units of the local currency,
-- `tap_charge` the TAP value at the file's decimal places.
CREATE TABLE settlement_events (
    event_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner            text NOT NULL REFERENCES partners,
    direction          text NOT NULL CHECK (direction IN ('out', 'in')),
    file_id            bigint NOT NULL REFERENCES settlement_files,
    event_index        integer NOT NULL,
    source             text NOT NULL,
    record_key         text NOT NULL,
    suspense_id        bigint,
    previous_event_id  bigint REFERENCES settlement_events,
    event_time         timestamptz NOT NULL,
    imsi               text NOT NULL,
    record             jsonb NOT NULL,
    charge_micros      bigint NOT NULL,
    tap_charge         bigint NOT NULL,
    state              text NOT NULL CHECK (state IN (
                           'sent', 'returned', 'corrected', 'resent', 'superseded',
                           'received')),
    error_code         integer,
    return_file_id     bigint REFERENCES settlement_files,
    corrected_micros   bigint,
    UNIQUE (file_id, event_index)
);
CREATE INDEX settlement_events_state ON settlement_events (partner, state);
CREATE INDEX settlement_events_key ON settlement_events (partner, source, record_key);
