"""The REST service: the seed README's endpoints over one engine.

Every route is declared once as an ``Operation`` (method, path, parameters,
body schema, responses, auth); the same list registers the aiohttp routes,
drives request validation and renders ``/openapi.json``. Handlers receive
already-validated values and return ``(status, payload)``; one middleware
turns every failure into the single error model ``{"error": {"code",
"message", "field"}}`` — aiohttp's own 404/405/413 included — so bad input
can never surface as a 500.

The layer is deliberately thin: it parses, checks the caller may touch the
account, converts decimal text to fixed-point at the instrument's precision
and calls the engine. Everything about orders (which fields a type needs,
risk, state) is the engine's; its errors pass through 1:1.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

from fastexec import __version__
from fastexec._core.fixedpoint import FixedPointError, parse_price
from fastexec.engine.perf import Performance
from fastexec.engine.types import ExitSpec, OrderSpec
from fastexec.engine.wire import order_json as _order_json
from fastexec.errors import (
    BrokerUnavailableError,
    FastexecError,
    ForbiddenError,
    KillSwitchActiveError,
    NotFoundError,
    RiskDeniedError,
    ValidationError,
)
from fastexec.logging import request_id_var

from . import models as m
from .auth import ANONYMOUS, Authenticator, Principal
from .idempotency import KEY_PATTERN, MAX_KEY_LENGTH, IdempotencyStore, JournaledIdempotencyStore, check_key
from .schemas import MAX_BODY_BYTES, Object, Param, bool_param, int_param, text_param, String

log = logging.getLogger("fastexec.api")

try:  # the compiled submit hot path (api/_fast.pyx); without it the Python code below does it all
    from ._fast import OrderReader as _OrderReader, RequestIds as _RequestIds, Submitted as _Submitted
    from ._fast import SubmitPath as _SubmitPath, submit_endpoint as _submit_endpoint
except ImportError:  # pragma: no cover - not built
    _OrderReader = _Submitted = _RequestIds = _SubmitPath = _submit_endpoint = None


def _read_nothing(raw: bytes) -> None:
    return None

ENGINE_KEY = web.AppKey("fastexec_engine", object)
API_KEY = web.AppKey("fastexec_api", object)
RAW_BODY = web.RequestKey("fastexec_raw_body", bytes)

_JSON = "application/json"
_RID_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
_RID_PREFIX = os.urandom(4).hex()
# "<prefix>-1", "<prefix>-2", ...: written by the compiled counter the submit endpoint shares, else
# formatted by one C-level call per request
if _RequestIds is not None:
    _next_request_id = _RequestIds(_RID_PREFIX)
else:  # pragma: no cover - not built
    _next_request_id = map((_RID_PREFIX + "-{}").format, itertools.count(1)).__next__


def _request_id(header: Optional[str]) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a new one.

    Client ids are echoed into logs and the journal, so anything that is not a
    short token of safe characters is replaced rather than trusted.
    """
    if header and len(header) <= 128 and _RID_OK.issuperset(header):
        return header
    return _next_request_id()


# --------------------------------------------------------------------------- operations


@dataclass(slots=True)
class Ctx:
    """What a handler gets: validated parameters and body, the caller."""

    request: web.Request
    principal: Principal
    params: dict
    body: Optional[dict]
    request_id: str


Handler = Callable[["Api", Ctx], Awaitable[tuple[int, Any]]]


@dataclass
class Operation:
    method: str
    path: str
    name: str
    summary: str
    handler: Handler
    tag: str
    ok_status: int = 200
    ok_schema: Optional[str] = None
    params: list[Param] = field(default_factory=list)
    body: Optional[Object] = None
    auth: bool = True
    errors: tuple[int, ...] = (400, 401, 403, 404)
    description: str = ""
    headers: list[Param] = field(default_factory=list)


# Parameters (one definition each, shared by the routes that take them)
P_ORDER_ID = text_param(
    "order_id", "path", m.order_id,
    description="Engine order id or client order id. Engine ids (8 characters 0-9a-z, '-', digits) are a form client "
                "ids may not take, so the two never collide; a client id is looked up in the token's accounts, and one "
                "used in several of them is 409 AMBIGUOUS_ORDER_ID (use the engine id).")
P_ACCOUNT_PATH = text_param("account_id", "path", m.account_id, description="Account id.")
P_INSTRUMENT_PATH = text_param("instrument", "path", m.instrument, description="Instrument, e.g. EUR_USD.")
P_ACCOUNT_QUERY = text_param(
    "account_id", "query", m.account_id, description="Account id; optional when the token (or the engine) has exactly one account."
)
def _status_words() -> tuple[str, ...]:
    try:
        from fastexec.engine import STATUS

        return tuple(sorted(set(STATUS.values()))) + ("open",)
    except ImportError:  # pragma: no cover - engine without the table
        return ("open",)


P_STATUS = text_param(
    "status", "query", String(enum=_status_words()), description="Only orders in this state; `open` = every non-final state."
)
P_INSTRUMENT_QUERY = text_param("instrument", "query", m.instrument, description="Only this instrument.")
P_LIMIT = int_param("limit", minimum=1, maximum=1000, default=100, description="Page size.")
P_CURSOR = text_param("cursor", "query", String(max_length=128, pattern=r"^[A-Za-z0-9@][A-Za-z0-9_.:@\-]{0,127}$"), description="`next_cursor` of the previous page: a position in creation order (the page goes on after it even if its order has since been retired).")
P_REASON = text_param(
    "reason", "query", String(max_length=128, pattern=m.REASON_PATTERN), description="Why (kept with the activation); default `manual`."
)
P_FLATTEN = bool_param("flatten", default=False, description="Also close every open position of the account.")
H_IDEMPOTENCY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
    check_key,
    description="Retrying a submit with the same key returns the first result instead of placing a second order "
                "(same body required, else 422), also after a restart or a crash of the service: keys are journaled "
                "with the orders and remembered for 24 h after their first use (the newest 10,000 keys; "
                "`FASTEXEC_IDEMPOTENCY_TTL_S`, `FASTEXEC_IDEMPOTENCY_KEYS`). 400s and 5xx are not remembered.",
)


