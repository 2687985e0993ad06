# cython: language_level=3
"""Dicts of one fixed shape (the journal records, the order's wire form)
built by copying a template and writing the values into the copy's entries.

Why: ``PyDict_SetItem`` costs ~180 instructions per key in CPython 3.11
(hash, probe, version bump), so a 19-key record built key by key costs ~3.5k
instructions; a copy of a template with the same keys is one ``memcpy`` of its
table (``PyDict_Copy``'s clone of a compact table), after which value ``i``
is entry ``i`` of the copy: writing it is a pointer store.

Only CPython 3.11's layout (``Include/internal/pycore_dict.h``): the keys
object's header, then its index table (``1 << dk_log2_index_bytes`` bytes),
then the entries, ``{me_key, me_value}`` for a str-keyed table. ``direct``
checks the copy is such a table with exactly the template's entries (a
combined, unicode-keyed table, nothing deleted); callers fall back to
``PyDict_SetItem`` with the key otherwise, and ``works()`` runs once per
module to prove the writes give the dict ``dict(zip(keys, values))`` gives.
The result is an ordinary dict (keys in the template's order); it is tracked
by the garbage collector when a value needs it, as ``PyDict_SetItem`` would.
"""
from cpython.dict cimport PyDict_Copy, PyDict_SetItem
from cpython.tuple cimport PyTuple_GET_ITEM

cdef extern from *:
    """
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    typedef struct {
        Py_ssize_t dk_refcnt;
        uint8_t dk_log2_size;
        uint8_t dk_log2_index_bytes;
        uint8_t dk_kind;
        uint32_t dk_version;
        Py_ssize_t dk_usable;
        Py_ssize_t dk_nentries;
        char dk_indices[];
    } fe_df_keys;
    typedef struct { PyObject *me_key; PyObject *me_value; } fe_df_entry;

    static inline int fe_df_direct(PyObject *d, Py_ssize_t n) {
        PyDictObject *mp = (PyDictObject *)d;
        fe_df_keys *k = (fe_df_keys *)mp->ma_keys;
        return mp->ma_values == NULL && k->dk_kind == 1 /* DICT_KEYS_UNICODE */
            && k->dk_nentries == n && mp->ma_used == n;
    }

    static inline void fe_df_put(PyObject *d, Py_ssize_t i, PyObject *v) {
        fe_df_keys *k = (fe_df_keys *)((PyDictObject *)d)->ma_keys;
        fe_df_entry *e = (fe_df_entry *)(k->dk_indices + ((size_t)1 << k->dk_log2_index_bytes)) + i;
        PyObject *old = e->me_value;
        Py_INCREF(v);
        e->me_value = v;
        Py_XDECREF(old);
        /* _PyObject_GC_MAY_BE_TRACKED(v), as insertdict's MAINTAIN_TRACKING */
        if (PyObject_IS_GC(v) && (!PyTuple_CheckExact(v) || PyObject_GC_IsTracked(v))
                && !PyObject_GC_IsTracked(d))
            PyObject_GC_Track(d);
    }
    #else
    static inline int fe_df_direct(PyObject *d, Py_ssize_t n) { (void)d; (void)n; return 0; }
    static inline void fe_df_put(PyObject *d, Py_ssize_t i, PyObject *v) { (void)d; (void)i; (void)v; }
    #endif
    """
    bint fe_df_direct(object d, Py_ssize_t n)
    void fe_df_put(object d, Py_ssize_t i, object v)


cdef inline dict template(tuple keys):
    """The template of ``keys``: every key, value None, in order (never modified)."""
    cdef dict d = {}
    for k in keys:
        d[k] = None
    return d


cdef inline dict new(dict tmpl):
    """A copy of ``tmpl`` to fill (``direct`` says how)."""
    return PyDict_Copy(tmpl)


cdef inline bint direct(dict d, Py_ssize_t n) noexcept:
    """``d`` (a fresh copy of an n-key template) takes ``put``."""
    return fe_df_direct(d, n)


cdef inline int put(dict d, bint is_direct, tuple keys, Py_ssize_t i, object v) except -1:
    """``d[keys[i]] = v``: written into entry ``i`` when ``is_direct``."""
    if is_direct:
        fe_df_put(d, i, v)
        return 0
    return PyDict_SetItem(d, <object>PyTuple_GET_ITEM(keys, i), v)


cdef inline bint works():
    """True when writing entries gives the dict ``PyDict_SetItem`` gives
    (keys, order, values, garbage-collector tracking)."""
    cdef tuple keys = ("a", "bb", "ccc", "dddd", "e")
    vals = (1, "x", None, [2], (3,))
    cdef dict d = new(template(keys))
    if not direct(d, 5):
        return False
    for i in range(5):
        put(d, True, keys, i, vals[i])
    import gc
    ref = dict(zip(keys, vals))
    return (d == ref and list(d) == list(keys) and list(d.values()) == list(vals) and gc.is_tracked(d)
            and d.get("dddd") == [2] and "bb" in d and len(d) == 5)
