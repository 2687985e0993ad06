# cython: language_level=3
"""The journal's per-record hot path, compiled: frame encoding and the fold of
the two records every market order appends (``order.submitted``, ``broker.filled``).

Each function here is a line-for-line port of its Python original and must stay
one: ``codec.encode`` (frame layout: see ``codec``), ``JournalState._on_submitted``,
``_on_filled``, ``_set_status``, ``_finish`` and ``_forget_oldest``. The Python originals remain the
reference (and the fallback when this module is not built); the differential
tests (``tests/journal/test_hot.py``) feed both the same records, including
hypothesis-generated ones, and compare frames byte for byte and states key for
key. What compiling buys: no bytecode dispatch, dict calls straight into the C
API, the frame built in one allocation (header written in place, no ``struct``
pack, no concatenation) and its CRC-32 (zlib's polynomial, bit-identical to
``zlib.crc32``) computed slicing-by-8 in place.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Copy, PyDict_GetItemWithError, PyDict_SetItem, PyDict_DelItem, PyDict_Contains
from cpython.object cimport PyObject, PyObject_IsTrue
from cpython.set cimport PySet_Add, PySet_Contains, PySet_Discard
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from collections import deque

import orjson

cimport cython
cimport fastexec.engine._dictfill as df

cdef object _dumps = orjson.dumps
cdef object _deque = deque
cdef object _deque_append = deque.append  # called with the deque: no method lookup per call
cdef object _deque_popleft = deque.popleft

cdef Py_ssize_t MAX_PAYLOAD_C = 16 * 1024 * 1024
MAX_PAYLOAD = MAX_PAYLOAD_C  # codec.MAX_PAYLOAD (codec.py checks they agree)
RECENT_TXNS = 4096  # state.RECENT_TXNS (state.py checks they agree)
cdef Py_ssize_t _RECENT_TXNS = RECENT_TXNS

# ---------------------------------------------------------------------------- CRC-32 (zlib's)

cdef uint32_t _T[8][256]


cdef void _init_tables() noexcept:
    cdef uint32_t c, i, k
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ (0xEDB88320U if (c & 1) else 0)
        _T[0][i] = c
    for i in range(256):
        for k in range(1, 8):
            _T[k][i] = (_T[k - 1][i] >> 8) ^ _T[0][_T[k - 1][i] & 0xFF]


_init_tables()


cdef extern from *:
    """
    /* CRC-32 (zlib's polynomial, bit-reflected) folded with carry-less multiplication, 64 bytes
       a step: Gopal et al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ"
       (Intel, 2009), the constants and the code as in Chromium's zlib (crc32_simd.c). Takes and
       returns the inverted register (~crc); len >= 64 and a multiple of 16. */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    #define FX_HAVE_CLMUL_CODE 1
    __attribute__((target("pclmul,sse4.1")))
    static uint32_t fx_crc32_clmul(const unsigned char *buf, Py_ssize_t len, uint32_t crc)
    {
        static const uint64_t __attribute__((aligned(16))) k1k2[] = {0x0154442bd4ULL, 0x01c6e41596ULL};
        static const uint64_t __attribute__((aligned(16))) k3k4[] = {0x01751997d0ULL, 0x00ccaa009eULL};
        static const uint64_t __attribute__((aligned(16))) k5k0[] = {0x0163cd6124ULL, 0x0000000000ULL};
        static const uint64_t __attribute__((aligned(16))) poly[] = {0x01db710641ULL, 0x01f7011641ULL};
        __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;
        x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
        x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
        x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
        x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
        x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
        x0 = _mm_load_si128((const __m128i *)k1k2);
        buf += 64;
        len -= 64;
        while (len >= 64) {
            x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
            x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
            x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
            x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
            x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
            x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
            x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
            x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
            y5 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
            y6 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
            y7 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
            y8 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
            x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5);
            x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
            x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7);
            x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
            buf += 64;
            len -= 64;
        }
        x0 = _mm_load_si128((const __m128i *)k3k4);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
        while (len >= 16) {
            x2 = _mm_loadu_si128((const __m128i *)buf);
            x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
            x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
            x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
            buf += 16;
            len -= 16;
        }
        x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
        x3 = _mm_setr_epi32(~0, 0, ~0, 0);
        x1 = _mm_srli_si128(x1, 8);
        x1 = _mm_xor_si128(x1, x2);
        x0 = _mm_loadl_epi64((const __m128i *)k5k0);
        x2 = _mm_srli_si128(x1, 4);
        x1 = _mm_and_si128(x1, x3);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_xor_si128(x1, x2);
        x0 = _mm_load_si128((const __m128i *)poly);
        x2 = _mm_and_si128(x1, x3);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
        x2 = _mm_and_si128(x2, x3);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x1 = _mm_xor_si128(x1, x2);
        return (uint32_t)_mm_extract_epi32(x1, 1);
    }
    static int fx_clmul_usable(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    }
    #else
    static uint32_t fx_crc32_clmul(const unsigned char *buf, Py_ssize_t len, uint32_t crc) { return crc; }
    static int fx_clmul_usable(void) { return 0; }
    #endif
    """
    uint32_t fx_crc32_clmul(const unsigned char* buf, Py_ssize_t len, uint32_t crc) noexcept nogil
    int fx_clmul_usable() noexcept nogil

cdef bint _CLMUL = fx_clmul_usable()
CLMUL = _CLMUL  # for the tests: which path they exercise


cdef inline uint32_t _crc_update(uint32_t crc, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """zlib.crc32(data, crc) over ``n`` bytes at ``p``: folded with PCLMULQDQ 16 bytes at a time
    where the CPU has it (64 bytes or more), the rest slicing-by-8 (byte order independent loads)."""
    cdef uint32_t c = crc ^ 0xFFFFFFFFU
    cdef uint32_t lo, hi
    cdef Py_ssize_t chunk
    if n >= 64 and _CLMUL:
        chunk = n & ~(<Py_ssize_t>15)
        c = fx_crc32_clmul(p, chunk, c)
        p += chunk
        n -= chunk
    while n >= 8:
        lo = c ^ (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24))
        hi = <uint32_t>p[4] | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 24)
        c = (_T[7][lo & 0xFF] ^ _T[6][(lo >> 8) & 0xFF] ^ _T[5][(lo >> 16) & 0xFF] ^ _T[4][lo >> 24] ^
             _T[3][hi & 0xFF] ^ _T[2][(hi >> 8) & 0xFF] ^ _T[1][(hi >> 16) & 0xFF] ^ _T[0][hi >> 24])
        p += 8
        n -= 8
    while n > 0:
        c = _T[0][(c ^ p[0]) & 0xFF] ^ (c >> 8)
        p += 1
        n -= 1
    return c ^ 0xFFFFFFFFU


def crc32(const unsigned char[::1] data, uint32_t value=0):
    """Same result as ``zlib.crc32(data, value)`` (for the tests)."""
    if data.shape[0] == 0:
        return value
    return _crc_update(value, &data[0], data.shape[0])


cdef inline void _le32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline void _seal(unsigned char* p, Py_ssize_t n, uint64_t seq) noexcept:
    """Write the 20-byte frame header in front of the ``n``-byte payload already at
    ``p + 20``: magic ``FXJ``, version, payload length, sequence number, then the CRC
    of header and payload (``codec.encode_raw``'s layout)."""
    p[0] = 70  # F
    p[1] = 88  # X
    p[2] = 74  # J
    p[3] = 1   # version
    _le32(p + 4, <uint32_t>n)
    _le32(p + 8, <uint32_t>(seq & 0xFFFFFFFFU))
    _le32(p + 12, <uint32_t>(seq >> 32))
    _le32(p + 16, _crc_update(_crc_update(0, p, 16), p + 20, n))


cpdef bytes frame(long long seq_in, bytes body):
    """The frame around an encoded payload (``codec.encode_raw``'s layout, the default limit).
    (``seq`` is taken as a signed C long long: converting to an unsigned one goes through
    ``_PyLong_AsByteArray``, ~500 instructions a record.)"""
    if seq_in < 0:
        raise OverflowError("journal sequence numbers are not negative")
    cdef uint64_t seq = <uint64_t>seq_in
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    if n > MAX_PAYLOAD_C:
        raise ValueError(f"journal record of {n} bytes exceeds the {MAX_PAYLOAD_C}-byte limit")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 20 + n)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    memcpy(p + 20, PyBytes_AS_STRING(body), n)
    _seal(p, n, seq)
    return out