class Api:
    """Request handling state: engine, auth, idempotency, metrics."""

    def __init__(self, engine: Any, *, tokens=None, metrics: Any = None, instruments: Any = None, idempotency_max: int = 10_000) -> None:
        self.engine = engine
        self.auth = Authenticator(tokens)
        self.metrics = metrics
        keys = getattr(engine, "idempotency_keys", None)  # a JournaledEngine: keys survive restarts
        if keys is not None and callable(getattr(engine, "submit_recorded", None)):
            self.idempotency: Any = JournaledIdempotencyStore(keys, engine)
        else:
            self.idempotency = IdempotencyStore(max_entries=idempotency_max)
        self.started = time.monotonic()
        self.state = "ok"
        if instruments is None:
            instruments = getattr(engine, "instruments", None)
        if instruments is None:
            from fastexec._core.instruments import load_instruments

            instruments = load_instruments()
        self._precision = {inst.name: inst.display_precision for inst in instruments}
        self.perf = Performance()

    # ---------------------------------------------------------------- helpers
    def precision(self, instrument: str, field: str = "instrument") -> int:
        p = self._precision.get(instrument)
        if p is None:
            raise ValidationError(f"unknown instrument {instrument}", code="UNKNOWN_INSTRUMENT", field=field)
        return p

    @staticmethod
    def price(text: Optional[str], precision: int, field: str) -> Optional[int]:
        if text is None:
            return None
        try:
            return parse_price(text, precision)
        except FixedPointError as exc:
            if exc.code == "PRECISION_EXCEEDED":
                msg = f"{field} {text} has more than {precision} decimal places"
            elif exc.code == "OUT_OF_RANGE":
                msg = f"{field} {text} is out of range"
            else:
                msg = f"{field} {text!r} is not a decimal number"
            raise ValidationError(msg, code=exc.code, field=field) from None

    def exit_spec(self, raw: Optional[dict], precision: int, field: str):
        if raw is None:
            return None
        return ExitSpec(
            price=self.price(raw.get("price"), precision, field + ".price"),
            distance=self.price(raw.get("distance"), precision, field + ".distance"),
            guaranteed=raw.get("guaranteed", False),
        )

    _PRICE_FIELDS = ("price", "stop_price", "trailing_distance", "trailing_stop_distance")
    _EXIT_FIELDS = ("stop_loss", "take_profit")
    _PRICED = frozenset(_PRICE_FIELDS + _EXIT_FIELDS)

    def order_spec(self, body: dict) -> OrderSpec:
        instrument = body["instrument"]
        p = self._precision.get(instrument)
        if p is None:
            self.precision(instrument)  # raises UNKNOWN_INSTRUMENT
        get = body.get
        # positional (OrderSpec's field order): keyword parsing costs more than the call
        spec = OrderSpec(
            body["account_id"], instrument, body["side"], body["units"], get("type", "market"),
            None, None, None,  # price, stop_price, trailing_distance: set below when given
            get("time_in_force"), get("gtd_time"),
            None, None, None,  # stop_loss, take_profit, trailing_stop_distance: set below when given
            get("client_order_id"),
        )
        if self._PRICED.isdisjoint(body):  # the common market order: none of them
            return spec
        for name in self._PRICE_FIELDS:
            text = get(name)
            if text is not None:
                setattr(spec, name, self.price(text, p, name))
        for name in self._EXIT_FIELDS:
            raw = get(name)
            if raw is not None:
                setattr(spec, name, self.exit_spec(raw, p, name))
        return spec

    def resolve_account(self, principal: Principal, account_id: Optional[str]) -> str:
        """The account a request is about: explicit, else the only one the
        caller (or the engine) has. Ambiguity is a 400, not a guess."""
        if account_id is not None:
            principal.check(account_id)
            return account_id
        if principal.accounts is not None:
            if len(principal.accounts) == 1:
                return next(iter(principal.accounts))
            raise ValidationError("account_id is required: this token has several accounts", code="MISSING_FIELD", field="account_id")
        ids = list(self.engine.account_ids)
        if len(ids) == 1:
            return ids[0]
        raise ValidationError("account_id is required: the engine has several accounts", code="MISSING_FIELD", field="account_id")

    def visible_order(self, principal: Principal, order_id: str):
        """An order the caller may see. Another account's order is reported
        as not found, so ids of other accounts cannot be probed. A client
        order id is looked up in the caller's accounts only (client ids are
        unique per account)."""
        view = self.engine.get_order(self.engine.find_order_id(order_id, principal.accounts))
        if not principal.allows(view.account_id):
            raise NotFoundError(f"order {order_id} not found", code="ORDER_NOT_FOUND", field="order_id")
        return view

    # ---------------------------------------------------------------- orders
    async def submit(self, ctx: Ctx) -> tuple[int, Any]:
        body = ctx.body
        assert body is not None
        ctx.principal.check(body["account_id"])
        spec = self.order_spec(body)
        key = ctx.params.get("Idempotency-Key")
        if key is None:
            view = await self._submit(spec, ctx.request_id)
            return 201, view.to_dict()
        # idempotent path: outcome replayed byte for byte
        raw = ctx.request[RAW_BODY]
        digest = IdempotencyStore.digest(raw)
        stored = self.idempotency.begin(ctx.principal.name, key, digest)
        if stored is not None:
            status, payload = stored
            return status, _Replay(payload)
        if self.idempotency.durable:
            return await self._submit_journaled_key(spec, ctx.request_id, ctx.principal.name, key, digest)
        try:
            view = await self._submit(spec, ctx.request_id)
        except FastexecError as exc:
            if exc.http_status < 500 and exc.http_status != 400:
                self.idempotency.finish(ctx.principal.name, key, digest, exc.http_status, orjson.dumps(exc.to_dict()))
            else:
                self.idempotency.abandon(ctx.principal.name, key)
            raise
        except BaseException:
            self.idempotency.abandon(ctx.principal.name, key)
            raise
        payload = _order_json(view)
        self.idempotency.finish(ctx.principal.name, key, digest, 201, payload)
        return 201, _Replay(payload)

    async def _submit_journaled_key(self, spec, request_id: str, principal: str, key: str, digest: bytes):
        """A keyed submit on a journaled engine: the key is journaled right before the
        order, the outcome right after the engine's answer, and the answer waits for all
        of them at once (``fastexec.journal.keys``)."""
        store = self.idempotency
        keys = store.keys
        hexdigest = digest.hex()
        payloads: list[bytes] = []

        def record(view, exc) -> None:  # runs as soon as the engine answered, before the durable wait
            if exc is None:
                payload = _order_json(view)
                payloads.append(payload)
                keys.result(principal, key, hexdigest, 201, payload, view.order_id)
            elif isinstance(exc, FastexecError) and exc.http_status < 500 and exc.http_status != 400:
                keys.result(principal, key, hexdigest, exc.http_status, orjson.dumps(exc.to_dict()), None)
            else:
                keys.release(principal, key)

        t0 = time.perf_counter()
        try:
            # no await between the key record and the engine's order record (see keys.py)
            keys.begin(principal, key, hexdigest, account_id=spec.account_id, request_id=request_id,
                       client_order_id=spec.client_order_id)
            view = await self.engine.submit_recorded(spec, record, request_id=request_id)
        except FastexecError as exc:
            self._submit_failed(exc, spec, t0)
            raise
        finally:
            keys.disarm(principal, key)
            store.done(principal, key)
        self._submitted(view, spec, t0)
        return 201, _Replay(payloads[0])

    async def _submit(self, spec, request_id: str):
        t0 = time.perf_counter()
        try:
            view = await self.engine.submit(spec, request_id=request_id)
        except FastexecError as exc:
            self._submit_failed(exc, spec, t0)
            raise
        self._submitted(view, spec, t0)
        return view

    def _submit_failed(self, exc: FastexecError, spec, t0: float) -> None:
        """Metrics of a submit the engine refused (``t0``: ``perf_counter`` before it)."""
        metrics = self.metrics
        if metrics is None:
            return
        otype = spec.type if isinstance(spec.type, str) else spec.type.value
        if isinstance(exc, RiskDeniedError):
            metrics.risk_violation(spec.account_id, exc.code)
            metrics.order(otype, spec.instrument, "denied", "denied", time.perf_counter() - t0)
        elif isinstance(exc, KillSwitchActiveError):
            metrics.risk_violation(spec.account_id, "kill_switch")
            metrics.order(otype, spec.instrument, "denied", "denied", time.perf_counter() - t0)
        elif isinstance(exc, BrokerUnavailableError):
            metrics.broker_error("submit")
            metrics.order(otype, spec.instrument, "error", "error", time.perf_counter() - t0)
        elif isinstance(exc, ValidationError):
            # a malformed order is the client's bug, not an execution failure:
            # kept out of the failure-rate alert (result=~"rejected|error")
            metrics.order(otype, spec.instrument, "invalid", "invalid", time.perf_counter() - t0)
        else:
            metrics.order(otype, spec.instrument, "rejected", "rejected", time.perf_counter() - t0)

    def _submitted(self, view, spec, t0: float) -> None:
        """Log line and metrics of a submit the engine answered."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "order submitted",
                extra={
                    "order_id": view.order_id,
                    "client_order_id": view.client_order_id,
                    "broker_order_id": view.broker_order_id,
                    "status": view.status,
                    "account_id": view.account_id,
                    "instrument": view.instrument,
                    "side": view.side,
                    "units": view.units,
                    "timings": dict(view.timings),
                },
            )
        metrics = self.metrics
        if metrics is not None:
            otype = spec.type if isinstance(spec.type, str) else spec.type.value
            status = view.status
            result = "rejected" if status == "rejected" else "success"
            metrics.order(otype, spec.instrument, status, result, time.perf_counter() - t0)
            if view.average_fill_price is not None and view.price is not None and view.filled_units:
                # Reference price for slippage: the order's own limit/trigger price.
                diff = view.average_fill_price - view.price
                bp = diff * 10_000 / view.price
                metrics.slippage_bp(spec.instrument, otype, bp if view.side == "buy" else -bp)

    async def _operation(self, name: str, call: Callable[[], Awaitable[Any]], *, risk_account: Optional[str] = None) -> Any:
        """Await ``call()`` (an engine operation other than submit), counted in
        the ``operation`` metrics as success, rejected (a ``FastexecError``) or
        error. ``call`` builds its arguments inside the timed block, so a bad
        price counts as a rejected operation. With ``risk_account`` a risk
        denial is also counted as a risk violation of that account."""
        t0 = time.perf_counter()
        result = "error"
        try:
            out = await call()
            result = "success"
        except FastexecError as exc:
            result = "rejected"
            if risk_account is not None and isinstance(exc, RiskDeniedError) and self.metrics is not None:
                self.metrics.risk_violation(risk_account, exc.code)
            raise
        finally:
            if self.metrics is not None:
                self.metrics.operation(name, result, time.perf_counter() - t0)
        return out

    async def modify(self, ctx: Ctx) -> tuple[int, Any]:
        view = self.visible_order(ctx.principal, ctx.params["order_id"])
        body = ctx.body
        assert body is not None
        p = self.precision(view.instrument)
        new = await self._operation(
            "modify",
            lambda: self.engine.modify(
                view.order_id,
                price=self.price(body.get("price"), p, "price"),
                units=body.get("units"),
                stop_loss=self.exit_spec(body.get("stop_loss"), p, "stop_loss"),
                take_profit=self.exit_spec(body.get("take_profit"), p, "take_profit"),
            ),
            risk_account=view.account_id,
        )
        return 200, new.to_dict()

    async def cancel(self, ctx: Ctx) -> tuple[int, Any]:
        view = self.visible_order(ctx.principal, ctx.params["order_id"])
        new = await self._operation("cancel", lambda: self.engine.cancel(view.order_id))
        return 200, new.to_dict()

    async def get_order(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, self.visible_order(ctx.principal, ctx.params["order_id"]).to_dict()

    async def list_orders(self, ctx: Ctx) -> tuple[int, Any]:
        q = ctx.params
        account = q.get("account_id")
        if account is not None or ctx.principal.accounts is not None:
            account = self.resolve_account(ctx.principal, account)
            self.engine.account(account)  # 404 for an unknown account
        limit = q["limit"]
        try:
            orders = self.engine.list_orders(
                account_id=account, status=q.get("status"), instrument=q.get("instrument"), limit=limit + 1, after=q.get("cursor")
            )
        except ValidationError as exc:
            if exc.field == "after":  # the engine's name for our cursor
                exc.field = "cursor"
            raise
        more = len(orders) > limit
        orders = orders[:limit]
        return 200, {
            "orders": [o.to_dict() for o in orders],
            "next_cursor": orders[-1].order_id if more and orders else None,
        }

    # ---------------------------------------------------------------- positions
    async def list_positions(self, ctx: Ctx) -> tuple[int, Any]:
        account = self.resolve_account(ctx.principal, ctx.params.get("account_id"))
        positions = sorted(self.engine.positions(account), key=lambda p: p.instrument)
        cursor = ctx.params.get("cursor")
        if cursor is not None:
            positions = [p for p in positions if p.instrument > cursor]
        limit = ctx.params["limit"]
        page = positions[:limit]
        return 200, {
            "account_id": account,
            "positions": [p.to_dict() for p in page],
            "next_cursor": page[-1].instrument if len(positions) > limit else None,
        }

    async def get_position(self, ctx: Ctx) -> tuple[int, Any]:
        account = ctx.params["account_id"]
        ctx.principal.check(account)
        instrument = ctx.params["instrument"]
        self.precision(instrument)
        return 200, self.engine.position(account, instrument).to_dict()

    async def close_position(self, ctx: Ctx) -> tuple[int, Any]:
        body = ctx.body
        assert body is not None
        account = self.resolve_account(ctx.principal, body.get("account_id"))
        instrument = body["instrument"]
        self.precision(instrument)
        view = await self._operation(
            "close_position",
            lambda: self.engine.close_position(account, instrument, units=body.get("units"), reason=body.get("reason", "")),
        )
        return 200, view.to_dict()

    async def list_accounts(self, ctx: Ctx) -> tuple[int, Any]:
        ids = [a for a in self.engine.account_ids if ctx.principal.allows(a)]
        return 200, {"accounts": [self.engine.account(a).to_dict() for a in ids]}

    # ---------------------------------------------------------------- risk
    async def validate(self, ctx: Ctx) -> tuple[int, Any]:
        body = ctx.body
        assert body is not None
        ctx.principal.check(body["account_id"])
        decision = self.engine.validate(self.order_spec(body))
        return 200, decision.to_dict()

    async def kill_switch_on(self, ctx: Ctx) -> tuple[int, Any]:
        account = ctx.params["account_id"]
        ctx.principal.check(account)
        self.engine.account(account)  # 404 for an unknown account
        reason = ctx.params.get("reason") or "manual"
        view = await self.engine.activate_kill_switch(account, reason=reason, actor=ctx.principal.name, flatten=ctx.params["flatten"])
        if self.metrics is not None:
            self.metrics.kill_switch_seen(view)
        log.warning("kill switch activated", extra={"account_id": account, "reason": reason, "actor": ctx.principal.name})
        return 200, view.to_dict()

    async def global_kill_switch_on(self, ctx: Ctx) -> tuple[int, Any]:
        self._require_all_accounts(ctx.principal)
        reason = ctx.params.get("reason") or "manual"
        view = await self.engine.activate_kill_switch(None, reason=reason, actor=ctx.principal.name, flatten=ctx.params["flatten"])
        if self.metrics is not None:
            self.metrics.kill_switch_seen(view)
        log.warning("global kill switch activated", extra={"reason": reason, "actor": ctx.principal.name})
        return 200, view.to_dict()

    async def global_kill_switch_off(self, ctx: Ctx) -> tuple[int, Any]:
        self._require_all_accounts(ctx.principal)
        view = await self.engine.release_kill_switch(None, actor=ctx.principal.name)
        log.warning("global kill switch released", extra={"actor": ctx.principal.name})
        return 200, view.to_dict()

    @staticmethod
    def _require_all_accounts(principal: Principal) -> None:
        if principal.accounts is not None:
            raise ForbiddenError("the global kill switch needs a token for all accounts ('*')", code="FORBIDDEN")

    async def kill_switch_off(self, ctx: Ctx) -> tuple[int, Any]:
        account = ctx.params["account_id"]
        ctx.principal.check(account)
        self.engine.account(account)
        view = await self.engine.release_kill_switch(account, actor=ctx.principal.name)
        log.warning("kill switch released", extra={"account_id": account, "actor": ctx.principal.name})
        return 200, view.to_dict()

    async def risk_metrics(self, ctx: Ctx) -> tuple[int, Any]:
        account = ctx.params["account_id"]
        ctx.principal.check(account)
        return 200, self.engine.risk_metrics(account).to_dict()

    async def performance(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, {"engine": self.engine.performance(), "api": self.perf.snapshot()}

    # ---------------------------------------------------------------- health
    def _uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)

    async def health(self, ctx: Ctx) -> tuple[int, Any]:
        status = self.state
        return (200 if status == "ok" else 503), {"status": status, "version": __version__, "uptime_seconds": self._uptime()}

    async def health_detailed(self, ctx: Ctx) -> tuple[int, Any]:
        from fastexec.metrics import rss_bytes

        engine = self.engine
        components: dict[str, Any] = {}
        health = getattr(engine, "health", None)
        if callable(health):
            try:
                components["engine"] = health()
            except Exception as exc:  # health must answer even when a part is sick
                components["engine"] = {"ok": False, "error": type(exc).__name__}
        broker = getattr(engine, "broker", None)
        components.setdefault("broker", {"name": getattr(broker, "name", None)})
        ids = list(engine.account_ids)
        halted = sum(1 for a in ids if engine.account(a).kill_switch_active)
        components["accounts"] = {"count": len(ids), "kill_switches_active": halted}
        components["api"] = {
            "auth": "bearer" if self.auth.enabled else "none",
            "idempotency_entries": len(self.idempotency),
        }
        status = self.state
        if status == "ok" and isinstance(components.get("engine"), dict) and components["engine"].get("ok") is False:
            status = "degraded"
        return (200 if status == "ok" else 503), {
            "status": status,
            "version": __version__,
            "uptime_seconds": self._uptime(),
            "components": components,
            "process": {"pid": os.getpid(), "rss_bytes": rss_bytes()},
        }


class _Replay:
    """An already-serialised payload (idempotent replays are byte-identical)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


