"""fastexec: a low-latency execution engine for automated FX trading on OANDA v20.

The package splits along the architecture: ``_core`` (Cython, fixed-point
state and checks), ``brokers`` (the broker interface, the OANDA adapter),
``sim`` (a venue with v20 semantics, in-process and over HTTP), and the
engine, API, journal and metrics that wire them together.
"""

__version__ = "0.1.0"
