# cython: language_level=3
"""Rating kernel: a compiled catalog rating columns of usage without the GIL.

Pure C data inside: longest-prefix match over digit strings as sorted, non-overlapping
key ranges (a prefix of L digits covers a contiguous range of base-11 keys), time-zone
offset tables, per-weekday band segments, a dense kind x zone x band -> rate table, and
steps as integer arrays. Amounts are computed exactly on 128-bit integers scaled by each
rate's common denominator; overflow of the 128-bit sum or of the int64 result is reported
per record (status OVERFLOW), never wrapped.

The twin of this module is ``server.rating.reference`` (``fractions.Fraction``); the
tables are built by ``server.rating.compile``. This module imports nothing from the rest.

The per-call pricing rules (connect fee, minimum, maximum, rounding) are each a module of
``server.catalog.rules`` plus their lines here: their per-rate columns in ``RULE_COLUMNS``
and as fields of ``Kernel`` (loaded by ``Kernel._rule``), their arithmetic in
``Kernel._amount``, in the rules' order.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcpy, memset

cdef extern from *:
    """
    typedef __int128 bo_i128;
    static inline bo_i128 bo_make128(int64_t hi, uint64_t lo) {
        return (bo_i128)(((unsigned __int128)(uint64_t)hi << 64) | (unsigned __int128)lo);
    }
    static inline int bo_mul128(bo_i128 a, bo_i128 b, bo_i128 *out) {
        return __builtin_mul_overflow(a, b, out);
    }
    static inline int bo_add128(bo_i128 a, bo_i128 b, bo_i128 *out) {
        return __builtin_add_overflow(a, b, out);
    }
    """
    ctypedef long long bo_i128  # an opaque 128-bit integer to Cython; C does the math
    bo_i128 bo_make128(int64_t hi, uint64_t lo) nogil
    bint bo_mul128(bo_i128 a, bo_i128 b, bo_i128 *out) nogil
    bint bo_add128(bo_i128 a, bo_i128 b, bo_i128 *out) nogil

cdef enum:
    # Record status codes (server.rating.native maps them to core.errors.Reason).
    C_OK = 0
    C_UNKNOWN_ACCOUNT = 1  # set by the caller, which resolves accounts
    C_NO_TARIFF = 2
    C_NO_ZONE = 3
    C_NO_RATE = 4
    C_OVERFLOW = 5
    C_BAD_FIELD = 6
    # Bytes per record in the ``called`` column: NUL-padded; only the first 18 digits can
    # matter because no prefix is longer.
    WIDTH = 20
    DIGITS = 18
    NBUCKETS = 14641  # 11**4: buckets on the first four key digits
    NO_CALLED = -2

# The same codes and sizes for Python, from the one definition above.
STATUS_OK = C_OK
STATUS_UNKNOWN_ACCOUNT = C_UNKNOWN_ACCOUNT
STATUS_NO_TARIFF = C_NO_TARIFF
STATUS_NO_ZONE = C_NO_ZONE
STATUS_NO_RATE = C_NO_RATE
STATUS_OVERFLOW = C_OVERFLOW
STATUS_BAD_FIELD = C_BAD_FIELD
CALLED_WIDTH = WIDTH
MAX_PREFIX_DIGITS = DIGITS

# The pricing rules' per-rate columns (server.catalog.rules fills them): array type code,
# or "wide" for 128-bit amounts (given as a list of ints).
RULE_COLUMNS = {
    "r_connect": "wide",  # connect_fee
    "r_has_min": "B", "r_min": "wide",  # minimum_charge
    "r_has_max": "B", "r_max": "wide",  # maximum_charge
    "r_grid": "q", "r_method": "B",  # rounding: grid in micro-units, method code
}
_ITEM_SIZES = {"B": 1, "i": 4, "q": 8}

cdef int64_t DAY_US = 86400000000

cdef uint64_t POW11[19]
cdef int _k
POW11[0] = 1
for _k in range(1, 19):
    POW11[_k] = POW11[_k - 1] * 11
cdef uint64_t BUCKET_DIV = POW11[14]
cdef int64_t I64_MAX = 0x7FFFFFFFFFFFFFFF


cdef struct Interval:
    uint64_t start
    uint64_t end
    int32_t zone


cdef int _cmp_interval(const void *a, const void *b) noexcept nogil:
    cdef const Interval *x = <const Interval *>a
    cdef const Interval *y = <const Interval *>b
    if x.start != y.start:
        return -1 if x.start < y.start else 1
    if x.end != y.end:
        return -1 if x.end > y.end else 1  # the wider (shorter prefix) first
    return 0


cdef struct LpmData:
    uint64_t *starts  # segment k covers keys [starts[k], starts[k + 1])
    int32_t *zones
    int64_t count
    int64_t *buckets


cdef inline int32_t lpm_find(const LpmData *d, const uint8_t *digits) noexcept nogil:
    cdef int empty
    cdef uint64_t key = _called_key(digits, &empty)
    if empty:
        return NO_CALLED
    cdef uint64_t b = key // BUCKET_DIV
    cdef int64_t lo = d.buckets[b]
    cdef int64_t hi = d.buckets[b + 1]
    cdef int64_t mid
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if d.starts[mid] <= key:
            lo = mid
        else:
            hi = mid - 1
    return d.zones[lo]


cdef inline uint64_t _called_key(const uint8_t *digits, int *empty) noexcept nogil:
    """Base-11 key of the leading digits (digit d -> d + 1, 0 past the end)."""
    cdef uint64_t key = 0
    cdef int j
    cdef uint8_t c
    empty[0] = digits[0] == 0
    for j in range(DIGITS):
        c = digits[j]
        if c < 48 or c > 57:
            break
        key += (c - 47) * POW11[DIGITS - 1 - j]
    return key


cdef class Lpm:
    """Longest-prefix match of digit strings onto zone ids (-1: no prefix matches)."""

    cdef LpmData d

    def __cinit__(self):
        self.d.starts = NULL
        self.d.zones = NULL
        self.d.buckets = NULL
        self.d.count = 0

    def __dealloc__(self):
        free(self.d.starts)
        free(self.d.zones)
        free(self.d.buckets)

    def __init__(self, list prefixes, const int32_t[::1] zone_ids):
        cdef Py_ssize_t n = len(prefixes)
        if zone_ids.shape[0] != n:
            raise ValueError("prefixes and zone_ids differ in length")
        cdef Interval *items = <Interval *>malloc((n if n > 0 else 1) * sizeof(Interval))
        if items == NULL:
            raise MemoryError()
        try:
            self._encode(prefixes, zone_ids, items, n)
            qsort(items, n, sizeof(Interval), _cmp_interval)
            self._flatten(items, n)
        finally:
            free(items)
        self._index()

    cdef void _encode(self, list prefixes, const int32_t[::1] zone_ids, Interval *items,
                      Py_ssize_t n) except *:
        cdef Py_ssize_t i, j, length
        cdef bytes raw
        cdef const unsigned char *text
        cdef uint64_t key
        for i in range(n):
            prefix = prefixes[i]
            if not isinstance(prefix, str):
                raise ValueError(f"prefix #{i} is not a string")
            raw = (<str>prefix).encode("latin-1", "replace")
            length = len(raw)
            if length < 1 or length > DIGITS:
                raise ValueError(f"prefix #{i} {prefix!r} is not 1 to {DIGITS} digits")
            text = raw
            key = 0
            for j in range(length):
                if text[j] < 48 or text[j] > 57:
                    raise ValueError(f"prefix #{i} {prefix!r} is not all digits")
                key += (text[j] - 47) * POW11[DIGITS - 1 - j]
            items[i].start = key
            items[i].end = key + POW11[DIGITS - length]
            items[i].zone = zone_ids[i]

    cdef void _flatten(self, Interval *items, Py_ssize_t n) except *:
        """Nested prefix ranges -> sorted non-overlapping segments [start_k, start_k+1)."""
        cdef Py_ssize_t capacity = 2 * n + 2
        self.d.starts = <uint64_t *>malloc(capacity * sizeof(uint64_t))
        self.d.zones = <int32_t *>malloc(capacity * sizeof(int32_t))
        cdef Interval *stack = <Interval *>malloc((n if n > 0 else 1) * sizeof(Interval))
        if self.d.starts == NULL or self.d.zones == NULL or stack == NULL:
            free(stack)
            raise MemoryError()
        cdef Py_ssize_t depth = 0, i
        self.d.count = 0
        self._emit(0, -1)
        for i in range(n):
            if i > 0 and items[i].start == items[i - 1].start and items[i].end == items[i - 1].end:
                free(stack)
                raise ValueError("a prefix is listed twice")
            while depth > 0 and stack[depth - 1].end <= items[i].start:
                depth -= 1
                self._emit(stack[depth].end, stack[depth - 1].zone if depth > 0 else -1)
            self._emit(items[i].start, items[i].zone)
            stack[depth] = items[i]
            depth += 1
        while depth > 0:
            depth -= 1
            self._emit(stack[depth].end, stack[depth - 1].zone if depth > 0 else -1)
        free(stack)

    cdef inline void _emit(self, uint64_t start, int32_t zone) noexcept:
        if self.d.count > 0 and self.d.starts[self.d.count - 1] == start:
            self.d.zones[self.d.count - 1] = zone
        elif self.d.count > 0 and self.d.zones[self.d.count - 1] == zone:
            pass
        else:
            self.d.starts[self.d.count] = start
            self.d.zones[self.d.count] = zone
            self.d.count += 1

    cdef void _index(self) except *:
        """buckets[b] = the segment holding key b * 11**14 (search starts there)."""
        self.d.buckets = <int64_t *>malloc((NBUCKETS + 1) * sizeof(int64_t))
        if self.d.buckets == NULL:
            raise MemoryError()
        cdef int64_t seg = 0
        cdef uint64_t edge
        cdef int b
        for b in range(NBUCKETS + 1):
            edge = <uint64_t>b * BUCKET_DIV
            while seg + 1 < self.d.count and self.d.starts[seg + 1] <= edge:
                seg += 1
            self.d.buckets[b] = seg

    def lookup(self, called: bytes) -> int:
        """Zone id of the longest prefix of ``called``; -1 none, -2 empty."""
        cdef uint8_t buf[WIDTH]
        memset(buf, 0, WIDTH)
        cdef Py_ssize_t i
        for i in range(min(len(called), WIDTH)):
            buf[i] = called[i]
        return lpm_find(&self.d, buf)

    def lookup_batch(self, const uint8_t[::1] called, int32_t[::1] out) -> None:
        """``called`` holds ``len(out)`` NUL-padded fields of CALLED_WIDTH bytes."""
        cdef Py_ssize_t n = out.shape[0], i
        if called.shape[0] != n * WIDTH:
            raise ValueError("called must hold CALLED_WIDTH bytes per record")
        if n == 0:
            return
        with nogil:
            for i in range(n):
                out[i] = lpm_find(&self.d, &called[i * WIDTH])

    @property
    def segments(self) -> int:
        return self.d.count

    @property
    def nbytes(self) -> int:
        return self.d.count * (sizeof(uint64_t) + sizeof(int32_t)) + (NBUCKETS + 1) * 8


cdef class _Buf:
    """One owned C array copied from a Python buffer, with its length."""

    cdef void *data
    cdef Py_ssize_t length

    def __cinit__(self):
        self.data = NULL
        self.length = 0

    def __dealloc__(self):
        free(self.data)


cdef _Buf _copy(object source, str fmt, Py_ssize_t itemsize):
    cdef const unsigned char[::1] raw = memoryview(source).cast("B")
    cdef _Buf buf = _Buf()
    if memoryview(source).format != fmt:
        raise ValueError(f"table has format {memoryview(source).format!r}, expected {fmt!r}")
    buf.length = raw.shape[0] // itemsize
    buf.data = malloc(raw.shape[0] if raw.shape[0] > 0 else 1)
    if buf.data == NULL:
        raise MemoryError()
    if raw.shape[0] > 0:
        memcpy(buf.data, &raw[0], raw.shape[0])
    return buf


cdef class Kernel:
    """A compiled catalog. Built from the flat tables of ``server.rating.compile``."""

    cdef list _keep
    cdef Py_ssize_t n_tariffs, n_versions, n_rates, n_steps
    cdef int32_t *tariff_versions
    cdef int64_t *v_effective
    cdef int32_t *v_tz
    cdef int32_t *v_zones
    cdef int32_t *v_bands
    cdef int32_t *v_rate_base
    cdef int32_t *v_day_base
    cdef const LpmData **v_lpm
    cdef Py_ssize_t _len
    cdef int32_t *rate_select
    cdef Py_ssize_t n_select
    cdef int32_t *day_offsets
    cdef int64_t *seg_start
    cdef int32_t *seg_band
    cdef int32_t *tz_offsets
    cdef int64_t *tz_trans
    cdef int64_t *tz_shift
    cdef int64_t *r_denominator
    cdef int32_t *r_step_offsets
    cdef int64_t *s_from
    cdef int64_t *s_next
    cdef int64_t *s_increment
    cdef bo_i128 *s_coef
    # The pricing rules' columns (RULE_COLUMNS)
    cdef bo_i128 *r_connect
    cdef uint8_t *r_has_min
    cdef bo_i128 *r_min
    cdef uint8_t *r_has_max
    cdef bo_i128 *r_max
    cdef int64_t *r_grid
    cdef uint8_t *r_method

    def __cinit__(self):
        self.v_lpm = NULL

    def __dealloc__(self):
        free(self.v_lpm)

    def __init__(self, dict tables, list lpms):
        self._keep = list(lpms)
        self.tariff_versions = <int32_t *>self._table(tables, "tariff_versions", "i", 4)
        self.n_tariffs = self._len - 1
        self.v_effective = <int64_t *>self._table(tables, "v_effective", "q", 8)
        self.n_versions = self._len
        self.v_tz = <int32_t *>self._table(tables, "v_tz", "i", 4)
        self.v_zones = <int32_t *>self._table(tables, "v_zones", "i", 4)
        self.v_bands = <int32_t *>self._table(tables, "v_bands", "i", 4)
        self.v_rate_base = <int32_t *>self._table(tables, "v_rate_base", "i", 4)
        self.v_day_base = <int32_t *>self._table(tables, "v_day_base", "i", 4)
        self.rate_select = <int32_t *>self._table(tables, "rate_select", "i", 4)
        self.n_select = self._len
        self.day_offsets = <int32_t *>self._table(tables, "day_offsets", "i", 4)
        self.seg_start = <int64_t *>self._table(tables, "seg_start", "q", 8)
        self.seg_band = <int32_t *>self._table(tables, "seg_band", "i", 4)
        self.tz_offsets = <int32_t *>self._table(tables, "tz_offsets", "i", 4)
        self.tz_trans = <int64_t *>self._table(tables, "tz_trans", "q", 8)
        self.tz_shift = <int64_t *>self._table(tables, "tz_shift", "q", 8)
        self.r_denominator = <int64_t *>self._table(tables, "r_denominator", "q", 8)
        self.n_rates = self._len
        self.r_step_offsets = <int32_t *>self._table(tables, "r_step_offsets", "i", 4)
        self.s_from = <int64_t *>self._table(tables, "s_from", "q", 8)
        self.n_steps = self._len
        self.s_next = <int64_t *>self._table(tables, "s_next", "q", 8)
        self.s_increment = <int64_t *>self._table(tables, "s_increment", "q", 8)
        self.s_coef = self._wide(tables["s_coef"], self.n_steps)
        self.r_connect = <bo_i128 *>self._rule(tables, "r_connect")
        self.r_has_min = <uint8_t *>self._rule(tables, "r_has_min")
        self.r_min = <bo_i128 *>self._rule(tables, "r_min")
        self.r_has_max = <uint8_t *>self._rule(tables, "r_has_max")
        self.r_max = <bo_i128 *>self._rule(tables, "r_max")
        self.r_grid = <int64_t *>self._rule(tables, "r_grid")
        self.r_method = <uint8_t *>self._rule(tables, "r_method")
        if len(lpms) != self.n_versions:
            raise ValueError("one Lpm per version is needed")
        self.v_lpm = <const LpmData **>malloc((self.n_versions + 1) * sizeof(LpmData *))
        if self.v_lpm == NULL:
            raise MemoryError()
        cdef Py_ssize_t v
        for v in range(self.n_versions):
            if not isinstance(lpms[v], Lpm):
                raise TypeError("lpms must be Lpm objects")
            self.v_lpm[v] = &(<Lpm>lpms[v]).d
        self._check(tables)

    cdef void *_table(self, dict tables, str name, str fmt, Py_ssize_t itemsize) except NULL:
        cdef _Buf buf = _copy(tables[name], fmt, itemsize)
        self._keep.append(buf)
        self._len = buf.length
        return buf.data

    cdef void *_rule(self, dict tables, str name) except NULL:
        """A pricing rule's per-rate column, one entry per rate, typed by RULE_COLUMNS."""
        code = RULE_COLUMNS[name]
        if code == "wide":
            return self._wide(tables[name], self.n_rates)
        cdef void *data = self._table(tables, name, code, _ITEM_SIZES[code])
        if self._len != self.n_rates:
            raise ValueError(f"{name} needs one entry per rate")
        return data

    cdef bo_i128 *_wide(self, list values, Py_ssize_t count) except NULL:
        if len(values) != count:
            raise ValueError("wide table has the wrong length")
        cdef _Buf buf = _Buf()
        buf.data = malloc((count if count > 0 else 1) * sizeof(bo_i128))
        if buf.data == NULL:
            raise MemoryError()
        self._keep.append(buf)
        cdef bo_i128 *out = <bo_i128 *>buf.data
        cdef Py_ssize_t i
        for i in range(count):
            value = values[i]
            if not -(1 << 127) <= value < (1 << 127):
                raise OverflowError("wide value does not fit 128 bits")
            out[i] = bo_make128(<int64_t>(value >> 64), <uint64_t>(value & 0xFFFFFFFFFFFFFFFF))
        return out

    def _check(self, dict tables) -> None:
        """Refuse inconsistent tables here, so the nogil loop can trust its indexes."""
        lengths = {name: len(memoryview(value)) for name, value in tables.items()
                   if not isinstance(value, list)}
        for name in ("v_tz", "v_zones", "v_bands", "v_rate_base", "v_day_base"):
            if lengths[name] != self.n_versions:
                raise ValueError(f"{name} needs one entry per version")
        if self.n_tariffs < 0 or lengths["r_step_offsets"] != self.n_rates + 1:
            raise ValueError("offset tables are malformed")
        if lengths["s_next"] != self.n_steps or lengths["s_increment"] != self.n_steps:
            raise ValueError("step tables differ in length")
        if lengths["seg_band"] != lengths["seg_start"]:
            raise ValueError("band segment tables differ in length")
        if lengths["tz_trans"] != lengths["tz_shift"]:
            raise ValueError("time-zone tables differ in length")
        _monotone(tables["tariff_versions"], self.n_versions, "tariff_versions")
        _monotone(tables["r_step_offsets"], self.n_steps, "r_step_offsets")
        _monotone(tables["day_offsets"], lengths["seg_start"], "day_offsets")
        _monotone(tables["tz_offsets"], lengths["tz_trans"], "tz_offsets")
        n_zones_tz = lengths["tz_offsets"] - 1
        cdef Py_ssize_t v
        for v in range(self.n_versions):
            width = 4 * (self.v_zones[v] + 1) * (self.v_bands[v] + 1)
            if not (0 <= self.v_tz[v] < n_zones_tz
                    and self.tz_offsets[self.v_tz[v]] < self.tz_offsets[self.v_tz[v] + 1]
                    and 0 <= self.v_rate_base[v] and self.v_rate_base[v] + width <= self.n_select
                    and 0 <= self.v_day_base[v] and self.v_day_base[v] + 8 <= lengths["day_offsets"]
                    and self.v_zones[v] >= 0 and self.v_bands[v] >= 0):
                raise ValueError(f"version {v} tables are out of range")
            for day in range(7):
                lo = self.day_offsets[self.v_day_base[v] + day]
                if lo >= self.day_offsets[self.v_day_base[v] + day + 1] or self.seg_start[lo] != 0:
                    raise ValueError(f"version {v} day {day} has no segment at 00:00")
                for k in range(lo, self.day_offsets[self.v_day_base[v] + day + 1]):
                    if not -1 <= self.seg_band[k] < self.v_bands[v]:
                        raise ValueError(f"version {v} band segment out of range")
            for k in range(self.v_rate_base[v], self.v_rate_base[v] + width):
                if not -1 <= self.rate_select[k] < self.n_rates:
                    raise ValueError("rate_select out of range")
        for r in range(self.n_rates):
            if self.r_denominator[r] < 1 or self.r_grid[r] < 1 or self.r_method[r] > 3:
                raise ValueError(f"rate {r} is malformed")
        for s in range(self.n_steps):
            if self.s_increment[s] < 1 or self.s_from[s] < 0 or self.s_next[s] <= self.s_from[s]:
                raise ValueError(f"step {s} is malformed")

    def rate(
        self,
        const int32_t[::1] tariff,
        const int64_t[::1] event_us,
        const uint8_t[::1] kind,
        const int64_t[::1] usage,
        const uint8_t[::1] called,
        uint8_t[::1] status,
        int64_t[::1] amount,
        int32_t[::1] version,
        int32_t[::1] zone,
        int32_t[::1] band,
    ) -> None:
        """Rate ``n`` records given as columns; the GIL is released for the whole batch.

        ``status`` is in/out: records with a non-zero status on entry are skipped (the
        caller already rejected them). ``called`` holds CALLED_WIDTH bytes per record.
        """
        cdef Py_ssize_t n = status.shape[0]
        if not (tariff.shape[0] == event_us.shape[0] == kind.shape[0] == usage.shape[0]
                == amount.shape[0] == version.shape[0] == zone.shape[0] == band.shape[0] == n):
            raise ValueError("all columns must have the same length")
        if called.shape[0] != n * WIDTH:
            raise ValueError("called must hold CALLED_WIDTH bytes per record")
        cdef Py_ssize_t i
        with nogil:
            for i in range(n):
                if status[i] == C_OK:
                    status[i] = self._rate_one(
                        tariff[i], event_us[i], kind[i], usage[i], &called[i * WIDTH],
                        &amount[i], &version[i], &zone[i], &band[i])

    cdef inline uint8_t _rate_one(
        self, int32_t t, int64_t ev, uint8_t k, int64_t u, const uint8_t *digits,
        int64_t *amount, int32_t *version_out, int32_t *zone_out, int32_t *band_out,
    ) noexcept nogil:
        amount[0] = 0
        version_out[0] = -1
        zone_out[0] = -1
        band_out[0] = -1
        if t < 0 or t >= self.n_tariffs or k > 3 or u < 0:
            return C_BAD_FIELD
        cdef int32_t v = self._version_at(t, ev)
        if v < 0:
            return C_NO_TARIFF
        version_out[0] = v
        cdef int32_t z = lpm_find(self.v_lpm[v], digits)
        if z == -1:
            return C_NO_ZONE
        cdef int32_t b = self._band_at(v, ev)
        zone_out[0] = z if z >= 0 else -1
        band_out[0] = b
        cdef int32_t nz = self.v_zones[v], nb = self.v_bands[v]
        cdef int32_t zi = z if z >= 0 else nz
        cdef int32_t bi = b if b >= 0 else nb
        cdef int32_t r = self.rate_select[self.v_rate_base[v] + (k * (nz + 1) + zi) * (nb + 1) + bi]
        if r < 0:
            return C_NO_ZONE if z == NO_CALLED else C_NO_RATE
        if u == 0:
            return C_OK
        return self._amount(r, u, amount)

    cdef inline int32_t _version_at(self, int32_t t, int64_t ev) noexcept nogil:
        cdef int32_t j = self.tariff_versions[t + 1] - 1
        cdef int32_t first = self.tariff_versions[t]
        while j >= first:
            if self.v_effective[j] <= ev:
                return j
            j -= 1
        return -1

    cdef inline int32_t _band_at(self, int32_t v, int64_t ev) noexcept nogil:
        cdef int32_t tz = self.v_tz[v]
        cdef int64_t lo = self.tz_offsets[tz], hi = self.tz_offsets[tz + 1] - 1, mid
        while lo < hi:  # last transition <= ev; the first one is at -inf
            mid = (lo + hi + 1) >> 1
            if self.tz_trans[mid] <= ev:
                lo = mid
            else:
                hi = mid - 1
        cdef int64_t local = ev + self.tz_shift[lo]
        cdef int64_t day = local // DAY_US
        if local - day * DAY_US < 0:
            day -= 1
        cdef int64_t second = local - day * DAY_US
        cdef int64_t weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        if weekday < 0:
            weekday += 7
        cdef int32_t base = self.v_day_base[v] + <int32_t>weekday
        cdef int32_t s = self.day_offsets[base + 1] - 1
        cdef int32_t first = self.day_offsets[base]
        while s > first and self.seg_start[s] > second:
            s -= 1
        return self.seg_band[s]

    cdef inline uint8_t _amount(self, int32_t r, int64_t u, int64_t *out) noexcept nogil:
        """The steps' total with each pricing rule applied in the rules' order."""
        cdef bo_i128 total = self.r_connect[r], billed, term  # connect_fee: added first
        cdef bint overflow = False
        cdef int64_t start, top, portion, inc
        cdef int32_t s
        for s in range(self.r_step_offsets[r], self.r_step_offsets[r + 1]):
            start = self.s_from[s]
            if u <= start:
                break
            top = u if u < self.s_next[s] else self.s_next[s]
            portion = top - start
            inc = self.s_increment[s]
            billed = ((<bo_i128>portion + inc - 1) / inc) * inc
            if bo_mul128(billed, self.s_coef[s], &term) or bo_add128(total, term, &total):
                overflow = True
                break
        if overflow:
            # Every term is >= 0, so the true total exceeds any 128-bit bound: only
            # maximum_charge can still price the call.
            if not self.r_has_max[r]:
                return C_OVERFLOW
            total = self.r_max[r]
        else:  # minimum_charge, then maximum_charge
            if self.r_has_min[r] and total < self.r_min[r]:
                total = self.r_min[r]
            if self.r_has_max[r] and total > self.r_max[r]:
                total = self.r_max[r]
        # rounding to its grid (without the rule: to the micro-unit, half-up)
        cdef int64_t grid = self.r_grid[r]
        cdef bo_i128 unit = <bo_i128>self.r_denominator[r] * grid
        cdef bo_i128 q = total / unit
        cdef bo_i128 rem = total - q * unit
        cdef uint8_t method = self.r_method[r]
        if method == 0:  # half-up
            q += 2 * rem >= unit
        elif method == 1:  # half-even
            q += 2 * rem > unit or (2 * rem == unit and (q & 1) == 1)
        elif method == 2:  # up (away from zero; amounts are never negative)
            q += rem > 0
        if q > I64_MAX // grid:
            return C_OVERFLOW
        out[0] = <int64_t>(q * grid)
        return C_OK


def _monotone(table, Py_ssize_t limit, str name):
    values = memoryview(table).tolist()
    # Module is compiled with wraparound off: no negative indexes anywhere.
    if not values or values[0] < 0 or values[len(values) - 1] > limit:
        raise ValueError(f"{name} is out of range")
    for a, b in zip(values, values[1:]):
        if b < a:
            raise ValueError(f"{name} is not ascending")