_ORDER_ERRORS = (400, 401, 403, 404, 409, 413, 422, 423, 503)

OPERATIONS: list[Operation] = [
    Operation("POST", "/api/v1/orders", "submitOrder", "Submit an order", Api.submit, "orders", 201, "Order",
              body=m.ORDER_REQUEST, errors=_ORDER_ERRORS, headers=[H_IDEMPOTENCY],
              description="Risk-checks, journals and routes the order; answers with the engine's view of it "
                          "(order id, status, fill details, timings). Risk denials are 422 with the gateway's code; "
                          "an active kill switch is 423."),
    Operation("GET", "/api/v1/orders", "listOrders", "List orders", Api.list_orders, "orders", 200, "OrderList",
              params=[P_ACCOUNT_QUERY, P_STATUS, P_INSTRUMENT_QUERY, P_LIMIT, P_CURSOR],
              description="In creation order (oldest first); paginate with `limit` and `cursor` (the previous page's `next_cursor`)."),
    Operation("GET", "/api/v1/orders/{order_id}", "getOrder", "Get an order", Api.get_order, "orders", 200, "Order",
              params=[P_ORDER_ID], errors=(400, 401, 403, 404, 409)),
    Operation("PUT", "/api/v1/orders/{order_id}/modify", "modifyOrder", "Modify a working order", Api.modify, "orders", 200, "Order",
              params=[P_ORDER_ID], body=m.MODIFY_REQUEST, errors=(400, 401, 403, 404, 409, 413, 422, 423, 503)),
    Operation("PUT", "/api/v1/orders/{order_id}/cancel", "cancelOrder", "Cancel a working order", Api.cancel, "orders", 200, "Order",
              params=[P_ORDER_ID], errors=(400, 401, 403, 404, 409, 503)),
    Operation("GET", "/api/v1/positions", "listPositions", "Open positions of an account", Api.list_positions, "positions", 200,
              "PositionList", params=[P_ACCOUNT_QUERY, P_LIMIT, P_CURSOR]),
    Operation("GET", "/api/v1/positions/{account_id}/{instrument}", "getPosition", "One position", Api.get_position, "positions",
              200, "Position", params=[P_ACCOUNT_PATH, P_INSTRUMENT_PATH]),
    Operation("POST", "/api/v1/positions/close", "closePosition", "Close all or part of a position", Api.close_position,
              "positions", 200, "Position", body=m.CLOSE_REQUEST, errors=(400, 401, 403, 404, 409, 413, 422, 423, 503)),
    Operation("GET", "/api/v1/accounts", "listAccounts", "Accounts this token may use", Api.list_accounts, "accounts", 200,
              "AccountList", errors=(400, 401)),
    Operation("POST", "/api/v1/risk/validate", "validateOrder", "Check an order against the risk gateway (nothing is sent)",
              Api.validate, "risk", 200, "RiskDecision", body=m.VALIDATE_REQUEST, errors=(400, 401, 403, 404, 413, 422)),
    Operation("POST", "/api/v1/risk/{account_id}/kill-switch", "activateKillSwitch", "Activate an account's kill switch",
              Api.kill_switch_on, "risk", 200, "KillSwitch", params=[P_ACCOUNT_PATH, P_REASON, P_FLATTEN],
              errors=(400, 401, 403, 404, 503),
              description="Halts new orders and cancels working ones (and closes positions with flatten=true)."),
    Operation("DELETE", "/api/v1/risk/{account_id}/kill-switch", "releaseKillSwitch", "Release an account's kill switch",
              Api.kill_switch_off, "risk", 200, "KillSwitch", params=[P_ACCOUNT_PATH], errors=(400, 401, 403, 404, 409)),
    Operation("POST", "/api/v1/risk/kill-switch", "activateGlobalKillSwitch", "Activate the kill switch of every account",
              Api.global_kill_switch_on, "risk", 200, "KillSwitch", params=[P_REASON, P_FLATTEN], errors=(400, 401, 403, 503),
              description="Halts every account at once. Needs a token for all accounts (`*`) when tokens are configured."),
    Operation("DELETE", "/api/v1/risk/kill-switch", "releaseGlobalKillSwitch", "Release the global kill switch",
              Api.global_kill_switch_off, "risk", 200, "KillSwitch", errors=(400, 401, 403, 409)),
    Operation("GET", "/api/v1/risk/{account_id}/metrics", "riskMetrics", "Risk metrics of an account", Api.risk_metrics, "risk",
              200, "RiskMetrics", params=[P_ACCOUNT_PATH]),
    Operation("GET", "/api/v1/performance/metrics", "performanceMetrics", "Latency percentiles and counters", Api.performance,
              "monitoring", 200, "Performance", errors=(400, 401)),
    Operation("GET", "/health", "health", "Liveness and readiness", Api.health, "monitoring", 200, "Health", auth=False,
              errors=(400, 503)),
    Operation("GET", "/health/detailed", "healthDetailed", "Component health", Api.health_detailed, "monitoring", 200,
              "HealthDetailed", auth=False, errors=(400, 503)),
]


