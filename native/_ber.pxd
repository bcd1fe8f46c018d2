# cython: language_level=3
"""BER/TLV primitives shared by the native decoders (header-only: every function is inline).

Every reader takes the buffer, a position and the end of the enclosing element, and
checks each byte it touches against that end: a malformed length can never make a
reader step outside the buffer. Errors are small negative codes (``E_*``), never
exceptions, so the walkers run without the GIL.
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

cdef enum:
    E_OK = 0
    E_TRUNCATED = -1      # element runs past its container / the data
    E_BAD_TAG = -2        # tag number does not fit 28 bits
    E_BAD_LENGTH = -3     # length form reserved, too long, or indefinite on a primitive
    E_TOO_DEEP = -4       # nesting deeper than MAX_DEPTH
    E_NO_EOC = -5         # indefinite length without end-of-contents

cdef enum:
    MAX_DEPTH = 48

# Checked int64 arithmetic: the sum is computed as if with infinite range and the call says
# whether it fits, so no check relies on signed wraparound (-fwrapv) after the fact.
cdef extern from *:
    """
    static inline int bo_add64(int64_t a, int64_t b, int64_t *out) {
        return __builtin_add_overflow(a, b, out);
    }
    static inline int bo_mul64(int64_t a, int64_t b, int64_t *out) {
        return __builtin_mul_overflow(a, b, out);
    }
    """
    bint bo_add64(int64_t a, int64_t b, int64_t* out) nogil
    bint bo_mul64(int64_t a, int64_t b, int64_t* out) nogil


cdef inline bint checked_add(int64_t* acc, int64_t v) noexcept nogil:
    """``acc += v``; False (``acc`` unchanged) when the sum leaves the int64 range."""
    cdef int64_t total
    if bo_add64(acc[0], v, &total):
        return False
    acc[0] = total
    return True


# The instants ``format_rfc3339`` can print: 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
cdef extern from *:
    """
    #define BO_RFC3339_MIN INT64_C(-62167219200)
    #define BO_RFC3339_MAX INT64_C(253402300799)
    """
    const int64_t BO_RFC3339_MIN
    const int64_t BO_RFC3339_MAX


cdef inline bint rfc3339_printable(int64_t t) noexcept nogil:
    return BO_RFC3339_MIN <= t <= BO_RFC3339_MAX

ctypedef struct Tlv:
    uint32_t tag
    uint8_t cls           # 0 universal, 1 application, 2 context, 3 private
    uint8_t cons          # 1 when constructed
    Py_ssize_t start      # offset of the identifier octet
    Py_ssize_t cstart     # first content octet
    Py_ssize_t cend       # one past the last content octet (the EOC for indefinite)
    Py_ssize_t next       # first octet after the element


cdef inline int read_tlv(const uint8_t* b, Py_ssize_t pos, Py_ssize_t end,
                         Tlv* t, int depth) noexcept nogil:
    """Read the element at ``pos`` (within ``[pos, end)``); fill ``t``. Returns E_*."""
    cdef uint8_t c
    cdef uint32_t tag
    cdef uint64_t length
    cdef int n, i, rc
    cdef Tlv child
    cdef Py_ssize_t p
    if depth > MAX_DEPTH:
        return E_TOO_DEEP
    t.start = pos
    if pos >= end:
        return E_TRUNCATED
    c = b[pos]
    pos += 1
    t.cls = c >> 6
    t.cons = (c >> 5) & 1
    tag = c & 0x1F
    if tag == 0x1F:
        tag = 0
        n = 0
        while True:
            if pos >= end:
                return E_TRUNCATED
            c = b[pos]
            pos += 1
            n += 1
            if n > 4:
                return E_BAD_TAG
            tag = (tag << 7) | (c & 0x7F)
            if not (c & 0x80):
                break
    t.tag = tag
    if pos >= end:
        return E_TRUNCATED
    c = b[pos]
    pos += 1
    if c < 0x80:
        length = c
    elif c == 0x80:
        if not t.cons:
            return E_BAD_LENGTH
        # Indefinite: walk the children up to the end-of-contents octets.
        t.cstart = pos
        p = pos
        while True:
            if p + 2 > end:
                return E_NO_EOC
            if b[p] == 0 and b[p + 1] == 0:
                t.cend = p
                t.next = p + 2
                return E_OK
            rc = read_tlv(b, p, end, &child, depth + 1)
            if rc != E_OK:
                return rc
            p = child.next
    else:
        n = c & 0x7F
        if n > 7 or c == 0xFF:
            return E_BAD_LENGTH
        length = 0
        for i in range(n):
            if pos >= end:
                return E_TRUNCATED
            length = (length << 8) | b[pos]
            pos += 1
    if length > <uint64_t>(end - pos):
        return E_TRUNCATED
    t.cstart = pos
    t.cend = pos + <Py_ssize_t>length
    t.next = t.cend
    return E_OK


cdef inline int read_int(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, int64_t* out) noexcept nogil:
    """Two's complement INTEGER content; up to 8 octets (9 with a leading zero). 0 or -1."""
    cdef Py_ssize_t n = e - s
    cdef int64_t v
    cdef uint64_t u
    if n <= 0:
        return -1
    if n == 9 and b[s] == 0 and (b[s + 1] & 0x80):
        # unsigned 64-bit; refuse values above int64 range
        return -1
    if n > 8:
        return -1
    u = 0xFFFFFFFFFFFFFFFF if (b[s] & 0x80) else 0
    while s < e:
        u = (u << 8) | b[s]
        s += 1
    v = <int64_t>u
    out[0] = v
    return 0