cpdef bytes encode(long long seq, payload):
    """``codec.encode``: one complete frame of an orjson-encoded dict."""
    return _encode(seq, payload)


# ---------------------------------------------------------------------------- JSON, orjson's bytes

# The records an order appends hold only exact dicts, lists, ASCII strings without anything
# to escape but quotes and backslashes, 64-bit ints, bools and None. For those, orjson's output
# is fixed (no spaces, keys in insertion order, ints in decimal, ``\"`` and ``\\``), so they are
# written here straight into the frame: no call through orjson's argument parsing, no 1 KiB
# buffer grown and shrunk, no second copy into the frame. Anything else (floats, non-ASCII or
# control characters, subclasses, ints past 64 bits, deep nesting) makes the whole record go
# through orjson.dumps as before; the tests compare both on generated records, byte for byte.

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1
    unsigned int PyUnicode_CHECK_INTERNED(object o)
    void Py_XDECREF(PyObject* o)
    Py_ssize_t PyList_GET_SIZE(object o)
    PyObject* PyList_GET_ITEM(object o, Py_ssize_t i)

from libc.stdlib cimport free, realloc

cdef const char* _DIGITS = (b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                            b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                            b"8081828384858687888990919293949596979899")
cdef unsigned char* _buf = NULL  # the frame being built (GIL held throughout: no Python code runs in between)
cdef Py_ssize_t _cap = 0
cdef Py_ssize_t _len = 0
DEF _FALLBACK = 1
DEF _MAX_DEPTH = 64


cdef int _grow(Py_ssize_t extra) except -1:
    global _buf, _cap
    cdef Py_ssize_t cap = _cap * 2
    if cap < _len + extra:
        cap = _len + extra
    if cap < 4096:
        cap = 4096
    cdef unsigned char* p = <unsigned char*>realloc(_buf, cap)
    if p is NULL:
        raise MemoryError()
    _buf, _cap = p, cap
    return 0


cdef inline int _room(Py_ssize_t extra) except -1:
    if _len + extra > _cap:
        _grow(extra)
    return 0


cdef inline int _put(const char* s, Py_ssize_t n) except -1:
    global _len
    _room(n)
    memcpy(_buf + _len, s, n)
    _len += n
    return 0


cdef inline bint _special8(uint64_t x) noexcept nogil:
    """Any of 8 ASCII bytes below 0x20, a quote or a backslash (exact as a yes/no: the
    classic has-less / has-zero word tricks, valid for bytes below 0x80)."""
    cdef uint64_t q = x ^ 0x2222222222222222ULL
    cdef uint64_t b = x ^ 0x5C5C5C5C5C5C5C5CULL
    return ((((x - 0x2020202020202020ULL) & ~x) | ((q - 0x0101010101010101ULL) & ~q) |
             ((b - 0x0101010101010101ULL) & ~b)) & 0x8080808080808080ULL) != 0


cdef inline bint _special(const unsigned char* src, Py_ssize_t n) noexcept nogil:
    cdef uint64_t x
    cdef Py_ssize_t i = 0
    if n < 8:
        while i < n:
            if src[i] < 32 or src[i] == 34 or src[i] == 92:
                return True
            i += 1
        return False
    while i + 8 <= n:
        memcpy(&x, src + i, 8)
        if _special8(x):
            return True
        i += 8
    if i < n:
        memcpy(&x, src + n - 8, 8)  # the last 8 bytes, overlapping
        return _special8(x)
    return False


