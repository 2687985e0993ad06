"""One error model for the library and the REST API.

Every failure a caller can cause carries a stable ``code`` (what programs
branch on), a human ``message`` and, when one input is to blame, the
``field``. The REST layer turns these into 4xx bodies 1:1, which is how bad
input never becomes a 500.
"""
from __future__ import annotations

from typing import Optional


class FastexecError(Exception):
    http_status = 400
    default_code = "BAD_REQUEST"

    def __init__(self, message: str, *, code: Optional[str] = None, field: Optional[str] = None, detail: Optional[str] = None):
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.field = field
        self.detail = detail

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.detail is not None:
            body["detail"] = self.detail
        return {"error": body}


class ValidationError(FastexecError):
    http_status = 400
    default_code = "VALIDATION_ERROR"


class UnauthorizedError(FastexecError):
    http_status = 401
    default_code = "UNAUTHORIZED"


class ForbiddenError(FastexecError):
    http_status = 403
    default_code = "FORBIDDEN"


class NotFoundError(FastexecError):
    http_status = 404
    default_code = "NOT_FOUND"


class ConflictError(FastexecError):
    http_status = 409
    default_code = "CONFLICT"


class RiskDeniedError(FastexecError):
    """Denied by the risk gateway; ``code`` is the gateway's stable denial code."""

    http_status = 422
    default_code = "RISK_DENIED"


class KillSwitchActiveError(FastexecError):
    http_status = 423
    default_code = "KILL_SWITCH_ACTIVE"


class BrokerRejectedError(FastexecError):
    """The broker refused the order; ``code`` is the broker's reject reason."""

    http_status = 422
    default_code = "BROKER_REJECTED"


class BrokerUnavailableError(FastexecError):
    http_status = 503
    default_code = "BROKER_UNAVAILABLE"


class ServiceUnavailableError(FastexecError):
    """The engine cannot do its part right now (a failed or closed journal): a 503
    with a stable code, so clients and probes can tell it from bad input."""

    http_status = 503
    default_code = "SERVICE_UNAVAILABLE"