# --------------------------------------------------------------------------- wiring
#
# No aiohttp middleware: each route's handler is one coroutine (``_bind``)
# that does what a middleware would (request id, the error model, the
# request counter) around the operation, so aiohttp's middleware chain (two
# extra coroutine layers per request) never runs. Requests that match no
# route reach ``_Unmatched``, a catch-all resource registered last, which
# answers aiohttp's own 404/405 (same ``Allow``) in the error model.

_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
_WWW_AUTHENTICATE = 'Bearer realm="fastexec"'
# header names as istr: CIMultiDict looks these up without case-folding them per request
_H_REQUEST_ID = istr("X-Request-ID")
_H_IDEMPOTENCY_KEY = istr("Idempotency-Key")
_H_AUTHORIZATION = hdrs.AUTHORIZATION
_dumps = orjson.dumps
_perf_ns = time.perf_counter_ns
_perf_s = time.perf_counter
_Response = web.Response
# False: the submit route runs the Python endpoint (the reference the compiled one is tested against)
_COMPILED_SUBMIT = True


def _respond_general(status: int, body: bytes, rid: str) -> web.Response:
    return _Response(body=body, status=status, headers={"Content-Type": _JSON, "X-Request-ID": rid})


# A JSON response without running ``web.Response.__init__`` (~12k
# instructions of argument checks per response, a fifth of what the REST
# layer adds to a submit). Per status, the attributes ``__init__`` leaves on
# the instance are taken from a real ``web.Response`` once; each response is
# then those attributes plus its own headers, body and state dict. The
# shortcut is used only while a freshly built response and a real one have
# identical attributes (checked per status when its template is made), so an
# aiohttp that initialises anything else falls back to ``web.Response``.
_RESPONSE_TEMPLATES: dict[int, Optional[dict]] = {}
_new_object = object.__new__