# Interned strings (every key the engine writes, and its enum-like values) seen before: their
# JSON form, by object identity. An entry holds a reference to its string, so the address
# cannot be reused by another one while it is cached (at most _SC_SLOTS strings are kept).
DEF _SC_SLOTS = 256
DEF _SC_MAX = 46
cdef PyObject* _sc_key[_SC_SLOTS]
cdef unsigned char _sc_enc[_SC_SLOTS][_SC_MAX + 2]
cdef unsigned char _sc_len[_SC_SLOTS]


cdef int _put_str(s) except -1:
    """A JSON string, or _FALLBACK."""
    global _len
    cdef size_t h = 0
    cdef bint interned = PyUnicode_CHECK_INTERNED(s) != 0
    if interned:
        h = (<size_t><PyObject*>s >> 4) & (_SC_SLOTS - 1)
        if _sc_key[h] == <PyObject*>s:
            _room(_sc_len[h])
            memcpy(_buf + _len, _sc_enc[h], _sc_len[h])
            _len += _sc_len[h]
            return 0
    if not PyUnicode_IS_COMPACT_ASCII(s):
        return _FALLBACK
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef const unsigned char* src = <const unsigned char*>PyUnicode_DATA(s)
    cdef unsigned char c
    cdef unsigned char* p
    cdef PyObject* old
    if not _special(src, n):  # the usual case: copied as it is
        _room(n + 2)
        p = _buf + _len
        p[0] = 34
        memcpy(p + 1, src, n)
        p[n + 1] = 34
        _len += n + 2
        if interned and n <= _SC_MAX:
            old = _sc_key[h]
            Py_INCREF(s)
            _sc_key[h] = <PyObject*>s
            Py_XDECREF(old)
            memcpy(_sc_enc[h], p, n + 2)
            _sc_len[h] = <unsigned char>(n + 2)
        return 0
    _room(2 * n + 2)
    p = _buf + _len
    p[0] = 34
    p += 1
    for i in range(n):
        c = src[i]
        if c < 32:
            return _FALLBACK  # orjson's escapes for these are its own business
        if c == 34 or c == 92:
            p[0] = 92
            p += 1
        p[0] = c
        p += 1
    p[0] = 34
    _len = (p + 1) - _buf
    return 0


cdef inline int _put1(unsigned char c) except -1:
    global _len
    _room(1)
    _buf[_len] = c
    _len += 1
    return 0


cdef int _put_int(o) except -1:
    global _len
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(o, &overflow)
    if overflow:
        return _FALLBACK  # orjson takes up to 2**64 - 1 and refuses past it
    cdef char tmp[24]
    cdef int i = 24, d
    cdef unsigned long long u = <unsigned long long>(-(v + 1)) + 1 if v < 0 else <unsigned long long>v
    while u >= 100:
        d = <int>(u % 100) * 2
        u //= 100
        i -= 2
        tmp[i] = _DIGITS[d]
        tmp[i + 1] = _DIGITS[d + 1]
    if u >= 10:
        d = <int>u * 2
        i -= 2
        tmp[i] = _DIGITS[d]
        tmp[i + 1] = _DIGITS[d + 1]
    else:
        i -= 1
        tmp[i] = <char>(48 + u)
    if v < 0:
        i -= 1
        tmp[i] = 45
    _put(tmp + i, 24 - i)
    return 0


cdef int _put_value(o, int depth) except -1:
    global _len
    cdef type t = type(o)
    cdef PyObject* k
    cdef PyObject* v
    cdef Py_ssize_t pos = 0, i, n
    cdef int r
    if t is str:
        return _put_str(o)
    if t is int:
        return _put_int(o)
    if o is None:
        return _put("null", 4)
    if o is True:
        return _put("true", 4)
    if o is False:
        return _put("false", 5)
    if depth >= _MAX_DEPTH:
        return _FALLBACK
    if t is dict:
        _put1(123)
        while PyDict_Next(o, &pos, &k, &v):
            if type(<object>k) is not str:
                return _FALLBACK
            r = _put_str(<object>k)
            if r:
                return r
            _put1(58)
            r = _put_member(v, depth + 1)
            if r:
                return r
            _put1(44)
        if _buf[_len - 1] == 44:
            _buf[_len - 1] = 125  # the last comma becomes the brace
        else:
            _put1(125)
        return 0
    if t is list:
        _put1(91)
        n = PyList_GET_SIZE(o)
        for i in range(n):
            if i:
                _put1(44)
            r = _put_value(<object>PyList_GET_ITEM(o, i), depth + 1)
            if r:
                return r
        _put1(93)
        return 0
    return _FALLBACK


cdef inline int _put_member(PyObject* v, int depth) except -1:
    """A dict member's value: the usual types without another call."""
    cdef type vt = type(<object>v)
    if vt is str:
        return _put_str(<object>v)
    if vt is int:
        return _put_int(<object>v)
    if v == <PyObject*>None:
        return _put("null", 4)
    return _put_value(<object>v, depth)


cdef bytes _encode(long long seq_in, payload):
    """``frame(seq, orjson.dumps(payload))``, built in place when the payload allows (see above)."""
    global _len
    if seq_in < 0:
        raise OverflowError("journal sequence numbers are not negative")
    global _buf, _cap
    if _cap > 1024 * 1024:  # do not keep a big record's buffer around
        free(_buf)
        _buf, _cap = NULL, 0
    _len = 0
    _room(20)
    _len = 20
    if _put_value(payload, 0):
        return frame(seq_in, _dumps(payload))
    cdef Py_ssize_t n = _len - 20
    if n > MAX_PAYLOAD_C:
        raise ValueError(f"journal record of {n} bytes exceeds the {MAX_PAYLOAD_C}-byte limit")
    _seal(_buf, n, <uint64_t>seq_in)
    return PyBytes_FromStringAndSize(<char*>_buf, _len)


# ---------------------------------------------------------------------------- the fold

