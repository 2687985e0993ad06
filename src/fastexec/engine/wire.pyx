# cython: language_level=3
"""The JSON wire form of the engine's views, compiled.

``OrderView.to_dict`` (every REST submit/modify/cancel/get answers with it),
``PositionView.to_dict`` and ``AccountView.to_dict`` are built here: prices,
money and RFC 3339 timestamps are written as digits into a C buffer (no
format-spec parsing, no strftime/gmtime), and the dict is filled in place.

The Python implementations in ``fastexec.engine.views`` stay the reference
(``views._order_dict_reference`` and the helpers ``_ts``, ``format_price``,
``_avg_px``, ``_money``, ``_exit``): the text is the same for every input
(tests/engine/test_views_wire.py checks it with hypothesis), and anything
this module does not handle itself -- a value that is not an exact ``int``,
out of range, finer than the precision, a precision outside 0..9, an int
beyond int64 -- is handed to that reference helper, so errors (the core's
``FixedPointError`` and friends) are raised exactly as before.
"""
from libc.string cimport memcpy
from cpython.dict cimport PyDict_Copy, PyDict_SetItem
from cpython.object cimport PyObject_Str
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

cimport fastexec.engine._dictfill as df

from orjson import dumps as _dumps


cdef extern from "Python.h":
    bint PyLong_CheckExact(object o)
    bint PyDict_CheckExact(object o)
    bint PyTuple_Check(object o)
    bint PyDict_Next(object d, Py_ssize_t* pos, PyObject** key, PyObject** value)
    bytes PyBytes_FromStringAndSize(const char* s, Py_ssize_t n)
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1
    dict _PyDict_NewPresized(Py_ssize_t minused)


