"""fastexec: a low-latency execution engine for automated FX trading on OANDA v20.

The package splits along the architecture: ``_core`` (Cython, fixed-point
state and checks), ``brokers`` (the broker interface, the OANDA adapter),
``sim`` (a venue with v20 semantics, in-process and over HTTP), and the
engine, API, journal and metrics that wire them together.
"""

__version__ = "0.1.0"

# The engine API, re-exported lazily so ``import fastexec`` stays cheap (the
# CLI and config do not need the compiled core loaded).
_ENGINE_EXPORTS = frozenset({
    "Engine", "OrderSpec", "ExitSpec", "OrderType", "Side", "TradingState", "OrderView", "PositionView",
    "AccountView", "RiskMetrics", "RiskLimitsView", "RiskDecision", "KillSwitchView", "EngineEvent",
})


def __getattr__(name):
    if name in _ENGINE_EXPORTS:
        from fastexec import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'fastexec' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_ENGINE_EXPORTS))
