# cython: language_level=3
"""The REST submit hot path, compiled: body -> ``OrderSpec`` in one call.

``OrderReader(schema, precision)(raw)`` returns the ``OrderSpec`` that
``Api.order_spec(schema.parse_json(raw))`` would build, or None when it is
not sure; the caller then takes that general path, which also produces every
error. It is deliberately one-sided, like ``Object.accepts``: it reads only a
flat JSON object whose keys are plain ASCII field names of the schema, whose
values are plain printable-ASCII strings (no escapes) or positive integers
of at most 13 digits, without duplicate keys, and whose fields are
string/enum/units fields of the schema (no price, timestamp or nested field).
For such a body orjson would return a dict of exactly those strings and
ints, ``Object.accepts`` would take it when each value passes the same
per-field check done here (the same enum sets, the same ``String.accepts``
memo, the same units range), and ``Api.order_spec`` would build the spec
with the unpriced fields None and ``type`` defaulting to ``"market"``.

The spec is made without the dataclass ``__init__``: a fresh instance with
its fourteen slots set through their member descriptors, used only while
``OrderSpec`` is a slotted dataclass with exactly the expected fields and no
``__post_init__`` (``READER_SLOTS`` says which); else the dataclass is
called with the same positional arguments ``Api.order_spec`` passes.

The pure-Python reference is ``schemas.Object.parse_json`` +
``app.Api.order_spec``; ``tests/api/test_fast_module.py`` checks the two
agree on generated bodies.
"""
from cpython.object cimport PyObject, PyTypeObject, Py_TYPE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.string cimport memcmp

from fastexec.engine.types import OrderSpec
from fastexec.api.schemas import MAX_UNITS, String, Units

DEF MAX_FIELDS = 32

_SPEC_FIELDS = ("account_id", "instrument", "side", "units", "type", "price", "stop_price", "trailing_distance",
                "time_in_force", "gtd_time", "stop_loss", "take_profit", "trailing_stop_distance", "client_order_id")
cdef Py_ssize_t S_ACCOUNT = 0, S_INSTRUMENT = 1, S_SIDE = 2, S_UNITS = 3, S_TYPE = 4, S_TIF = 8, S_CLIENT = 13


cdef object _slot_descriptors(cls, tuple names):
    """``cls``'s slot descriptors for ``names`` in order, or None unless ``cls``
    is a slotted dataclass whose fields are exactly ``names``, created by
    ``object.__new__`` and initialised by nothing but the dataclass ``__init__``."""
    if tuple(getattr(cls, "__dataclass_fields__", {})) != names:
        return None
    if getattr(cls, "__post_init__", None) is not None or cls.__new__ is not object.__new__:
        return None
    if getattr(cls, "__slots__", None) != names:
        return None
    ds = tuple([cls.__dict__.get(n) for n in names])
    if not all(type(d).__name__ == "member_descriptor" for d in ds):
        return None
    return ds


cdef tuple _SPEC = _slot_descriptors(OrderSpec, _SPEC_FIELDS)
READER_SLOTS = _SPEC is not None
_object_new = object.__new__


cdef inline int _set(tuple ds, Py_ssize_t k, object obj, object value) except -1:
    cdef object d = <object>PyTuple_GET_ITEM(ds, k)
    return Py_TYPE(d).tp_descr_set(d, obj, value)


