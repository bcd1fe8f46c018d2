# cython: language_level=3
"""3GPP TS 32.297 CDR file framing and TS 32.298 BER record extraction, in C.

``decode_cdrs`` walks a buffer of CDRs (32.297 CDR headers, or bare concatenated BER records
when ``framed`` is false), and writes one ``OutRec`` per record into a ``RecordBatch``:
numbers as digit strings, times as UTC epoch seconds, volumes summed. It stops when the batch
is full or the buffer ends inside a CDR, and reports where, so callers can stream a file of
any size through a fixed window.

Supported records (CHOICE tag of ``CallEventRecord``): MSC ``moCallRecord`` [0],
``mtCallRecord`` [1], ``moSMSRecord`` [6], ``mtSMSRecord`` [7]; EPC ``sGWRecord`` [78],
``pGWRecord`` [79]. ``FIELD_TAGS`` is the one table of field tags this decoder knows; the
pyasn1 schema in ``adapters.formats.asn1_3gpp`` is checked against it by the tests.
Others records come back with error ``R_UNSUPPORTED`` (per record, never dropped).

Problems inside a well-framed record (missing mandatory field, bad TimeStamp, damaged inner
BER) mark that record only (``OutRec.err``); damage to the framing itself (a CDR or record
length that runs past the data) stops the walk with a file-level status and offset.
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.string cimport strcpy

from ._ber cimport (
    E_NO_EOC, E_OK, E_TRUNCATED, Tlv, checked_add, copy_hex, copy_text, days_from_civil, read_int, read_tlv, tbcd,
    valid_civil,
)
from ._records cimport (
    F_ANSWER, F_CALLED, F_CALLING, F_CAUSE, F_CHARGING_ID, F_DURATION, F_IMSI, F_MSISDN,
    F_NODE, F_REF, F_APN, F_SEIZURE, F_SEQ, F_SERVICE_DATA, F_TIME, F_TRAFFIC, F_VOLUME,
    OutRec, RecordBatch, R_BAD_INTEGER, R_BAD_TIMESTAMP, R_MALFORMED, R_MISSING_FIELD,
    R_NO_EVENT_TIME, R_NOT_BER, R_OVERFLOW, R_TOO_LONG, R_UNSUPPORTED,
)

RECORD_TYPES = {
    0: "moCallRecord", 1: "mtCallRecord", 6: "moSMSRecord", 7: "mtSMSRecord",
    78: "sGWRecord", 79: "pGWRecord",
}

# record -> field -> context tag (TS 32.298 CSChargingDataTypes / GPRSChargingDataTypes)
FIELD_TAGS = {
    "moCallRecord": {
        "recordType": 0, "servedIMSI": 1, "servedMSISDN": 3, "callingNumber": 4,
        "calledNumber": 5, "recordingEntity": 9, "seizureTime": 22, "answerTime": 23,
        "callDuration": 25, "causeForTerm": 30, "callReference": 32, "sequenceNumber": 33,
    },
    "mtCallRecord": {
        "recordType": 0, "servedIMSI": 1, "servedMSISDN": 3, "callingNumber": 4,
        "recordingEntity": 6, "seizureTime": 19, "answerTime": 20, "callDuration": 22,
        "causeForTerm": 27, "callReference": 29, "sequenceNumber": 30,
    },
    "moSMSRecord": {
        "recordType": 0, "servedIMSI": 1, "servedMSISDN": 3, "recordingEntity": 6,
        "messageReference": 8, "originationTime": 9, "destinationNumber": 12,
    },
    "mtSMSRecord": {
        "recordType": 0, "servedIMSI": 2, "servedMSISDN": 4, "recordingEntity": 6,
        "deliveryTime": 8,
    },
    "sGWRecord": {
        "recordType": 0, "servedIMSI": 3, "s-GWAddress": 4, "chargingID": 5,
        "accessPointNameNI": 7, "listOfTrafficVolumes": 12, "recordOpeningTime": 13,
        "duration": 14, "causeForRecClosing": 15, "recordSequenceNumber": 17,
        "servedMSISDN": 22,
    },
    "pGWRecord": {
        "recordType": 0, "servedIMSI": 3, "p-GWAddress": 4, "chargingID": 5,
        "accessPointNameNI": 7, "listOfTrafficVolumes": 12, "recordOpeningTime": 13,
        "duration": 14, "causeForRecClosing": 15, "recordSequenceNumber": 17,
        "servedMSISDN": 22, "listOfServiceData": 34,
    },
}
# Inside listOfTrafficVolumes (ChangeOfCharCondition) and listOfServiceData
# (ChangeOfServiceCondition): uplink / downlink volume tags.
VOLUME_TAGS = {"ChangeOfCharCondition": (3, 4), "ChangeOfServiceCondition": (12, 13)}

cdef enum:
    X_NONE = 0
    X_IMSI
    X_MSISDN
    X_CALLING
    X_CALLED
    X_RECENT
    X_SEIZURE
    X_ANSWER
    X_EVENT_TS
    X_DURATION
    X_CAUSE
    X_CALLREF
    X_SEQ
    X_NODE
    X_CHARGING_ID
    X_TRAFFIC
    X_SERVICE
    X_APN
    X_MSGREF
    X_SMS_DEST

_ROLES = {
    "servedIMSI": X_IMSI, "servedMSISDN": X_MSISDN, "callingNumber": X_CALLING,
    "calledNumber": X_CALLED, "recordingEntity": X_RECENT, "seizureTime": X_SEIZURE,
    "answerTime": X_ANSWER, "originationTime": X_EVENT_TS, "deliveryTime": X_EVENT_TS,
    "recordOpeningTime": X_EVENT_TS, "callDuration": X_DURATION, "duration": X_DURATION,
    "causeForTerm": X_CAUSE, "causeForRecClosing": X_CAUSE, "callReference": X_CALLREF,
    "sequenceNumber": X_SEQ, "recordSequenceNumber": X_SEQ, "s-GWAddress": X_NODE,
    "p-GWAddress": X_NODE, "chargingID": X_CHARGING_ID, "listOfTrafficVolumes": X_TRAFFIC,
    "listOfServiceData": X_SERVICE, "accessPointNameNI": X_APN, "messageReference": X_MSGREF,
    "destinationNumber": X_SMS_DEST, "recordType": X_NONE,
}

cdef enum:
    K_CALL = 1
    K_SMS = 2
    K_PS = 3

cdef unsigned char ROLE[128][128]
cdef unsigned char KIND[128]


def _build_tables():
    cdef int rt, tag
    for rt in range(128):
        KIND[rt] = 0
        for tag in range(128):
            ROLE[rt][tag] = X_NONE
    names = {v: k for k, v in RECORD_TYPES.items()}
    for rec, fields in FIELD_TAGS.items():
        rt = names[rec]
        KIND[rt] = K_CALL if rt in (0, 1) else (K_SMS if rt in (6, 7) else K_PS)
        for field, tag in fields.items():
            ROLE[rt][tag] = _ROLES[field]


_build_tables()

cdef enum:
    # The longest record accepted: what a 32.297 CDR header's 16-bit length can frame. Raw
    # (unframed) records are held to it too.
    MAX_RECORD = 65535

MAX_RECORD_BYTES = MAX_RECORD

# decode_cdrs status values
STATUS_FULL = 0       # batch full: call again from the returned position
STATUS_NEED_MORE = 1  # buffer ends inside a CDR: append data and call again
STATUS_DONE = 2       # final buffer consumed
STATUS_ERROR = -1     # framing damage: nothing after the returned offset is readable

from ._records import BER_ERRORS


cdef inline int timestamp(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, int64_t* out) noexcept nogil:
    """TS 32.298 TimeStamp: YYMMDDhhmmss BCD + sign ('+'/'-') + hhmm BCD, local time."""
    cdef int v[8]
    cdef int i, off = 0
    cdef Py_ssize_t n = e - s
    if n != 9 and n != 6:
        return -1
    for i in range(6):
        if (b[s + i] >> 4) > 9 or (b[s + i] & 0x0F) > 9:
            return -1
        v[i] = (b[s + i] >> 4) * 10 + (b[s + i] & 0x0F)
    if not valid_civil(2000 + v[0], v[1], v[2], v[3], v[4], v[5]):
        return -1
    if n == 9:
        if b[s + 6] != 43 and b[s + 6] != 45:
            return -1
        for i in range(2):
            if (b[s + 7 + i] >> 4) > 9 or (b[s + 7 + i] & 0x0F) > 9:
                return -1
        v[6] = (b[s + 7] >> 4) * 10 + (b[s + 7] & 0x0F)
        v[7] = (b[s + 8] >> 4) * 10 + (b[s + 8] & 0x0F)
        if v[6] > 23 or v[7] > 59:
            return -1
        off = (v[6] * 60 + v[7]) * (-1 if b[s + 6] == 45 else 1)
    out[0] = (days_from_civil(2000 + v[0], v[1], v[2]) * 86400
              + v[3] * 3600 + v[4] * 60 + v[5] - off * 60)
    return 0


cdef inline int address_digits(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, char* out, int cap) noexcept nogil:
    """ISDN-AddressString / BCDDirectoryNumber: drop the TON/NPI octet, TBCD digits."""
    if e - s < 1:
        out[0] = 0
        return 0
    return tbcd(b, s + 1, e, out, cap)


cdef inline int tp_address(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, char* out, int cap) noexcept nogil:
    """TS 23.040 TP-Destination-Address: digit count, TON/NPI, semi-octets."""
    cdef int ndig, n
    if e - s < 2:
        return -1
    ndig = b[s]
    if (ndig + 1) // 2 > e - s - 2:
        return -1
    n = tbcd(b, s + 2, s + 2 + (ndig + 1) // 2, out, cap)
    if n < 0:
        return -1
    if n > ndig:
        n = ndig
        out[n] = 0
    return n


cdef int put_uint(char* out, int pos, unsigned int v) noexcept nogil:
    cdef char tmp[12]
    cdef int n = 0
    if v == 0:
        out[pos] = 48
        return pos + 1
    while v:
        tmp[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    while n:
        n -= 1
        out[pos] = tmp[n]
        pos += 1
    return pos


cdef int gsn_address(const uint8_t* b, Tlv* f, char* out, int cap) noexcept nogil:
    """GSNAddress (explicitly tagged CHOICE): IPv4 dotted, IPv6 hex, or text form."""
    cdef Tlv a
    cdef int i, p = 0
    if not f.cons:
        return -1
    if read_tlv(b, f.cstart, f.cend, &a, 2) != E_OK or a.cls != 2:
        return -1
    if a.tag == 0:
        if a.cend - a.cstart != 4:
            return -1
        for i in range(4):
            p = put_uint(out, p, b[a.cstart + i])
            out[p] = 46 if i < 3 else 0
            p += 1
        return p - 1
    if a.tag == 1:
        if a.cend - a.cstart != 16:
            return -1
        return copy_hex(b, a.cstart, a.cend, out, cap)
    if a.tag == 2 or a.tag == 3:
        return copy_text(b, a.cstart, a.cend, out, cap)
    return -1


cdef int sum_volumes(const uint8_t* b, Tlv* f, uint32_t up_tag, uint32_t down_tag,
                     int64_t* up, int64_t* down, Py_ssize_t* bad) noexcept nogil:
    """Sum the uplink/downlink volumes of each container in a SEQUENCE OF. 0, or R_*."""
    cdef Tlv c, x
    cdef Py_ssize_t p = f.cstart, q
    cdef int64_t v
    if not f.cons:
        bad[0] = f.start
        return R_MALFORMED
    while p < f.cend:
        if read_tlv(b, p, f.cend, &c, 2) != E_OK or not c.cons:
            bad[0] = p
            return R_MALFORMED
        q = c.cstart
        while q < c.cend:
            if read_tlv(b, q, c.cend, &x, 3) != E_OK:
                bad[0] = q
                return R_MALFORMED
            if x.cls == 2 and (x.tag == up_tag or x.tag == down_tag):
                if read_int(b, x.cstart, x.cend, &v) != 0 or v < 0:
                    bad[0] = q
                    return R_BAD_INTEGER
                if not checked_add(up if x.tag == up_tag else down, v):
                    bad[0] = q
                    return R_OVERFLOW
            q = x.next
        p = c.next
    return 0


cdef int decode_record(const uint8_t* b, Tlv* rec, OutRec* r) noexcept nogil:
    """Extract one 32.298 record into ``r``. Returns R_OK or the per-record problem."""
    cdef Tlv f
    cdef Py_ssize_t p = rec.cstart
    cdef int rt, role, n, kind, rc
    cdef int64_t v
    cdef int64_t t_up = 0, t_down = 0, s_up = 0, s_down = 0
    cdef Py_ssize_t bad = 0
    r.rtype = <int>rec.tag if rec.cls == 2 else -1
    if rec.cls != 2 or not rec.cons or rec.tag >= 128 or KIND[rec.tag] == 0:
        r.err_offset = rec.start
        return R_UNSUPPORTED
    rt = rec.tag
    kind = KIND[rt]
    while p < rec.cend:
        if read_tlv(b, p, rec.cend, &f, 1) != E_OK:
            r.err_offset = p
            return R_MALFORMED
        p = f.next
        if f.cls != 2 or f.tag >= 128:
            continue
        role = ROLE[rt][f.tag]
        if role == X_NONE:
            continue
        r.err_tag = f.tag
        r.err_offset = f.start
        if role == X_IMSI:
            n = tbcd(b, f.cstart, f.cend, r.imsi, sizeof(r.imsi))
            if n < 0:
                return R_TOO_LONG
            r.flags |= F_IMSI
        elif role == X_MSISDN:
            if address_digits(b, f.cstart, f.cend, r.msisdn, sizeof(r.msisdn)) < 0:
                return R_TOO_LONG
            r.flags |= F_MSISDN
        elif role == X_CALLING:
            if address_digits(b, f.cstart, f.cend, r.calling, sizeof(r.calling)) < 0:
                return R_TOO_LONG
            r.flags |= F_CALLING
        elif role == X_CALLED:
            if address_digits(b, f.cstart, f.cend, r.called, sizeof(r.called)) < 0:
                return R_TOO_LONG
            r.flags |= F_CALLED
        elif role == X_SMS_DEST:
            if tp_address(b, f.cstart, f.cend, r.called, sizeof(r.called)) < 0:
                return R_TOO_LONG
            r.flags |= F_CALLED
        elif role == X_RECENT:
            if address_digits(b, f.cstart, f.cend, r.node, sizeof(r.node)) < 0:
                return R_TOO_LONG
            r.flags |= F_NODE
        elif role == X_NODE:
            if gsn_address(b, &f, r.node, sizeof(r.node)) < 0:
                return R_MALFORMED
            r.flags |= F_NODE
        elif role == X_SEIZURE:
            if timestamp(b, f.cstart, f.cend, &r.seizure_time) < 0:
                return R_BAD_TIMESTAMP
            r.flags |= F_SEIZURE
        elif role == X_ANSWER:
            if timestamp(b, f.cstart, f.cend, &r.event_time) < 0:
                return R_BAD_TIMESTAMP
            r.flags |= F_ANSWER
        elif role == X_EVENT_TS:
            if timestamp(b, f.cstart, f.cend, &r.event_time) < 0:
                return R_BAD_TIMESTAMP
            r.flags |= F_TIME
        elif role == X_DURATION:
            if read_int(b, f.cstart, f.cend, &r.duration) != 0 or r.duration < 0:
                return R_BAD_INTEGER
            r.flags |= F_DURATION
        elif role == X_CAUSE:
            if read_int(b, f.cstart, f.cend, &r.cause) != 0:
                return R_BAD_INTEGER
            r.flags |= F_CAUSE
        elif role == X_SEQ:
            if read_int(b, f.cstart, f.cend, &r.seq) != 0:
                return R_BAD_INTEGER
            r.flags |= F_SEQ
        elif role == X_CHARGING_ID:
            if read_int(b, f.cstart, f.cend, &r.charging_id) != 0 or r.charging_id < 0:
                return R_BAD_INTEGER
            r.flags |= F_CHARGING_ID
        elif role == X_CALLREF or role == X_MSGREF:
            if copy_hex(b, f.cstart, f.cend, r.ref, sizeof(r.ref)) < 0:
                return R_TOO_LONG
            r.flags |= F_REF
        elif role == X_APN:
            if copy_text(b, f.cstart, f.cend, r.apn, sizeof(r.apn)) < 0:
                return R_TOO_LONG
            r.flags |= F_APN
        elif role == X_TRAFFIC:
            rc = sum_volumes(b, &f, 3, 4, &t_up, &t_down, &bad)
            if rc:
                r.err_offset = bad
                return rc
            r.flags |= F_TRAFFIC
        elif role == X_SERVICE:
            rc = sum_volumes(b, &f, 12, 13, &s_up, &s_down, &bad)
            if rc:
                r.err_offset = bad
                return rc
            r.flags |= F_SERVICE_DATA
    r.err_tag = 0
    r.err_offset = rec.start
    if kind == K_CALL:
        if r.flags & F_ANSWER:
            r.flags |= F_TIME
        elif r.flags & F_SEIZURE:
            r.event_time = r.seizure_time
            r.flags |= F_TIME
        else:
            return R_NO_EVENT_TIME
        if not (r.flags & F_DURATION):
            r.err_tag = 25 if rt == 0 else 22
            return R_MISSING_FIELD
        if not (r.flags & F_REF):
            r.err_tag = 32 if rt == 0 else 29
            return R_MISSING_FIELD
    elif not (r.flags & F_TIME):
        return R_NO_EVENT_TIME
    if kind == K_PS:
        if not (r.flags & F_CHARGING_ID):
            r.err_tag = 5
            return R_MISSING_FIELD
        if not (r.flags & F_DURATION):
            r.err_tag = 14
            return R_MISSING_FIELD
        # listOfServiceData and listOfTrafficVolumes count the same traffic: never add both.
        if r.flags & F_SERVICE_DATA:
            r.vol_up, r.vol_down = s_up, s_down
        else:
            r.vol_up, r.vol_down = t_up, t_down
        r.flags |= F_VOLUME
    return 0


def decode_cdrs(const uint8_t[::1] buf, Py_ssize_t pos, RecordBatch out, int64_t base,
                bint framed, bint final):
    """Decode CDRs from ``buf[pos:]`` into ``out`` (appending).

    ``base`` is the file offset of ``buf[0]``. Returns ``(pos, status, error)``: the
    position to resume from, a ``STATUS_*`` value, and for ``STATUS_ERROR`` a message
    (the file offset of the damage is ``base + pos``).
    """
    cdef Py_ssize_t end = buf.shape[0]
    cdef const uint8_t* b = &buf[0] if end > 0 else NULL
    cdef Py_ssize_t hdr, clen, rstart, rend
    cdef OutRec* r
    cdef Tlv rec
    cdef int rc, err = 0
    cdef int fmt
    cdef int status = -99
    if pos < 0 or pos > end:
        raise ValueError("pos outside the buffer")
    with nogil:
        while True:
            while pos < end and b[pos] == 0xFF:  # fill between records
                pos += 1
            if not framed:
                while pos < end and b[pos] == 0x00:
                    pos += 1
            if pos >= end:
                status = 2 if final else 1
                break
            r = out.next_slot()
            if r == NULL:
                status = 0
                break
            if framed:
                if end - pos < 4 or ((b[pos + 2] >> 5) == 7 and end - pos < 5):
                    status = -2 if final else 1
                    break
                clen = (<Py_ssize_t>b[pos] << 8) | b[pos + 1]
                hdr = 5 if (b[pos + 2] >> 5) == 7 else 4
                if clen == 0:
                    status = -3
                    break
                if clen > end - pos - hdr:
                    status = -4 if final else 1
                    break
                fmt = b[pos + 3] >> 5
                rstart = pos + hdr
                rend = rstart + clen
                r.offset = base + rstart
                r.length = <int>clen
                out.n += 1
                pos = rend
                if fmt != 1:
                    r.err = R_NOT_BER
                    r.err_offset = base + rstart
                    continue
                rc = read_tlv(b, rstart, rend, &rec, 0)
                if rc != E_OK:
                    r.err = R_MALFORMED
                    r.err_offset = base + rstart
                    continue
            else:
                rc = read_tlv(b, pos, end, &rec, 0)
                if rc == E_OK and rec.next - pos > MAX_RECORD:
                    status = -6
                    break
                if rc != E_OK:
                    if rc == E_TRUNCATED or rc == E_NO_EOC:
                        # Wait for more data only while the record could still fit the cap:
                        # bogus length octets must not pull the rest of the file in.
                        if end - pos > MAX_RECORD:
                            status = -6
                            break
                        if not final:
                            status = 1
                            break
                    err = rc
                    status = -5
                    break
                r.offset = base + pos
                r.length = <int>(rec.next - pos)
                out.n += 1
                pos = rec.next
            r.err = decode_record(b, &rec, r)
            r.err_offset += base
    if status == -2:
        return pos, STATUS_ERROR, "truncated CDR header"
    if status == -3:
        return pos, STATUS_ERROR, "CDR header says length 0"
    if status == -4:
        return pos, STATUS_ERROR, (
            f"CDR length {(buf[pos] << 8) | buf[pos + 1]} runs past the end of the file "
            f"({end - pos} bytes left)")
    if status == -5:
        return pos, STATUS_ERROR, f"bad BER record: {BER_ERRORS.get(err, err)}"
    if status == -6:
        return pos, STATUS_ERROR, (
            f"BER record longer than {MAX_RECORD} bytes, the most a CDR can hold: damaged "
            "length octets, or not a raw 32.298 file")
    return pos, status, None


def parse_file_header(const uint8_t[::1] buf):
    """The 32.297 CDR file header as a dict. Raises ValueError(message, offset)."""
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t p
    if n < 50:
        raise ValueError("file header shorter than 50 bytes", 0)
    b = bytes(buf[:n])
    file_length = int.from_bytes(b[0:4], "big")
    header_length = int.from_bytes(b[4:8], "big")
    if header_length < 50 or header_length > n:
        raise ValueError(f"header length {header_length} outside 50..{n}", 4)
    rf_len = int.from_bytes(b[48:50], "big")
    p = 50 + rf_len
    if p + 2 > header_length:
        raise ValueError(f"routing filter length {rf_len} runs past the header", 48)
    pe_len = int.from_bytes(b[p:p + 2], "big")
    if p + 2 + pe_len > header_length:
        raise ValueError(f"private extension length {pe_len} runs past the header", p)
    hi, lo = b[8], b[9]
    header = {
        "file_length": file_length,
        "header_length": header_length,
        "high_release": _release(hi, b, p + 2 + pe_len, header_length),
        "high_version": hi & 0x1F,
        "low_release": _release(lo, b, p + 3 + pe_len, header_length),
        "low_version": lo & 0x1F,
        "opened": _file_ts(b[10:14]),
        "last_append": _file_ts(b[14:18]),
        "cdr_count": int.from_bytes(b[18:22], "big"),
        "file_sequence_number": int.from_bytes(b[22:26], "big"),
        "closure_reason": b[26],
        "node_address": _node_ip(b[27:47]),
        "lost_cdr_indicator": b[47],
        "routing_filter": b[50:50 + rf_len].decode("latin-1"),
        "private_extension": b[p + 2:p + 2 + pe_len].hex(),
    }
    return header


def _release(octet, b, ext_at, header_length):
    rel = octet >> 5
    if rel == 7 and ext_at < header_length:
        return 10 + b[ext_at]
    return {0: 99, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9}.get(rel, 10)


def _file_ts(b):
    """32.297 4-octet timestamp: month, day, hour, minute, UTC offset (no year)."""
    v = int.from_bytes(b, "big")
    month, day, hour, minute = v >> 28, (v >> 23) & 0x1F, (v >> 18) & 0x1F, (v >> 12) & 0x3F
    sign = "-" if (v >> 11) & 1 else "+"
    oh, om = (v >> 6) & 0x1F, v & 0x3F
    return f"{month:02d}-{day:02d}T{hour:02d}:{minute:02d}{sign}{oh:02d}:{om:02d}"


def _node_ip(b):
    if b[:16] in (b"\xff" * 16, b"\x00" * 16):
        return ".".join(str(x) for x in b[16:])
    if b[16:] in (b"\xff" * 4, b"\x00" * 4):
        return b[:16].hex()
    return b.hex()
