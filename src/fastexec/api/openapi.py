"""``/openapi.json``, generated from the operation table and its schemas.

Nothing here is written by hand per endpoint: paths, parameters, request
bodies and responses all come from ``app.OPERATIONS`` and ``models``, the
same objects that validate requests. The document is OpenAPI 3.0.3.
"""
from __future__ import annotations

from typing import Any

from fastexec import __version__

from . import models as m

_ERROR_TEXT = {
    400: "Invalid input: bad JSON, wrong type, missing or unknown field, excess precision, unknown instrument.",
    401: "Missing or invalid bearer token (only when tokens are configured).",
    403: "The token may not act on this account.",
    404: "Unknown order, account or position.",
    409: "Conflict with the current state (e.g. cancel of a filled order, Idempotency-Key in use, or its result lost in a crash: IDEMPOTENCY_KEY_RESULT_LOST).",
    413: "Request body larger than 64 KiB.",
    422: "Refused by the risk gateway (code = the gateway's denial code) or by the broker; or Idempotency-Key reused with another body.",
    423: "The account's kill switch is active.",
    503: "Broker unavailable, or the service is not ready.",
}


def build_openapi(*, auth: bool = True) -> dict[str, Any]:
    """The document for a server with (``auth``) or without configured tokens:
    the served spec describes the server that serves it, so a client generator
    or fuzzer sees security requirements only where they apply."""
    from .app import OPERATIONS

    schemas: dict[str, Any] = dict(m.RESPONSE_SCHEMAS)
    for obj in (m.ORDER_REQUEST, m.VALIDATE_REQUEST, m.MODIFY_REQUEST, m.CLOSE_REQUEST):
        schemas[obj.name] = obj.schema()
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {},
        }
        if op.description:
            entry["description"] = op.description
        params = [p.openapi() for p in op.params] + [p.openapi() for p in op.headers]
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.name}"}}},
            }
        ok: dict[str, Any] = {"description": "Created" if op.ok_status == 201 else "OK"}
        if op.ok_schema:
            ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.ok_schema}"}}}
        entry["responses"][str(op.ok_status)] = ok
        errors = set(op.errors)
        if op.auth and auth:
            errors |= {401, 403}
        if op.body is not None:
            errors |= {400, 413}
        if op.params or op.headers or op.body is not None:
            errors.add(400)
        for status in sorted(errors):
            entry["responses"][str(status)] = {
                "description": _ERROR_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        entry["security"] = [{"bearer": []}] if (op.auth and auth) else []
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fastexec",
            "version": __version__,
            "description": (
                "Low-latency execution engine for FX on OANDA v20. Prices are decimal strings (or JSON numbers, read "
                "exactly from their literal text); more decimals than the instrument quotes is an error, never rounded. "
                "Errors share one shape: {\"error\": {\"code\", \"message\", \"field\"}}. Send X-Request-ID to trace a "
                "request through the logs (one is generated otherwise and returned in the response header)."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "orders"},
            {"name": "positions"},
            {"name": "accounts"},
            {"name": "risk"},
            {"name": "monitoring"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Configured with FASTEXEC_API_TOKENS (token:account1,account2 or token:*). Required on /api/v1 when any token is configured.",
                }
            },
        },
    }
