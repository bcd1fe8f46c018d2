# cython: language_level=3
"""GSMA TD.57 TAP 3.12 call events encoded to BER in C (the writer of outbound TAP files).

``encode_events(events)`` returns the concatenated ``CallEventDetail`` elements of the
events, the content of a CallEventDetailList; ``tlv(tag, content)`` and ``integer(tag, v)``
write one APPLICATION-class element (what ``adapters.formats.tap3_writer`` wraps around
them). Lengths are definite and minimal, integers minimal two's complement: byte for byte
what pyasn1 writes for the same values (``adapters.formats.tap3_encode`` is the twin, and
the tests compare the two).

An event is a tuple (``EVENT_FIELDS``): kind (9 MOC, 10 MTC, 14 GPRS), IMSI and MSISDN
digits, the other party's digits (called for a MOC, calling for a MTC), the local start
time ``CCYYMMDDhhmmss``, its UTC offset code, duration (s), teleservice code, data volume
incoming and outgoing (bytes), APN, charging id, charge (TAP units), exchange rate code,
recording entity code. ``None`` leaves an optional field out. TD.57's sizes hold: an IMSI
has 5 to 15 digits, an MSISDN 1 to 15, other numbers up to 40. A value that cannot be
encoded raises ``ValueError(message, event index)``.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove

EVENT_FIELDS = ("kind", "imsi", "msisdn", "number", "start", "utc_code", "duration",
                "teleservice", "volume_in", "volume_out", "apn", "charging_id", "charge",
                "exchange_rate_code", "rec_entity_code")

cdef enum:
    K_MOC = 9
    K_MTC = 10
    K_GPRS = 14


cdef struct Buf:
    uint8_t* p
    Py_ssize_t n
    Py_ssize_t cap


cdef int grow(Buf* b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = b.cap
    cdef uint8_t* q
    if b.n + need <= cap:
        return 0
    while cap < b.n + need:
        cap = cap * 2 if cap else 4096
    q = <uint8_t*> realloc(b.p, cap)
    if q == NULL:
        raise MemoryError()
    b.p = q
    b.cap = cap
    return 0


cdef inline int put_tag(Buf* b, unsigned int tag, bint cons) except -1:
    """Identifier octets of an APPLICATION-class tag."""
    cdef uint8_t first = 0x40 | (0x20 if cons else 0)
    grow(b, 6)
    if tag < 31:
        b.p[b.n] = first | tag
        b.n += 1
    elif tag < 128:
        b.p[b.n] = first | 0x1F
        b.p[b.n + 1] = tag
        b.n += 2
    elif tag < 16384:
        b.p[b.n] = first | 0x1F
        b.p[b.n + 1] = 0x80 | (tag >> 7)
        b.p[b.n + 2] = tag & 0x7F
        b.n += 3
    else:
        raise ValueError("tag too large", -1)
    return 0


cdef inline Py_ssize_t open_cons(Buf* b, unsigned int tag) except -1:
    """Start a constructed element; returns the position of its (one-octet) length."""
    put_tag(b, tag, 1)
    grow(b, 1)
    b.n += 1
    return b.n - 1


cdef int close_cons(Buf* b, Py_ssize_t at) except -1:
    """Write the definite length of the element opened at ``at`` (moving its content right
    when the length needs the long form)."""
    cdef Py_ssize_t length = b.n - at - 1
    cdef int k = 0
    cdef Py_ssize_t v = length
    cdef int i
    if length < 128:
        b.p[at] = <uint8_t> length
        return 0
    while v:
        k += 1
        v >>= 8
    grow(b, k)
    memmove(b.p + at + 1 + k, b.p + at + 1, length)
    b.p[at] = 0x80 | k
    for i in range(k):
        b.p[at + k - i] = (length >> (8 * i)) & 0xFF
    b.n += k
    return 0


cdef int put_len(Buf* b, Py_ssize_t length) except -1:
    cdef int k = 0
    cdef Py_ssize_t v = length
    cdef int i
    grow(b, 9)
    if length < 128:
        b.p[b.n] = <uint8_t> length
        b.n += 1
        return 0
    while v:
        k += 1
        v >>= 8
    b.p[b.n] = 0x80 | k
    for i in range(k):
        b.p[b.n + k - i] = (length >> (8 * i)) & 0xFF
    b.n += 1 + k
    return 0


cdef int put_int(Buf* b, unsigned int tag, int64_t v) except -1:
    """A primitive INTEGER: the fewest two's complement octets that hold ``v``."""
    cdef int k = 1
    cdef int i
    while k < 8:
        if v >= -(<int64_t> 1 << (8 * k - 1)) and v < (<int64_t> 1 << (8 * k - 1)):
            break
        k += 1
    put_tag(b, tag, 0)
    grow(b, 1 + k)
    b.p[b.n] = k
    for i in range(k):
        b.p[b.n + k - i] = (<uint64_t> v >> (8 * i)) & 0xFF
    b.n += 1 + k
    return 0


