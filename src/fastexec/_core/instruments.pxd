# cython: language_level=3
"""Instrument table: Python objects for the edges, C arrays for the hot path.

Invariants:
* index i of every C array is the instrument's position in the file (and its
  ``Instrument.index``); ``n`` is the number of instruments.
* ``price_tick[i] = 10 ** (9 - display_precision[i])``: a price at PRICE_SCALE
  is valid for the instrument iff it is a multiple of its tick.
* ``base_ccy``/``quote_ccy`` index into ``currencies`` (file order of first
  appearance), so conversions can be looked up by small ints.
* Numbers are fixed-point at the scales of ``fixedpoint.pxd`` (units whole,
  margin rate at RATE_SCALE, distances at PRICE_SCALE).
"""
from libc.stdint cimport int64_t, int32_t


cdef class Instrument:
    cdef readonly int index
    cdef readonly str name
    cdef readonly str type
    cdef readonly str display_name
    cdef readonly str base
    cdef readonly str quote
    cdef readonly int display_precision
    cdef readonly int pip_location
    cdef readonly int trade_units_precision
    cdef readonly int64_t minimum_trade_size
    cdef readonly int64_t maximum_order_units
    cdef readonly int64_t maximum_position_size
    cdef readonly int64_t margin_rate
    cdef readonly int64_t minimum_trailing_stop_distance
    cdef readonly int64_t maximum_trailing_stop_distance


cdef class InstrumentTable:
    cdef readonly int n
    cdef list _items
    cdef dict _by_name
    cdef readonly tuple currencies
    cdef dict _ccy_index
    # C arrays, length n (malloc'd; freed in __dealloc__)
    cdef int32_t* display_precision
    cdef int64_t* price_tick
    cdef int64_t* minimum_trade_size
    cdef int64_t* maximum_order_units
    cdef int64_t* margin_rate
    cdef int32_t* base_ccy
    cdef int32_t* quote_ccy

    cpdef int index(self, str name) except -1
    cpdef Instrument by_index(self, int i)