cdef frozenset TERMINAL = frozenset({"filled", "cancelled", "rejected"})
cdef extern from "Python.h":
    bint PyDict_Next(object d, Py_ssize_t* pos, PyObject** key, PyObject** value)


cdef bint _DIRECT = df.works()  # ``_dictfill``'s layout holds: plain tables are read and written entry by entry
cdef extern from *:
    """
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    /* The entries of a table ``fe_df_direct`` accepted (``_dictfill``'s layout): key i at [2 i], value i at [2 i + 1]. */
    static inline PyObject **fx_df_entries(PyObject *d) {
        fe_df_keys *k = (fe_df_keys *)((PyDictObject *)d)->ma_keys;
        return (PyObject **)(k->dk_indices + ((size_t)1 << k->dk_log2_index_bytes));
    }
    #else
    static inline PyObject **fx_df_entries(PyObject *d) { (void)d; return NULL; }
    #endif
    """
    PyObject** fx_df_entries(object d)
    bint PyObject_GC_IsTracked(object o)
    void PyObject_GC_Track(object o)
    void Py_DECREF_ptr "Py_DECREF"(PyObject* o)
    void Py_INCREF_ptr "Py_INCREF"(PyObject* o)


cdef class StateCore:
    """Base class of ``state.JournalState``: the fields the per-order fold touches, as C
    struct members (a slot of a Python class costs a descriptor call per read and write;
    the fold of one market order makes about twenty). Same names, same values."""

    cdef object _orders  # a dict (checked on assignment): the open orders
    cdef public long long seq
    cdef public dict by_client
    cdef public dict by_broker
    cdef public dict positions
    cdef public dict balances
    cdef public dict last_txn
    cdef public dict _recent
    cdef public dict _recent_order
    cdef public object _terminal
    cdef public Py_ssize_t retain_terminal
    cdef public Py_ssize_t forget_batch

    @property
    def orders(self):
        return self._orders

    @orders.setter
    def orders(self, value):
        if not isinstance(value, dict):
            raise TypeError(f"orders must be a dict, not {type(value).__name__}")
        self._orders = value


cdef inline object _get(dict d, key, default=None):
    # PyDict_GetItemWithError: no save/restore of the error state per call (PyDict_GetItem's),
    # and an unhashable key raises TypeError as dict.get does in the Python originals
    cdef PyObject* v = PyDict_GetItemWithError(d, key)
    return default if v is NULL else <object>v


cdef inline void _pop(dict d, key) except *:
    if PyDict_Contains(d, key):
        PyDict_DelItem(d, key)


cdef int _forget_oldest(StateCore state) except -1:
    """``JournalState._forget_oldest``."""
    terminal = state._terminal
    cdef dict by_client = state.by_client
    cdef dict orders = <dict>state._orders
    while len(terminal) > state.retain_terminal:
        acct, cid = _deque_popleft(terminal) if type(terminal) is _deque else terminal.popleft()
        d = _get(by_client, acct)
        oid = None if d is None else _get(<dict>d, cid)
        if oid is not None and not PyDict_Contains(orders, oid):
            del (<dict>d)[cid]
    return 0


cdef inline bint _set_status(dict order, str status) except -1:
    """``JournalState._set_status``: 1 if the order finished now."""
    was_terminal = order["status"] in TERMINAL
    order["status"] = status
    return status in TERMINAL and not was_terminal


cdef int _finish(StateCore state, dict order, bint indexed=True) except -1:
    """``JournalState._finish``."""
    cdef dict orders = <dict>state._orders
    oid = order["order_id"]
    if _get(orders, oid) is order:
        del orders[oid]
    if indexed:
        key = f"{order['account_id']}/{_get(order, 'broker_order_id')}"
        if _get(state.by_broker, key) == oid:
            del state.by_broker[key]
    cid = _get(order, "client_order_id")
    acct = _get(order, "account_id")
    if type(cid) is str and PyObject_IsTrue(cid) and type(acct) is str:  # state._is_client_id, a str account
        terminal = state._terminal
        key = (acct, cid)
        if type(terminal) is _deque:
            _deque_append(terminal, key)
        else:
            terminal.append(key)
        if len(terminal) > state.retain_terminal + state.forget_batch:
            _forget_oldest(state)
    return 0


def on_submitted(StateCore state not None, dict rec):
    """``JournalState._on_submitted``."""
    _on_submitted_c(state, rec)


# The order dict of the last order.submitted shape folded, as a template (``_dictfill``): every
# record of that shape (its keys, by identity, in order) gets a copy of the template's table
# (sized for every key the fold adds, so it never grows) with its values written into the
# entries, instead of a copy of the record plus seven insertions, one of which resizes it.
DEF _SUB_MAX = 48
DEF _SRC_TS = -1
DEF _SRC_STATUS = -2
DEF _SRC_ZERO = -3
DEF _SRC_NONE = -4
cdef PyObject* _sub_ptr[_SUB_MAX]  # the record's keys (borrowed: _sub_keys holds them)
cdef Py_ssize_t _sub_n = -1
cdef tuple _sub_keys = None
cdef Py_ssize_t _sub_emulated = -1  # the record's entry of "emulated", or -1
cdef tuple _ord_keys = None  # the order dict's keys, in its order
cdef dict _ord_tmpl = None
cdef object _ZERO = 0
cdef Py_ssize_t _ord_src[_SUB_MAX]  # per order key: the record's entry it takes, or _SRC_*
cdef Py_ssize_t _sub_ts = -1  # the record's entry of "ts", or -1
cdef Py_ssize_t _ord_oid, _ord_cid, _ord_bid  # the order's entries of these (_ord_cid: -1 if none)


