# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The columnar path of 3GPP file ingest: a decoder's ``RecordBatch`` to binary COPY payloads.

``server.pipeline.columnar`` drives it. The records it carries are the plain ones (calls, SMS, S-GW and
P-GW records): decoded without error, not partial, every field the row and its key need present and of a shape the
validator takes (digit strings, counters, an event time in range) and the strings the key
and ``attrs`` hold printable ASCII that JSON writes as is. Anything else is left to the
object path (``role`` 0), which answers for it exactly as before.

Steps, each over the whole batch: ``classify`` (shape; the rating kernel's columns; GIL
released), ``resolve`` (account and tariff of each record: the directory is a Python dict),
``render_keys`` (record keys into one buffer; GIL released), ``duplicates`` (a key twice
in the batch), ``encode`` (the usage_keys, usage_records and charges payloads; GIL
released), ``rollup`` (the charges' rollup deltas grouped and encoded; GIL released). The
rows are those ``pipeline.rows.build_rows`` builds for the same records; the tests compare
the two paths.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memcmp, memcpy, memset, strlen

from ._ber cimport bo_add64, format_rfc3339
from ._records cimport (
    F_APN, F_CALLED, F_CALLING, F_CAUSE, F_CHARGING_ID, F_DURATION, F_IMSI, F_MSISDN,
    F_NODE, F_REF, F_SEIZURE, F_SEQ, F_TIME, F_VOLUME, OutRec, RecordBatch,
)

# Optional usage columns a carried record may fill (``usage_repo.USAGE_OPTIONAL`` order).
cdef enum:
    OPT_DURATION = 1
    OPT_VOLUME_UP = 2
    OPT_VOLUME_DOWN = 4
    OPT_CALLING = 8
    OPT_CALLED = 16
    OPT_IMSI = 32
    OPT_MSISDN = 64

OPTIONAL = (("duration_s", OPT_DURATION), ("volume_up", OPT_VOLUME_UP),
            ("volume_down", OPT_VOLUME_DOWN), ("calling", OPT_CALLING),
            ("called", OPT_CALLED), ("imsi", OPT_IMSI), ("msisdn", OPT_MSISDN))

cdef int64_t EVENT_MIN = 631152000      # 1990-01-01: the validator's first year
cdef int64_t EVENT_MAX = 4102444800     # 2100-01-01: the kernel's end
cdef int64_t PG_EPOCH = 946684800       # 2000-01-01, PostgreSQL's timestamp origin
cdef int64_t I64_MAX = 9223372036854775807
cdef int64_t US_PER_DAY = 86400000000
cdef int64_t US_PER_HOUR = 3600000000
cdef Py_ssize_t MAX_KEY = 256
cdef Py_ssize_t MAX_DIGITS = 32



cdef inline const char* _label(OutRec* r, bint full) noexcept nogil:
    """A carried record type's ``attrs["record_type"]`` (``cdr3gpp.RECORD_TYPES``), or
    without ``full`` its record key's prefix (``threegpp._SHORT``)."""
    if r.rtype == 0:
        return b"moCallRecord" if full else b"moCall"
    if r.rtype == 1:
        return b"mtCallRecord" if full else b"mtCall"
    if r.rtype == 6:
        return b"moSMSRecord" if full else b"moSMS"
    if r.rtype == 7:
        return b"mtSMSRecord" if full else b"mtSMS"
    if r.rtype == 78:
        return b"sGWRecord" if full else b"sGW"
    return b"pGWRecord" if full else b"pGW"


cdef inline bint _digits(const char* s, Py_ssize_t cap) noexcept nogil:
    cdef Py_ssize_t i = 0
    while i < cap and s[i] != 0:
        if s[i] < 48 or s[i] > 57:
            return False
        i += 1
    return 0 < i <= MAX_DIGITS and i < cap


cdef inline bint _plain(const char* s, Py_ssize_t cap) noexcept nogil:
    # JSON writes it verbatim and PostgreSQL text takes it.
    cdef Py_ssize_t i = 0
    cdef unsigned char c
    while i < cap and s[i] != 0:
        c = <unsigned char>s[i]
        if c < 0x20 or c >= 0x7f or c == 34 or c == 92:
            return False
        i += 1
    return i < cap


cdef inline Py_ssize_t _slen(const char* s, Py_ssize_t cap) noexcept nogil:
    cdef Py_ssize_t i = 0
    while i < cap and s[i] != 0:
        i += 1
    return i


cdef inline Py_ssize_t _itoa(int64_t v, char* out) noexcept nogil:
    """Decimal digits of ``v`` into ``out`` (at least 20 bytes); returns the length."""
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, i
    cdef uint64_t u
    cdef bint neg = v < 0
    u = <uint64_t>(-(v + 1)) + 1 if neg else <uint64_t>v
    while True:
        tmp[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    i = 0
    if neg:
        out[0] = 45
        i = 1
    while n > 0:
        n -= 1
        out[i] = tmp[n]
        i += 1
    return i


cdef inline bint _voice(OutRec* r) noexcept nogil:
    return r.rtype == 0 or r.rtype == 1


cdef inline bint _sms(OutRec* r) noexcept nogil:
    return r.rtype == 6 or r.rtype == 7


cdef inline const char* _calling(OutRec* r) noexcept nogil:
    """The usage row's ``calling`` (``adapters.formats.threegpp.to_usage_record``)."""
    if r.rtype == 6:
        return r.msisdn if r.flags & F_MSISDN else NULL
    if r.rtype == 78 or r.rtype == 79:
        return NULL
    if r.flags & F_CALLING:
        return r.calling
    if r.rtype == 0 and r.flags & F_MSISDN:
        return r.msisdn
    return NULL


cdef inline const char* _called(OutRec* r) noexcept nogil:
    if r.rtype == 1 or r.rtype == 7:
        return r.msisdn if r.flags & F_MSISDN else NULL
    if r.rtype == 78 or r.rtype == 79:
        return NULL
    return r.called if r.flags & F_CALLED else NULL


cdef bint _carried(OutRec* r) noexcept nogil:
    cdef uint32_t f = r.flags
    cdef bint data = r.rtype == 78 or r.rtype == 79
    if r.err != 0 or f & F_SEQ or not (_voice(r) or _sms(r) or data):
        return False
    if not f & F_TIME or not EVENT_MIN <= r.event_time < EVENT_MAX:
        return False
    if f & F_DURATION and r.duration < 0:
        return False
    if f & F_IMSI and not _digits(r.imsi, sizeof(r.imsi)):
        return False
    if f & F_MSISDN and not _digits(r.msisdn, sizeof(r.msisdn)):
        return False
    if f & F_CALLING and not _digits(r.calling, sizeof(r.calling)):
        return False
    if f & F_CALLED and not _digits(r.called, sizeof(r.called)):
        return False
    if not f & F_NODE or not _plain(r.node, sizeof(r.node)):
        return False
    if not data and _calling(r) == NULL:  # no identifier: the object path says UNKNOWN_ACCOUNT
        return False
    if _voice(r):
        if not f & F_DURATION or not f & F_REF or not _plain(r.ref, sizeof(r.ref)):
            return False
        return (_slen(r.node, sizeof(r.node)) + _slen(r.ref, sizeof(r.ref)) + 10) <= MAX_KEY
    if _sms(r):
        if not f & F_IMSI:
            return False
        if r.rtype == 6 and (not f & F_REF or not _plain(r.ref, sizeof(r.ref))):
            return False
        return (_slen(r.node, sizeof(r.node)) + _slen(r.imsi, sizeof(r.imsi))
                + (_slen(r.ref, sizeof(r.ref)) if r.rtype == 6 else 0) + 32) <= MAX_KEY
    if not f & F_VOLUME or not f & F_CHARGING_ID or r.vol_up < 0 or r.vol_down < 0:
        return False
    if r.vol_up > I64_MAX - r.vol_down:
        return False
    if f & F_APN and not _plain(r.apn, sizeof(r.apn)):
        return False
    if not f & (F_MSISDN | F_IMSI):
        return False
    return (_slen(r.node, sizeof(r.node)) + 30) <= MAX_KEY


def classify(RecordBatch batch, uint8_t[::1] role, int64_t[::1] event_us, uint8_t[::1] kind,
             int64_t[::1] usage, uint8_t[::1] called, Py_ssize_t width):
    """``role[i]`` = 1 for each record the columnar path can carry, with its kernel columns
    filled (``called`` holds ``width`` bytes per record)."""
    cdef Py_ssize_t n = batch.n, i, k
    cdef OutRec* r
    cdef const char* c
    if role.shape[0] < n or event_us.shape[0] < n or kind.shape[0] < n or usage.shape[0] < n:
        raise ValueError("columns shorter than the batch")
    if width <= 0 or called.shape[0] < n * width:
        raise ValueError("called column shorter than the batch")
    with nogil:
        for i in range(n):
            r = &batch.recs[i]
            if not _carried(r):
                role[i] = 0
                continue
            role[i] = 1
            event_us[i] = r.event_time * 1000000
            if _voice(r):
                kind[i] = 0
                usage[i] = r.duration
            elif _sms(r):
                kind[i] = 1
                usage[i] = 1
            else:
                kind[i] = 2
                usage[i] = r.vol_up + r.vol_down
            c = _called(r)
            if c != NULL:
                k = 0
                while k < width and c[k] != 0:
                    called[i * width + k] = <uint8_t>c[k]
                    k += 1


def resolve(RecordBatch batch, uint8_t[::1] role, int64_t[::1] event_us,
            dict by_identifier, dict tariff_index, int32_t[::1] tariff, int32_t[::1] account,
            list names):
    """Each carried record's account (voice: ``calling``; data: ``msisdn`` then ``imsi``) and
    the kernel number of the tariff it is on at the event. ``account[i]`` numbers the
    account's id in ``names`` (appended to on first sight). A record none is found for goes
    back to the object path (which says why)."""
    cdef Py_ssize_t n = batch.n, i
    cdef OutRec* r
    cdef const char* ident
    cdef bint data
    cdef object found, tariff_id, number, index, key, hit
    cdef dict numbering = {name: k for k, name in enumerate(names)}
    # identifier -> (account number, tariff number) of an account on one tariff at all times
    cdef dict settled = {}
    if tariff.shape[0] < n or account.shape[0] < n or event_us.shape[0] < n:
        raise ValueError("columns shorter than the batch")
    _check_carried(batch, role)
    for i in range(n):
        if role[i] != 1:
            continue
        r = &batch.recs[i]
        data = r.rtype == 78 or r.rtype == 79
        if not data:
            ident = _calling(r)
        elif r.flags & F_MSISDN:
            ident = r.msisdn
        else:
            ident = r.imsi if r.flags & F_IMSI else NULL
        key = PyUnicode_DecodeASCII(ident, strlen(ident), NULL) if ident != NULL else None
        hit = settled.get(key)
        if hit is not None:
            account[i], tariff[i] = <tuple>hit
            continue
        found = by_identifier.get(key) if key is not None else None
        if found is None and data and r.flags & F_MSISDN and r.flags & F_IMSI:
            key = PyUnicode_DecodeASCII(r.imsi, strlen(r.imsi), NULL)
            found = by_identifier.get(key)
        if found is None:
            role[i] = 0
            continue
        tariff_id = found.tariff_at(event_us[i])
        number = tariff_index.get(tariff_id) if tariff_id is not None else None
        if number is None:
            role[i] = 0
            continue
        tariff[i] = number
        index = numbering.get(found.id)
        if index is None:
            index = numbering[found.id] = len(names)
            names.append(found.id)
        account[i] = index
        if not found.plans:
            settled[key] = (index, number)


cdef Py_ssize_t _key(OutRec* r, char* out) noexcept nogil:
    """The record key ``to_usage_record`` makes, into ``out`` (MAX_KEY bytes)."""
    cdef Py_ssize_t n
    cdef char ts[24]
    if _sms(r):
        format_rfc3339(r.event_time, ts)
        n = _put(out, 0, _label(r, False))
        n = _put(out, n, b":")
        n = _put(out, n, r.node)
        n = _put(out, n, b":")
        n = _put(out, n, r.imsi)
        n = _put(out, n, b":")
        n = _put(out, n, ts)
        if r.rtype == 6:
            n = _put(out, n, b":")
            n = _put(out, n, r.ref)
        return n
    n = _put(out, 0, _label(r, False))
    n = _put(out, n, b":")
    n = _put(out, n, r.node)
    n = _put(out, n, b":")
    if _voice(r):
        n = _put(out, n, r.ref)
    else:
        n += _itoa(r.charging_id, out + n)
    return _put(out, n, b":0")  # no sequence number: not a partial part


def render_keys(RecordBatch batch, uint8_t[::1] role, int64_t[::1] offsets):
    """The record keys of the carried records (role 1), back to back: key i is
    ``buf[offsets[i]:offsets[i + 1]]`` (empty for a record not carried)."""
    cdef Py_ssize_t n = batch.n, i, pos = 0
    cdef bytearray buf = bytearray(n * (MAX_KEY + 8) + 1)
    cdef char* out = buf
    if offsets.shape[0] < n + 1:
        raise ValueError("columns shorter than the batch")
    _check_carried(batch, role)
    with nogil:
        for i in range(n):
            offsets[i] = pos
            if role[i] == 1:
                pos += _key(&batch.recs[i], out + pos)
        offsets[n] = pos
    del buf[pos:]
    return bytes(buf)


cdef int _check_offsets(int64_t[::1] offsets, Py_ssize_t n, Py_ssize_t size) except -1:
    """Keys ``[offsets[i], offsets[i + 1])`` must lie in order inside ``size`` bytes."""
    cdef Py_ssize_t i
    if offsets.shape[0] < n + 1:
        raise ValueError("offsets shorter than the batch")
    if offsets[0] < 0 or offsets[n] > size:
        raise ValueError("offsets do not fit the keys")
    for i in range(n):
        if offsets[i + 1] < offsets[i]:
            raise ValueError(f"offsets out of order at {i}")
    return 0


cdef int _check_carried(RecordBatch batch, uint8_t[::1] role) except -1:
    """Role 1 only on records ``classify`` would carry: the encoder reads their strings."""
    cdef Py_ssize_t i
    if role.shape[0] < batch.n:
        raise ValueError("columns shorter than the batch")
    for i in range(batch.n):
        if role[i] == 1 and not _carried(&batch.recs[i]):
            raise ValueError(f"record {i} cannot be carried as columns")
    return 0


cdef inline uint64_t _hash(const char* s, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 1469598103934665603ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t>s[i]) * 1099511628211ULL
    return h


def duplicates(bytes keys, int64_t[::1] offsets, uint8_t[::1] role, list extra):
    """Whether a key appears twice among the carried records' keys and ``extra`` (UTF-8)."""
    cdef Py_ssize_t n = role.shape[0], total, size = 16, i, slot, length, j
    cdef const char* base = PyBytes_AS_STRING(keys)
    cdef const char* s
    cdef int64_t* table
    cdef const char** starts
    cdef int64_t* lengths
    cdef list kept = []
    cdef bint found = False
    _check_offsets(offsets, n, PyBytes_GET_SIZE(keys))
    total = n + len(extra)
    while size < 2 * total + 2:
        size *= 2
    table = <int64_t*>PyMem_Malloc(size * sizeof(int64_t))
    starts = <const char**>PyMem_Malloc((total + 1) * sizeof(char*))
    lengths = <int64_t*>PyMem_Malloc((total + 1) * sizeof(int64_t))
    if table == NULL or starts == NULL or lengths == NULL:
        PyMem_Free(table)
        PyMem_Free(starts)
        PyMem_Free(lengths)
        raise MemoryError()
    try:
        for i in range(size):
            table[i] = -1
        j = 0
        for i in range(total):
            if i < n:
                if role[i] != 1:
                    continue
                s = base + offsets[i]
                length = offsets[i + 1] - offsets[i]
            else:
                item = extra[i - n]
                if not isinstance(item, bytes):
                    raise TypeError("extra keys must be bytes")
                kept.append(item)
                s = PyBytes_AS_STRING(item)
                length = PyBytes_GET_SIZE(item)
            slot = _hash(s, length) & (size - 1)
            while table[slot] >= 0:
                if (lengths[table[slot]] == length
                        and memcmp(starts[table[slot]], s, length) == 0):
                    found = True
                    break
                slot = (slot + 1) & (size - 1)
            if found:
                break
            starts[j] = s
            lengths[j] = length
            table[slot] = j
            j += 1
    finally:
        PyMem_Free(table)
        PyMem_Free(starts)
        PyMem_Free(lengths)
    return found


# -- binary COPY ---------------------------------------------------------------------------

cdef struct Out:
    char* p
    Py_ssize_t n
    Py_ssize_t cap
    bint failed


cdef inline void _reserve(Out* o, Py_ssize_t more) noexcept nogil:
    cdef Py_ssize_t cap
    cdef char* p
    if o.failed or o.n + more <= o.cap:
        return
    cap = o.cap * 2 if o.cap else 65536
    while cap < o.n + more:
        cap *= 2
    p = <char*>realloc(o.p, cap)
    if p == NULL:
        o.failed = True
        return
    o.p, o.cap = p, cap


cdef inline void _be32(Out* o, int64_t v) noexcept nogil:
    cdef uint32_t u = <uint32_t>v
    _reserve(o, 4)
    if o.failed:
        return
    o.p[o.n] = <char>(u >> 24)
    o.p[o.n + 1] = <char>(u >> 16)
    o.p[o.n + 2] = <char>(u >> 8)
    o.p[o.n + 3] = <char>u
    o.n += 4


cdef inline void _be16(Out* o, int v) noexcept nogil:
    _reserve(o, 2)
    if o.failed:
        return
    o.p[o.n] = <char>(v >> 8)
    o.p[o.n + 1] = <char>v
    o.n += 2


cdef inline void _int8(Out* o, int64_t v) noexcept nogil:
    cdef uint64_t u = <uint64_t>v
    cdef int k
    _be32(o, 8)
    _reserve(o, 8)
    if o.failed:
        return
    for k in range(8):
        o.p[o.n + k] = <char>(u >> (56 - 8 * k))
    o.n += 8


cdef inline void _text(Out* o, const char* s, Py_ssize_t n) noexcept nogil:
    _be32(o, n)
    _reserve(o, n)
    if o.failed:
        return
    memcpy(o.p + o.n, s, n)
    o.n += n


cdef inline void _raw(Out* o, const char* s, Py_ssize_t n) noexcept nogil:
    _reserve(o, n)
    if o.failed:
        return
    memcpy(o.p + o.n, s, n)
    o.n += n


cdef inline void _null(Out* o) noexcept nogil:
    _be32(o, -1)


cdef inline void _cstr(Out* o, const char* s) noexcept nogil:
    _text(o, s, strlen(s))


cdef inline void _opt_text(Out* o, const char* s) noexcept nogil:
    if s == NULL:
        _null(o)
    else:
        _cstr(o, s)


cdef inline void _header(Out* o) noexcept nogil:
    _raw(o, b"PGCOPY\n\xff\r\n\x00", 11)
    _be32(o, 0)
    _be32(o, 0)


cdef void _attrs(Out* o, OutRec* r, char* scratch) noexcept nogil:
    """``attrs`` as msgspec writes the dict ``to_usage_record`` makes (plain strings only)."""
    cdef Py_ssize_t n = 0, start
    cdef const char* name
    cdef uint32_t f = r.flags
    cdef char ts[24]
    name = _label(r, True)
    n = _put(scratch, n, b'{"record_type":"')
    n = _put(scratch, n, name)
    n = _put(scratch, n, b'","offset":')
    n += _itoa(r.offset, scratch + n)
    if f & F_CAUSE:
        n = _put(scratch, n, b',"cause":')
        n += _itoa(r.cause, scratch + n)
    if _sms(r):
        n = _put(scratch, n, b',"recording_entity":"')
        n = _put(scratch, n, r.node)
        n = _put(scratch, n, b'"')
        if r.rtype == 6:
            n = _put(scratch, n, b',"message_reference":"')
            n = _put(scratch, n, r.ref)
            n = _put(scratch, n, b'"')
    elif r.rtype == 0 or r.rtype == 1:
        n = _put(scratch, n, b',"recording_entity":"')
        n = _put(scratch, n, r.node)
        n = _put(scratch, n, b'","call_reference":"')
        n = _put(scratch, n, r.ref)
        n = _put(scratch, n, b'"')
        if f & F_SEIZURE:
            format_rfc3339(r.seizure_time, ts)
            n = _put(scratch, n, b',"seizure_time":"')
            n = _put(scratch, n, ts)
            n = _put(scratch, n, b'"')
    else:
        n = _put(scratch, n, b',"charging_id":')
        n += _itoa(r.charging_id, scratch + n)
        n = _put(scratch, n, b',"node":"')
        n = _put(scratch, n, r.node)
        n = _put(scratch, n, b'"')
        if f & F_APN:
            n = _put(scratch, n, b',"apn":"')
            n = _put(scratch, n, r.apn)
            n = _put(scratch, n, b'"')
    n = _put(scratch, n, b'}')
    _text(o, scratch, n)


cdef inline Py_ssize_t _put(char* out, Py_ssize_t n, const char* s) noexcept nogil:
    cdef Py_ssize_t m = strlen(s)
    memcpy(out + n, s, m)
    return n + m


cdef bytes _take(Out* o):
    if o.failed:
        raise MemoryError()
    return PyBytes_FromStringAndSize(o.p, o.n)


cdef class Names:
    """Strings the encoder writes by number (account ids, currencies, zones, bands): UTF-8
    bytes held here, their pointers in a C array."""
    cdef list held
    cdef const char** ptr
    cdef Py_ssize_t* size
    cdef Py_ssize_t n

    def __cinit__(self, list names):
        cdef Py_ssize_t i
        cdef bytes b
        self.n = len(names)
        self.held = []
        self.ptr = <const char**>PyMem_Malloc((self.n + 1) * sizeof(char*))
        self.size = <Py_ssize_t*>PyMem_Malloc((self.n + 1) * sizeof(Py_ssize_t))
        if self.ptr == NULL or self.size == NULL:
            raise MemoryError()
        for i in range(self.n):
            b = names[i].encode() if isinstance(names[i], str) else bytes(names[i])
            self.held.append(b)
            self.ptr[i] = PyBytes_AS_STRING(b)
            self.size[i] = PyBytes_GET_SIZE(b)

    def __dealloc__(self):
        PyMem_Free(self.ptr)
        PyMem_Free(self.size)

    def __len__(self):
        return self.n


cdef inline void _name(Out* o, Names names, Py_ssize_t i) noexcept nogil:
    if i < 0 or i >= names.n:
        _null(o)
    else:
        _text(o, names.ptr[i], names.size[i])


def encode(RecordBatch batch, uint8_t[::1] role, int64_t[::1] ids, list object_keys,
           bytes source, bytes keys, int64_t[::1] offsets,
           int32_t[::1] account, Names accounts,
           int32_t[::1] tariff, int32_t[::1] version, int32_t[::1] zone, int32_t[::1] band,
           int64_t[::1] amount, int64_t[::1] version_ids, int32_t[::1] zone_base,
           int32_t[::1] band_base, Names currencies, Names zones, Names bands,
           int optional, object source_file_id):
    """The usage_keys, usage_records and charges payloads, and the total of each tariff
    charged (tariff number -> micro-units).

    ``role[i]``: 1 a carried record (a claim, charged), 2 a claim of the object path whose
    usage_keys row is the next of ``object_keys`` (one encoded row each, in claim order),
    0 neither. The c-th claim takes ``ids[c]``. ``account[i]`` numbers ``accounts``;
    ``version_ids[v]`` is the stored id of kernel version v (-1: none); version v's zone z
    is ``zones[zone_base[v] + z]`` (bands likewise); tariff t's currency ``currencies[t]``.
    ``optional``: the OPT_* columns of usage_records, in their order.
    """
    cdef Py_ssize_t n = batch.n, i, c = 0, nobj = 0, start, length, src_len
    cdef Py_ssize_t ncols = 8 + (optional & 1 != 0) + (optional & 2 != 0) + (
        optional & 4 != 0) + (optional & 8 != 0) + (optional & 16 != 0) + (
        optional & 32 != 0) + (optional & 64 != 0)
    cdef Out ok, ou, oc
    cdef OutRec* r
    cdef const char* src = PyBytes_AS_STRING(source)
    cdef const char* kbuf = PyBytes_AS_STRING(keys)
    cdef int64_t when, file_id = -1
    cdef bint has_file = source_file_id is not None
    cdef Py_ssize_t ntariffs = currencies.n
    cdef int64_t* totals
    cdef int64_t* used
    cdef int64_t t
    cdef bint overflow = False
    cdef char scratch[1024]
    cdef const char* c_s
    cdef list segs = []
    cdef const char** seg_ptr
    cdef Py_ssize_t* seg_len
    cdef Py_ssize_t nseg = len(object_keys)
    cdef Py_ssize_t nv = version_ids.shape[0]
    if (role.shape[0] < n or offsets.shape[0] < n + 1 or account.shape[0] < n
            or tariff.shape[0] < n or version.shape[0] < n or zone.shape[0] < n
            or band.shape[0] < n or amount.shape[0] < n):
        raise ValueError("columns shorter than the batch")
    _check_offsets(offsets, n, PyBytes_GET_SIZE(keys))
    _check_carried(batch, role)
    if zone_base.shape[0] < nv or band_base.shape[0] < nv:
        raise ValueError("zone or band bases shorter than the versions")
    if has_file:
        file_id = source_file_id
    src_len = PyBytes_GET_SIZE(source)
    for i in range(n):
        if role[i] == 1:
            if not 0 <= version[i] < nv or not 0 <= tariff[i] < ntariffs:
                raise ValueError(f"record {i}: version or tariff out of range")
            if not 0 <= account[i] < accounts.n:
                raise ValueError(f"record {i}: account out of range")
            c += 1
        elif role[i] == 2:
            nobj += 1
            c += 1
        elif role[i] != 0:
            raise ValueError(f"record {i}: role {role[i]}")
    if c > ids.shape[0]:
        raise ValueError(f"{ids.shape[0]} usage ids for {c} records")
    if nobj != nseg:
        raise ValueError(f"{nseg} object key rows for {nobj} object claims")
    seg_ptr = <const char**>PyMem_Malloc((nseg + 1) * sizeof(char*))
    seg_len = <Py_ssize_t*>PyMem_Malloc((nseg + 1) * sizeof(Py_ssize_t))
    totals = <int64_t*>PyMem_Malloc((ntariffs + 1) * sizeof(int64_t))
    used = <int64_t*>PyMem_Malloc((ntariffs + 1) * sizeof(int64_t))
    memset(&ok, 0, sizeof(Out))
    memset(&ou, 0, sizeof(Out))
    memset(&oc, 0, sizeof(Out))
    try:
        if seg_ptr == NULL or seg_len == NULL or totals == NULL or used == NULL:
            raise MemoryError()
        for i in range(nseg):
            seg = object_keys[i]
            if not isinstance(seg, bytes):
                raise TypeError("object key rows must be bytes")
            segs.append(seg)
            seg_ptr[i] = PyBytes_AS_STRING(seg)
            seg_len[i] = PyBytes_GET_SIZE(seg)
        for i in range(ntariffs):
            totals[i] = 0
            used[i] = 0
        with nogil:
            _header(&ok)
            _header(&ou)
            _header(&oc)
            c = 0
            nobj = 0
            for i in range(n):
                if role[i] == 2:
                    _raw(&ok, seg_ptr[nobj], seg_len[nobj])
                    nobj += 1
                    c += 1
                    continue
                if role[i] != 1:
                    continue
                r = &batch.recs[i]
                when = (r.event_time - PG_EPOCH) * 1000000
                start = offsets[i]
                length = offsets[i + 1] - start
                # usage_keys: source, record_key, account_id, event_time, usage_id
                _be16(&ok, 5)
                _text(&ok, src, src_len)
                _text(&ok, kbuf + start, length)
                _name(&ok, accounts, account[i])
                _int8(&ok, when)
                _int8(&ok, ids[c])
                # usage_records: USAGE_FIXED + optional + USAGE_TAIL
                _be16(&ou, <int>ncols)
                _name(&ou, accounts, account[i])
                _int8(&ou, ids[c])
                _int8(&ou, when)
                _text(&ou, src, src_len)
                _text(&ou, kbuf + start, length)
                if _voice(r):
                    _cstr(&ou, b"voice")
                elif _sms(r):
                    _cstr(&ou, b"sms")
                else:
                    _cstr(&ou, b"data")
                if optional & 1:
                    if r.flags & F_DURATION and not _sms(r):
                        _int8(&ou, r.duration)
                    else:
                        _null(&ou)
                if optional & 2:
                    if r.rtype == 78 or r.rtype == 79:
                        _int8(&ou, r.vol_up)
                    else:
                        _null(&ou)
                if optional & 4:
                    if r.rtype == 78 or r.rtype == 79:
                        _int8(&ou, r.vol_down)
                    else:
                        _null(&ou)
                if optional & 8:
                    _opt_text(&ou, _calling(r))
                if optional & 16:
                    _opt_text(&ou, _called(r))
                if optional & 32:
                    _opt_text(&ou, r.imsi if r.flags & F_IMSI else NULL)
                if optional & 64:
                    _opt_text(&ou, r.msisdn if r.flags & F_MSISDN else NULL)
                _attrs(&ou, r, scratch)
                if has_file:
                    _int8(&ou, file_id)
                else:
                    _null(&ou)
                # charges: account_id, event_time, usage_id, kind, amount_micros, currency,
                # tariff_version_id, zone, band, source_file_id
                _be16(&oc, 10)
                _name(&oc, accounts, account[i])
                _int8(&oc, when)
                _int8(&oc, ids[c])
                _cstr(&oc, b"charge")
                _int8(&oc, amount[i])
                _name(&oc, currencies, tariff[i])
                if version_ids[version[i]] >= 0:
                    _int8(&oc, version_ids[version[i]])
                else:
                    _null(&oc)
                if zone[i] >= 0:
                    _name(&oc, zones, zone_base[version[i]] + zone[i])
                else:
                    _null(&oc)
                if band[i] >= 0:
                    _name(&oc, bands, band_base[version[i]] + band[i])
                else:
                    _null(&oc)
                if has_file:
                    _int8(&oc, file_id)
                else:
                    _null(&oc)
                t = totals[tariff[i]]
                if (amount[i] > 0 and t > I64_MAX - amount[i]) or (
                        amount[i] < 0 and t < -I64_MAX - 1 - amount[i]):
                    overflow = True
                else:
                    totals[tariff[i]] = t + amount[i]
                used[tariff[i]] += 1
                c += 1
            _be16(&ok, -1)
            _be16(&ou, -1)
            _be16(&oc, -1)
        if overflow:
            raise OverflowError("a tariff's total overflows 64 bits")
        sums = {i: totals[i] for i in range(ntariffs) if used[i]}
        return _take(&ok), _take(&ou), _take(&oc), sums
    finally:
        free(ok.p)
        free(ou.p)
        free(oc.p)
        PyMem_Free(seg_ptr)
        PyMem_Free(seg_len)
        PyMem_Free(totals)
        PyMem_Free(used)


def optional(RecordBatch batch, uint8_t[::1] role):
    """The OPT_* bits of the optional usage columns some carried record fills."""
    cdef Py_ssize_t n = batch.n, i
    cdef int bits = 0
    cdef OutRec* r
    if role.shape[0] < n:
        raise ValueError("columns shorter than the batch")
    with nogil:
        for i in range(n):
            if role[i] != 1:
                continue
            r = &batch.recs[i]
            if r.flags & F_DURATION and not _sms(r):
                bits |= OPT_DURATION
            if r.flags & F_IMSI:
                bits |= OPT_IMSI
            if r.flags & F_MSISDN:
                bits |= OPT_MSISDN
            if r.rtype == 78 or r.rtype == 79:
                bits |= OPT_VOLUME_UP | OPT_VOLUME_DOWN
            if _calling(r) != NULL:
                bits |= OPT_CALLING
            if _called(r) != NULL:
                bits |= OPT_CALLED
    return bits


cdef inline void _civil(int64_t days, int64_t* y, int64_t* m, int64_t* d) noexcept nogil:
    """Year, month and day of ``days`` since 1970-01-01 (H. Hinnant's algorithm)."""
    cdef int64_t z = days + 719468, era, doe, yoe, doy, mp
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d[0] = doy - (153 * mp + 2) // 5 + 1
    m[0] = mp + (3 if mp < 10 else -9)
    y[0] = yoe + era * 400 + (1 if m[0] <= 2 else 0)


def months(RecordBatch batch, uint8_t[::1] role):
    """The (year, month) of each carried record's event time, once each."""
    cdef Py_ssize_t n = batch.n, i
    cdef int64_t y, m, d, last = -1, key
    cdef set out = set()
    if role.shape[0] < n:
        raise ValueError("columns shorter than the batch")
    for i in range(n):
        if role[i] != 1:
            continue
        _civil(batch.recs[i].event_time // 86400, &y, &m, &d)
        key = y * 12 + m
        if key != last:
            last = key
            out.add((y, m))
    return out


# -- rollup deltas --------------------------------------------------------------------------

cdef struct Group:
    int64_t version    # stored tariff version id, -1: none
    int64_t amount     # Σ micro-units
    int64_t units      # Σ kernel usage
    int64_t records
    int32_t account
    int32_t day        # days since 1970-01-01 (a month's: its first day)
    int32_t zone       # canonical zone number, -1: none
    int32_t currency   # canonical currency number
    uint8_t kind


cdef struct Hour:
    int64_t hour       # hours since the epoch
    int64_t amount
    int64_t count
    int32_t currency


cdef inline int _order(int64_t a, int64_t b) noexcept nogil:
    return (a > b) - (a < b)


cdef int _cmp_group(const void* a, const void* b) noexcept nogil:
    cdef const Group* x = <const Group*>a
    cdef const Group* y = <const Group*>b
    cdef int c = _order(x.account, y.account)
    c = c if c else _order(x.day, y.day)
    c = c if c else _order(x.kind, y.kind)
    c = c if c else _order(x.zone, y.zone)
    c = c if c else _order(x.currency, y.currency)
    return c if c else _order(x.version, y.version)


cdef int _cmp_hour(const void* a, const void* b) noexcept nogil:
    cdef const Hour* x = <const Hour*>a
    cdef const Hour* y = <const Hour*>b
    cdef int c = _order(x.hour, y.hour)
    return c if c else _order(x.currency, y.currency)


cdef Py_ssize_t _merge_groups(Group* g, Py_ssize_t n, bint* overflow) noexcept nogil:
    """Sort ``g`` by key and sum each run of one key into its first; the groups left."""
    cdef Py_ssize_t i, m = 0
    if n == 0:
        return 0
    qsort(g, n, sizeof(Group), _cmp_group)
    for i in range(1, n):
        if _cmp_group(&g[m], &g[i]) == 0:
            if (bo_add64(g[m].amount, g[i].amount, &g[m].amount)
                    or bo_add64(g[m].units, g[i].units, &g[m].units)):
                overflow[0] = True
            g[m].records += g[i].records
        else:
            m += 1
            g[m] = g[i]
    return m + 1


cdef inline int32_t _month_start(int32_t days) noexcept nogil:
    """The first day of the month of ``days`` (since 1970-01-01), in days since then."""
    cdef int64_t y, m, d
    _civil(days, &y, &m, &d)
    return <int32_t>(days - (d - 1))


cdef void _numeric(Out* o, int64_t v) noexcept nogil:
    """An integer as PostgreSQL's binary numeric: base-10000 digits, trailing zeros cut."""
    cdef uint64_t u = <uint64_t>(-(v + 1)) + 1 if v < 0 else <uint64_t>v
    cdef int digits[5]
    cdef int n = 0, weight, k, j
    while u:
        digits[n] = <int>(u % 10000)
        u //= 10000
        n += 1
    weight = n - 1
    k = 0
    while k < n and digits[k] == 0:  # least significant first: zeros the weight implies
        k += 1
    _be32(o, 8 + 2 * (n - k))
    _be16(o, n - k)
    _be16(o, weight if n else 0)
    _be16(o, 0x4000 if v < 0 else 0)
    _be16(o, 0)
    for j in range(n - 1, k - 1, -1):
        _be16(o, digits[j])


cdef void _groups(Out* o, Group* g, Py_ssize_t n, Names accounts, Names zones,
                  Names currencies) noexcept nogil:
    cdef Py_ssize_t i
    cdef const char* service
    _header(o)
    for i in range(n):
        _be16(o, 11)
        _name(o, accounts, g[i].account)
        _be32(o, 4)
        _be32(o, g[i].day - PG_EPOCH // 86400)  # PostgreSQL's dates count from 2000-01-01
        service = b"voice" if g[i].kind == 0 else (b"sms" if g[i].kind == 1 else b"data")
        _cstr(o, service)
        _name(o, zones, g[i].zone)
        _name(o, currencies, g[i].currency)
        if g[i].version < 0:
            _null(o)
        else:
            _int8(o, g[i].version)
        _int8(o, g[i].amount)
        _int8(o, g[i].records)
        _numeric(o, g[i].units)
        _int8(o, 0)
        _int8(o, 0)
    _be16(o, -1)


def rollup(uint8_t[::1] role, int32_t[::1] account, Names accounts, int64_t[::1] event_us,
           uint8_t[::1] kind, int64_t[::1] usage, int32_t[::1] tariff, int64_t[::1] amount,
           int32_t[::1] version, int32_t[::1] zone, int64_t[::1] version_ids,
           int32_t[::1] zone_base, int32_t[::1] zone_key, Names zones,
           int32_t[::1] currency_key, Names currencies):
    """The rollup deltas of the carried records (``role[i] == 1``), each a charge of
    ``amount[i]`` for ``usage[i]`` units: the binary COPY payloads of ``charge_rollups``,
    ``charge_rollups_monthly`` (``charge_writes.ROLLUP_COLUMNS``) and ``charge_hour_totals``
    (``HOUR_COLUMNS``) with their row counts, or None when a sum overflows 64 bits (the
    caller's Python twin then sums without bound).

    A record's key: account ``accounts[account[i]]``, UTC day of ``event_us[i]``, service
    of ``kind[i]`` (0 voice, 1 sms, 2 data), zone ``zones[zone_key[zone_base[v] +
    zone[i]]]`` (-1: none), currency ``currencies[currency_key[tariff[i]]]``, tariff version
    ``version_ids[v]`` (-1: none), v = ``version[i]``. The keys canonical: one number per
    name, so that equal names group."""
    cdef Py_ssize_t n = role.shape[0], i, c = 0, nd, nm, nh
    cdef Py_ssize_t nv = version_ids.shape[0], nz = zone_key.shape[0], nt = currency_key.shape[0]
    cdef int32_t v, z
    cdef Group* days = NULL
    cdef Group* months = NULL
    cdef Hour* hours = NULL
    cdef Out od, om, oh
    cdef bint overflow = False
    if (account.shape[0] < n or event_us.shape[0] < n or kind.shape[0] < n
            or usage.shape[0] < n or tariff.shape[0] < n or amount.shape[0] < n
            or version.shape[0] < n or zone.shape[0] < n):
        raise ValueError("columns shorter than the batch")
    if zone_base.shape[0] < nv:
        raise ValueError("zone bases shorter than the versions")
    for i in range(n):
        if role[i] != 1:
            continue
        v, z = version[i], zone[i]
        if not 0 <= v < nv or not 0 <= tariff[i] < nt or not 0 <= account[i] < accounts.n:
            raise ValueError(f"record {i}: version, tariff or account out of range")
        if z >= 0 and not 0 <= zone_base[v] + z < nz:
            raise ValueError(f"record {i}: zone out of range")
        if kind[i] > 2 or event_us[i] < 0:
            raise ValueError(f"record {i}: kind {kind[i]} or event time {event_us[i]}")
        c += 1
    memset(&od, 0, sizeof(Out))
    memset(&om, 0, sizeof(Out))
    memset(&oh, 0, sizeof(Out))
    days = <Group*>malloc((c + 1) * sizeof(Group))
    months = <Group*>malloc((c + 1) * sizeof(Group))
    hours = <Hour*>malloc((c + 1) * sizeof(Hour))
    try:
        if days == NULL or months == NULL or hours == NULL:
            raise MemoryError()
        with nogil:
            c = 0
            for i in range(n):
                if role[i] != 1:
                    continue
                v, z = version[i], zone[i]
                days[c].version = version_ids[v]
                days[c].amount = amount[i]
                days[c].units = usage[i]
                days[c].records = 1
                days[c].account = account[i]
                days[c].day = <int32_t>(event_us[i] // US_PER_DAY)
                days[c].zone = zone_key[zone_base[v] + z] if z >= 0 else -1
                days[c].currency = currency_key[tariff[i]]
                days[c].kind = kind[i]
                hours[c].hour = event_us[i] // US_PER_HOUR
                hours[c].amount = amount[i]
                hours[c].count = 1
                hours[c].currency = days[c].currency
                c += 1
            nd = _merge_groups(days, c, &overflow)
            memcpy(months, days, nd * sizeof(Group))
            for i in range(nd):
                months[i].day = _month_start(months[i].day)
            nm = _merge_groups(months, nd, &overflow)
            nh = 0
            if c:
                qsort(hours, c, sizeof(Hour), _cmp_hour)
                for i in range(1, c):
                    if _cmp_hour(&hours[nh], &hours[i]) == 0:
                        if bo_add64(hours[nh].amount, hours[i].amount, &hours[nh].amount):
                            overflow = True
                        hours[nh].count += 1
                    else:
                        nh += 1
                        hours[nh] = hours[i]
                nh += 1
            if not overflow:
                _groups(&od, days, nd, accounts, zones, currencies)
                _groups(&om, months, nm, accounts, zones, currencies)
                _header(&oh)
                for i in range(nh):
                    _be16(&oh, 6)
                    _int8(&oh, (hours[i].hour * 3600 - PG_EPOCH) * 1000000)
                    _name(&oh, currencies, hours[i].currency)
                    _int8(&oh, hours[i].count)
                    _int8(&oh, 0)
                    _numeric(&oh, hours[i].amount)
                    _numeric(&oh, 0)
                _be16(&oh, -1)
        if overflow:
            return None
        return _take(&od), nd, _take(&om), nm, _take(&oh), nh
    finally:
        free(days)
        free(months)
        free(hours)
        free(od.p)
        free(om.p)
        free(oh.p)