cdef int put_text(Buf* b, unsigned int tag, const char* s, Py_ssize_t n) except -1:
    put_tag(b, tag, 0)
    put_len(b, n)
    grow(b, n)
    memcpy(b.p + b.n, s, n)
    b.n += n
    return 0


cdef int put_bcd(Buf* b, unsigned int tag, const char* s, Py_ssize_t n, Py_ssize_t index) except -1:
    """Digits packed two to an octet, high nibble first, an odd count padded with F."""
    cdef Py_ssize_t i, m = (n + 1) // 2
    cdef uint8_t hi, lo
    if n == 0 or n > 40:
        raise ValueError("a number of 1 to 40 digits", index)
    put_tag(b, tag, 0)
    put_len(b, m)
    grow(b, m)
    for i in range(m):
        hi = <uint8_t> s[2 * i] - 48
        lo = (<uint8_t> s[2 * i + 1] - 48) if 2 * i + 1 < n else 0x0F
        if hi > 9 or (lo > 9 and lo != 0x0F):
            raise ValueError("a number holds a character that is not a digit", index)
        b.p[b.n + i] = (hi << 4) | lo
    b.n += m
    return 0


cdef inline const char* utf8(object s, Py_ssize_t* n) except NULL:
    return PyUnicode_AsUTF8AndSize(s, n)


cdef int put_str(Buf* b, unsigned int tag, object s) except -1:
    cdef Py_ssize_t n
    cdef const char* c = utf8(s, &n)
    return put_text(b, tag, c, n)


cdef int put_subscriber(Buf* b, object imsi, object msisdn, Py_ssize_t index) except -1:
    cdef Py_ssize_t n
    cdef const char* c
    cdef Py_ssize_t outer = open_cons(b, 427)
    cdef Py_ssize_t sim = open_cons(b, 199)
    c = utf8(imsi, &n)
    if n < 5 or n > 15:
        raise ValueError("an IMSI has 5 to 15 digits", index)
    put_bcd(b, 129, c, n, index)
    if msisdn is not None:
        c = utf8(msisdn, &n)
        if n > 15:
            raise ValueError("an MSISDN has 1 to 15 digits", index)
        put_bcd(b, 152, c, n, index)
    close_cons(b, sim)
    close_cons(b, outer)
    return 0


cdef int put_start(Buf* b, object start, object code, Py_ssize_t index) except -1:
    cdef Py_ssize_t n
    cdef const char* c = utf8(start, &n)
    cdef Py_ssize_t at = open_cons(b, 44)
    if n != 14:
        raise ValueError("a start time is CCYYMMDDhhmmss", index)
    put_text(b, 16, c, n)
    put_int(b, 232, code)
    close_cons(b, at)
    return 0


cdef int put_charge_info(Buf* b, const char* item, object rate_code, object charge) except -1:
    cdef Py_ssize_t lst = open_cons(b, 70)
    cdef Py_ssize_t info = open_cons(b, 69)
    cdef Py_ssize_t details, detail
    put_text(b, 66, item, 1)
    if rate_code is not None:
        put_int(b, 105, rate_code)
    details = open_cons(b, 64)
    detail = open_cons(b, 63)
    put_text(b, 71, b"00", 2)
    put_int(b, 62, charge)
    close_cons(b, detail)
    close_cons(b, details)
    close_cons(b, info)
    close_cons(b, lst)
    return 0