cdef extern from *:
    """
    #include <string.h>
    #define FE_W_MAX_PRICE 1000000000000000000LL  /* fixedpoint MAX_PRICE */
    #define FE_W_MAX_MONEY 9000000000000000LL     /* fixedpoint MAX_MONEY */
    #define fe_w_lit(o, s) fe_w_put((o), (s), (Py_ssize_t)strlen(s))
    static const long long fe_w_pow10[19] = {
        1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL,
        100000000LL, 1000000000LL, 10000000000LL, 100000000000LL,
        1000000000000LL, 10000000000000LL, 100000000000000LL,
        1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
        1000000000000000000LL};

    /* An ASCII str of n chars from buf (no UTF-8 decoding). */
    static PyObject* fe_w_ascii(const char* buf, Py_ssize_t n) {
        PyObject* u = PyUnicode_New(n, 127);
        if (u != NULL) memcpy(PyUnicode_1BYTE_DATA(u), buf, (size_t)n);
        return u;
    }

    /* Decimal digits of a (>= 0) ending just before end; returns the start. */
    static char* fe_w_udigits(char* end, unsigned long long a) {
        do { *--end = (char)('0' + a % 10); a /= 10; } while (a);
        return end;
    }

    /* str(v) of an int64. */
    static PyObject* fe_w_int_str(long long v) {
        char buf[24];
        char* end = buf + sizeof buf;
        unsigned long long a = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        char* s = fe_w_udigits(end, a);
        if (v < 0) *--s = '-';
        return fe_w_ascii(s, end - s);
    }

    /* _fmt_plain(q, p): sign, integer digits, and exactly p zero-padded
       decimals; with strip, trailing zeros of the decimals are dropped
       (the caller guarantees a non-zero fraction then). |q| < 10**19. */
    static char* fe_w_plain_at(char* end, char** end_out, long long q, int p, int strip) {
        /* the digits of _fmt_plain(q, p) written backwards from end; returns
           their start, *end_out their end (moved back by strip) */
        char* s = end;
        unsigned long long a = q < 0 ? 0ULL - (unsigned long long)q : (unsigned long long)q;
        if (p > 0) {
            unsigned long long f = a % (unsigned long long)fe_w_pow10[p];
            a /= (unsigned long long)fe_w_pow10[p];
            int k;
            for (k = 0; k < p; k++) { *--s = (char)('0' + f % 10); f /= 10; }
            *--s = '.';
            if (strip) {
                while (end[-1] == '0') end--;
            }
        }
        s = fe_w_udigits(s, a);
        if (q < 0) *--s = '-';
        *end_out = end;
        return s;
    }

    static PyObject* fe_w_plain(long long q, int p, int strip) {
        char buf[48];
        char* end;
        char* s = fe_w_plain_at(buf + sizeof buf, &end, q, p, strip);
        return fe_w_ascii(s, end - s);
    }

    /* RFC 3339 UTC with nanoseconds of ns since the epoch (floor semantics,
       like divmod and gmtime), civil-from-days after H. Hinnant. An int64 of
       nanoseconds spans the years 1677..2262: always four year digits. The
       "YYYY-MM-DDTHH:MM:SS." part of the last second formatted is kept (the
       views of one order, and consecutive orders, share it); the engine's
       views are built and serialised on its one event loop, under the GIL. */
    static long long fe_w_ts_secs = (-9223372036854775807LL - 1);  /* no int64 ns floors to it */
    static char fe_w_ts_buf[30];

    static void fe_w_ts_date(long long secs) {
        long long days = secs / 86400;
        long long sod = secs % 86400;
        if (sod < 0) { sod += 86400; days -= 1; }
        long long z = days + 719468;
        long long era = (z >= 0 ? z : z - 146096) / 146097;
        unsigned doe = (unsigned)(z - era * 146097);
        unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        long long y = (long long)yoe + era * 400;
        unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        unsigned mp = (5 * doy + 2) / 153;
        unsigned d = doy - (153 * mp + 2) / 5 + 1;
        unsigned m = mp < 10 ? mp + 3 : mp - 9;
        if (m <= 2) y += 1;
        unsigned hh = (unsigned)(sod / 3600), mm = (unsigned)(sod / 60 % 60), ss = (unsigned)(sod % 60);
        char* b = fe_w_ts_buf;
        unsigned yy = (unsigned)y;
        b[0] = (char)('0' + yy / 1000); b[1] = (char)('0' + yy / 100 % 10);
        b[2] = (char)('0' + yy / 10 % 10); b[3] = (char)('0' + yy % 10);
        b[4] = '-'; b[5] = (char)('0' + m / 10); b[6] = (char)('0' + m % 10);
        b[7] = '-'; b[8] = (char)('0' + d / 10); b[9] = (char)('0' + d % 10);
        b[10] = 'T'; b[11] = (char)('0' + hh / 10); b[12] = (char)('0' + hh % 10);
        b[13] = ':'; b[14] = (char)('0' + mm / 10); b[15] = (char)('0' + mm % 10);
        b[16] = ':'; b[17] = (char)('0' + ss / 10); b[18] = (char)('0' + ss % 10);
        b[19] = '.'; b[29] = 'Z';
        fe_w_ts_secs = secs;
    }

    static const char* fe_w_ts_fill(long long ns) {
        long long secs = ns / 1000000000LL;
        long long frac = ns % 1000000000LL;
        if (frac < 0) { frac += 1000000000LL; secs -= 1; }
        if (secs != fe_w_ts_secs) fe_w_ts_date(secs);
        char* b = fe_w_ts_buf;
        unsigned f = (unsigned)frac;
        int k;
        for (k = 28; k >= 20; k--) { b[k] = (char)('0' + f % 10); f /= 10; }
        return b;
    }

    static PyObject* fe_w_ts(long long ns) {
        return fe_w_ascii(fe_w_ts_fill(ns), 30);
    }

    /* --- order_json's writer: the bytes orjson.dumps gives the order dict. ---
       Every write checks room first; a full buffer, or a value the writer
       does not format itself, sets bad and the caller falls back to
       orjson.dumps(view.to_dict()). */
    typedef struct { char* p; char* end; int bad; } fe_w_out;

    static inline void fe_w_put(fe_w_out* o, const char* s, Py_ssize_t n) {
        if (o->bad || o->end - o->p < n) { o->bad = 1; return; }
        memcpy(o->p, s, (size_t)n);
        o->p += n;
    }

    /* A JSON string of an exact str: only ASCII needing no escape (no control
       character, quote or backslash: orjson writes such text as is). */
    static void fe_w_jstr(fe_w_out* o, PyObject* u) {
        if (o->bad) return;
        if (!PyUnicode_CheckExact(u) || !PyUnicode_IS_COMPACT_ASCII(u)) { o->bad = 1; return; }
        Py_ssize_t n = PyUnicode_GET_LENGTH(u);
        const unsigned char* s = (const unsigned char*)PyUnicode_DATA(u);
        Py_ssize_t i;
        for (i = 0; i < n; i++) {
            unsigned char c = s[i];
            if (c < 0x20 || c == 34 || c == 92) { o->bad = 1; return; }  /* quote, backslash */
        }
        if (o->end - o->p < n + 2) { o->bad = 1; return; }
        *o->p++ = '"';
        memcpy(o->p, s, (size_t)n);
        o->p += n;
        *o->p++ = '"';
    }

    static void fe_w_jint(fe_w_out* o, long long v, int quoted) {
        char buf[24];
        char* end = buf + sizeof buf;
        unsigned long long a = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        char* s = fe_w_udigits(end, a);
        if (v < 0) *--s = '-';
        if (o->bad || o->end - o->p < (end - s) + 2) { o->bad = 1; return; }
        if (quoted) *o->p++ = '"';
        memcpy(o->p, s, (size_t)(end - s));
        o->p += end - s;
        if (quoted) *o->p++ = '"';
    }

    static void fe_w_jplain(fe_w_out* o, long long q, int p, int strip) {
        char buf[48];
        char* end;
        char* s = fe_w_plain_at(buf + sizeof buf - 1, &end, q, p, strip);  /* room for the closing quote */
        *--s = '"';
        *end++ = '"';
        fe_w_put(o, s, end - s);
    }

    static void fe_w_jts(fe_w_out* o, long long ns) {
        if (o->bad || o->end - o->p < 32) { o->bad = 1; return; }
        *o->p++ = '"';
        memcpy(o->p, fe_w_ts_fill(ns), 30);
        o->p += 30;
        *o->p++ = '"';
    }
    """
    const long long* POW10 "fe_w_pow10"
    const long long MAX_PRICE "FE_W_MAX_PRICE"
    const long long MAX_MONEY "FE_W_MAX_MONEY"
    object c_ascii "fe_w_ascii"(const char* buf, Py_ssize_t n)
    object c_int_str "fe_w_int_str"(long long v)
    object c_plain "fe_w_plain"(long long q, int p, int strip)
    object c_ts "fe_w_ts"(long long ns)
    ctypedef struct Out "fe_w_out":
        char* p
        char* end
        int bad
    void w_put "fe_w_put"(Out* o, const char* s, Py_ssize_t n)
    void w_lit "fe_w_lit"(Out* o, const char* s)
    void w_str "fe_w_jstr"(Out* o, PyObject* u)
    void w_int "fe_w_jint"(Out* o, long long v, int quoted)
    void w_plain "fe_w_jplain"(Out* o, long long q, int p, int strip)
    void w_ts "fe_w_jts"(Out* o, long long ns)


