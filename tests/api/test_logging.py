"""Structured JSON logs: one object per line, request id, secrets scrubbed."""
from __future__ import annotations

import io
import json
import logging

from fastexec.logging import JsonFormatter, configure_logging, register_secret, request_id_var


def test_json_line_with_request_id_and_extra_fields():
    stream = io.StringIO()
    root_level = logging.getLogger().level
    handler = configure_logging("debug", stream=stream)
    try:
        token = request_id_var.set("req-123")
        try:
            record = logging.getLogger("fastexec.test").makeRecord(
                "fastexec.test", logging.INFO, __file__, 1, "order submitted", (), None, extra={"order_id": "O1", "units": 5}
            )
        finally:
            request_id_var.reset(token)
        # formatted after the request ended: the id was stamped at creation
        handler.handle(record)
        line = stream.getvalue().strip().splitlines()[-1]
        rec = json.loads(line)
        assert rec["msg"] == "order submitted" and rec["request_id"] == "req-123"
        assert rec["order_id"] == "O1" and rec["units"] == 5 and rec["level"] == "info"
        assert rec["ts"].endswith("Z")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(root_level)


def test_registered_secrets_are_scrubbed():
    register_secret("super-secret-token-value")
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "headers: %s", ({"Authorization": "Bearer super-secret-token-value"},), None)
    text = JsonFormatter().format(rec)
    assert "super-secret-token-value" not in text and "***" in text
    json.loads(text)


async def test_refused_request_is_logged_with_its_request_id(api, caplog):
    caplog.set_level(logging.DEBUG)
    st, _, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(side="up"), headers={"X-Request-ID": "trace-me-1"})
    assert st == 400
    fmt = JsonFormatter()
    lines = [json.loads(fmt.format(r)) for r in caplog.records if r.name == "fastexec.api"]
    assert any(l.get("request_id") == "trace-me-1" and l.get("code") == "INVALID_VALUE" for l in lines), lines


async def test_order_log_line_carries_the_request_id(api, caplog):
    caplog.set_level(logging.DEBUG, logger="fastexec")
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(), headers={"X-Request-ID": "trace-me-2"})
    assert st == 201
    fmt = JsonFormatter()
    lines = [json.loads(fmt.format(r)) for r in caplog.records if r.name == "fastexec.api"]
    submitted = [l for l in lines if l["msg"] == "order submitted"]
    assert submitted and submitted[0]["request_id"] == "trace-me-2"
    assert submitted[0]["order_id"] == out["order_id"] and submitted[0]["status"] == "filled"
