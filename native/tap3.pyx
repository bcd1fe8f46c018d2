# cython: language_level=3
"""GSMA TD.57 TAP 3.11/3.12 decoding in C: TransferBatch and Notification.

``Tap3Walker(buf)`` reads the batch header (BatchControlInfo, AccountingInfo, NetworkInfo)
and AuditControlInfo into dicts, then ``next_batch(out)`` walks the CallEventDetailList and
writes one ``OutRec`` per call event into a ``RecordBatch``: IMSI / MSISDN / calling /
called digits, start time converted to UTC with the event's UTC offset code, duration,
GPRS volumes, and the sum of the event's charge-type "00" charges (raw, unscaled).

``TAGS`` is the one table of APPLICATION tags this decoder reads (checked against the
pyasn1 schema in ``adapters.formats.asn1_tap3`` by the tests).
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.string cimport memcmp

from ._ber cimport (
    E_OK, Tlv, ascii_digits, bcd, checked_add, copy_text, days_from_civil, parse_utc_offset,
    read_int, read_tlv, rfc3339_printable, valid_civil,
)
from ._records cimport (
    F_APN, F_CALLED, F_CALLING, F_CAUSE, F_CHARGE, F_CHARGING_ID, F_DURATION, F_IMSI,
    F_MSISDN, F_REF, F_SERVICE, F_TIME, F_VOLUME, OutRec, RecordBatch, R_BAD_INTEGER,
    R_BAD_TIMESTAMP, R_MALFORMED, R_NO_EVENT_TIME, R_OVERFLOW, R_TOO_LONG,
    R_UNKNOWN_UTC_CODE,
)

TAGS = {
    "TransferBatch": 1, "Notification": 2, "CallEventDetailList": 3, "BatchControlInfo": 4,
    "AccountingInfo": 5, "NetworkInfo": 6, "AuditControlInfo": 15,
    "MobileOriginatedCall": 9, "MobileTerminatedCall": 10, "SupplServiceEvent": 11,
    "ServiceCentreUsage": 12, "GprsCall": 14, "ContentTransaction": 17,
    "LocationService": 297, "MessagingEvent": 433, "MobileSession": 434,
    "Sender": 196, "Recipient": 182, "FileSequenceNumber": 109,
    "RapFileSequenceNumber": 181, "FileCreationTimeStamp": 108,
    "TransferCutOffTimeStamp": 227, "FileAvailableTimeStamp": 107,
    "SpecificationVersionNumber": 201, "ReleaseVersionNumber": 189, "FileTypeIndicator": 110,
    "LocalCurrency": 135, "TapCurrency": 210, "TapDecimalPlaces": 244,
    "CurrencyConversionList": 80, "CurrencyConversion": 106, "ExchangeRateCode": 105,
    "NumberOfDecimalPlaces": 159, "ExchangeRate": 104,
    "UtcTimeOffsetInfoList": 234, "UtcTimeOffsetInfo": 233, "UtcTimeOffsetCode": 232,
    "UtcTimeOffset": 231, "LocalTimeStamp": 16,
    "TotalCharge": 415, "TotalTaxValue": 226, "TotalDiscountValue": 225,
    "CallEventDetailsCount": 43, "EarliestCallTimeStamp": 101, "LatestCallTimeStamp": 133,
    "Imsi": 129, "Msisdn": 152, "CallingNumber": 405, "CalledNumber": 407,
    "CallEventStartTimeStamp": 44, "ChargingTimeStamp": 74, "TotalCallEventDuration": 223,
    "DataVolumeIncoming": 250, "DataVolumeOutgoing": 251, "ChargingId": 72,
    "TeleServiceCode": 218, "BearerServiceCode": 40, "ChargeDetail": 63, "ChargeType": 71,
    "Charge": 62, "SupplServiceCode": 209, "AccessPointNameNI": 261, "CauseForTerm": 58,
}
from ._records import BER_ERRORS

EVENT_NAMES = {v: k for k, v in TAGS.items() if v in (9, 10, 11, 12, 14, 17, 297, 433, 434)}

cdef enum:
    T_LOCAL_TS = 16
    T_BEARER = 40
    T_START_TS = 44
    T_CAUSE = 58
    T_CHARGE = 62
    T_CHARGE_DETAIL = 63
    T_CHARGE_TYPE = 71
    T_CHARGING_ID = 72
    T_CHARGING_TS = 74
    T_IMSI = 129
    T_MSISDN = 152
    T_SS_CODE = 209
    T_TELE = 218
    T_DURATION = 223
    T_UTC_CODE = 232
    T_VOL_IN = 250
    T_VOL_OUT = 251
    T_APN_NI = 261
    T_CALLING = 405
    T_CALLED = 407


ctypedef struct EvCtx:
    int64_t start_local
    int64_t start_code
    int64_t charging_local
    int64_t charging_code
    bint has_start
    bint has_start_code
    bint has_charging
    bint has_charging_code
    bint cd_total
    bint cd_has_charge
    int64_t cd_charge
    Py_ssize_t bad


cdef int local_ts(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, int64_t* out) noexcept nogil:
    """TAP LocalTimeStamp "CCYYMMDDhhmmss" (ASCII) to seconds on the local clock."""
    cdef int y, mo, d, h, mi, sec
    if e - s != 14:
        return -1
    y = ascii_digits(b, s, 4)
    mo = ascii_digits(b, s + 4, 2)
    d = ascii_digits(b, s + 6, 2)
    h = ascii_digits(b, s + 8, 2)
    mi = ascii_digits(b, s + 10, 2)
    sec = ascii_digits(b, s + 12, 2)
    if y < 0 or mo < 0 or d < 0 or h < 0 or mi < 0 or sec < 0:
        return -1
    if not valid_civil(y, mo, d, h, mi, sec):
        return -1
    out[0] = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
    return 0


cdef int walk(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, uint32_t parent, OutRec* r,
              EvCtx* c, int depth) noexcept nogil:
    cdef Tlv t
    cdef Py_ssize_t p = s
    cdef int rc
    cdef int64_t v
    while p < e:
        if read_tlv(b, p, e, &t, depth) != E_OK:
            c.bad = p
            return R_MALFORMED
        p = t.next
        if t.cls != 1:
            continue
        if t.cons:
            if t.tag == T_CHARGE_DETAIL:
                c.cd_total = 0
                c.cd_has_charge = 0
            rc = walk(b, t.cstart, t.cend, t.tag, r, c, depth + 1)
            if rc:
                return rc
            if t.tag == T_CHARGE_DETAIL and c.cd_total and c.cd_has_charge:
                if not checked_add(&r.charge, c.cd_charge):
                    c.bad = t.start
                    return R_OVERFLOW
            continue
        c.bad = t.start
        r.err_tag = t.tag
        if t.tag == T_IMSI:
            if bcd(b, t.cstart, t.cend, r.imsi, sizeof(r.imsi)) < 0:
                return R_TOO_LONG
            r.flags |= F_IMSI
        elif t.tag == T_MSISDN:
            if bcd(b, t.cstart, t.cend, r.msisdn, sizeof(r.msisdn)) < 0:
                return R_TOO_LONG
            r.flags |= F_MSISDN
        elif t.tag == T_CALLING:
            if bcd(b, t.cstart, t.cend, r.calling, sizeof(r.calling)) < 0:
                return R_TOO_LONG
            r.flags |= F_CALLING
        elif t.tag == T_CALLED:
            if bcd(b, t.cstart, t.cend, r.called, sizeof(r.called)) < 0:
                return R_TOO_LONG
            r.flags |= F_CALLED
        elif t.tag == T_LOCAL_TS and (parent == T_START_TS or parent == T_CHARGING_TS):
            if local_ts(b, t.cstart, t.cend, &v) < 0:
                return R_BAD_TIMESTAMP
            if parent == T_START_TS:
                c.start_local = v
                c.has_start = 1
            elif not c.has_charging:
                c.charging_local = v
                c.has_charging = 1
        elif t.tag == T_UTC_CODE and (parent == T_START_TS or parent == T_CHARGING_TS):
            if read_int(b, t.cstart, t.cend, &v) != 0:
                return R_BAD_INTEGER
            if parent == T_START_TS:
                c.start_code = v
                c.has_start_code = 1
            elif not c.has_charging_code:
                c.charging_code = v
                c.has_charging_code = 1
        elif t.tag == T_DURATION:
            if read_int(b, t.cstart, t.cend, &r.duration) != 0 or r.duration < 0:
                return R_BAD_INTEGER
            r.flags |= F_DURATION
        elif t.tag == T_VOL_IN or t.tag == T_VOL_OUT:
            if read_int(b, t.cstart, t.cend, &v) != 0 or v < 0:
                return R_BAD_INTEGER
            if not checked_add(&r.vol_down if t.tag == T_VOL_IN else &r.vol_up, v):
                return R_OVERFLOW
            r.flags |= F_VOLUME
        elif t.tag == T_CHARGING_ID:
            if read_int(b, t.cstart, t.cend, &r.charging_id) != 0:
                return R_BAD_INTEGER
            r.flags |= F_CHARGING_ID
        elif t.tag == T_CHARGE_TYPE and parent == T_CHARGE_DETAIL:
            c.cd_total = t.cend - t.cstart == 2 and b[t.cstart] == 48 and b[t.cstart + 1] == 48
        elif t.tag == T_CHARGE and parent == T_CHARGE_DETAIL:
            if read_int(b, t.cstart, t.cend, &c.cd_charge) != 0:
                return R_BAD_INTEGER
            c.cd_has_charge = 1
        elif (t.tag == T_TELE or t.tag == T_BEARER) and not (r.flags & F_SERVICE):
            if t.cend - t.cstart > 4:
                return R_TOO_LONG
            r.service[0] = 84 if t.tag == T_TELE else 66  # 'T' / 'B'
            if copy_text(b, t.cstart, t.cend, r.service + 1, sizeof(r.service) - 1) < 0:
                return R_TOO_LONG
            r.flags |= F_SERVICE
        elif t.tag == T_SS_CODE and not (r.flags & F_REF):
            if copy_text(b, t.cstart, t.cend, r.ref, sizeof(r.ref)) < 0:
                return R_TOO_LONG
            r.flags |= F_REF
        elif t.tag == T_APN_NI:
            if copy_text(b, t.cstart, t.cend, r.apn, sizeof(r.apn)) < 0:
                return R_TOO_LONG
            r.flags |= F_APN
        elif t.tag == T_CAUSE:
            if read_int(b, t.cstart, t.cend, &r.cause) != 0:
                return R_BAD_INTEGER
            r.flags |= F_CAUSE
    r.err_tag = 0
    return 0


cdef class Tap3Walker:
    """One TAP3 file in memory (bytes or mmap). Header dicts are read at construction."""

    cdef const uint8_t[::1] buf
    cdef Py_ssize_t pos
    cdef Py_ssize_t end
    cdef int offset_min[256]
    cdef bint offset_known[256]
    cdef readonly str kind
    cdef readonly dict batch_control
    cdef readonly dict accounting
    cdef readonly dict network
    cdef readonly dict audit
    cdef readonly dict notification
    cdef readonly Py_ssize_t events_offset
    cdef readonly object trailing_error  # (message, offset) of damage after the events
    cdef readonly Py_ssize_t top_end  # where the top-level element ends (bytes may follow)
    cdef readonly Py_ssize_t audit_offset  # of AuditControlInfo, -1 when absent

    def __init__(self, const uint8_t[::1] buf):
        cdef Tlv top
        self.buf = buf
        self.pos = 0
        self.end = 0
        self.batch_control = {}
        self.accounting = {}
        self.network = {}
        self.audit = {}
        self.notification = {}
        self.trailing_error = None
        self.top_end = 0
        self.audit_offset = -1
        for i in range(256):
            self.offset_known[i] = 0
        n = buf.shape[0]
        if n == 0:
            raise ValueError("empty file", 0)
        rc = read_tlv(&buf[0], 0, n, &top, 0)
        if rc != E_OK:
            raise ValueError(f"bad top-level element ({_ber_error(rc)})", 0)
        if top.cls != 1 or not top.cons or top.tag not in (1, 2):
            raise ValueError("not a TAP3 TransferBatch or Notification", 0)
        self.top_end = top.next
        if top.tag == 2:
            self.kind = "Notification"
            self.notification = self._fields(top.cstart, top.cend)
            return
        self.kind = "TransferBatch"
        for tag, cstart, cend, start, cons in self._children(top.cstart, top.cend):
            if tag == 4:
                self.batch_control = self._fields(cstart, cend)
            elif tag == 5:
                self.accounting = self._fields(cstart, cend)
            elif tag == 6:
                self.network = self._fields(cstart, cend)
            elif tag == 3:
                self.pos, self.end, self.events_offset = cstart, cend, start
            elif tag == 15:
                self.audit = self._fields(cstart, cend)
                self.audit_offset = start
        for code, text in self.network.get("UtcTimeOffsetInfoList", []):
            if not isinstance(code, int) or not 0 <= code < 256:
                raise ValueError(f"UtcTimeOffsetCode {code} out of range", top.cstart)
            self.offset_min[code] = _offset_minutes(text)
            self.offset_known[code] = 1

    def _children(self, Py_ssize_t s, Py_ssize_t e):
        cdef Tlv t
        cdef int rc
        out = []
        while s < e:
            rc = read_tlv(&self.buf[0], s, e, &t, 1)
            if rc != E_OK:
                raise ValueError(f"bad BER element ({_ber_error(rc)})", s)
            if t.cls == 1:
                out.append((t.tag, t.cstart, t.cend, t.start, t.cons))
            s = t.next
        return out

    def _fields(self, Py_ssize_t s, Py_ssize_t e):
        """Header structures as {TAG name: value}; SEQUENCE OFs become lists."""
        out = {}
        for tag, cstart, cend, start, cons in self._children(s, e):
            name = _NAME_BY_TAG.get(tag)
            if name is None:
                continue
            raw = bytes(self.buf[cstart:cend])
            if tag in _INT_TAGS:
                out[name] = int.from_bytes(raw, "big", signed=True) if raw else 0
            elif tag == 234:
                out[name] = [
                    (v.get("UtcTimeOffsetCode"), v.get("UtcTimeOffset"))
                    for v in (self._fields(c1, c2) for _, c1, c2, _, _ in self._children(cstart, cend))
                ]
            elif tag == 80:
                out[name] = [self._fields(c1, c2) for _, c1, c2, _, _ in self._children(cstart, cend)]
            elif cons:
                out[name] = self._fields(cstart, cend)
            else:
                out[name] = raw.decode("latin-1")
        return out

    def next_batch(self, RecordBatch out, int64_t first_index=0):
        """Decode call events into ``out`` until it is full or the list ends.

        Returns True when more events remain. Raises ValueError(message, offset) when an
        event's own framing is damaged (records before it are already in ``out``).
        """
        cdef Tlv ev
        cdef OutRec* r
        cdef EvCtx c
        cdef int rc, err = 0
        cdef const uint8_t* b
        if self.pos >= self.end:
            return False
        b = &self.buf[0]
        with nogil:
            while self.pos < self.end:
                r = out.next_slot()
                if r == NULL:
                    break
                rc = read_tlv(b, self.pos, self.end, &ev, 1)
                if rc != E_OK:
                    err = rc
                    break
                out.n += 1
                r.offset = self.pos
                r.length = <int>(ev.next - self.pos)
                r.rtype = <int>ev.tag
                self.pos = ev.next
                self._event(b, &ev, r, &c)
        if err:
            raise ValueError(f"bad call event ({_ber_error(err)})", self.pos)
        return self.pos < self.end

    cdef void _event(self, const uint8_t* b, Tlv* ev, OutRec* r, EvCtx* c) noexcept nogil:
        cdef int64_t code
        c.has_start = c.has_start_code = c.has_charging = c.has_charging_code = 0
        c.bad = ev.start
        r.flags |= F_CHARGE
        if ev.cls != 1 or not ev.cons:
            r.err = R_MALFORMED
            r.err_offset = ev.start
            return
        r.err = walk(b, ev.cstart, ev.cend, ev.tag, r, c, 2)
        r.err_offset = c.bad
        if r.err:
            return
        r.err_offset = ev.start
        if c.has_start:
            r.event_time = c.start_local
            code = c.start_code if c.has_start_code else -1
        elif c.has_charging:
            r.event_time = c.charging_local
            code = c.charging_code if c.has_charging_code else -1
        else:
            r.err = R_NO_EVENT_TIME
            return
        if code < 0 or code > 255 or not self.offset_known[code]:
            r.err = R_UNKNOWN_UTC_CODE
            r.err_tag = T_UTC_CODE
            return
        r.event_time -= self.offset_min[code] * 60
        if not rfc3339_printable(r.event_time):
            r.err = R_BAD_TIMESTAMP
            r.err_tag = T_LOCAL_TS
            return
        r.flags |= F_TIME


_NAME_BY_TAG = {v: k for k, v in TAGS.items()}
_INT_TAGS = {201, 189, 244, 105, 159, 104, 232, 415, 226, 225, 43}


def _offset_minutes(text):
    if not isinstance(text, str) or len(text) != 5 or text[0] not in "+-" or not text[1:].isdigit():
        raise ValueError(f"bad UtcTimeOffset {text!r}", 0)
    minutes = int(text[1:3]) * 60 + int(text[3:5])
    return -minutes if text[0] == "-" else minutes


def _ber_error(rc):
    return BER_ERRORS.get(rc, rc)