# The reference helpers (views.py), installed by ``install``: every value this
# module does not format itself goes to them, so text and errors are theirs.
cdef object _ref_ts = None
cdef object _ref_price = None
cdef object _ref_avg = None
cdef object _ref_money = None
cdef object _ref_exit = None
cdef object _ref_order = None
cdef type _view_cls = None  # views.OrderView: the one class order_json writes itself


def install(ts, price, avg_px, money, exit_, order_dict, view_cls):
    """Called once by ``fastexec.engine.views`` with its reference helpers."""
    global _ref_ts, _ref_price, _ref_avg, _ref_money, _ref_exit, _ref_order, _view_cls
    _ref_ts, _ref_price, _ref_avg, _ref_money, _ref_exit, _ref_order = ts, price, avg_px, money, exit_, order_dict
    _view_cls = view_cls


cdef inline bint _as_i64(object x, long long* out) noexcept:
    """True and the value when x is an exact int that fits int64."""
    cdef int overflow = 0
    cdef long long v
    if not PyLong_CheckExact(x):
        return False
    v = PyLong_AsLongLongAndOverflow(x, &overflow)  # cannot fail for an exact int
    if overflow:
        return False
    out[0] = v
    return True


cdef inline int _prec(object p) noexcept:
    """The precision as 0..9, or -1 when the reference must handle it."""
    cdef long long v
    if _as_i64(p, &v) and 0 <= v <= 9:
        return <int>v
    return -1


