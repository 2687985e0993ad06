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

Values are taken without a new string where that gives the same object
value: an enum field's bytes are matched against its members (the member
is the value), and a text field whose bytes equal the last value it took
gets that (accepted) string again.

The pure-Python reference is ``schemas.Object.parse_json`` +
``app.Api.order_spec``; ``tests/api/test_fast_module.py`` checks the two
agree on generated bodies.

``submit_endpoint`` is the submit route's handler compiled (its reference is
the Python ``endpoint`` of ``app._bind``; ``tests/api/test_compiled_submit.py``
compares the two answer for answer).
"""
from cpython.object cimport PyObject, PyTypeObject, Py_TYPE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.dict cimport PyDict_GetItem
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_GET_LENGTH
from libc.string cimport memcmp

cdef extern from *:
    """
    /* object.__new__(cls) without the wrapper (cls.__new__ is object.__new__: checked before use) */
    static PyObject* fe_new_instance(PyObject* cls, PyObject* empty) {
        return ((PyTypeObject*)cls)->tp_new((PyTypeObject*)cls, empty, NULL);
    }
    """
    object fe_new_instance(object cls, object empty)

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object s)
    const char* PyUnicode_DATA(object s)

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


cdef inline bint _same(object v, const char* p, Py_ssize_t n) noexcept:
    """Whether ASCII str ``v`` is the ``n`` bytes at ``p``."""
    return PyUnicode_GET_LENGTH(v) == n and memcmp(PyUnicode_DATA(v), p, n) == 0


cdef inline object _member(tuple choices, const char* p, Py_ssize_t n):
    """The member of ``choices`` (ASCII str) spelled by the ``n`` bytes at ``p``, or None."""
    for c in choices:
        if _same(c, p, n):
            return c
    return None


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
    cdef list choices        # K_ENUM: the members (exact ASCII str) the value bytes are matched against, else None
    cdef list last           # K_TEXT: the last value taken (bytes equal to it are that same, accepted str)
    cdef Py_ssize_t nfields
    cdef Py_ssize_t ckind[MAX_FIELDS], cslot[MAX_FIELDS]  # kinds and slots again, as C ints for the scan
    cdef unsigned long long required  # bitmask over fields
    cdef dict precision
    cdef long long max_units

    def __init__(self, schema, dict precision):
        cdef Py_ssize_t i
        self.names, self.strs, self.kinds, self.data, self.strings, self.slots = [], [], [], [], [], []
        self.choices, self.last = [], []
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
            if i < MAX_FIELDS:  # else not usable: nfields stays 0 and the scan never runs
                self.ckind[i], self.cslot[i] = kind, slot
            choices = None
            if kind == K_ENUM and all(type(c) is str and c.isascii() for c in data):
                choices = tuple(sorted(data))
            self.choices.append(choices)
            self.last.append(None)
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
        return self.read(raw)

    cdef object read(self, bytes raw):
        cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(raw)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
        cdef Py_ssize_t i = 0, start, f, kind
        cdef unsigned long long seen = 0
        cdef long long num
        cdef int digits
        cdef unsigned char c
        cdef list values
        cdef object v, choices
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
            kind = self.ckind[f]
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
                choices = self.choices[f]
                if choices is not None:
                    # an enum member or nothing: the member itself, not an equal new string
                    v = _member(<tuple>choices, <const char*>s + start, i - start)
                    if v is None:
                        return None
                else:
                    v = self.last[f]
                    if v is None or not _same(v, <const char*>s + start, i - start):
                        v = PyUnicode_DecodeASCII(<const char*>s + start, i - start, NULL)
                        if kind == K_ENUM:
                            if v not in <frozenset>self.data[f]:
                                return None
                        elif v not in <set>self.data[f] and not self.strings[f].accepts(v):
                            return None
                        self.last[f] = v
                i += 1
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
            values[self.cslot[f]] = v
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
        spec = fe_new_instance(OrderSpec, ())  # object.__new__(OrderSpec): _slot_descriptors checked that is its __new__
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
    method, the reference.

    The children of the last (type, instrument, status) are kept: with plain
    ``str`` labels, equal strings are the same dict key, and ``Metrics``
    never drops a child, so the pair found last time is the one the dict
    would give again."""

    cdef object reference, log, metrics, children
    cdef object last_type, last_instrument, last_status, last_pair
    cdef object last_hist, last_bounds, last_counts  # the pair's histogram, its bounds and counts list

    def __init__(self, reference, log, metrics):
        self.reference = reference
        self.log = log
        self.metrics = metrics
        self.children = metrics._children if metrics is not None else None

    def __call__(self, view, spec, double t0):
        self.record(view, spec, t0, perf_counter(), -1)

    cdef record(self, view, spec, double t0, double now, int debug):
        """``__call__`` with the clock already read (``now``: ``perf_counter()``)
        and, unless ``debug`` is -1, the log's ``isEnabledFor(DEBUG)``."""
        cdef double seconds
        cdef Py_ssize_t i, nb
        cdef tuple bounds
        cdef list counts
        if self.metrics is None:
            return self.reference(view, spec, t0)
        if debug < 0:
            debug = self.log.isEnabledFor(10)
        if debug:
            return self.reference(view, spec, t0)
        otype = spec.type
        if not isinstance(otype, str):
            return self.reference(view, spec, t0)
        if view.average_fill_price is not None and view.price is not None and view.filled_units:
            return self.reference(view, spec, t0)  # slippage observed: the Python method does it all
        status = view.status
        instrument = spec.instrument
        pair = self.last_pair
        if (pair is None or type(otype) is not str or type(instrument) is not str or type(status) is not str
                or otype != self.last_type or instrument != self.last_instrument or status != self.last_status):
            pair = (<dict>self.children).get(("o", otype, instrument, status, "rejected" if status == "rejected" else "success"))
            if pair is None:
                return self.reference(view, spec, t0)
            if type(otype) is str and type(instrument) is str and type(status) is str:
                self.last_type, self.last_instrument, self.last_status, self.last_pair = otype, instrument, status, pair
        seconds = now - t0
        (<tuple>pair)[0].value += 1.0  # as Metrics.order
        h = (<tuple>pair)[1]
        if h is self.last_hist:  # its bounds tuple and counts list, read when it was last seen
            b, counts_obj = self.last_bounds, self.last_counts
        else:
            b, counts_obj = h.bounds, h.counts
            self.last_hist, self.last_bounds, self.last_counts = h, b, counts_obj
        if type(b) is tuple:
            # bisect_left(bounds, seconds) over a tuple of floats, in C
            bounds = <tuple>b
            nb = len(bounds)
            i = 0
            while i < nb and type(bounds[i]) is float and <double>bounds[i] < seconds:
                i += 1
            if i < nb and type(bounds[i]) is not float:
                i = bisect_left(b, seconds)
        else:
            i = bisect_left(b, seconds)
        counts_obj[i] += 1
        h.sum += seconds


