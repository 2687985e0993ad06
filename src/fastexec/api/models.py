"""The request and response shapes of the REST API (seed README fields).

Request objects are ``schemas`` types: they validate bodies and render into
the OpenAPI document. Response schemas are plain JSON Schema (OpenAPI 3.0
dialect) matching the engine views' ``to_dict()``; the test suite validates
real responses against them, and schemathesis does so for every generated
request, so a view that changes shape breaks a test rather than a client.
"""
from __future__ import annotations

from fastexec.errors import ValidationError

from .schemas import Boolean, Field, Object, Price, String, Timestamp, Units

ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
INSTRUMENT_PATTERN = r"^[A-Z0-9]{2,10}_[A-Z0-9]{2,10}$"
ORDER_ID_PATTERN = r"^[A-Za-z0-9@][A-Za-z0-9_.:@\-]{0,127}$"
CLIENT_ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
REASON_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_ .:\-]{0,127}$"

ORDER_TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop", "market_if_touched", "fok", "ioc")
TIME_IN_FORCE = ("GTC", "GTD", "GFD", "FOK", "IOC")

account_id = String(max_length=64, pattern=ACCOUNT_ID_PATTERN, description="Account id (OANDA account id on OANDA).", example="101-001-0000001-001")
instrument = String(min_length=5, max_length=21, pattern=INSTRUMENT_PATTERN, description="v20 instrument name.", example="EUR_USD")
order_id = String(max_length=128, pattern=ORDER_ID_PATTERN, description="Engine order id, or a client order id.")


def _exit_check(value: dict, path: str) -> None:
    if ("price" in value) == ("distance" in value):
        raise ValidationError(f"{path} needs exactly one of price or distance", code="INVALID_VALUE", field=path)


def exit_spec(name: str, description: str, guaranteed: bool) -> Object:
    fields = {
        "price": Field(Price(description="Absolute trigger price (instrument precision).")),
        "distance": Field(Price(description="Distance from the fill price (instrument precision).")),
    }
    if guaranteed:
        fields["guaranteed"] = Field(Boolean(description="Guaranteed stop loss where the venue allows it."))
    return Object(name, fields, description=description, check=_exit_check, min_properties=1)


STOP_LOSS = exit_spec("StopLoss", "Stop loss created when the order fills: exactly one of price or distance.", True)
TAKE_PROFIT = exit_spec("TakeProfit", "Take profit created when the order fills: exactly one of price or distance.", False)

_ORDER_FIELDS = {
    "account_id": Field(account_id, required=True),
    "instrument": Field(instrument, required=True),
    "units": Field(Units(description="Positive whole units; the direction is `side`.", example=10000), required=True),
    "side": Field(String(enum=("buy", "sell"), example="buy"), required=True),
    "type": Field(String(enum=ORDER_TYPES, description="Order type; default market.", example="market")),
    "price": Field(Price(description="Limit price (limit, stop_limit, fok/ioc limit) or trigger (stop, market_if_touched).")),
    "stop_price": Field(Price(description="Trigger price of a stop_limit order.")),
    "trailing_distance": Field(Price(description="How far a trailing_stop entry trails the market.")),
    "time_in_force": Field(String(enum=TIME_IN_FORCE)),
    "gtd_time": Field(Timestamp(description="Expiry for time_in_force GTD: in the future and before 2200-01-01T00:00:00Z (else INVALID_GTD_TIME; use GTC for no expiry).")),
    "stop_loss": Field(STOP_LOSS),
    "take_profit": Field(TAKE_PROFIT),
    "trailing_stop_distance": Field(Price(description="Trailing stop loss distance created on fill.")),
    "client_order_id": Field(
        String(max_length=128, pattern=CLIENT_ORDER_ID_PATTERN, description="Your id for the order (v20 clientExtensions.id); unique per account (another account may use "
                    "the same id). It may not have the form of an engine order id (8 characters 0-9a-z, '-', digits, e.g. "
                    "mws6cffq-17): 400 RESERVED_CLIENT_ORDER_ID.")
    ),
}

