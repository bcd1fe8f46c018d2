# cython: language_level=3
"""Columnar record batch shared by the native decoders.

A ``RecordBatch`` owns a fixed C array of ``OutRec`` (see ``_records.pxd``); decoders fill
it without touching Python objects. ``rows()`` turns it into tuples (one per record, in
``ROW_FIELDS`` order) for the adapter layer to build ``UsageRecord``s from.
"""

from cpython.mem cimport PyMem_Calloc, PyMem_Free

from ._ber cimport (
    E_BAD_LENGTH, E_BAD_TAG, E_NO_EOC, E_TOO_DEEP, E_TRUNCATED, format_rfc3339,
)

ROW_FIELDS = (
    "rtype", "offset", "length", "error", "error_tag", "error_offset", "event_time",
    "seizure_time", "duration", "volume_up", "volume_down", "charge", "charging_id", "seq",
    "cause", "imsi", "msisdn", "calling", "called", "node", "ref", "apn", "service",
)

# The per-record problem codes of ``_records.pxd`` for Python (``ERRORS[code]`` describes one).
ERR_OK = R_OK
ERR_MALFORMED = R_MALFORMED
ERR_NO_EVENT_TIME = R_NO_EVENT_TIME
ERR_BAD_TIMESTAMP = R_BAD_TIMESTAMP
ERR_TOO_LONG = R_TOO_LONG
ERR_BAD_INTEGER = R_BAD_INTEGER
ERR_MISSING_FIELD = R_MISSING_FIELD
ERR_UNSUPPORTED = R_UNSUPPORTED
ERR_UNKNOWN_UTC_CODE = R_UNKNOWN_UTC_CODE
ERR_NOT_BER = R_NOT_BER
ERR_OVERFLOW = R_OVERFLOW

# What the BER reader's E_* codes (``_ber.pxd``) mean, for the decoders' file-level errors.
BER_ERRORS = {
    E_TRUNCATED: "element runs past the end of its container",
    E_BAD_TAG: "tag number too large",
    E_BAD_LENGTH: "bad length octets",
    E_TOO_DEEP: "nesting too deep",
    E_NO_EOC: "indefinite length without end-of-contents",
}

ERRORS = (
    "ok",
    "malformed BER inside the record",
    "no event time (answer, seizure or opening time) in the record",
    "bad TimeStamp",
    "field value too long",
    "bad INTEGER",
    "mandatory field missing",
    "unsupported record type",
    "unknown UTC time offset code",
    "record format is not BER",
    "value out of range",
)


cdef class RecordBatch:
    def __cinit__(self, Py_ssize_t capacity=4096):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.recs = <OutRec*>PyMem_Calloc(capacity, sizeof(OutRec))
        if self.recs == NULL:
            raise MemoryError()
        self.cap = capacity
        self.n = 0

    def __dealloc__(self):
        PyMem_Free(self.recs)

    cdef OutRec* next_slot(self) noexcept nogil:
        cdef OutRec* r
        if self.n >= self.cap:
            return NULL
        r = &self.recs[self.n]
        # Only what decoders accumulate or always read; the rest is read under its flag.
        r.flags = 0
        r.err = 0
        r.err_tag = 0
        r.err_offset = 0
        r.charge = 0
        r.vol_up = 0
        r.vol_down = 0
        r.rtype = -1
        r.length = 0
        return r

    def clear(self):
        self.n = 0

    @property
    def capacity(self):
        return self.cap

    def __len__(self):
        return self.n

    def rows(self, indexes=None):
        """A tuple per record (``ROW_FIELDS``), or per record of ``indexes`` only."""
        cdef list out = []
        cdef OutRec* r
        cdef Py_ssize_t i
        cdef char ts[24]
        cdef char sz[24]
        cdef uint32_t f
        for i in (range(self.n) if indexes is None else indexes):
            if not 0 <= i < self.n:
                raise IndexError(f"record {i} of a batch of {self.n}")
            r = &self.recs[i]
            f = r.flags
            if f & F_TIME:
                format_rfc3339(r.event_time, ts)
            if f & F_SEIZURE:
                format_rfc3339(r.seizure_time, sz)
            out.append((
                r.rtype, r.offset, r.length, r.err, r.err_tag, r.err_offset,
                (<bytes>ts).decode() if f & F_TIME else None,
                (<bytes>sz).decode() if f & F_SEIZURE else None,
                r.duration if f & F_DURATION else None,
                r.vol_up if f & F_VOLUME else None,
                r.vol_down if f & F_VOLUME else None,
                r.charge if f & F_CHARGE else None,
                r.charging_id if f & F_CHARGING_ID else None,
                r.seq if f & F_SEQ else None,
                r.cause if f & F_CAUSE else None,
                (<bytes>r.imsi).decode() if f & F_IMSI else None,
                (<bytes>r.msisdn).decode() if f & F_MSISDN else None,
                (<bytes>r.calling).decode() if f & F_CALLING else None,
                (<bytes>r.called).decode() if f & F_CALLED else None,
                (<bytes>r.node).decode() if f & F_NODE else None,
                (<bytes>r.ref).decode() if f & F_REF else None,
                (<bytes>r.apn).decode() if f & F_APN else None,
                (<bytes>r.service).decode() if f & F_SERVICE else None,
            ))
        return out