# --------------------------------------------------------------------------- request ids and the submit endpoint

from cpython.contextvars cimport PyContextVar_Set, PyContextVar_Reset

cdef extern from "Python.h":
    object PyObject_VectorcallMethod(object name, PyObject** args, size_t nargsf, object kwnames)
    int PyObject_GenericSetDict(object o, object value, void* context) except -1

cdef extern from *:
    """
    /* The first step of a native coroutine, as ``await`` takes it but without
       the StopIteration a finished ``__await__`` iterator raises: its result
       (*suspended = 0) or what it yielded for the event loop (*suspended = 1). */
    static PyObject* fe_first_step(PyObject* coro, int* suspended) {
        PyObject* res = NULL;
        PySendResult r = PyIter_Send(coro, Py_None, &res);
        if (r == PYGEN_ERROR) return NULL;
        *suspended = (r == PYGEN_NEXT);
        return res;
    }
    """
    object fe_first_step(object coro, int* suspended)
    bint PyCoro_CheckExact(object o)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec* tp)
    int CLOCK_MONOTONIC


cdef inline long long _now_ns() noexcept nogil:
    """``time.perf_counter_ns()``: on Linux both read CLOCK_MONOTONIC."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000LL + ts.tv_nsec


cdef unsigned char _RID_SAFE[128]
cdef bytes _RID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"  # as app._RID_OK
cdef Py_ssize_t _k
for _k in range(len(_RID_CHARS)):
    _RID_SAFE[<unsigned char>_RID_CHARS[_k]] = 1


cdef inline bint _rid_ok(object rid) noexcept:
    """``rid and len(rid) <= 128 and app._RID_OK.issuperset(rid)`` for a str."""
    cdef Py_ssize_t i, n
    cdef const unsigned char* p
    if type(rid) is not str:
        return False
    n = PyUnicode_GET_LENGTH(rid)
    if n == 0 or n > 128 or not PyUnicode_IS_ASCII(rid):
        return False
    p = <const unsigned char*>PyUnicode_DATA(rid)
    for i in range(n):
        if not _RID_SAFE[p[i]]:
            return False
    return True


def rid_ok(rid):
    """Whether a client's ``X-Request-ID`` is kept (the compiled check, for tests)."""
    return _rid_ok(rid)


