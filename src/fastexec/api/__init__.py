"""The REST API: ``create_app(engine, tokens=..., metrics=...)``.

See ``app`` for the routes, ``schemas``/``models`` for the request and
response shapes (the single source of validation and of ``/openapi.json``),
``auth`` for bearer tokens and ``idempotency`` for ``Idempotency-Key``.
"""
from .app import OPERATIONS, create_app

__all__ = ["OPERATIONS", "create_app"]
