"""The execution engine, in-process (contracts §5).

    from fastexec.engine import Engine, OrderSpec, OrderType
    engine = Engine()                 # settings from the environment, simulated venue
    await engine.start()
    view = await engine.submit(OrderSpec("101-001-0000001-001", "EUR_USD", "buy", 10_000))

Modules: ``engine`` (the Engine), ``types`` (inputs: OrderSpec, ExitSpec,
OrderType), ``views`` (frozen outputs with ``to_dict``), ``validation``
(shape checks, v20 type mapping), ``risk`` (limits, rate bucket, metrics,
risk score), ``emulation`` (stop-limit and trailing-stop entries),
``killswitch``, ``clock`` (trading day), ``journal`` (the journal seam),
``perf`` (latency rings).
"""
from .engine import STATUS, Engine
from .journal import ListJournal, NullJournal
from .types import ExitSpec, OrderSpec, OrderType, Side, TradingState
from .views import (
    AccountView,
    EngineEvent,
    KillSwitchView,
    OrderView,
    PositionView,
    RiskDecision,
    RiskLimitsView,
    RiskMetrics,
)

__all__ = [
    "STATUS",
    "AccountView",
    "Engine",
    "EngineEvent",
    "ExitSpec",
    "KillSwitchView",
    "ListJournal",
    "NullJournal",
    "OrderSpec",
    "OrderType",
    "OrderView",
    "PositionView",
    "RiskDecision",
    "RiskLimitsView",
    "RiskMetrics",
    "Side",
    "TradingState",
]