cdef class RequestIds:
    """``"<prefix>-1"``, ``"<prefix>-2"``, ...: what
    ``map((prefix + "-{}").format, itertools.count(1)).__next__`` returns,
    written into a buffer instead of formatted."""

    cdef char buf[96]
    cdef Py_ssize_t plen
    cdef unsigned long long n

    def __init__(self, str prefix):
        cdef bytes p = prefix.encode("ascii")
        if len(p) > 64:
            raise ValueError("request id prefix longer than 64 characters")
        self.plen = len(p) + 1
        for i in range(len(p)):
            self.buf[i] = p[i]
        self.buf[len(p)] = 45  # -
        self.n = 0

    cdef str next(self):
        cdef char digits[24]
        cdef int k = 0, j
        cdef unsigned long long v
        self.n += 1
        v = self.n
        while True:
            digits[k] = 48 + <char>(v % 10)
            k += 1
            v //= 10
            if v == 0:
                break
        for j in range(k):
            self.buf[self.plen + j] = digits[k - 1 - j]
        return PyUnicode_DecodeASCII(self.buf, self.plen + k, NULL)

    def __call__(self):
        return self.next()


cdef class _Rest:
    """The rest of a native coroutine that suspended on its first step
    (``fe_first_step``): awaited, it hands the task what the coroutine
    yielded, then passes every resumption through, as ``await coro`` would
    have from the start."""

    cdef object coro, first
    cdef bint started

    def __cinit__(self, coro, first):
        self.coro = coro
        self.first = first

    def __await__(self):
        return self

    def __next__(self):
        if not self.started:
            self.started = True
            first, self.first = self.first, None
            return first
        return self.coro.send(None)

    def send(self, value):
        if not self.started:
            return self.__next__()
        return self.coro.send(value)

    def throw(self, *args):
        self.started = True
        return self.coro.throw(*args)

    def close(self):
        return self.coro.close()


cdef class SubmitPath:
    """What the compiled submit endpoint uses, bound once per app by
    ``app._bind`` (every field is the object the Python endpoint uses)."""

    cdef public object read_order, check_body, order_spec, engine, submit_failed, auth, anonymous
    cdef public object general, error_response, respond, template, response_cls, json_headers
    cdef public object h_request_id, h_idempotency, h_authorization, too_large, log, request_id_var
    cdef public object children, child, fastexec_error
    cdef public Submitted submitted
    cdef public RequestIds ids
    cdef public object perf_ring
    cdef public bint auth_on
    cdef public Py_ssize_t max_body


from fastexec.engine.wire import order_json as _order_json

from logging import Logger as _Logger

cdef object _plain_request = None  # the request class whose private attributes are its public ones


cdef tuple _request_parts(request):
    """``(request.headers, request.raw_path, request.content)``; when they are
    the private ``_headers``, ``_message.path`` and ``_payload`` (aiohttp's
    definitions of them), the endpoint reads those for every request of this
    class from then on."""
    global _plain_request
    parts = (request.headers, request.raw_path, request.content)
    try:
        same = (request._headers is parts[0] and request._message.path is parts[1] and request._payload is parts[2])
    except AttributeError:
        same = False
    if same and _plain_request is None:
        _plain_request = type(request)
    return parts


cdef inline int _debug_on(object log, dict cache) except -1:
    """``log.isEnabledFor(logging.DEBUG)``; with ``cache`` (the logger's
    ``_cache``), what the method would return from it, without the call."""
    cdef PyObject* hit
    if cache is not None and not log.disabled:
        hit = PyDict_GetItem(cache, 10)
        if hit is not NULL and type(<object>hit) is bool:
            return <object>hit is True
    return log.isEnabledFor(10)


cdef tuple _KW_REQUEST_ID = ("request_id",)
cdef str _SUBMIT = "submit"