def _response_template(status: int) -> Optional[dict]:
    real = _Response(body=b"{}", status=status, headers={"Content-Type": _JSON, "X-Request-ID": "x"})
    template = {k: v for k, v in vars(real).items() if k not in ("_state", "_headers", "_body")}
    lean = _new_object(_Response)
    d = lean.__dict__
    d.update(template)
    d["_state"] = {}
    headers = d["_headers"] = _JSON_HEADERS.copy()
    headers.add(_H_REQUEST_ID, "x")
    d["_body"] = b"{}"
    same = (
        # shared by every response: only immutable values may be copied
        all(v is None or type(v) in (bool, int, float, str, bytes) for v in template.values())
        and vars(lean).keys() == vars(real).keys()
        and all(v == vars(real)[k] for k, v in template.items())
        and real._state == {}
        and type(real._headers) is CIMultiDict
        and list(real._headers.items()) == list(lean._headers.items())
        and real._body == b"{}"
        and (lean.status, lean.reason, lean.body, lean.content_type) == (real.status, real.reason, real.body, real.content_type)
    )
    _RESPONSE_TEMPLATES[status] = template if same else None
    return template if same else None


def _respond(status: int, body: bytes, rid: str) -> web.Response:
    """``web.Response(body=body, status=status, headers={"Content-Type":
    "application/json", "X-Request-ID": rid})``, built cheaply (see above)."""
    template = _RESPONSE_TEMPLATES.get(status, _MISSING)
    if template is _MISSING:
        template = _response_template(status)
    if template is None:
        return _respond_general(status, body, rid)
    resp = _new_object(_Response)
    d = resp.__dict__
    d.update(template)
    d["_state"] = {}
    headers = d["_headers"] = _JSON_HEADERS.copy()  # the same two headers, in the same order, as above
    headers.add(_H_REQUEST_ID, rid)
    d["_body"] = body
    return resp


