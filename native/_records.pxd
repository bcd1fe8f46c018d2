# cython: language_level=3
"""The columnar batch the native decoders fill: a C array of ``OutRec`` per batch."""

from libc.stdint cimport int16_t, int32_t, int64_t, uint32_t

cdef enum:
    F_IMSI = 1
    F_MSISDN = 2
    F_CALLING = 4
    F_CALLED = 8
    F_TIME = 16
    F_DURATION = 32
    F_VOLUME = 64
    F_CHARGE = 128
    F_CHARGING_ID = 256
    F_SEQ = 512
    F_CAUSE = 1024
    F_NODE = 2048
    F_REF = 4096
    F_APN = 8192
    F_SERVICE = 16384
    F_SEIZURE = 32768
    F_ANSWER = 65536
    F_TRAFFIC = 131072     # volumes seen in listOfTrafficVolumes
    F_SERVICE_DATA = 262144  # volumes seen in listOfServiceData

# Per-record problems (the record is skipped, the file goes on). Index into ERRORS.
cdef enum:
    R_OK = 0
    R_MALFORMED = 1
    R_NO_EVENT_TIME = 2
    R_BAD_TIMESTAMP = 3
    R_TOO_LONG = 4
    R_BAD_INTEGER = 5
    R_MISSING_FIELD = 6
    R_UNSUPPORTED = 7
    R_UNKNOWN_UTC_CODE = 8
    R_NOT_BER = 9
    R_OVERFLOW = 10

ctypedef struct OutRec:
    int64_t offset
    int64_t event_time
    int64_t seizure_time
    int64_t duration
    int64_t vol_up
    int64_t vol_down
    int64_t charge
    int64_t charging_id
    int64_t seq
    int64_t cause
    uint32_t flags
    int32_t rtype
    int32_t length
    int16_t err
    int32_t err_tag
    int64_t err_offset
    char imsi[24]
    char msisdn[40]
    char calling[40]
    char called[40]
    char node[48]
    char ref[48]
    char apn[64]
    char service[8]


cdef class RecordBatch:
    cdef OutRec* recs
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef OutRec* next_slot(self) noexcept nogil