cdef inline Py_ssize_t _plain_string_end(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Index of the closing quote of a JSON string starting at ``i`` (just
    after its opening quote) that holds only printable ASCII and no escape;
    -1 for anything else (the general path reads those)."""
    while i < n and s[i] != 34:  # "
        if s[i] < 32 or s[i] > 126 or s[i] == 92:  # control, non-ASCII, backslash
            return -1
        i += 1
    return i if i < n else -1


cdef inline bint _ws(unsigned char c) nogil:
    return c == 32 or c == 9 or c == 10 or c == 13


DEF K_ENUM = 0
DEF K_TEXT = 1
DEF K_UNITS = 2


cdef class OrderReader:
    """See the module docstring. ``schema`` is the order ``Object``
    (``models.ORDER_REQUEST``), ``precision`` the instrument -> precision
    dict of ``Api`` (an unknown instrument is left to the general path)."""

    cdef list names          # field names as bytes, in schema order
    cdef list strs           # the same as str
    cdef list kinds          # K_ENUM / K_TEXT / K_UNITS, or -1: not for this path
    cdef list data           # enum set / String memo set / None
    cdef list strings        # the String of a K_TEXT field
    cdef list slots          # OrderSpec slot index per field
    cdef Py_ssize_t nfields
    cdef unsigned long long required  # bitmask over fields
    cdef dict precision
    cdef long long max_units

    def __init__(self, schema, dict precision):
        cdef Py_ssize_t i
        self.names, self.strs, self.kinds, self.data, self.strings, self.slots = [], [], [], [], [], []
        self.required = 0
        self.precision = precision
        self.max_units = MAX_UNITS
        self.nfields = 0
        usable = schema.check is None and schema.min_properties == 0 and len(schema.fields) <= MAX_FIELDS
        for i, (key, f) in enumerate(schema.fields.items()):
            t = f.type
            kind, data, string = -1, None, None
            if usable and key in _SPEC_FIELDS and key.isascii():
                slot = _SPEC_FIELDS.index(key)
                if type(t) is String and not t.nullable:
                    if t._enum_set is not None:
                        kind, data = K_ENUM, t._enum_set
                    else:
                        kind, data, string = K_TEXT, t._ok, t
                elif type(t) is Units and not t.nullable:
                    kind = K_UNITS
            else:
                slot = -1
            if kind == K_UNITS and slot != S_UNITS:
                kind = -1
            if kind >= 0 and slot not in (S_ACCOUNT, S_INSTRUMENT, S_SIDE, S_UNITS, S_TYPE, S_TIF, S_CLIENT):
                kind = -1  # only the unpriced fields Api.order_spec passes through as they are
            self.names.append(key.encode("ascii", "replace"))
            self.strs.append(key)
            self.kinds.append(kind)
            self.data.append(data)
            self.strings.append(string)
            self.slots.append(slot)
            if f.required:
                self.required |= 1ULL << i
            self.nfields += 1
        if not usable:
            self.nfields = 0  # every body goes the general way

    cdef Py_ssize_t _field(self, const char* p, Py_ssize_t n):
        cdef Py_ssize_t i
        cdef bytes name
        for i in range(self.nfields):
            name = <bytes>self.names[i]
            if PyBytes_GET_SIZE(name) == n and memcmp(PyBytes_AS_STRING(name), p, n) == 0:
                return i
        return -1

    def __call__(self, bytes raw):
        """The ``OrderSpec`` of ``raw``, or None: take the general path."""
        cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(raw)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
        cdef Py_ssize_t i = 0, start, f, kind
        cdef unsigned long long seen = 0
        cdef long long num
        cdef int digits
        cdef unsigned char c
        cdef list values
        cdef object v
        cdef Py_ssize_t k
        if self.nfields == 0:
            return None
        values = [None] * 14
        while i < n and _ws(s[i]):
            i += 1
        if i >= n or s[i] != 123:  # {
            return None
        i += 1
        while True:
            while i < n and _ws(s[i]):
                i += 1
            if i >= n or s[i] != 34:  # "
                return None
            i += 1
            start = i
            i = _plain_string_end(s, i, n)
            if i < 0:
                return None
            f = self._field(<const char*>s + start, i - start)
            if f < 0:
                return None
            kind = <Py_ssize_t>self.kinds[f]
            if kind < 0 or (seen >> f) & 1:
                return None
            seen |= 1ULL << f
            i += 1
            while i < n and _ws(s[i]):
                i += 1
            if i >= n or s[i] != 58:  # :
                return None
            i += 1
            while i < n and _ws(s[i]):
                i += 1
            if i >= n:
                return None
            c = s[i]
            if c == 34:
                if kind == K_UNITS:
                    return None
                i += 1
                start = i
                i = _plain_string_end(s, i, n)
                if i < 0:
                    return None
                v = PyUnicode_DecodeASCII(<const char*>s + start, i - start, NULL)
                i += 1
                if kind == K_ENUM:
                    if v not in <frozenset>self.data[f]:
                        return None
                elif v not in <set>self.data[f] and not self.strings[f].accepts(v):
                    return None
            elif 49 <= c <= 57:  # 1-9: JSON forbids leading zeros, 0 is not a unit count
                if kind != K_UNITS:
                    return None
                num = 0
                digits = 0
                while i < n and 48 <= s[i] <= 57:
                    digits += 1
                    if digits > 13:
                        return None
                    num = num * 10 + (s[i] - 48)
                    i += 1
                if num > self.max_units:
                    return None
                if i < n and not (_ws(s[i]) or s[i] == 44 or s[i] == 125):
                    return None  # a fraction or an exponent: a float
                v = num
            else:
                return None
            values[<Py_ssize_t>self.slots[f]] = v
            while i < n and _ws(s[i]):
                i += 1
            if i >= n:
                return None
            if s[i] == 44:  # ,
                i += 1
                continue
            if s[i] == 125:  # }
                i += 1
                break
            return None
        while i < n and _ws(s[i]):
            i += 1
        if i != n or (seen & self.required) != self.required:
            return None
        if values[S_INSTRUMENT] is None or values[S_INSTRUMENT] not in self.precision:
            return None  # UNKNOWN_INSTRUMENT (or no instrument field): the general path says so
        if values[S_TYPE] is None:
            values[S_TYPE] = "market"
        if _SPEC is None:
            return OrderSpec(values[0], values[1], values[2], values[3], values[4], None, None, None,
                             values[8], None, None, None, None, values[13])
        spec = _object_new(OrderSpec)
        for k in range(14):
            _set(_SPEC, k, spec, values[k])
        return spec


from bisect import bisect_left
from time import perf_counter


cdef class Submitted:
    """``Api._submitted(view, spec, t0)`` compiled for the common case: no
    debug logging, and the metrics children of this (type, instrument,
    status, result) already made by ``Metrics.order``. Anything else (debug
    on, a first order of its kind, a slippage observation) calls the Python
    method, the reference."""

    cdef object reference, log, metrics, children

    def __init__(self, reference, log, metrics):
        self.reference = reference
        self.log = log
        self.metrics = metrics
        self.children = metrics._children if metrics is not None else None

    def __call__(self, view, spec, double t0):
        if self.metrics is None or self.log.isEnabledFor(10):
            return self.reference(view, spec, t0)
        otype = spec.type
        if not isinstance(otype, str):
            return self.reference(view, spec, t0)
        if view.average_fill_price is not None and view.price is not None and view.filled_units:
            return self.reference(view, spec, t0)  # slippage observed: the Python method does it all
        status = view.status
        pair = (<dict>self.children).get(("o", otype, spec.instrument, status, "rejected" if status == "rejected" else "success"))
        if pair is None:
            return self.reference(view, spec, t0)
        seconds = perf_counter() - t0
        (<tuple>pair)[0].value += 1.0  # as Metrics.order
        h = (<tuple>pair)[1]
        h.counts[bisect_left(h.bounds, seconds)] += 1
        h.sum += seconds