_MISSING = object()
_JSON_HEADERS = CIMultiDict({"Content-Type": _JSON})


def _error_response(exc: Exception, request: web.Request, rid: str) -> web.Response:
    """The error model for whatever a handler raised; called in its ``except``
    block (so ``log.exception`` has the traceback). HTTP exceptions below 400
    (redirects) are re-raised for aiohttp to send."""
    if isinstance(exc, FastexecError):
        status = exc.http_status
        headers = {"WWW-Authenticate": _WWW_AUTHENTICATE} if status == 401 else {}
        if status >= 500:
            log.warning("request failed", extra={"code": exc.code, "path": request.path, "status": status})
        elif log.isEnabledFor(logging.INFO):
            log.info("request refused", extra={"code": exc.code, "path": request.path, "status": status, "method": request.method})
        payload = exc.to_dict()
    elif isinstance(exc, web.HTTPException):
        status = exc.status
        if status < 400:
            raise exc
        code = _HTTP_CODES.get(status, "HTTP_%d" % status)
        if status == 404:
            message = f"no such endpoint: {request.method} {request.path[:200]}"
        elif status == 405:
            message = f"method {request.method} not allowed on {request.path[:200]}; allowed: {exc.headers.get('Allow', '')}"
        elif status == 413:
            message = f"request body larger than {MAX_BODY_BYTES} bytes"
        else:
            message = exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        payload = {"error": {"code": code, "message": message}}
    else:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        status = 500
        headers = {}
        payload = {"error": {"code": "INTERNAL_ERROR", "message": "internal error; see the server log for request " + rid}}
    headers["Content-Type"] = _JSON
    headers["X-Request-ID"] = rid
    return _Response(body=_dumps(payload), status=status, headers=headers)