cdef int _new_submitted_shape(PyObject** ks, Py_ssize_t n) except -1:
    """Make ``ks[:n]`` the record shape the template serves; 0 if it has none (no "type":
    the fold raises as the Python original does)."""
    global _sub_n, _sub_keys, _sub_emulated, _sub_ts, _ord_keys, _ord_tmpl, _ord_oid, _ord_cid, _ord_bid
    cdef Py_ssize_t j
    rkeys = [<object>ks[j] for j in range(n)]
    for k in rkeys:
        if type(k) is not str:
            return 0
    if "type" not in rkeys or "order_id" not in rkeys:
        return 0
    # ``dict(rec, created_at=...)``, ``del ["type"]``, ``pop("source")``, ``broker_order_id``: the keys' order
    added = ("created_at", "updated_at", "status", "filled_units", "fill_notional", "reject_reason")
    okeys = [k for k in rkeys if k != "type" and k != "source"] + [k for k in added if k not in rkeys]
    if "broker_order_id" not in okeys:
        okeys.append("broker_order_id")
    if len(okeys) > _SUB_MAX:
        return 0
    for j, k in enumerate(okeys):
        if k == "created_at" or k == "updated_at":
            _ord_src[j] = _SRC_TS
        elif k == "status":
            _ord_src[j] = _SRC_STATUS
        elif k == "filled_units" or k == "fill_notional":
            _ord_src[j] = _SRC_ZERO
        elif k == "reject_reason" or k not in rkeys:
            _ord_src[j] = _SRC_NONE
        else:
            _ord_src[j] = rkeys.index(k)
    _sub_keys = tuple(rkeys)
    for j in range(n):
        _sub_ptr[j] = ks[j]
    _sub_n = n
    _sub_emulated = rkeys.index("emulated") if "emulated" in rkeys else -1
    _sub_ts = rkeys.index("ts") if "ts" in rkeys else -1
    _ord_oid, _ord_bid = okeys.index("order_id"), okeys.index("broker_order_id")
    _ord_cid = okeys.index("client_order_id") if "client_order_id" in okeys else -1
    _ord_keys = tuple(okeys)
    _ord_tmpl = df.template(_ord_keys)
    return 1


cdef dict _submitted_order(dict rec):
    """The order dict ``_on_submitted`` builds from ``rec``, from the
    template of its shape, read and written entry by entry; None for a record that is not
    a plain table (``_dictfill.direct``) or has no template."""
    cdef Py_ssize_t n = len(rec), j, src
    if not (_DIRECT and n <= _SUB_MAX and df.direct(rec, n)):
        return None
    cdef PyObject** re = fx_df_entries(rec)
    cdef PyObject* ks[_SUB_MAX]
    cdef bint same = n == _sub_n
    if same:
        for j in range(n):
            if re[2 * j] != _sub_ptr[j]:
                same = False
                break
    if not same:
        for j in range(n):
            ks[j] = re[2 * j]
        if not _new_submitted_shape(ks, n):
            return None
    ts = None if _sub_ts < 0 else <object>re[2 * _sub_ts + 1]
    status = "emulated" if _sub_emulated >= 0 and PyObject_IsTrue(<object>re[2 * _sub_emulated + 1]) else "accepted"
    cdef Py_ssize_t m = len(_ord_keys)
    cdef dict order = df.new(_ord_tmpl)
    if not df.direct(order, m):  # pragma: no cover - a copy of a template is one
        return None
    cdef PyObject** oe = fx_df_entries(order)
    cdef PyObject* v
    cdef PyObject* old
    for j in range(m):
        src = _ord_src[j]
        if src >= 0:
            v = re[2 * src + 1]
        elif src == _SRC_TS:
            v = <PyObject*>ts
        elif src == _SRC_STATUS:
            v = <PyObject*>status
        elif src == _SRC_ZERO:
            v = <PyObject*>_ZERO
        else:
            continue  # _SRC_NONE: the template's value
        Py_INCREF_ptr(v)
        old = oe[2 * j + 1]
        oe[2 * j + 1] = v
        Py_DECREF_ptr(old)
    if PyObject_GC_IsTracked(rec) and not PyObject_GC_IsTracked(order):  # as the record's copy was (the rest is atomic)
        PyObject_GC_Track(order)
    return order


cdef int _on_submitted_c(StateCore state, dict rec) except -1:
    cdef dict order = _submitted_order(rec)
    cdef PyObject** oe
    if order is not None:  # order_id, client_order_id, broker_order_id: read from its entries
        oe = fx_df_entries(order)
        oid = <object>oe[2 * _ord_oid + 1]
        cid = None if _ord_cid < 0 else <object>oe[2 * _ord_cid + 1]
        bid = <object>oe[2 * _ord_bid + 1]
    else:
        oid = rec["order_id"]
        order = _submitted_order_copy(rec, _get(rec, "ts"))
        bid = _get(order, "broker_order_id")
        if bid is None:
            order["broker_order_id"] = None
        cid = _get(rec, "client_order_id")
    cdef dict orders = <dict>state._orders
    orders[oid] = order
    acct = _get(rec, "account_id")
    if type(cid) is str and PyObject_IsTrue(cid) and type(acct) is str:  # state._is_client_id, a str account
        d = _get(state.by_client, acct)
        if d is None:
            d = {}
            state.by_client[acct] = d
        (<dict>d)[cid] = oid
    if bid is not None:
        state.by_broker[f"{rec['account_id']}/{bid}"] = oid
    return 0


cdef dict _submitted_order_copy(dict rec, ts):
    """``_submitted_order`` for a shape without a template: the record copied and changed key by key."""
    # ``dict(rec, created_at=..., ...)``: one C-level copy (it keeps the str-keys-only table
    # and its lookups; a presized dict built key by key has a general one and costs twice as much)
    cdef dict order = PyDict_Copy(rec)
    order["created_at"] = ts
    order["updated_at"] = ts
    order["status"] = "emulated" if PyObject_IsTrue(_get(rec, "emulated")) else "accepted"
    order["filled_units"] = 0
    order["fill_notional"] = 0
    order["reject_reason"] = None
    del order["type"]
    _pop(order, "source")
    return order


def on_filled(StateCore state not None, dict rec):
    """``JournalState._on_filled``."""
    _on_filled_c(state, rec)