def submit_endpoint(SubmitPath sp):
    """The submit endpoint of ``app._bind`` compiled: the same steps in the
    same order as its Python ``endpoint`` (the reference), with the request
    id, context variable, clock, response and counters done from C."""
    if sp.template is not None and sp.response_cls.__new__ is not object.__new__:
        sp.template = None  # the lean response needs a plain object.__new__
    # Logger.isEnabledFor(DEBUG) answers from the logger's _cache dict once it
    # has been asked (logging clears that dict in place when levels change);
    # read it directly while the logger is a plain Logger
    cdef dict log_cache = None
    if type(sp.log).isEnabledFor is _Logger.isEnabledFor and type(getattr(sp.log, "_cache", None)) is dict:
        log_cache = sp.log._cache
    # the lean response's attributes: the template's, then the three of its own, copied whole per response
    cdef dict proto = None
    if sp.template is not None:
        proto = dict(sp.template)
        proto["_state"] = proto["_headers"] = proto["_body"] = None

    async def endpoint(request):
        cdef long long t0 = _now_ns()
        cdef double t1
        cdef object headers, path, content
        if type(request) is _plain_request:
            # what request.headers / .raw_path / .content return, without the
            # cached-property and property calls (checked per request class)
            headers, path, content = request._headers, request._message.path, request._payload
        else:
            headers, path, content = _request_parts(request)
        cdef object rid = headers.get(sp.h_request_id)
        cdef object token, resp, principal, raw, spec, order, view, body, status, hdrs, child, aw
        cdef int suspended = 0
        cdef dict d
        cdef PyObject* args[3]
        cdef int debug
        if not _rid_ok(rid):
            rid = sp.ids.next()
        token = PyContextVar_Set(sp.request_id_var, rid)
        debug = -1
        try:
            try:
                if (<str>path).find("?") >= 0 or sp.h_idempotency in headers:
                    status, body = await sp.general(request, headers, rid)
                else:
                    principal = sp.auth.authenticate(headers.get(sp.h_authorization)) if sp.auth_on else sp.anonymous
                    if content.is_eof():  # the whole body is here: as the Python endpoint
                        raw = content.read_nowait()
                    else:
                        aw = request.read()
                        if PyCoro_CheckExact(aw):
                            raw = fe_first_step(aw, &suspended)
                            if suspended:
                                raw = await _Rest(aw, raw)
                        else:
                            raw = await aw
                    if len(raw) > sp.max_body:
                        raise sp.too_large(max_size=sp.max_body, actual_size=len(raw))
                    spec = (<OrderReader>sp.read_order).read(raw) if type(sp.read_order) is OrderReader else sp.read_order(raw)
                    if spec is None:
                        order = sp.check_body(raw)
                        if principal.accounts is not None:
                            principal.check(order["account_id"])
                        spec = sp.order_spec(order)
                    elif principal.accounts is not None:
                        principal.check(spec.account_id)
                    t1 = _now_ns() * 1e-9
                    args[0] = <PyObject*>sp.engine
                    args[1] = <PyObject*>spec
                    args[2] = <PyObject*>rid
                    try:
                        aw = PyObject_VectorcallMethod(_SUBMIT, args, 2, _KW_REQUEST_ID)
                        if PyCoro_CheckExact(aw):
                            view = fe_first_step(aw, &suspended)
                            if suspended:
                                view = await _Rest(aw, view)
                        else:
                            view = await aw  # a compiled coroutine (journaled_submit): awaited natively
                    except sp.fastexec_error as exc:
                        sp.submit_failed(exc, spec, t1)
                        raise
                    # one isEnabledFor for the metrics and the request log below
                    debug = _debug_on(sp.log, log_cache)
                    sp.submitted.record(view, spec, t1, _now_ns() * 1e-9, debug)
                    status, body = 201, _order_json(view)  # orjson.dumps(view.to_dict()), written directly
                if status == 201 and proto is not None:
                    resp = fe_new_instance(sp.response_cls, ())
                    d = proto.copy()
                    d["_state"] = {}
                    hdrs = d["_headers"] = sp.json_headers.copy()
                    hdrs.add(sp.h_request_id, rid)
                    d["_body"] = body
                    PyObject_GenericSetDict(resp, d, NULL)
                else:
                    resp = sp.respond(status, body, rid)
                sp.perf_ring.add(_now_ns() - t0)
            except Exception as exc:
                resp = sp.error_response(exc, request, rid)
                status = resp.status
            if sp.children is not None:  # status: the response's
                child = (<dict>sp.children).get(status)
                if child is None:
                    child = sp.child(status)
                child.value += 1
            if debug < 0:
                debug = _debug_on(sp.log, log_cache)
            if debug:
                sp.log.debug("request", extra={"method": request.method, "path": request.path, "status": resp.status})
            return resp
        finally:
            PyContextVar_Reset(sp.request_id_var, token)

    return endpoint