class _HttpCount:
    """``execution_http_requests`` for one route and method: children by status."""

    __slots__ = ("metrics", "route", "method", "children")

    def __init__(self, metrics: Any, route: str, method: str) -> None:
        self.metrics = metrics
        self.route = route
        self.method = method
        self.children: dict[int, Any] = {}

    def child(self, status: int) -> Any:
        c = self.children[status] = self.metrics.http_counter(self.route, self.method, status)
        return c


def _wrap(api: Api, route: str, method: Optional[str], handle: Callable[[web.Request, str], Awaitable[web.StreamResponse]]):
    """A route handler doing the request id, error model and request counter
    around ``handle(request, rid)``, for routes that are not an ``Operation``
    (``method`` None: count under the request's own method)."""
    metrics = api.metrics
    count = _HttpCount(metrics, route, method) if metrics is not None and method is not None else None

    async def endpoint(request: web.Request) -> web.StreamResponse:
        rid = _request_id(request.headers.get("X-Request-ID"))
        token = request_id_var.set(rid)
        try:
            try:
                resp = await handle(request, rid)
            except Exception as exc:
                resp = _error_response(exc, request, rid)
            status = resp.status
            if count is not None:
                (count.children.get(status) or count.child(status)).inc()
            elif metrics is not None:
                metrics.http(route, request.method, status)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("request", extra={"method": request.method, "path": request.path, "status": status})
            return resp
        finally:
            request_id_var.reset(token)

    return endpoint


def _bind(api: Api, op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    path_params = [p for p in op.params if p.where == "path"]
    query_params = {p.name: p for p in op.params if p.where == "query"}
    query_defaults = {p.name: p.default for p in query_params.values() if p.default is not None}
    header_params = op.headers
    body_schema = op.body
    handler = op.handler
    auth = api.auth
    needs_auth = op.auth
    perf_ring = api.perf.ring(f"{op.method} {op.path}")
    metrics = api.metrics
    count = _HttpCount(metrics, op.path, op.method) if metrics is not None else None
    debug = logging.DEBUG

    async def operate(request: web.Request, headers: Any, rid: str) -> tuple[int, Any]:
        """Validate the request's parameters and body, then run the handler."""
        principal = auth.authenticate(headers.get(_H_AUTHORIZATION)) if needs_auth else ANONYMOUS
        params: dict = dict(query_defaults) if query_defaults else {}
        if path_params:
            info = request.match_info
            for p in path_params:
                params[p.name] = p.parse_text(info[p.name])
        if request.query_string:
            query = request.query
            for name in query.keys():
                p = query_params.get(name)
                if p is None:
                    raise ValidationError(
                        f"unknown query parameter {name[:40]}" + (f"; allowed: {', '.join(query_params)}" if query_params else ""),
                        code="UNKNOWN_PARAMETER",
                        field=name[:64],
                    )
                values = query.getall(name)
                if len(values) > 1:
                    raise ValidationError(f"query parameter {name} given more than once", code="INVALID_VALUE", field=name)
                params[name] = p.parse_text(values[0])
        for h in header_params:
            value = headers.get(h.name)
            if value is not None:
                params[h.name] = h.parse_text(value)
        body = None
        if body_schema is not None:
            # Content-Type is not enforced: `curl -d` sends form-urlencoded by
            # default and the body must parse as a JSON object regardless.
            raw = await request.read()
            if len(raw) > MAX_BODY_BYTES:  # pragma: no cover - client_max_size answers first
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(raw))
            request[RAW_BODY] = raw
            body = body_schema.parse_json(raw)
        elif request.body_exists:
            raw = await request.read()
            if raw.strip() not in (b"", b"{}", b"null"):
                raise ValidationError("this endpoint takes no request body", code="UNEXPECTED_BODY")
        return await handler(api, Ctx(request, principal, params, body, rid))

    if handler is not Api.submit:

        async def endpoint(request: web.Request) -> web.StreamResponse:
            t0 = _perf_ns()
            headers = request.headers
            rid = headers.get(_H_REQUEST_ID)
            if not rid or len(rid) > 128 or not _RID_OK.issuperset(rid):
                rid = _next_request_id()
            token = request_id_var.set(rid)
            try:
                try:
                    status, payload = await operate(request, headers, rid)
                    resp = _respond(status, payload.raw if type(payload) is _Replay else _dumps(payload), rid)
                    perf_ring.add(_perf_ns() - t0)
                except Exception as exc:
                    resp = _error_response(exc, request, rid)
                if count is not None:
                    status = resp.status
                    (count.children.get(status) or count.child(status)).value += 1
                if log.isEnabledFor(debug):
                    log.debug("request", extra={"method": request.method, "path": request.path, "status": resp.status})
                return resp
            finally:
                request_id_var.reset(token)

    else:
        # The order hot path. A submit with no query string and no
        # Idempotency-Key (the common case) runs the steps of ``operate`` +
        # ``Api.submit`` in the same order, inlined into this one coroutine:
        # authenticate, read, validate (``parse_json``), check the account,
        # build the spec, submit. Anything else goes through ``operate``.
        assert not path_params and not query_params and [h.name for h in header_params] == ["Idempotency-Key"], op.path
        check_body = body_schema.parse_json
        order_spec = api.order_spec
        read_order = _OrderReader(body_schema, api._precision) if _OrderReader is not None else _read_nothing
        engine = api.engine
        # compiled Api._submitted for a known kind of order without debug logging (else the method itself)
        submitted = _Submitted(api._submitted, log, api.metrics) if _Submitted is not None else api._submitted
        submit_failed = api._submit_failed
        auth_on = auth.enabled

        async def general(request: web.Request, headers: Any, rid: str) -> tuple[int, bytes]:
            status, payload = await operate(request, headers, rid)
            return status, payload.raw if type(payload) is _Replay else _dumps(payload)

        async def endpoint(request: web.Request) -> web.StreamResponse:
            t0 = _perf_ns()
            headers = request.headers
            rid = headers.get(_H_REQUEST_ID)
            if not rid or len(rid) > 128 or not _RID_OK.issuperset(rid):
                # client ids are echoed into logs and the journal: anything but a
                # short token of safe characters is replaced, not trusted
                rid = _next_request_id()
            token = request_id_var.set(rid)
            try:
                try:
                    # "?" in the target: a query string, even an empty one (operate
                    # answers those as before); raw_path is cheaper than query_string
                    if "?" in request.raw_path or _H_IDEMPOTENCY_KEY in headers:
                        status, body = await general(request, headers, rid)
                    else:
                        principal = auth.authenticate(headers.get(_H_AUTHORIZATION)) if auth_on else ANONYMOUS
                        content = request.content
                        if content.is_eof():
                            # the whole body is here (the parser feeds EOF after the last
                            # byte): the bytes request.read() returns, without its loop
                            raw = content.read_nowait()
                        else:
                            raw = await request.read()
                        if len(raw) > MAX_BODY_BYTES:  # what request.read() raises for a body it reads itself
                            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(raw))
                        spec = read_order(raw)  # compiled: the spec, or None when unsure
                        if spec is None:
                            order = check_body(raw)
                            if principal.accounts is not None:
                                principal.check(order["account_id"])
                            spec = order_spec(order)
                        elif principal.accounts is not None:
                            # read_order takes only known instruments: order_spec would not raise
                            principal.check(spec.account_id)
                        t1 = _perf_s()  # Api._submit, inlined
                        try:
                            view = await engine.submit(spec, request_id=rid)
                        except FastexecError as exc:
                            submit_failed(exc, spec, t1)
                            raise
                        submitted(view, spec, t1)
                        status, body = 201, _order_json(view)  # orjson.dumps(view.to_dict()), written directly
                    resp = _respond(status, body, rid)
                    perf_ring.add(_perf_ns() - t0)
                except Exception as exc:
                    resp = _error_response(exc, request, rid)
                if count is not None:
                    status = resp.status
                    (count.children.get(status) or count.child(status)).value += 1
                if log.isEnabledFor(debug):
                    log.debug("request", extra={"method": request.method, "path": request.path, "status": resp.status})
                return resp
            finally:
                request_id_var.reset(token)

    route_handler = endpoint
    if handler is Api.submit and _submit_endpoint is not None and _COMPILED_SUBMIT and type(submitted) is _Submitted:
        # the same endpoint compiled (api/_fast.pyx); the one above is its reference
        sp = _SubmitPath()
        sp.read_order, sp.check_body, sp.order_spec, sp.engine = read_order, check_body, order_spec, engine
        sp.submitted, sp.submit_failed, sp.fastexec_error = submitted, submit_failed, FastexecError
        sp.auth, sp.auth_on, sp.anonymous = auth, auth_on, ANONYMOUS
        sp.general, sp.error_response, sp.respond = general, _error_response, _respond
        sp.template, sp.response_cls, sp.json_headers = _RESPONSE_TEMPLATES.get(201) or _response_template(201), _Response, _JSON_HEADERS
        sp.h_request_id, sp.h_idempotency, sp.h_authorization = _H_REQUEST_ID, _H_IDEMPOTENCY_KEY, _H_AUTHORIZATION
        sp.too_large, sp.max_body, sp.log, sp.request_id_var = web.HTTPRequestEntityTooLarge, MAX_BODY_BYTES, log, request_id_var
        sp.ids, sp.perf_ring = _next_request_id, perf_ring
        if count is not None:
            sp.children, sp.child = count.children, count.child
        route_handler = _submit_endpoint(sp)
    route_handler.__name__ = op.name
    return route_handler