cdef int _on_filled_c(StateCore state, dict rec) except -1:
    acct = rec["account_id"]
    txn = _get(rec, "txn_id")
    cdef dict recent_sets, recent_orders, last_txn
    cdef object seen
    if txn is not None:
        recent_sets = state._recent
        seen = _get(recent_sets, acct)
        if seen is None:
            seen = set()
            recent_sets[acct] = seen
        elif (PySet_Contains(seen, txn) if type(seen) is set else txn in seen):
            return 0  # already applied
        recent_orders = state._recent_order
        recent = _get(recent_orders, acct)
        if recent is None:
            recent = _deque()
            recent_orders[acct] = recent
        if type(seen) is set:
            PySet_Add(seen, txn)
        else:
            seen.add(txn)
        if type(recent) is _deque and type(seen) is set:  # the C functions, no method lookups
            _deque_append(recent, txn)
            if len(recent) > _RECENT_TXNS:
                PySet_Discard(seen, _deque_popleft(recent))
        else:
            recent.append(txn)
            if len(recent) > _RECENT_TXNS:
                seen.discard(recent.popleft())
        last_txn = state.last_txn
        if txn > _get(last_txn, acct, 0):
            last_txn[acct] = txn
    units = rec["units"]
    inst = rec["instrument"]
    cdef dict positions = state.positions
    book_o = _get(positions, acct)
    if book_o is None:
        book_o = {}
        positions[acct] = book_o
    cdef dict book = book_o
    net = _get(book, inst, 0) + units
    if net:
        book[inst] = net
    else:
        _pop(book, inst)
    cdef dict balances = state.balances
    balance = _get(rec, "account_balance")
    if balance is not None:
        balances[acct] = balance
    elif PyDict_Contains(balances, acct):
        balances[acct] += _get(rec, "pl", 0) + _get(rec, "financing", 0) - _get(rec, "commission", 0)
    oid = None
    cid = _get(rec, "client_id")
    if cid is not None:
        d = _get(state.by_client, acct)
        if d is not None:
            oid = _get(<dict>d, cid)
    bid = _get(rec, "broker_order_id")
    if oid is None and bid is not None:
        oid = _get(state.by_broker, f"{acct}/{bid}")
    if oid is None:
        return 0
    order_o = _get(<dict>state._orders, oid)
    if order_o is None:
        return 0  # an exit (stop loss, take profit, close), or a late event for a finished order
    cdef dict order = order_o
    if units < 0:
        units = -units
    filled = order["filled_units"] + units
    order["filled_units"] = filled
    order["fill_notional"] += units * rec["price"]
    cdef bint finished = _set_status(order, "filled" if filled >= order["units"] else "partially_filled")
    cdef bint indexed = True
    if _get(order, "broker_order_id") is None:
        indexed = False  # every index entry comes with the order's broker id: none yet, none to drop
        order["broker_order_id"] = bid
        if bid is not None and not finished:  # a finished order leaves the index at once
            state.by_broker[f"{acct}/{bid}"] = order["order_id"]
    order["updated_at"] = _get(rec, "ts")
    if finished:
        _finish(state, order, indexed)
    return 0


# ---------------------------------------------------------------------------- the append path

from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME, CLOCK_MONOTONIC
from posix.unistd cimport pwrite
from libc.errno cimport errno, EINTR
from cpython.exc cimport PyErr_SetFromErrno