cdef object ts(object ns):
    """``views._ts``."""
    cdef long long v
    if ns is None:
        return None
    if _as_i64(ns, &v):
        return c_ts(v)
    return _ref_ts(ns)


cdef object price(object value, object precision):
    """``views.format_price``: exact text with ``precision`` decimals."""
    cdef long long v
    cdef int p = _prec(precision)
    if p >= 0 and _as_i64(value, &v) and -MAX_PRICE <= v <= MAX_PRICE and v % POW10[9 - p] == 0:
        return c_plain(v // POW10[9 - p], p, 0)
    return _ref_price(value, precision)


cdef object avg_price(object value, object precision):
    """``views._avg_px``: at the precision, or every decimal up to nanos when finer."""
    cdef long long v
    cdef int p
    if value is None:
        return None
    p = _prec(precision)
    if p >= 0 and _as_i64(value, &v) and -MAX_PRICE <= v <= MAX_PRICE:
        if v % POW10[9 - p] == 0:
            return c_plain(v // POW10[9 - p], p, 0)
        return c_plain(v, 9, 1)
    return _ref_avg(value, precision)


cdef object money(object value):
    """``views._money``: half-even to 4 decimals."""
    cdef long long v, q, r
    if value is None:
        return None
    if _as_i64(value, &v) and -MAX_MONEY <= v <= MAX_MONEY:
        q = v // 100  # C division (cdivision): toward zero
        r = v - q * 100
        if r < 0:
            r = -r
        if r > 100 - r or (r == 100 - r and (q & 1) != 0):
            q = q - 1 if v < 0 else q + 1
        return c_plain(q, 4, 0)
    return _ref_money(value)


cdef object exit_spec(object spec, object precision):
    """``views._exit``."""
    if spec is None:
        return None
    cdef dict out = {}
    sp = spec.price
    if sp is not None:
        out["price"] = price(sp, precision)
    sd = spec.distance
    if sd is not None:
        out["distance"] = price(sd, precision)
    if spec.guaranteed:
        out["guaranteed"] = True
    return out


cdef inline object int_str(object x):
    cdef long long v
    if _as_i64(x, &v):
        return c_int_str(v)
    return PyObject_Str(x)


cdef inline object opt_price(object value, object precision):
    return None if value is None else price(value, precision)


cdef tuple _ORDER_KEYS = (
    "order_id", "client_order_id", "broker_order_id", "status", "account_id", "instrument", "side", "type",
    "units", "filled_units", "price", "stop_price", "trailing_distance", "trigger_price", "average_fill_price",
    "time_in_force", "gtd_time", "stop_loss", "take_profit", "trailing_stop_distance", "created_at",
    "updated_at", "reject_reason", "request_id", "timings",
)


# Every key, value None, in wire order (``_dictfill``): a copy of it is a
# clone of its table (one memcpy) whose values are written in place; the
# many fields that are None are not touched at all.
cdef dict _ORDER_TEMPLATE = df.template(_ORDER_KEYS)
cdef bint _DIRECT = df.works()


cdef inline int _set(dict d, bint dr, Py_ssize_t i, object value) except -1:
    """``d[_ORDER_KEYS[i]] = value`` unless value is None (the template's value)."""
    if value is not None:
        df.put(d, dr, _ORDER_KEYS, i, value)
    return 0


def order_dict(view):
    """``OrderView.to_dict``: the order's JSON wire form (see views.OrderView)."""
    if not PyTuple_Check(view) or PyTuple_GET_SIZE(view) != 26:
        return _ref_order(view)
    p = <object>PyTuple_GET_ITEM(view, 25)
    timings = <object>PyTuple_GET_ITEM(view, 24)
    cdef dict d = df.new(_ORDER_TEMPLATE)
    cdef bint dr = _DIRECT and df.direct(d, 25)
    # The reference's order: with several bad fields, the first one raises.
    _set(d, dr, 0, <object>PyTuple_GET_ITEM(view, 0))  # order_id
    _set(d, dr, 1, <object>PyTuple_GET_ITEM(view, 1))  # client_order_id
    _set(d, dr, 2, <object>PyTuple_GET_ITEM(view, 2))  # broker_order_id
    _set(d, dr, 3, <object>PyTuple_GET_ITEM(view, 3))  # status
    _set(d, dr, 4, <object>PyTuple_GET_ITEM(view, 4))  # account_id
    _set(d, dr, 5, <object>PyTuple_GET_ITEM(view, 5))  # instrument
    _set(d, dr, 6, <object>PyTuple_GET_ITEM(view, 6))  # side
    _set(d, dr, 7, <object>PyTuple_GET_ITEM(view, 7))  # type
    _set(d, dr, 8, int_str(<object>PyTuple_GET_ITEM(view, 8)))  # units
    _set(d, dr, 9, int_str(<object>PyTuple_GET_ITEM(view, 9)))  # filled_units
    _set(d, dr, 10, opt_price(<object>PyTuple_GET_ITEM(view, 10), p))  # price
    _set(d, dr, 11, opt_price(<object>PyTuple_GET_ITEM(view, 11), p))  # stop_price
    _set(d, dr, 12, opt_price(<object>PyTuple_GET_ITEM(view, 12), p))  # trailing_distance
    _set(d, dr, 13, opt_price(<object>PyTuple_GET_ITEM(view, 13), p))  # trigger_price
    _set(d, dr, 14, avg_price(<object>PyTuple_GET_ITEM(view, 14), p))  # average_fill_price
    _set(d, dr, 15, <object>PyTuple_GET_ITEM(view, 15))  # time_in_force
    _set(d, dr, 16, ts(<object>PyTuple_GET_ITEM(view, 16)))  # gtd_time
    _set(d, dr, 17, exit_spec(<object>PyTuple_GET_ITEM(view, 17), p))  # stop_loss
    _set(d, dr, 18, exit_spec(<object>PyTuple_GET_ITEM(view, 18), p))  # take_profit
    _set(d, dr, 19, opt_price(<object>PyTuple_GET_ITEM(view, 19), p))  # trailing_stop_distance
    _set(d, dr, 20, ts(<object>PyTuple_GET_ITEM(view, 20)))  # created_at
    _set(d, dr, 21, ts(<object>PyTuple_GET_ITEM(view, 21)))  # updated_at
    _set(d, dr, 22, <object>PyTuple_GET_ITEM(view, 22))  # reject_reason
    _set(d, dr, 23, <object>PyTuple_GET_ITEM(view, 23))  # request_id
    _set(d, dr, 24, PyDict_Copy(timings) if PyDict_CheckExact(timings) else dict(timings))  # timings
    return d


cdef inline void _j_str(Out* o, object x):
    """A str field (or null), as orjson writes it; anything else: bad."""
    if x is None:
        w_lit(o, "null")
    else:
        w_str(o, <PyObject*>x)


cdef inline void _j_int_str(Out* o, object x):
    """``int_str`` as a JSON string."""
    cdef long long v
    if _as_i64(x, &v):
        w_int(o, v, 1)
    else:
        o.bad = 1


cdef inline void _j_price(Out* o, object value, int p):
    """``opt_price`` as JSON: what ``price`` formats itself, else bad."""
    cdef long long v
    if value is None:
        w_lit(o, "null")
    elif p >= 0 and _as_i64(value, &v) and -MAX_PRICE <= v <= MAX_PRICE and v % POW10[9 - p] == 0:
        w_plain(o, v // POW10[9 - p], p, 0)
    else:
        o.bad = 1


cdef inline void _j_avg(Out* o, object value, int p):
    """``avg_price`` as JSON."""
    cdef long long v
    if value is None:
        w_lit(o, "null")
    elif p >= 0 and _as_i64(value, &v) and -MAX_PRICE <= v <= MAX_PRICE:
        if v % POW10[9 - p] == 0:
            w_plain(o, v // POW10[9 - p], p, 0)
        else:
            w_plain(o, v, 9, 1)
    else:
        o.bad = 1


cdef inline void _j_ts(Out* o, object ns):
    """``ts`` as JSON."""
    cdef long long v
    if ns is None:
        w_lit(o, "null")
    elif _as_i64(ns, &v):
        w_ts(o, v)
    else:
        o.bad = 1


cdef int _j_exit(Out* o, object spec, int p) except -1:
    """``exit_spec`` as JSON (its keys in its order)."""
    cdef bint first = True
    if spec is None:
        w_lit(o, "null")
        return 0
    w_lit(o, "{")
    sp = spec.price
    if sp is not None:
        w_lit(o, "\"price\":")
        _j_price(o, sp, p)
        first = False
    sd = spec.distance
    if sd is not None:
        w_lit(o, "\"distance\":" if first else ",\"distance\":")
        _j_price(o, sd, p)
        first = False
    if spec.guaranteed:
        w_lit(o, "\"guaranteed\":true" if first else ",\"guaranteed\":true")
    w_lit(o, "}")
    return 0


cdef void _j_timings(Out* o, object timings):
    """``dict(timings)`` as JSON: str keys, int64 / None / bool values."""
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    cdef PyObject* v
    cdef long long n
    cdef bint first = True
    if not PyDict_CheckExact(timings):
        o.bad = 1
        return
    w_lit(o, "{")
    while PyDict_Next(timings, &pos, &k, &v):
        if not first:
            w_lit(o, ",")
        first = False
        w_str(o, k)
        w_lit(o, ":")
        if _as_i64(<object>v, &n):
            w_int(o, n, 0)
        elif <object>v is None:
            w_lit(o, "null")
        elif <object>v is True:
            w_lit(o, "true")
        elif <object>v is False:
            w_lit(o, "false")
        else:
            o.bad = 1
    w_lit(o, "}")


def order_json(view):
    """``orjson.dumps(view.to_dict())`` written directly from the view: the
    201 body of every REST submit, without building the dict (~3-4k
    instructions) and walking it in orjson (~7k). The same bytes for every
    view; a field it does not format itself (text that is not plain ASCII or
    needs an escape, a value ``order_dict`` hands to the reference, a timings
    value that is not an int64/None/bool, a body beyond its buffer) makes it
    answer ``orjson.dumps(view.to_dict())`` instead, so text and errors are
    theirs; so does any view that is not exactly an ``OrderView``."""
    cdef char buf[2048]
    cdef Out o
    cdef int p
    if type(view) is not _view_cls or PyTuple_GET_SIZE(view) != 26:
        return _dumps(view.to_dict())
    o.p = buf
    o.end = buf + sizeof(buf)
    o.bad = 0
    p = _prec(<object>PyTuple_GET_ITEM(view, 25))
    w_lit(&o, "{\"order_id\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 0))
    w_lit(&o, ",\"client_order_id\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 1))
    w_lit(&o, ",\"broker_order_id\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 2))
    w_lit(&o, ",\"status\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 3))
    w_lit(&o, ",\"account_id\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 4))
    w_lit(&o, ",\"instrument\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 5))
    w_lit(&o, ",\"side\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 6))
    w_lit(&o, ",\"type\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 7))
    w_lit(&o, ",\"units\":")
    _j_int_str(&o, <object>PyTuple_GET_ITEM(view, 8))
    w_lit(&o, ",\"filled_units\":")
    _j_int_str(&o, <object>PyTuple_GET_ITEM(view, 9))
    w_lit(&o, ",\"price\":")
    _j_price(&o, <object>PyTuple_GET_ITEM(view, 10), p)
    w_lit(&o, ",\"stop_price\":")
    _j_price(&o, <object>PyTuple_GET_ITEM(view, 11), p)
    w_lit(&o, ",\"trailing_distance\":")
    _j_price(&o, <object>PyTuple_GET_ITEM(view, 12), p)
    w_lit(&o, ",\"trigger_price\":")
    _j_price(&o, <object>PyTuple_GET_ITEM(view, 13), p)
    w_lit(&o, ",\"average_fill_price\":")
    _j_avg(&o, <object>PyTuple_GET_ITEM(view, 14), p)
    w_lit(&o, ",\"time_in_force\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 15))
    w_lit(&o, ",\"gtd_time\":")
    _j_ts(&o, <object>PyTuple_GET_ITEM(view, 16))
    w_lit(&o, ",\"stop_loss\":")
    if not o.bad:
        _j_exit(&o, <object>PyTuple_GET_ITEM(view, 17), p)
    w_lit(&o, ",\"take_profit\":")
    if not o.bad:
        _j_exit(&o, <object>PyTuple_GET_ITEM(view, 18), p)
    w_lit(&o, ",\"trailing_stop_distance\":")
    _j_price(&o, <object>PyTuple_GET_ITEM(view, 19), p)
    w_lit(&o, ",\"created_at\":")
    _j_ts(&o, <object>PyTuple_GET_ITEM(view, 20))
    w_lit(&o, ",\"updated_at\":")
    _j_ts(&o, <object>PyTuple_GET_ITEM(view, 21))
    w_lit(&o, ",\"reject_reason\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 22))
    w_lit(&o, ",\"request_id\":")
    _j_str(&o, <object>PyTuple_GET_ITEM(view, 23))
    w_lit(&o, ",\"timings\":")
    if not o.bad:
        _j_timings(&o, <object>PyTuple_GET_ITEM(view, 24))
    w_lit(&o, "}")
    if o.bad:
        return _dumps(view.to_dict())
    return PyBytes_FromStringAndSize(buf, o.p - buf)


def position_dict(v):
    """``PositionView.to_dict``."""
    units = v.units
    cdef dict d = _PyDict_NewPresized(9)
    d["account_id"] = v.account_id
    d["instrument"] = v.instrument
    d["side"] = v.side
    d["units"] = int_str(units)
    d["average_price"] = avg_price(v.average_price, v.precision)
    d["realized_pl"] = money(v.realized_pl)
    d["unrealized_pl"] = money(v.unrealized_pl)
    d["margin_used"] = money(v.margin_used)
    d["notional"] = money(v.notional)
    return d


def account_dict(v):
    """``AccountView.to_dict``."""
    cdef dict d = _PyDict_NewPresized(13)
    d["account_id"] = v.account_id
    d["currency"] = v.currency
    d["balance"] = money(v.balance)
    d["nav"] = money(v.nav)
    d["unrealized_pl"] = money(v.unrealized_pl)
    d["realized_pl"] = money(v.realized_pl)
    d["margin_used"] = money(v.margin_used)
    d["margin_available"] = money(v.margin_available)
    d["open_positions"] = v.open_positions
    d["working_orders"] = v.working_orders
    d["daily_pl"] = money(v.daily_pl)
    d["trading_state"] = v.trading_state
    d["kill_switch_active"] = v.kill_switch_active
    return d


# Python-callable single formatters, for the differential tests.
def py_ts(ns):
    return ts(ns)


def py_price(value, precision):
    return price(value, precision)


def py_avg_price(value, precision):
    return avg_price(value, precision)


def py_money(value):
    return money(value)