class _Unmatched(web.DynamicResource):
    """Catch-all resource, registered last: every request no route matched.

    aiohttp's router tries it only after every other resource (its index key
    is "/", the last prefix walked), so it sees exactly the requests aiohttp
    would answer with its own 404/405; ``_unmatched`` rebuilds that answer
    (the union of the methods of the resources whose path matched, sorted, as
    ``Allow``) in the error model.
    """

    def __init__(self) -> None:
        super().__init__("/{path:.*}")

    def _match(self, path: str) -> dict[str, str]:
        return {}


async def _unmatched(request: web.Request, rid: str) -> web.StreamResponse:
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if isinstance(resource, _Unmatched):
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def create_app(
    engine: Any,
    *,
    tokens=None,
    metrics: Any = None,
    instruments: Any = None,
    idempotency_max: int = 10_000,
) -> web.Application:
    """The REST application over a started engine.

    ``tokens`` is ``Settings.api_tokens`` (token -> accounts, ``*`` = all);
    ``metrics`` a ``fastexec.metrics.Metrics`` or None.
    """
    api = Api(engine, tokens=tokens, metrics=metrics, instruments=instruments, idempotency_max=idempotency_max)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[API_KEY] = api
    app[ENGINE_KEY] = engine
    router = app.router
    for op in OPERATIONS:
        route = router.add_route(op.method, op.path, _bind(api, op))
        # the request counter's route label is the resource's canonical path
        assert route.resource is not None and route.resource.canonical == op.path, op.path

    from .docs import docs_handler
    from .openapi import build_openapi

    spec_bytes = orjson.dumps(build_openapi(auth=api.auth.enabled))

    async def openapi_json(request: web.Request, rid: str) -> web.Response:
        return _Response(body=spec_bytes, headers={"Content-Type": _JSON, "X-Request-ID": rid})

    async def docs(request: web.Request, rid: str) -> web.StreamResponse:
        resp = await docs_handler(request)
        resp.headers["X-Request-ID"] = rid
        return resp

    for path, handle in (("/openapi.json", openapi_json), ("/docs", docs)):
        for method in ("HEAD", "GET"):  # as add_get(allow_head=True)
            router.add_route(method, path, _wrap(api, path, method, handle))
    unmatched = _Unmatched()
    router.register_resource(unmatched)
    unmatched.add_route("*", _wrap(api, "unmatched", None, _unmatched))
    return app