cdef int put_call(Buf* b, tuple ev, int kind, Py_ssize_t index) except -1:
    cdef Py_ssize_t n, top, bci, party, used_list, used, service, code, loc, net
    cdef const char* c
    cdef object teleservice = ev[7]
    top = open_cons(b, kind)
    bci = open_cons(b, 147 if kind == K_MOC else 153)
    put_subscriber(b, ev[1], ev[2], index)
    if ev[3] is not None:
        party = open_cons(b, 89 if kind == K_MOC else 41)
        c = utf8(ev[3], &n)
        put_bcd(b, 407 if kind == K_MOC else 405, c, n, index)
        close_cons(b, party)
    put_start(b, ev[4], ev[5], index)
    if ev[6] is not None:
        put_int(b, 223, ev[6])
    close_cons(b, bci)
    if ev[14] is not None:
        loc = open_cons(b, 138)
        net = open_cons(b, 156)
        put_int(b, 184, ev[14])
        close_cons(b, net)
        close_cons(b, loc)
    used_list = open_cons(b, 38)
    used = open_cons(b, 39)
    service = open_cons(b, 36)
    code = open_cons(b, 426)
    put_str(b, 218, teleservice)
    close_cons(b, code)
    close_cons(b, service)
    c = utf8(teleservice, &n)
    put_charge_info(b, b"E" if n == 2 and c[0] == 50 else b"D", ev[13], ev[12])
    close_cons(b, used)
    close_cons(b, used_list)
    close_cons(b, top)
    return 0


cdef int put_gprs(Buf* b, tuple ev, Py_ssize_t index) except -1:
    cdef Py_ssize_t top, bci, sub, dest, loc, net, ents, used
    top = open_cons(b, K_GPRS)
    bci = open_cons(b, 114)
    sub = open_cons(b, 115)
    put_subscriber(b, ev[1], ev[2], index)
    close_cons(b, sub)
    if ev[10] is not None:
        dest = open_cons(b, 116)
        put_str(b, 261, ev[10])
        close_cons(b, dest)
    put_start(b, ev[4], ev[5], index)
    if ev[6] is not None:
        put_int(b, 223, ev[6])
    if ev[11] is not None:
        put_int(b, 72, ev[11])
    close_cons(b, bci)
    if ev[14] is not None:
        loc = open_cons(b, 117)
        net = open_cons(b, 118)
        ents = open_cons(b, 185)
        put_int(b, 184, ev[14])
        close_cons(b, ents)
        close_cons(b, net)
        close_cons(b, loc)
    used = open_cons(b, 121)
    put_int(b, 250, ev[8] if ev[8] is not None else 0)
    put_int(b, 251, ev[9] if ev[9] is not None else 0)
    put_charge_info(b, b"X", ev[13], ev[12])
    close_cons(b, used)
    close_cons(b, top)
    return 0


def encode_events(list events):
    """The BER ``CallEventDetail`` elements of ``events``, concatenated."""
    cdef Buf b
    cdef Py_ssize_t i
    cdef tuple ev
    cdef int kind
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        grow(&b, 160 * len(events) + 64)
        for i in range(len(events)):
            ev = <tuple?> events[i]
            if len(ev) != 15:
                raise ValueError("an event is a tuple of 15 fields", i)
            kind = ev[0]
            try:
                if kind == K_MOC or kind == K_MTC:
                    put_call(&b, ev, kind, i)
                elif kind == K_GPRS:
                    put_gprs(&b, ev, i)
                else:
                    raise ValueError(f"event kind {kind} cannot be encoded", i)
            except (TypeError, OverflowError) as exc:
                raise ValueError(f"a field cannot be encoded: {exc}", i) from None
        return PyBytes_FromStringAndSize(<char*> b.p, b.n)
    finally:
        free(b.p)


def tlv(unsigned int tag, bytes content, bint constructed=True):
    """One APPLICATION-class element around ``content``."""
    return header(tag, len(content), constructed) + content


def header(unsigned int tag, Py_ssize_t length, bint constructed=True):
    """The identifier and length octets of an element whose content is ``length`` octets."""
    cdef Buf b
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        put_tag(&b, tag, constructed)
        put_len(&b, length)
        return PyBytes_FromStringAndSize(<char*> b.p, b.n)
    finally:
        free(b.p)


def integer(unsigned int tag, int64_t value):
    """A primitive APPLICATION-class INTEGER."""
    cdef Buf b
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        put_int(&b, tag, value)
        return PyBytes_FromStringAndSize(<char*> b.p, b.n)
    finally:
        free(b.p)
