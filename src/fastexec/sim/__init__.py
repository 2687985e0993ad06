"""Simulated OANDA v20 venue: in-process model, v20 HTTP face, fault injection.

``Venue`` is the model; ``SimulatedBroker`` puts it behind the engine's
``Broker`` interface; ``V20Sim``/``SimServer`` put it behind the v20 REST API
and streams; ``FaultConfig`` makes the HTTP face misbehave on purpose.
"""
from .faults import FaultConfig, Stats
from .venue import Order, OnFill, Result, SimReject, Venue

__all__ = ["FaultConfig", "Stats", "Venue", "Order", "OnFill", "Result", "SimReject"]