ORDER_REQUEST = Object(
    "OrderRequest",
    _ORDER_FIELDS,
    description="A new order. Prices are decimal strings or JSON numbers, exact: more decimals than the instrument quotes is an error (PRECISION_EXCEEDED), never rounded.",
    example={
        "account_id": "101-001-0000001-001",
        "instrument": "EUR_USD",
        "units": 10000,
        "side": "buy",
        "type": "market",
        "stop_loss": {"price": "1.0950", "guaranteed": False},
        "take_profit": {"price": "1.1050"},
    },
)

VALIDATE_REQUEST = Object("ValidateRequest", dict(_ORDER_FIELDS), description="An order to check against the risk gateway without sending it.")

MODIFY_REQUEST = Object(
    "ModifyRequest",
    {
        "price": Field(Price(description="New limit/trigger price.")),
        "units": Field(Units(description="New total units.")),
        "stop_loss": Field(STOP_LOSS),
        "take_profit": Field(TAKE_PROFIT),
    },
    description="Changes to a working order; at least one field.",
    min_properties=1,
    example={"price": "1.0960", "units": 15000},
)

CLOSE_REQUEST = Object(
    "ClosePositionRequest",
    {
        "instrument": Field(instrument, required=True),
        "units": Field(Units(description="Units to close; omit to close the whole position.")),
        "reason": Field(String(max_length=128, pattern=REASON_PATTERN, description="Free text kept with the close.")),
        "account_id": Field(
            String(max_length=64, pattern=ACCOUNT_ID_PATTERN, description="Account; optional when the token (or the engine) has exactly one.")
        ),
    },
    description="Close all or part of a net position.",
    example={"instrument": "EUR_USD", "units": 5000, "reason": "take_profit", "account_id": "101-001-0000001-001"},
)

# ------------------------------------------------------------------ responses

_S = {"type": "string"}
_SN = {"type": "string", "nullable": True}
_DEC = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
_DECN = {**_DEC, "nullable": True}
_TS = {"type": "string", "format": "date-time"}
_TSN = {**_TS, "nullable": True}
_INT = {"type": "integer"}

EXIT_VIEW = {
    "type": "object",
    "nullable": True,
    "properties": {"price": _DEC, "distance": _DEC, "guaranteed": {"type": "boolean"}},
}

ORDER = {
    "type": "object",
    "description": "An order as the engine knows it. `order_id` is stable across broker replaces.",
    "required": ["order_id", "client_order_id", "status", "account_id", "instrument", "side", "type", "units", "filled_units", "timings"],
    "properties": {
        "order_id": _S,
        "client_order_id": _S,
        "broker_order_id": _SN,
        "status": {"type": "string", "description": "Lower-case order state (e.g. filled, working, cancelled, rejected, waiting)."},
        "account_id": _S,
        "instrument": _S,
        "side": {"type": "string", "enum": ["buy", "sell"]},
        "type": {"type": "string", "enum": list(ORDER_TYPES)},
        "units": _DEC,
        "filled_units": _DEC,
        "price": _DECN,
        "stop_price": _DECN,
        "trailing_distance": _DECN,
        "trigger_price": _DECN,
        "average_fill_price": _DECN,
        "time_in_force": _SN,
        "gtd_time": _TSN,
        "stop_loss": EXIT_VIEW,
        "take_profit": EXIT_VIEW,
        "trailing_stop_distance": _DECN,
        "created_at": _TS,
        "updated_at": _TS,
        "reject_reason": _SN,
        "request_id": _SN,
        "timings": {
            "type": "object",
            "description": "Nanoseconds spent per stage (risk, broker, total).",
            "additionalProperties": {"type": "integer"},
        },
    },
}

ORDER_LIST = {
    "type": "object",
    "required": ["orders", "next_cursor"],
    "properties": {
        "orders": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}},
        "next_cursor": {"type": "string", "nullable": True, "description": "Pass as `cursor` for the next page; null on the last page."},
    },
}

POSITION = {
    "type": "object",
    "required": ["account_id", "instrument", "side", "units"],
    "properties": {
        "account_id": _S,
        "instrument": _S,
        "side": {"type": "string", "enum": ["long", "short", "flat"]},
        "units": _DEC,
        "average_price": _DECN,
        "realized_pl": _DEC,
        "unrealized_pl": _DEC,
        "margin_used": _DEC,
        "notional": _DEC,
    },
}