cdef inline object _now_ns():
    """``time.time_ns()`` (the same clock: CLOCK_REALTIME), without the call through the time module."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef object _ON_SUBMITTED = on_submitted
cdef object _ON_FILLED = on_filled


import os as _os
cdef object _eventfd_write = _os.eventfd_write


cdef object _journal_error(str name, str message):
    from fastexec.journal import writer as _w  # writer.py imports this module: looked up when raised only
    return getattr(_w, name)(message)


cdef class WriterStats:
    """``writer.WriterStats`` (the dataclass is the fallback without this module): the
    counters every batch updates, as C integers (no attribute lookups, no int objects)."""

    cdef public long long records
    cdef public long long batches
    cdef public long long bytes
    cdef public long long max_batch
    cdef public long long rotations
    cdef public long long sync_ns
    cdef public long long max_sync_ns
    cdef public long long preallocated

    def __init__(self, long long records=0, long long batches=0, long long bytes=0, long long max_batch=0,
                 long long rotations=0, long long sync_ns=0, long long max_sync_ns=0, long long preallocated=0):
        self.records, self.batches, self.bytes, self.max_batch = records, batches, bytes, max_batch
        self.rotations, self.sync_ns, self.max_sync_ns, self.preallocated = rotations, sync_ns, max_sync_ns, preallocated

    cdef tuple _fields(self):
        return (self.records, self.batches, self.bytes, self.max_batch, self.rotations, self.sync_ns,
                self.max_sync_ns, self.preallocated)

    def __eq__(self, other):
        if not isinstance(other, WriterStats):
            return NotImplemented
        return self._fields() == (<WriterStats>other)._fields()

    __hash__ = None

    def __repr__(self):
        return ("WriterStats(records=%d, batches=%d, bytes=%d, max_batch=%d, rotations=%d, sync_ns=%d, "
                "max_sync_ns=%d, preallocated=%d)" % self._fields())


# ``WriterCore.ack_turn``'s answers (``writer.ACK_*`` are the same numbers)
cdef enum:
    ACK_NOTHING = 0
    ACK_WRITTEN = 1
    ACK_AT_TURN_END = 2


cdef class WriterCore:
    """Base class of ``writer.JournalWriter``: the loop side of an append (encode, queue,
    sequence number, one ``call_soon`` per loop turn) and the acknowledgement's future,
    compiled. A port of ``writer.JournalWriter.append_py`` / ``durable_future_py`` (the
    reference, kept in writer.py and tested against this one); everything else about the
    writer (the disk side, the thread, rotation) stays in Python."""

    cdef public object _q  # deque of encoded frames
    cdef public long long _next_seq
    cdef public long long durable_seq
    cdef public object _waiters  # deque of (seq, future)
    cdef public bint _kick_pending
    cdef public bint _open
    cdef public object _loop
    cdef public object _failed
    cdef object _kick_cb
    # the disk side, as far as ``none`` mode writes it on the loop (``_kick`` / ``_write_now``)
    cdef public bint _sync
    cdef public long long _disk_seq
    cdef public long long _pos
    cdef public long long _alloc_end
    cdef public object _fd
    cdef public long long segment_bytes
    cdef public long long preallocate
    cdef public WriterStats stats
    # ``none`` mode: acknowledgements waiting in this loop turn, and whether the last turn
    # had more than one (see ``journaled_submit``)
    cdef public int _turn_acks
    cdef public bint _busy

    def append(self, record):
        """Queue one record for the next group commit; returns its sequence number
        (``JournalWriter.append_py``)."""
        return self._append(record)

    cdef long long _append(self, record) except -1:
        if self._failed is not None:
            raise _journal_error("JournalFailedError", f"journal is failed: {self._failed!r}")
        if not self._open:
            raise _journal_error("JournalClosedError", "journal is not open")
        cdef long long seq = self._next_seq
        self._q.append(_encode(seq, record))
        self._next_seq = seq + 1
        if not self._kick_pending:
            self._kick_pending = True
            loop = self._loop
            if loop is None:
                import asyncio
                loop = self._loop = asyncio.get_running_loop()
            if self._kick_cb is None:
                self._kick_cb = self._kick
            loop.call_soon(self._kick_cb)
        return seq

    def durable_future(self, seq=None):
        """A future resolved once record ``seq`` (default: the last appended) and all
        before it are durable, or None when they already are (``durable_future_py``)."""
        if seq is None:
            return self._durable_future(self._next_seq - 1)
        return self._durable_future(seq)

    cdef object _durable_future(self, long long seq):
        if self.durable_seq >= seq:
            return None
        if self._failed is not None:
            raise _journal_error("JournalFailedError", f"journal is failed: {self._failed!r}")
        if seq >= self._next_seq:
            raise ValueError(f"record {seq} was never appended (last is {self._next_seq - 1})")
        fut = self._loop.create_future()
        self._waiters.append((seq, fut))
        return fut


    def ack_turn(self, long long last):
        """``_ack_turn`` (``ack_turn_py``)."""
        return self._ack_turn(last)

    cdef int _ack_turn(self, long long last) except -1:
        """An acknowledgement of the records up to ``last`` is about to wait for them; the
        choice is made per loop turn. Alone (the first of its turn, after a turn with at most
        one) it writes them now, on the loop, and answers without a wait (``ACK_WRITTEN``):
        in ``none`` mode the same one write the end of the turn would make, in ``fsync`` /
        ``fdatasync`` one durable write through the same descriptor as the batches, taken
        only with nothing in flight (no direct write submitted and no rotation running; on
        the thread path: the writer thread idle, under the disk lock; see writer.py). Under
        load (the last turn had several) ``none`` shares the end-of-turn write
        (``ACK_AT_TURN_END``) and the synchronous modes wait for the next batch
        (``ACK_NOTHING``, as when there is nothing to wait for)."""
        if not self._kick_pending or self.durable_seq >= last:
            return ACK_NOTHING
        self._turn_acks += 1
        if self._turn_acks != 1 or self._busy:
            return ACK_NOTHING if self._sync else ACK_AT_TURN_END
        if not self._sync:
            self._write_now_c()
            return ACK_WRITTEN
        direct = self._direct
        if direct is not None:  # only with no write in flight and no upkeep running
            if direct.inflight or self._rotating:
                return ACK_NOTHING
            return ACK_WRITTEN if self._write_direct_now() else ACK_NOTHING
        # fsync: only while the writer thread is idle (not mid-batch or mid-upkeep), and
        # holding the disk so that it cannot start one meanwhile
        if not (self._thread is None or self._thread_idle):
            return ACK_NOTHING
        disk = self._disk
        if not disk.acquire(False):
            return ACK_NOTHING
        try:
            self._write_now_c()
        finally:
            disk.release()
        return ACK_WRITTEN

    # ---------------------------------------------------------------- end of a loop turn

    def _kick(self):
        """End of a loop turn that appended: hand the batch to the disk (``_kick_py``)."""
        self._kick_pending = False
        self._busy = self._turn_acks > 1
        self._turn_acks = 0
        if self._failed is not None or not self._open:
            return
        if not self._sync:
            self._write_now_c()
        elif self._direct is not None:
            self._submit_direct()
        elif not self._q and not self._upkeep_due:
            return  # a lone acknowledgement wrote the turn's records itself: nothing for the thread
        elif self._thread is None:
            self._start_thread()
        elif self._thread_idle:
            _eventfd_write(self._efd, 1)

    def _write_now(self):
        """``none`` mode, on the loop: write whatever is queued to the page cache (``_write_now_py``)."""
        self._write_now_c()

    cdef int _write_now_c(self) except -1:
        cdef Py_ssize_t n
        cdef long long last
        q = self._q
        if not q or self._failed is not None:
            return 0
        n = len(q)  # _take, inlined
        if n == 1:
            data = q.popleft()
        else:
            data = b"".join([q.popleft() for _ in range(n)])
        last = self._disk_seq + n
        self._disk_seq = last
        try:
            self._write_batch_c(data)
            if self._pos >= self.segment_bytes or (
                    self.preallocate and self._alloc_end - self._pos < self.preallocate // 2):
                if self._sync:  # rotation and preallocation flush too: the writer thread's, not the loop's
                    self._upkeep_due = True
                else:
                    self._after_batch(last)
        except BaseException as exc:  # handed to every waiter
            self._fail(exc)
            return 0
        self._done_c(last, n, PyBytes_GET_SIZE(data))
        return 0

    cdef int _write_batch_c(self, bytes data) except -1:
        """``_write_batch``: one write at the data end (pwrite straight from C)."""
        cdef timespec t0, t1
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        cdef const char* p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t done = 0
        cdef ssize_t k
        cdef long long took
        clock_gettime(CLOCK_MONOTONIC, &t0)
        if self.preallocate and self._pos + size > self._alloc_end:
            self._reserve(size + self.preallocate // 2)  # a batch bigger than the room left: grow first
        cdef int fd = self._fd
        cdef long long off = self._pos
        while done < size:
            k = pwrite(fd, p + done, size - done, off + done)
            if k < 0:
                if errno == EINTR:
                    continue
                PyErr_SetFromErrno(OSError)
                return -1
            done += k
        self._pos = off + size
        clock_gettime(CLOCK_MONOTONIC, &t1)
        took = (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
        cdef WriterStats st = self.stats
        st.sync_ns += took
        if took > st.max_sync_ns:
            st.max_sync_ns = took
        return 0

    def _done(self, long long last, Py_ssize_t count, Py_ssize_t nbytes):
        """A batch is durable (called on the loop): release its waiters in one pass (``_done_py``)."""
        self._done_c(last, count, nbytes)

    cdef int _done_c(self, long long last, Py_ssize_t count, Py_ssize_t nbytes) except -1:
        if last <= self.durable_seq:
            return 0
        self.durable_seq = last
        cdef WriterStats st = self.stats
        st.records += count
        st.batches += 1
        st.bytes += nbytes
        if count > st.max_batch:
            st.max_batch = count
        waiters = self._waiters
        while waiters and (<tuple>waiters[0])[0] <= last:
            fut = (<tuple>waiters.popleft())[1]
            if not fut.done():
                fut.set_result(last)
        return 0


cdef class JournalCore:
    """Base class of ``store.Journal``: ``append`` (``ts``, the writer's append, the
    sequence number, the fold, the snapshot counter) compiled; a port of
    ``Journal.append_py``. The fold goes through the handler table it is given
    (``state._HANDLERS``, looked up per record, so a changed table is honoured); the two
    compiled handlers are called without a Python call."""

    cdef public object writer
    cdef public object state
    cdef public object _handlers  # state._HANDLERS
    cdef public object snapshot_every
    cdef public long long _since_snapshot
    cdef public object _snapshot_task

    def append(self, record):
        """Journal one record (the engine's seam); returns its sequence number.
        Await ``barrier()`` (or ``wait_durable(seq)``) before acknowledging
        anything that depends on it. Adds ``ts`` (wall-clock ns) when missing."""
        return self._append(record)

    cdef long long _append(self, record) except -1:
        cdef long long seq
        if type(record) is dict:
            if not PyDict_Contains(record, "ts"):
                PyDict_SetItem(record, "ts", _now_ns())
        elif "ts" not in record:
            record["ts"] = _now_ns()
        w = self.writer
        if isinstance(w, WriterCore):
            seq = (<WriterCore>w)._append(record)
        else:
            seq = w.append(record)
        state = self.state
        if isinstance(state, StateCore):
            (<StateCore>state).seq = seq
        else:
            state.seq = seq
        handlers = self._handlers
        if type(record) is dict and type(handlers) is dict:  # the usual case: no method lookups
            rtype = _get(<dict>record, "type")
            handler = _get(<dict>handlers, rtype) if rtype is None or type(rtype) is str else handlers.get(rtype)
        else:
            handler = handlers.get(record.get("type"))
        if handler is not None:
            if handler is _ON_SUBMITTED and type(record) is dict and isinstance(state, StateCore):
                _on_submitted_c(<StateCore>state, <dict>record)
            elif handler is _ON_FILLED and type(record) is dict and isinstance(state, StateCore):
                _on_filled_c(<StateCore>state, <dict>record)
            else:
                handler(state, record)
        if self.snapshot_every:
            self._since_snapshot += 1
            if self._since_snapshot >= self.snapshot_every and self._snapshot_task is None:
                self._since_snapshot = 0
                self._start_auto_snapshot()
        return seq



@cython.freelist(64)
@cython.final
cdef class _NextTurn:
    """``await _NextTurn()``: give the loop one turn and resume (a bare ``yield``, which a Task
    answers by scheduling its next step with ``call_soon``, like ``asyncio.sleep(0)``)."""

    cdef bint _yielded

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        if self._yielded:
            raise StopIteration
        self._yielded = True
        return None


async def journaled_submit(self, order, *, request_id=None):
    """``JournaledEngine.submit`` (bound to the class as that method; ``submit_py`` in
    integration.py is the reference): refuse a client order id the journal knows and the
    engine forgot, submit, and before the result (or the error) reaches the caller make
    every record the submit appended durable: one future awaited here (in ``none`` mode one
    loop turn), no coroutine layers in between."""
    cid = getattr(order, "client_order_id", None)
    cdef object known
    journal = self.journal
    if isinstance(journal, JournalCore):  # the fields read straight from the structs
        st = (<JournalCore>journal).state
        w = (<JournalCore>journal).writer
    else:
        st = journal.state
        w = journal.writer
    if cid is not None:  # client ids are per account: the journal's index of this order's account
        acct = getattr(order, "account_id", None)
        known = _get((<StateCore>st).by_client if isinstance(st, StateCore) else st.by_client, acct) \
            if type(acct) is str else None
        if known is not None and cid in known:
            self._refuse_forgotten(acct, cid)
    cdef WriterCore wc
    if not isinstance(w, WriterCore):
        return await self._submit_durable_py(order, request_id)
    wc = <WriterCore>w
    cdef long long before = wc._next_seq, last
    try:
        return await self.engine.submit(order, request_id=request_id)
    finally:
        if wc._next_seq != before:
            last = wc._next_seq - 1  # this submit's records, not those others append meanwhile
            if wc._ack_turn(last) == ACK_AT_TURN_END:
                # the end-of-turn write is queued on the loop ahead of this task's next step
                # (call_soon is FIFO): one turn makes these records durable, with no future,
                # no waiter entry, no set_result. Whatever it did not cover (it failed, the
                # writer closed) is waited for below.
                await _NextTurn()
            fut = wc._durable_future(last)
            if fut is not None:
                await fut