cdef inline int tbcd(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, char* out, int cap) noexcept nogil:
    """TBCD digits (low nibble first), filler 0xF dropped; returns length or -1 if > cap-1."""
    cdef int n = 0
    cdef uint8_t nib
    cdef int k
    cdef const char* alpha = b"0123456789*#abc"
    while s < e:
        for k in range(2):
            nib = (b[s] & 0x0F) if k == 0 else (b[s] >> 4)
            if nib == 0x0F:
                continue
            if n >= cap - 1:
                return -1
            out[n] = alpha[nib]
            n += 1
        s += 1
    out[n] = 0
    return n


cdef inline int bcd(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, char* out, int cap) noexcept nogil:
    """Packed BCD, high nibble first (TAP3 BCDString), filler 0xF dropped."""
    cdef int n = 0
    cdef uint8_t nib
    cdef int k
    cdef const char* alpha = b"0123456789*#abc"
    while s < e:
        for k in range(2):
            nib = (b[s] >> 4) if k == 0 else (b[s] & 0x0F)
            if nib == 0x0F:
                continue
            if n >= cap - 1:
                return -1
            out[n] = alpha[nib]
            n += 1
        s += 1
    out[n] = 0
    return n


cdef inline int copy_text(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, char* out, int cap) noexcept nogil:
    """Printable ASCII octets copied as they are; -1 if too long or not printable."""
    cdef int n = 0
    while s < e:
        if n >= cap - 1 or b[s] < 0x20 or b[s] > 0x7E:
            return -1
        out[n] = <char>b[s]
        n += 1
        s += 1
    out[n] = 0
    return n


cdef inline int copy_hex(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, char* out, int cap) noexcept nogil:
    cdef int n = 0
    cdef const char* hexd = b"0123456789abcdef"
    while s < e:
        if n >= cap - 2:
            return -1
        out[n] = hexd[b[s] >> 4]
        out[n + 1] = hexd[b[s] & 0x0F]
        n += 2
        s += 1
    out[n] = 0
    return n


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int valid_civil(int y, int mo, int d, int h, int mi, int s) noexcept nogil:
    cdef int mdays
    if mo < 1 or mo > 12 or d < 1 or h > 23 or mi > 59 or s > 59 or h < 0 or mi < 0 or s < 0:
        return 0
    if mo == 2:
        mdays = 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        mdays = 30
    else:
        mdays = 31
    return d <= mdays


cdef inline int ascii_digits(const uint8_t* b, Py_ssize_t s, int n) noexcept nogil:
    """Value of n ASCII digits at b[s], or -1."""
    cdef int v = 0
    cdef int i
    for i in range(n):
        if b[s + i] < 48 or b[s + i] > 57:
            return -1
        v = v * 10 + (b[s + i] - 48)
    return v


cdef inline int parse_utc_offset(const uint8_t* b, Py_ssize_t s, Py_ssize_t e, int* minutes) noexcept nogil:
    """"+HHMM" / "-HHMM" (ASCII) into signed minutes east of UTC. 0 or -1."""
    cdef int hh, mm
    if e - s != 5 or (b[s] != 43 and b[s] != 45):
        return -1
    hh = ascii_digits(b, s + 1, 2)
    mm = ascii_digits(b, s + 3, 2)
    if hh < 0 or mm < 0 or hh > 23 or mm > 59:
        return -1
    minutes[0] = (hh * 60 + mm) * (-1 if b[s] == 45 else 1)
    return 0


cdef inline void format_rfc3339(int64_t t, char* out) noexcept nogil:
    """UTC epoch seconds to "YYYY-MM-DDTHH:MM:SSZ" (21 bytes with the NUL). Only for
    ``rfc3339_printable(t)``: decoders refuse other instants (R_BAD_TIMESTAMP)."""
    cdef int64_t days = t // 86400
    cdef int64_t secs = t - days * 86400
    cdef int64_t z = days + 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t y = yoe + era * 400
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t d = doy - (153 * mp + 2) // 5 + 1
    cdef int64_t m = mp + (3 if mp < 10 else -9)
    cdef int64_t hh = secs // 3600, mi = (secs // 60) % 60, ss = secs % 60
    cdef int64_t v[6]
    cdef int i
    if m <= 2:
        y += 1
    if y < 0 or y > 9999:
        y = 0
    out[0] = <char>(48 + y // 1000)
    out[1] = <char>(48 + (y // 100) % 10)
    out[2] = <char>(48 + (y // 10) % 10)
    out[3] = <char>(48 + y % 10)
    v[0] = m; v[1] = d; v[2] = hh; v[3] = mi; v[4] = ss
    for i in range(5):
        out[5 + 3 * i] = <char>(48 + v[i] // 10)
        out[6 + 3 * i] = <char>(48 + v[i] % 10)
    out[4] = 45
    out[7] = 45
    out[10] = 84
    out[13] = 58
    out[16] = 58
    out[19] = 90
    out[20] = 0