POSITION_LIST = {
    "type": "object",
    "required": ["account_id", "positions", "next_cursor"],
    "properties": {
        "account_id": _S,
        "positions": {"type": "array", "items": {"$ref": "#/components/schemas/Position"}},
        "next_cursor": {"type": "string", "nullable": True},
    },
}

ACCOUNT = {
    "type": "object",
    "required": ["account_id", "currency", "balance", "trading_state", "kill_switch_active"],
    "properties": {
        "account_id": _S,
        "currency": _S,
        "balance": _DEC,
        "nav": _DEC,
        "unrealized_pl": _DEC,
        "realized_pl": _DEC,
        "margin_used": _DEC,
        "margin_available": _DEC,
        "open_positions": _INT,
        "working_orders": _INT,
        "daily_pl": _DEC,
        "trading_state": {"type": "string", "enum": ["active", "reducing", "halted"]},
        "kill_switch_active": {"type": "boolean"},
    },
}

ACCOUNT_LIST = {
    "type": "object",
    "required": ["accounts"],
    "properties": {"accounts": {"type": "array", "items": {"$ref": "#/components/schemas/Account"}}},
}

RISK_DECISION = {
    "type": "object",
    "required": ["allowed", "code", "detail", "account_id", "trading_state"],
    "description": "`allowed` false carries the gateway's denial code (e.g. MAX_POSITION_SIZE) and key=value detail.",
    "properties": {
        "allowed": {"type": "boolean"},
        "code": _S,
        "detail": _S,
        "account_id": _S,
        "trading_state": _S,
    },
}

RISK_METRICS = {
    "type": "object",
    "required": ["account_id", "risk_score", "trading_state"],
    "properties": {
        "account_id": _S,
        "exposure": _DEC,
        "net_exposure": _DEC,
        "leverage": _DEC,
        "margin_utilisation": _DEC,
        "daily_pl": _DEC,
        "daily_loss_limit": _DEC,
        "risk_score": {"type": "integer", "minimum": 0, "maximum": 100},
        "trading_state": _S,
        "working_orders": _INT,
        "open_positions": _INT,
        "trading_day_start": _TSN,
    },
}

KILL_SWITCH = {
    "type": "object",
    "required": ["account_id", "active"],
    "properties": {
        "account_id": _SN,
        "active": {"type": "boolean"},
        "reason": _SN,
        "actor": _SN,
        "activated_at": _TSN,
        "released_by": _SN,
        "released_at": _TSN,
        "cancelled_orders": {"type": "array", "items": _S},
        "flattened": {"type": "array", "items": _S},
        "cancel_failed": {
            "type": "array", "items": _S,
            "description": "Orders whose cancel did not get through (broker unreachable or refusing). They are "
                           "still working; the engine retries their cancel in the background, with backoff, "
                           "while the switch stays active.",
        },
    },
}

PERFORMANCE = {
    "type": "object",
    "required": ["engine", "api"],
    "description": "Latency percentiles (ns, most recent samples) and counters, from the engine and from the REST layer.",
    "properties": {
        "engine": {"type": "object", "additionalProperties": True},
        "api": {"type": "object", "additionalProperties": True},
    },
}

HEALTH = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "starting", "stopping"]},
        "version": _S,
        "uptime_seconds": {"type": "number"},
    },
}

HEALTH_DETAILED = {
    "type": "object",
    "required": ["status", "version", "components"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "starting", "stopping"]},
        "version": _S,
        "uptime_seconds": {"type": "number"},
        "components": {"type": "object", "additionalProperties": True},
        "process": {"type": "object", "additionalProperties": True},
    },
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable (e.g. PRECISION_EXCEEDED, MAX_POSITION_SIZE)."},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "The input to blame, as a dotted path, when there is one."},
                "detail": {"type": "string", "description": "key=value detail of a risk denial."},
            },
        }
    },
}

RESPONSE_SCHEMAS = {
    "Order": ORDER,
    "OrderList": ORDER_LIST,
    "Position": POSITION,
    "PositionList": POSITION_LIST,
    "Account": ACCOUNT,
    "AccountList": ACCOUNT_LIST,
    "RiskDecision": RISK_DECISION,
    "RiskMetrics": RISK_METRICS,
    "KillSwitch": KILL_SWITCH,
    "Performance": PERFORMANCE,
    "Health": HEALTH,
    "HealthDetailed": HEALTH_DETAILED,
    "Error": ERROR,
}
