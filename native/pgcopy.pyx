# cython: language_level=3
"""PostgreSQL binary COPY payloads built from row tuples.

The pipeline builds its batches' rows on the CPU stage; encoding them there too, into the
bytes ``COPY ... FROM STDIN (FORMAT binary)`` reads, leaves the write stage only shipping
bytes. One byte per column says how its values are encoded (``KINDS``); the caller matches
those to the table's column types. ``None`` is SQL NULL in any column.

A value of the wrong type or out of range raises ``TypeError`` / ``OverflowError`` naming the
row and column. The pure-Python twin is ``server.store.copy_payload.encode_reference``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport (
    PyDateTime_Check,
    datetime_day,
    datetime_hour,
    datetime_microsecond,
    datetime_minute,
    datetime_month,
    datetime_second,
    datetime_tzinfo,
    datetime_year,
    import_datetime,
)
from cpython.long cimport PyLong_AsLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport (
    INT64_MAX,
    INT64_MIN,
    int16_t,
    int32_t,
    int64_t,
    uint8_t,
    uint16_t,
    uint32_t,
    uint64_t,
)
from libc.string cimport memcpy

import datetime as _dt

import_datetime()

KINDS = "tjqihTb?"
# t text, varchar, char(n), json (UTF-8)   j jsonb (version 1 + UTF-8)
# q int8   i int4   h int2   T timestamptz (aware datetime)   b bytea (bytes)   ? bool

_UTC = _dt.timezone.utc
cdef int64_t _EPOCH_DAYS = 10957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
cdef int64_t _US_PER_DAY = 86400000000


cdef class _Buffer:
    cdef char *data
    cdef Py_ssize_t size, capacity

    def __cinit__(self, Py_ssize_t capacity):
        self.capacity = max(capacity, 64)
        self.data = <char *>PyMem_Malloc(self.capacity)
        if self.data == NULL:
            raise MemoryError()
        self.size = 0

    def __dealloc__(self):
        PyMem_Free(self.data)

    cdef int reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t wanted = self.size + extra
        cdef Py_ssize_t capacity = self.capacity
        cdef char *grown
        if wanted <= capacity:
            return 0
        while capacity < wanted:
            capacity *= 2
        grown = <char *>PyMem_Realloc(self.data, capacity)
        if grown == NULL:
            raise MemoryError()
        self.data, self.capacity = grown, capacity
        return 0

    cdef inline int put(self, const char *src, Py_ssize_t n) except -1:
        self.reserve(n)
        memcpy(self.data + self.size, src, n)
        self.size += n
        return 0

    cdef inline int put_u16(self, uint32_t v) except -1:
        cdef uint8_t b[2]
        b[0] = (v >> 8) & 0xFF
        b[1] = v & 0xFF
        return self.put(<char *>b, 2)

    cdef inline int put_u32(self, uint32_t v) except -1:
        cdef uint8_t b[4]
        b[0] = (v >> 24) & 0xFF
        b[1] = (v >> 16) & 0xFF
        b[2] = (v >> 8) & 0xFF
        b[3] = v & 0xFF
        return self.put(<char *>b, 4)

    cdef inline int put_u64(self, uint64_t v) except -1:
        self.put_u32(<uint32_t>(v >> 32))
        return self.put_u32(<uint32_t>(v & 0xFFFFFFFF))


cdef inline int64_t _days_from_civil(int64_t y, int64_t m, int64_t d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (9 if m <= 2 else -3)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef int64_t _timestamp(object value, Py_ssize_t row, Py_ssize_t col) except? -1:
    if not PyDateTime_Check(value):
        raise TypeError(f"row {row} column {col}: expected datetime, got {type(value).__name__}")
    tz = datetime_tzinfo(value)
    if tz is None:
        raise TypeError(f"row {row} column {col}: naive datetime for timestamptz")
    cdef int64_t offset_us = 0
    if tz is not _UTC:
        delta = value.utcoffset()
        offset_us = (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds
    cdef int64_t days = _days_from_civil(datetime_year(value), datetime_month(value),
                                         datetime_day(value)) - _EPOCH_DAYS
    cdef int64_t seconds = (datetime_hour(value) * 3600 + datetime_minute(value) * 60
                            + datetime_second(value))
    return days * _US_PER_DAY + seconds * 1000000 + datetime_microsecond(value) - offset_us


cdef int64_t _integer(object value, int64_t low, int64_t high, Py_ssize_t row,
                      Py_ssize_t col) except? -1:
    if type(value) is not int:
        raise TypeError(f"row {row} column {col}: expected int, got {type(value).__name__}")
    cdef int64_t v
    try:
        v = PyLong_AsLongLong(value)
    except OverflowError:
        raise OverflowError(f"row {row} column {col}: {value} out of range") from None
    if v < low or v > high:
        raise OverflowError(f"row {row} column {col}: {value} out of range")
    return v


cdef int _text(_Buffer out, object value, bint jsonb, Py_ssize_t row,
               Py_ssize_t col) except -1:
    cdef Py_ssize_t n
    cdef const char *utf8
    if type(value) is not str:
        raise TypeError(f"row {row} column {col}: expected str, got {type(value).__name__}")
    utf8 = PyUnicode_AsUTF8AndSize(value, &n)
    if n > 0x3FFFFFFF:
        raise OverflowError(f"row {row} column {col}: value of {n} bytes")
    if jsonb:
        out.put_u32(<uint32_t>(n + 1))
        out.put(b"\x01", 1)
    else:
        out.put_u32(<uint32_t>n)
    return out.put(utf8, n)


def encode(list rows, str kinds):
    """The COPY payload (header, tuples, trailer) of ``rows``, column i encoded by
    ``kinds[i]``. Every row must have ``len(kinds)`` values."""
    cdef Py_ssize_t ncols = len(kinds), nrows = len(rows), r, c
    cdef bytes codes = kinds.encode("ascii")
    cdef const char *code = PyBytes_AS_STRING(codes)
    cdef _Buffer out = _Buffer(19 + 2 + nrows * (2 + ncols * 16))
    cdef tuple values
    cdef object value
    cdef char kind
    for c in range(ncols):
        if code[c] not in b"tjqihTb?":
            raise ValueError(f"column {c}: unknown kind {kinds[c]!r} (one of {KINDS})")
    if ncols > 1600:
        raise ValueError(f"{ncols} columns")
    out.put(b"PGCOPY\n\xff\r\n\x00", 11)  # signature
    out.put_u32(0)  # flags
    out.put_u32(0)  # header extension length
    for r in range(nrows):
        values = <tuple?>rows[r]
        if len(values) != ncols:
            raise ValueError(f"row {r}: {len(values)} values for {ncols} columns")
        out.put_u16(<uint32_t>ncols)
        for c in range(ncols):
            value = values[c]
            if value is None:
                out.put_u32(0xFFFFFFFF)
                continue
            kind = code[c]
            if kind == b"t" or kind == b"j":
                _text(out, value, kind == b"j", r, c)
            elif kind == b"q":
                out.put_u32(8)
                out.put_u64(<uint64_t>_integer(value, INT64_MIN, INT64_MAX, r, c))
            elif kind == b"i":
                out.put_u32(4)
                out.put_u32(<uint32_t><int32_t>_integer(value, -0x80000000, 0x7FFFFFFF, r, c))
            elif kind == b"h":
                out.put_u32(2)
                out.put_u16(<uint32_t><uint16_t><int16_t>_integer(value, -0x8000, 0x7FFF, r, c))
            elif kind == b"T":
                out.put_u32(8)
                out.put_u64(<uint64_t>_timestamp(value, r, c))
            elif kind == b"b":
                if type(value) is not bytes:
                    raise TypeError(
                        f"row {r} column {c}: expected bytes, got {type(value).__name__}")
                out.put_u32(<uint32_t>PyBytes_GET_SIZE(value))
                out.put(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
            else:  # "?"
                if type(value) is not bool:
                    raise TypeError(
                        f"row {r} column {c}: expected bool, got {type(value).__name__}")
                out.put_u32(1)
                out.put(b"\x01" if value else b"\x00", 1)
    out.put_u16(0xFFFF)  # trailer: -1
    return PyBytes_FromStringAndSize(out.data, out.size)
