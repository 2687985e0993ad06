"""Structured JSON logs, one object per line, with the request id.

A request id (from the client's ``X-Request-ID`` or generated) is put in a
context variable when a request arrives; every record logged while that
request is being handled, in the API or in the engine it calls, carries it,
and the engine stores it on the order, so one grep follows an order from HTTP
to the broker and back.

Secrets are scrubbed at the formatter: whatever values are registered with
``register_secret`` (API tokens, the OANDA key) are replaced by ``***``
wherever they appear in a record, so a careless ``log.info(headers)`` cannot
leak one.
"""
from __future__ import annotations

import logging
import sys
import time
import uuid
from contextvars import ContextVar
from typing import IO, Any, Iterable, Optional

import orjson

request_id_var: ContextVar[Optional[str]] = ContextVar("fastexec_request_id", default=None)

_SECRETS: set[str] = set()
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _install_record_factory() -> None:
    """Stamp each record with the request id *when it is created*: handlers
    that format later (queues, test capture) would otherwise see whatever
    request is current at format time, or none."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_fastexec", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        rid = request_id_var.get()
        if rid is not None:
            # a private name, so callers may still pass extra={"request_id": ...}
            record._request_id = rid
        return record

    factory._fastexec = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_record_factory()


def register_secret(*values: Optional[str]) -> None:
    for v in values:
        if v and len(v) >= 4:
            _SECRETS.add(v)


def new_request_id() -> str:
    return uuid.uuid4().hex


def _scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _default(obj: Any) -> Any:
    return str(obj)


class JsonFormatter(logging.Formatter):
    """``{"ts","level","logger","msg","request_id",...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or getattr(record, "_request_id", None)
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "request_id" and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        text = orjson.dumps(out, default=_default).decode()
        return _scrub(text) if _SECRETS else text


def configure_logging(level: str = "info", stream: Optional[IO[str]] = None, secrets: Iterable[Optional[str]] = ()) -> logging.Handler:
    """Route the root logger to one JSON handler at ``level``; returns it.

    aiohttp's own access log is left off: the API logs requests itself (with
    the request id and without headers, where tokens live).
    """
    register_secret(*secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_fastexec", False):
            root.removeHandler(h)
    handler._fastexec = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler
