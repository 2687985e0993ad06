"""The v20 HTTP face of the simulated venue (aiohttp), plus ``fastexec sim``.

It speaks the v20 REST API and both streams on one port (paths start /v3),
so the OANDA adapter — and OANDA's own client libraries — can be tested over
real HTTP against the same venue model the engine uses in-process. Faults
(``FaultConfig``) sit in one middleware in front of every route; ``Stats``
records each request and each new connection so tests can check a client's
request and connection rates.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any, Optional

import orjson
from aiohttp import web

from .faults import FaultConfig, RequestRecord, SlidingWindow, Stats
from .parse import BadRequest, ParseReject, order_type_of, parse_close_units, parse_details_map, parse_order
from .render import fmt_time, render_account, render_instrument, render_order, render_position, render_price, \
    render_trade, render_txn
from .venue import DEFAULT_HISTORY, DEPENDENT_TYPES, Result, SimReject, Venue

AUTH_ERROR = {"errorMessage": "Insufficient authorization to perform request."}
FORBIDDEN = {"errorMessage": "The provided request was forbidden."}
DEFAULT_TOKEN = "sim-token"

SIM_KEY = web.AppKey("sim", object)


class HTTPError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status = status
        self.body = body


def _dumps(d: Any) -> bytes:
    return orjson.dumps(d)


def json_response(status: int, body: dict, headers: Optional[dict] = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


class _RefuseProtocol(asyncio.Protocol):
    """A connection over the new-connection limit: refused as soon as it opens."""

    def __init__(self, with_429: bool):
        self.with_429 = with_429

    def connection_made(self, transport) -> None:
        if self.with_429:
            body = _dumps({"errorMessage": "Too many new connections"})
            transport.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            transport.close()
        else:
            transport.abort()


class V20Sim:
    """One simulator instance: venue + faults + stats + the aiohttp app.

    ``tick_interval`` (seconds) drives the venue's random walk from a
    background task; None leaves prices still, so tests move them
    themselves with ``venue.set_price`` and get deterministic triggers.
    """

    def __init__(self, venue: Venue, *, token: str = DEFAULT_TOKEN, faults: Optional[FaultConfig] = None,
                 tick_interval: Optional[float] = None):
        self.venue = venue
        self.token = token
        self.faults = faults or FaultConfig()
        self.stats = Stats()
        self.tick_interval = tick_interval
        self._req_window = SlidingWindow()
        self._conn_window = SlidingWindow()
        self._active_streams = 0
        self._closing: Optional[asyncio.Event] = None
        self._stream_tasks: set = set()
        self._late_tasks: set = set()  # requests answered 5xx, applied later (error_apply_delay)
        self._stream_transports: set = set()
        self.app = self._make_app()
        self._runner: Optional[web.AppRunner] = None
        self._server = None
        self._ticker: Optional[asyncio.Task] = None
        self.host = "127.0.0.1"
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        handler = self._runner.server
        loop = asyncio.get_running_loop()

        def factory():
            now = time.monotonic()
            f = self.faults
            if not self._conn_window.admit(f.connection_rate_limit, now):
                self.stats.rejected_connections.append(now)
                return _RefuseProtocol(f.connection_reject_with_429)
            self.stats.connections.append(now)
            return handler()

        self._server = await loop.create_server(factory, host, port, reuse_address=True)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        if self.tick_interval:
            self._ticker = asyncio.create_task(self._tick_loop(self.tick_interval))

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        for t in list(self._stream_transports):
            t.abort()
        for task in list(self._stream_tasks) + list(self._late_tasks):  # shutdown must not wait on them
            task.cancel()
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()
            self._runner = None
        self._server = None

    async def _tick_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.venue.tick()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ app

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_mw, self._error_mw], client_max_size=1 << 20)
        app[SIM_KEY] = self
        r = app.router
        A = "/v3/accounts/{aid}"
        r.add_get("/v3/accounts", self.list_accounts)
        r.add_get(A, self.get_account)
        r.add_get(A + "/summary", self.get_summary)
        r.add_get(A + "/instruments", self.get_instruments)
        r.add_get(A + "/changes", self.get_changes)
        r.add_patch(A + "/configuration", self.configure)
        r.add_post(A + "/orders", self.create_order)
        r.add_get(A + "/orders", self.list_orders)
        r.add_get(A + "/pendingOrders", self.pending_orders)
        r.add_get(A + "/orders/{spec}", self.get_order)
        r.add_put(A + "/orders/{spec}", self.replace_order)
        r.add_put(A + "/orders/{spec}/cancel", self.cancel_order)
        r.add_put(A + "/orders/{spec}/clientExtensions", self.order_client_extensions)
        r.add_get(A + "/trades", self.list_trades)
        r.add_get(A + "/openTrades", self.open_trades)
        r.add_get(A + "/trades/{spec}", self.get_trade)
        r.add_put(A + "/trades/{spec}/close", self.close_trade)
        r.add_put(A + "/trades/{spec}/orders", self.trade_orders)
        r.add_put(A + "/trades/{spec}/clientExtensions", self.trade_client_extensions)
        r.add_get(A + "/positions", self.list_positions)
        r.add_get(A + "/openPositions", self.open_positions)
        r.add_get(A + "/positions/{instrument}", self.get_position)
        r.add_put(A + "/positions/{instrument}/close", self.close_position)
        r.add_get(A + "/pricing", self.pricing)
        r.add_get(A + "/pricing/stream", self.pricing_stream)
        r.add_get(A + "/transactions", self.list_transactions)
        r.add_get(A + "/transactions/idrange", self.txn_idrange)
        r.add_get(A + "/transactions/sinceid", self.txn_sinceid)
        r.add_get(A + "/transactions/stream", self.txn_stream)
        r.add_get(A + "/transactions/{tid}", self.get_transaction)
        return app

    def _late(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._late_tasks.add(task)
        task.add_done_callback(self._late_tasks.discard)

    @staticmethod
    async def _apply_later(handler, request: web.Request, delay: float) -> None:
        """Apply a request whose client was already answered (its body was
        read first, so the handler works on the finished request)."""
        await asyncio.sleep(delay)
        await handler(request)

    def _render_txn(self, acct, t, unix: bool) -> dict:
        d = render_txn(self.venue, acct, t, unix)
        over = self.faults.txn_overrides.get(t.id)
        if over:
            d.update(over)
        return d

    @web.middleware
    async def _fault_mw(self, request: web.Request, handler):
        now = time.monotonic()
        rec = RequestRecord(now, request.method, request.path)
        self.stats.requests.append(rec)
        f = self.faults
        if not self._req_window.admit(f.rate_limit, now):
            rec.status, rec.fault = 429, "429"
            return json_response(429, {"errorMessage": f"Rate limit violation. Allowed rate: {f.rate_limit} "
                                                       "requests per second"}, {"Retry-After": "1"})
        d = f.delay()
        if d > 0:
            rec.delay = d
            await asyncio.sleep(d)
        if request.headers.get("Authorization") != "Bearer " + self.token:
            rec.status = 401
            return json_response(401, AUTH_ERROR)
        stream = request.path.endswith("/stream")
        if f.matches(request.method, request.path):
            if f.take_error():
                rec.status, rec.fault = f.error_status, "5xx"
                rec.applied = f.error_applies and not stream
                if rec.applied:
                    if f.error_apply_delay > 0:
                        await request.read()  # the body arrived; the venue takes it later
                        self._late(self._apply_later(handler, request, f.error_apply_delay))
                    else:
                        await handler(request)  # applied; its answer is lost behind the error
                headers = {"Retry-After": f.error_retry_after} if f.error_retry_after is not None else None
                return json_response(f.error_status, {"errorMessage": "An unexpected internal server error has occurred"},
                                     headers)
            if not stream and f.take_timeout():
                rec.fault = "timeout"
                hold = f.hold
                await request.read()  # the body arrived; only the answer is held
                if f.timeout_applies and not f.timeout_apply_late:
                    resp = await handler(request)
                    rec.applied = True
                    await asyncio.sleep(hold)
                elif f.timeout_applies:
                    await asyncio.sleep(hold)
                    resp = await handler(request)
                    rec.applied = True
                else:
                    await asyncio.sleep(hold)
                    rec.applied = False
                    resp = json_response(504, {"errorMessage": "Request timed out"})
                rec.status = resp.status
                return resp
            if not stream and f.take_drop_before_apply():
                rec.status, rec.fault, rec.applied = 0, "drop_before_apply", False
                if request.transport is not None:
                    request.transport.abort()  # the venue never sees it: nothing applied, no answer
                raise asyncio.CancelledError()
            if not stream and f.take_drop():
                resp = await handler(request)  # applied at the venue ...
                rec.status, rec.fault, rec.applied = resp.status, "drop", True
                if request.transport is not None:
                    request.transport.abort()  # ... and the client never hears of it
                raise asyncio.CancelledError()
        resp = await handler(request)
        rec.status = resp.status
        if not resp.prepared and "RequestID" not in resp.headers:
            resp.headers["RequestID"] = self.venue.next_request_id()
        return resp

    @web.middleware
    async def _error_mw(self, request: web.Request, handler):
        try:
            return await handler(request)
        except HTTPError as e:
            return json_response(e.status, e.body)
        except BadRequest as e:
            return json_response(400, {"errorMessage": e.message})
        except SimReject as e:
            return json_response(e.status, {"errorCode": e.reason, "errorMessage": e.message} if e.status != 403
                                 else FORBIDDEN)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            # unknown path / wrong method: v20 answers JSON errors, never HTML or text
            return json_response(e.status, {"errorMessage": e.reason})

    # ------------------------------------------------------------------ helpers

    def _acct(self, request: web.Request):
        acct = self.venue.accounts.get(request.match_info["aid"])
        if acct is None:
            # a token may only reach its own accounts; an unknown id looks the same
            raise HTTPError(403, FORBIDDEN)
        return acct

    @staticmethod
    def _unix(request: web.Request) -> bool:
        return request.headers.get("Accept-Datetime-Format", "RFC3339").upper() == "UNIX"

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest("The request body is not valid JSON") from None

    def _result(self, request, acct, res: Result, headers: Optional[dict] = None) -> web.Response:
        unix = self._unix(request)
        body = {k: render_txn(self.venue, acct, t, unix) for k, t in res.keys.items()}
        if res.txns or res.status < 400:
            body["relatedTransactionIDs"] = [str(t.id) for t in res.txns]
        body["lastTransactionID"] = str(res.last_id)
        if res.error_message is not None and res.status >= 400:
            if res.error_code is not None:
                body["errorCode"] = res.error_code
            body["errorMessage"] = res.error_message
        return json_response(res.status, body, headers)

    def _reject_parse(self, request, acct, otype: str, raw: dict, e: ParseReject, req_id: str,
                      key="orderRejectTransaction", extra: Optional[dict] = None) -> web.Response:
        echo = {k: v for k, v in raw.items() if k != "type"}
        echo.setdefault("reason", "CLIENT_ORDER")
        if extra:
            echo.update(extra)
        res = self.venue.reject(acct.id, otype + "_ORDER_REJECT", echo, e.reason, e.status, key, request_id=req_id)
        return self._result(request, acct, res)

    # ------------------------------------------------------------------ accounts

    async def list_accounts(self, request):
        return json_response(200, {"accounts": [{"id": a, "tags": []} for a in self.venue.accounts]})

    async def get_account(self, request):
        acct = self._acct(request)
        return json_response(200, {"account": render_account(self.venue, acct, True, self._unix(request)),
                                   "lastTransactionID": str(acct.last_id)})

    async def get_summary(self, request):
        acct = self._acct(request)
        return json_response(200, {"account": render_account(self.venue, acct, False, self._unix(request)),
                                   "lastTransactionID": str(acct.last_id)})

    async def get_instruments(self, request):
        acct = self._acct(request)
        names = request.query.get("instruments")
        insts = self.venue.instruments
        if names:
            wanted = names.split(",")
            for n in wanted:
                if n not in self.venue.by_name:
                    raise BadRequest("Invalid value specified for 'instruments'")
            insts = [self.venue.by_name[n] for n in wanted]
        return json_response(200, {"instruments": [render_instrument(i) for i in insts],
                                   "lastTransactionID": str(acct.last_id)})

    async def configure(self, request):
        acct = self._acct(request)
        body = await self._body(request)
        if not isinstance(body, dict) or not ({"alias", "marginRate"} & set(body)):
            raise BadRequest()
        self.venue._now = self.venue.clock()
        self.venue._begin(acct, self.venue.next_request_id())
        p = {}
        if "alias" in body:
            acct.alias = str(body["alias"])
            p["alias"] = acct.alias
        if "marginRate" in body:
            p["marginRate"] = str(body["marginRate"])
        t = acct.txns[self.venue._txn(acct, "CLIENT_CONFIGURE", p) - 1]
        self.venue._end(acct)
        unix = self._unix(request)
        return json_response(200, {"clientConfigureTransaction": render_txn(self.venue, acct, t, unix),
                                   "lastTransactionID": str(acct.last_id)})

    async def get_changes(self, request):
        acct = self._acct(request)
        since = request.query.get("sinceTransactionID")
        if since is None or not since.isdigit():
            raise BadRequest("Invalid value specified for 'sinceTransactionID'")
        since_id = int(since)
        if since_id > acct.last_id or since_id < acct.txns.base:  # the future, or older than the history kept
            raise HTTPError(416, {"errorMessage": "Invalid value specified for 'sinceTransactionID'"})
        unix = self._unix(request)
        v = self.venue
        txns = acct.txns[since_id:]
        created, filled, cancelled, triggered = {}, {}, {}, {}
        opened, reduced, closed = {}, {}, {}
        insts = {}
        for t in txns:
            p = t.p
            if t.type.endswith("_ORDER") and not t.type.endswith("REJECT"):
                created[p.id] = p
            elif t.type == "ORDER_FILL":
                o = p.order
                filled[o.id] = o
                insts[o.inst.index] = o.inst
                if p.opened:
                    opened[p.opened[0]] = acct.trades[p.opened[0]]
                for e in (p.closed or ()):
                    closed[e[0]] = acct.trades[e[0]]
                if p.reduced:
                    reduced[p.reduced[0]] = acct.trades[p.reduced[0]]
            elif t.type == "ORDER_CANCEL":
                cancelled[p[0].id] = p[0]
        for k in list(created):
            if k in filled or k in cancelled:
                pass
        n = v.account_numbers(acct)
        from .render import render_account_numbers, money

        state = render_account_numbers(n)
        state["orders"] = [{"id": str(o.id), "trailingStopValue": render_order(v, acct, o, unix)["trailingStopValue"],
                            "triggerDistance": "0", "isTriggerDistanceExact": True}
                           for o in acct.pending.values() if o.type == "TRAILING_STOP_LOSS"]
        state["trades"] = []
        for tr in acct.open_trades.values():
            upl, mu = v.trade_numbers(acct, tr)
            state["trades"].append({"id": str(tr.id), "unrealizedPL": money(upl), "marginUsed": money(mu)})
        state["positions"] = []
        for pos in acct.positions.values():
            if pos.units:
                upl, _c, _pv, mu, _ = v.position_numbers(acct, pos)
                state["positions"].append({"instrument": pos.inst.name, "netUnrealizedPL": money(upl),
                                           "longUnrealizedPL": money(upl if pos.units > 0 else 0),
                                           "shortUnrealizedPL": money(upl if pos.units < 0 else 0),
                                           "marginUsed": money(mu)})
        changes = {
            "ordersCreated": [render_order(v, acct, o, unix) for o in created.values()],
            "ordersCancelled": [render_order(v, acct, o, unix) for o in cancelled.values()],
            "ordersFilled": [render_order(v, acct, o, unix) for o in filled.values()],
            "ordersTriggered": [render_order(v, acct, o, unix) for o in triggered.values()],
            "tradesOpened": [render_trade(v, acct, t, True, unix) for t in opened.values()],
            "tradesReduced": [render_trade(v, acct, t, True, unix) for t in reduced.values()],
            "tradesClosed": [render_trade(v, acct, t, True, unix) for t in closed.values()],
            "positions": [render_position(v, acct, acct.positions[i]) for i in insts],
            "transactions": [render_txn(v, acct, t, unix) for t in txns],
        }
        return json_response(200, {"changes": changes, "state": state, "lastTransactionID": str(acct.last_id)})

    # ------------------------------------------------------------------ orders

    async def create_order(self, request):
        acct = self._acct(request)
        body = await self._body(request)
        req_id = self.venue.next_request_id()
        otype = order_type_of(body)
        try:
            order = parse_order(self.venue, acct, body)
        except ParseReject as e:
            return self._reject_parse(request, acct, otype, body["order"], e, req_id)
        res = self.venue.place_order(acct.id, order, req_id, raw=body["order"])
        headers = {"RequestID": req_id}
        if res.status == 201:
            headers["Location"] = f"{self.base_url}/v3/accounts/{acct.id}/orders/{order.id}"
        return self._result(request, acct, res, headers)

    def _order_list(self, request, acct, orders, default_state="PENDING"):
        q = request.query
        state = q.get("state", default_state)
        if state not in ("PENDING", "FILLED", "TRIGGERED", "CANCELLED", "ALL"):
            raise BadRequest("Invalid value specified for 'state'")
        ids = set(q["ids"].split(",")) if q.get("ids") else None
        inst = q.get("instrument")
        count = self._count(q)
        before = int(q["beforeID"]) if q.get("beforeID", "").isdigit() else None
        out = []
        for o in sorted(orders, key=lambda o: -o.id):
            if state != "ALL" and o.state != state:
                continue
            if ids is not None and str(o.id) not in ids:
                continue
            if inst is not None and (o.inst is None or o.inst.name != inst):
                continue
            if before is not None and o.id >= before:
                continue
            out.append(o)
            if len(out) >= count:
                break
        return out

    @staticmethod
    def _count(q) -> int:
        c = q.get("count", "50")
        if not c.isdigit() or not 1 <= int(c) <= 500:
            raise BadRequest("Invalid value specified for 'count'")
        return int(c)

    async def list_orders(self, request):
        acct = self._acct(request)
        orders = self._order_list(request, acct, acct.orders.values())
        unix = self._unix(request)
        return json_response(200, {"orders": [render_order(self.venue, acct, o, unix) for o in orders],
                                   "lastTransactionID": str(acct.last_id)})

    async def pending_orders(self, request):
        acct = self._acct(request)
        unix = self._unix(request)
        return json_response(200, {"orders": [render_order(self.venue, acct, o, unix) for o in acct.pending.values()],
                                   "lastTransactionID": str(acct.last_id)})

    async def get_order(self, request):
        acct = self._acct(request)
        o = self.venue.find_order(acct, request.match_info["spec"])
        if o is None:
            raise HTTPError(404, {"errorCode": "NO_SUCH_ORDER", "errorMessage": "The order ID specified does not exist",
                                  "lastTransactionID": str(acct.last_id)})
        return json_response(200, {"order": render_order(self.venue, acct, o, self._unix(request)),
                                   "lastTransactionID": str(acct.last_id)})

    async def replace_order(self, request):
        acct = self._acct(request)
        body = await self._body(request)
        req_id = self.venue.next_request_id()
        otype = order_type_of(body)
        spec = request.match_info["spec"]
        old = self.venue.find_order(acct, spec)
        if old is not None and otype in DEPENDENT_TYPES and "tradeID" not in body["order"] \
                and "clientTradeID" not in body["order"] and old.trade_id is not None:
            body["order"] = dict(body["order"], tradeID=str(old.trade_id))
        try:
            order = parse_order(self.venue, acct, body)
        except ParseReject as e:
            extra = {"intendedReplacesOrderID": str(old.id)} if old is not None else None
            return self._reject_parse(request, acct, otype, body["order"], e, req_id, extra=extra)
        res = self.venue.replace_order(acct.id, spec, order, req_id, raw=body["order"])
        headers = {"RequestID": req_id}
        if res.status == 201:
            headers["Location"] = f"{self.base_url}/v3/accounts/{acct.id}/orders/{order.id}"
        return self._result(request, acct, res, headers)

    async def cancel_order(self, request):
        acct = self._acct(request)
        req_id = self.venue.next_request_id()
        res = self.venue.cancel_order(acct.id, request.match_info["spec"], req_id)
        return self._result(request, acct, res, {"RequestID": req_id})

    async def order_client_extensions(self, request):
        acct = self._acct(request)
        body = await self._body(request)
        o = self.venue.find_order(acct, request.match_info["spec"])
        if o is None:
            raise HTTPError(404, {"errorCode": "NO_SUCH_ORDER", "errorMessage": "The order ID specified does not exist",
                                  "lastTransactionID": str(acct.last_id)})
        if not isinstance(body, dict) or not ({"clientExtensions", "tradeClientExtensions"} & set(body)):
            raise BadRequest()
        v = self.venue
        v._now = v.clock()
        v._begin(acct, v.next_request_id())
        p = {"orderID": str(o.id)}
        if isinstance(body.get("clientExtensions"), dict):
            new = {k: str(x) for k, x in body["clientExtensions"].items() if k in ("id", "tag", "comment")}
            if "id" in new and new["id"] != o.client_id:
                other = acct.by_client.get(new["id"])
                if other is not None and other.state == "PENDING":
                    raise HTTPError(400, {"errorCode": "CLIENT_ORDER_ID_ALREADY_EXISTS",
                                          "errorMessage": "The client Order ID specified is already assigned to another pending Order"})
                old_cid = o.client_id
                if old_cid is not None and acct.by_client.get(old_cid) is o:
                    del acct.by_client[old_cid]  # the order answers to its new id only
                acct.by_client[new["id"]] = o
            o.client_ext = dict(o.client_ext or {}, **new)
            p["clientExtensionsModify"] = new
        if isinstance(body.get("tradeClientExtensions"), dict):
            o.trade_client_ext = {k: str(x) for k, x in body["tradeClientExtensions"].items()}
            p["tradeClientExtensionsModify"] = o.trade_client_ext
        t = acct.txns[v._txn(acct, "ORDER_CLIENT_EXTENSIONS_MODIFY", p) - 1]
        v._end(acct)
        return json_response(200, {"orderClientExtensionsModifyTransaction": render_txn(v, acct, t, self._unix(request)),
                                   "relatedTransactionIDs": [str(t.id)], "lastTransactionID": str(acct.last_id)})

    # ------------------------------------------------------------------ trades

    async def list_trades(self, request):
        acct = self._acct(request)
        q = request.query
        state = q.get("state", "OPEN")
        if state not in ("OPEN", "CLOSED", "CLOSE_WHEN_TRADEABLE", "ALL"):
            raise BadRequest("Invalid value specified for 'state'")
        ids = set(q["ids"].split(",")) if q.get("ids") else None
        inst = q.get("instrument")
        count = self._count(q)
        before = int(q["beforeID"]) if q.get("beforeID", "").isdigit() else None
        out = []
        for t in sorted(acct.trades.values(), key=lambda t: -t.id):
            if state != "ALL" and t.state != state:
                continue
            if ids is not None and str(t.id) not in ids:
                continue
            if inst is not None and t.inst.name != inst:
                continue
            if before is not None and t.id >= before:
                continue
            out.append(t)
            if len(out) >= count:
                break
        unix = self._unix(request)
        return json_response(200, {"trades": [render_trade(self.venue, acct, t, False, unix) for t in out],
                                   "lastTransactionID": str(acct.last_id)})

    async def open_trades(self, request):
        acct = self._acct(request)
        unix = self._unix(request)
        trades = sorted(acct.open_trades.values(), key=lambda t: -t.id)
        return json_response(200, {"trades": [render_trade(self.venue, acct, t, False, unix) for t in trades],
                                   "lastTransactionID": str(acct.last_id)})

    def _trade(self, acct, spec):
        t = self.venue.find_trade(acct, spec)
        if t is None:
            raise HTTPError(404, {"errorCode": "NO_SUCH_TRADE", "errorMessage": "The trade ID specified does not exist",
                                  "lastTransactionID": str(acct.last_id)})
        return t

    async def get_trade(self, request):
        acct = self._acct(request)
        t = self._trade(acct, request.match_info["spec"])
        return json_response(200, {"trade": render_trade(self.venue, acct, t, False, self._unix(request)),
                                   "lastTransactionID": str(acct.last_id)})

    async def close_trade(self, request):
        acct = self._acct(request)
        body = await self._body(request)
        units = parse_close_units(body.get("units", "ALL") if isinstance(body, dict) else None)
        if units is None:
            raise BadRequest()
        req_id = self.venue.next_request_id()
        res = self.venue.close_trade(acct.id, request.match_info["spec"], units, req_id)
        return self._result(request, acct, res, {"RequestID": req_id})

    async def trade_orders(self, request):
        acct = self._acct(request)
        body = await self._body(request)
        t = self._trade(acct, request.match_info["spec"])
        try:
            changes = parse_details_map(acct, t, body)
        except ParseReject as e:
            return json_response(400, {"errorCode": e.reason, "errorMessage": e.reason,
                                       "lastTransactionID": str(acct.last_id)})
        req_id = self.venue.next_request_id()
        res = self.venue.set_trade_orders(acct.id, str(t.id), changes, req_id)
        return self._result(request, acct, res, {"RequestID": req_id})

    async def trade_client_extensions(self, request):
        acct = self._acct(request)
        body = await self._body(request)
        t = self._trade(acct, request.match_info["spec"])
        if not isinstance(body, dict) or not isinstance(body.get("clientExtensions"), dict):
            raise BadRequest()
        new = {k: str(x) for k, x in body["clientExtensions"].items() if k in ("id", "tag", "comment")}
        if "id" in new and new["id"] != t.client_id and new["id"] in acct.trades_by_client:
            raise HTTPError(400, {"errorCode": "CLIENT_TRADE_ID_ALREADY_EXISTS",
                                  "errorMessage": "The client Trade ID specified is already assigned to another open Trade"})
        v = self.venue
        v._now = v.clock()
        v._begin(acct, v.next_request_id())
        old = t.client_id
        t.client_ext = dict(t.client_ext or {}, **new)
        if t.state == "OPEN":
            if old is not None and acct.trades_by_client.get(old) is t:
                del acct.trades_by_client[old]
            if t.client_id is not None:
                acct.trades_by_client[t.client_id] = t
        tx = acct.txns[v._txn(acct, "TRADE_CLIENT_EXTENSIONS_MODIFY",
                              {"tradeID": str(t.id), "tradeClientExtensionsModify": new}) - 1]
        v._end(acct)
        return json_response(200, {"tradeClientExtensionsModifyTransaction": render_txn(v, acct, tx, self._unix(request)),
                                   "relatedTransactionIDs": [str(tx.id)], "lastTransactionID": str(acct.last_id)})

    # ------------------------------------------------------------------ positions

    async def list_positions(self, request):
        acct = self._acct(request)
        return json_response(200, {"positions": [render_position(self.venue, acct, p) for p in acct.positions.values()],
                                   "lastTransactionID": str(acct.last_id)})

    async def open_positions(self, request):
        acct = self._acct(request)
        return json_response(200, {"positions": [render_position(self.venue, acct, p)
                                                 for p in acct.positions.values() if p.units],
                                   "lastTransactionID": str(acct.last_id)})

    async def get_position(self, request):
        acct = self._acct(request)
        name = request.match_info["instrument"]
        inst = self.venue.by_name.get(name)
        if inst is None:
            raise BadRequest("Invalid value specified for 'instrument'")
        pos = acct.positions.get(inst.index)
        if pos is None:
            from .venue import Position

            pos = Position(inst)
        return json_response(200, {"position": render_position(self.venue, acct, pos),
                                   "lastTransactionID": str(acct.last_id)})

    async def close_position(self, request):
        acct = self._acct(request)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise BadRequest()
        lu = parse_close_units(body.get("longUnits"), allow_none=True)
        su = parse_close_units(body.get("shortUnits"), allow_none=True)
        req_id = self.venue.next_request_id()
        res = self.venue.close_position(acct.id, request.match_info["instrument"], lu, su, req_id)
        if res.status == 400 and not res.keys and res.error_code is None:
            raise BadRequest(res.error_message)
        return self._result(request, acct, res, {"RequestID": req_id})

    # ------------------------------------------------------------------ pricing

    def _instruments_param(self, request):
        names = request.query.get("instruments")
        if not names:
            raise BadRequest("Invalid value specified for 'instruments'")
        out = []
        for n in names.split(","):
            inst = self.venue.by_name.get(n)
            if inst is None:
                raise BadRequest("Invalid value specified for 'instruments'")
            out.append(inst)
        return out

    async def pricing(self, request):
        acct = self._acct(request)
        insts = self._instruments_param(request)
        unix = self._unix(request)
        prices = [render_price(self.venue, i, unix, acct) for i in insts]
        return json_response(200, {"prices": prices, "time": fmt_time(time.time_ns(), unix)})

    async def _open_stream(self, request) -> web.StreamResponse:
        if self._active_streams >= self.faults.max_streams:
            self.stats.streams_rejected += 1
            raise HTTPError(429, {"errorMessage": "Too many active streams"})
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream",
                                                       "RequestID": self.venue.next_request_id()})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self.stats.streams_opened += 1
        return resp

    async def _stream_loop(self, request, resp, initial: list, pull, heartbeat_body) -> web.StreamResponse:
        """Shared stream driver: initial lines, then updates from ``pull`` and
        heartbeats, with the stall/disconnect faults counted in lines sent."""
        self._active_streams += 1
        task = asyncio.current_task()
        self._stream_tasks.add(task)
        transport = request.transport
        if transport is not None:
            self._stream_transports.add(transport)
        sent = 0
        stalled = False
        f = self.faults
        try:
            pending = list(initial)
            last_beat = time.monotonic()
            while not self._closing.is_set():
                for line in pending:
                    if f.stream_disconnect_after is not None and sent >= f.stream_disconnect_after:
                        if transport is not None:
                            transport.abort()
                        return resp
                    if not stalled and f.stream_stall_after is not None and sent >= f.stream_stall_after:
                        stalled = True
                        await asyncio.sleep(f.stream_stall_for)  # silent: no data, no heartbeat
                        last_beat = time.monotonic()
                    await resp.write(_dumps(line) + b"\n")
                    sent += 1
                pending = []
                timeout = max(0.0, f.heartbeat - (time.monotonic() - last_beat))
                pending = await pull(timeout)
                if time.monotonic() - last_beat >= f.heartbeat:  # on schedule, even while data flows
                    pending.append(heartbeat_body())
                    last_beat = time.monotonic()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._active_streams -= 1
            self._stream_tasks.discard(task)
            if transport is not None:
                self._stream_transports.discard(transport)
        return resp

    async def pricing_stream(self, request):
        acct = self._acct(request)
        insts = self._instruments_param(request)
        snapshot = request.query.get("snapshot", "true").lower() != "false"
        unix = self._unix(request)
        resp = await self._open_stream(request)
        wanted = {i.index for i in insts}
        dirty: dict = {}
        wake = asyncio.Event()

        def on_price(inst, bid, ask, t):
            if inst.index in wanted:
                dirty[inst.index] = inst
                wake.set()

        async def pull(timeout: float) -> list:
            try:
                await asyncio.wait_for(wake.wait(), timeout)
            except asyncio.TimeoutError:
                return []
            wake.clear()
            # OANDA sends at most 4 prices/s per instrument: the latest in each window
            if self.faults.price_interval:
                await asyncio.sleep(self.faults.price_interval)
            items = list(dirty.values())
            dirty.clear()
            wake.clear()
            return [render_price(self.venue, i, unix, acct) for i in items]

        self.venue.on_price(on_price)
        try:
            initial = [render_price(self.venue, i, unix, acct) for i in insts] if snapshot else []
            return await self._stream_loop(request, resp, initial, pull,
                                           lambda: {"type": "HEARTBEAT", "time": fmt_time(time.time_ns(), unix)})
        finally:
            self.venue.remove_price_listener(on_price)

    # ------------------------------------------------------------------ transactions

    async def list_transactions(self, request):
        acct = self._acct(request)
        q = request.query
        ps = q.get("pageSize", "100")
        if not ps.isdigit() or not 1 <= int(ps) <= 1000:
            raise HTTPError(400, {"errorCode": "INVALID_PAGESIZE", "errorMessage": "The specified page size is invalid"})
        page = int(ps)
        unix = self._unix(request)
        frm = q.get("from")
        to = q.get("to")
        from .render import parse_rfc3339

        try:
            f_ns = parse_rfc3339(frm) if frm else acct.created_ns
            t_ns = parse_rfc3339(to) if to else time.time_ns()
        except ValueError:
            raise BadRequest("Invalid value specified for 'from'") from None
        types = set(q["type"].split(",")) if q.get("type") else None
        ids = [t.id for t in acct.txns if f_ns <= t.time <= t_ns and (types is None or t.type in types)]
        pages = []
        base = f"{self.base_url}/v3/accounts/{acct.id}/transactions/idrange"
        for k in range(0, len(ids), page):
            chunk = ids[k:k + page]
            pages.append(f"{base}?from={chunk[0]}&to={chunk[-1]}")
        body = {"from": fmt_time(f_ns, unix), "to": fmt_time(t_ns, unix), "pageSize": page, "count": len(ids),
                "pages": pages, "lastTransactionID": str(acct.last_id)}
        if types:
            body["type"] = sorted(types)
        return json_response(200, body)

    def _txns(self, request, acct, lo: int, hi: int) -> web.Response:
        types = set(request.query["type"].split(",")) if request.query.get("type") else None
        unix = self._unix(request)
        out = [self._render_txn(acct, t, unix) for t in acct.txns[max(0, lo - 1):hi]
               if types is None or t.type in types]
        return json_response(200, {"transactions": out, "lastTransactionID": str(acct.last_id)})

    async def txn_idrange(self, request):
        acct = self._acct(request)
        q = request.query
        if not q.get("from", "").isdigit() or not q.get("to", "").isdigit():
            raise BadRequest("Invalid value specified for 'from'")
        lo, hi = int(q["from"]), int(q["to"])
        if lo > acct.last_id or (acct.txns.base and lo <= acct.txns.base):  # the future, or older than the history kept
            raise HTTPError(416, {"errorMessage": "Invalid value specified for 'from'"})
        return self._txns(request, acct, lo, hi)

    async def txn_sinceid(self, request):
        acct = self._acct(request)
        q = request.query
        if not q.get("id", "").isdigit():
            raise BadRequest("Invalid value specified for 'id'")
        since = int(q["id"])
        if since > acct.last_id or since < acct.txns.base:  # the future, or older than the history kept
            raise HTTPError(416, {"errorMessage": "Invalid value specified for 'id'"})
        return self._txns(request, acct, since + 1, acct.last_id)

    async def get_transaction(self, request):
        acct = self._acct(request)
        tid = request.match_info["tid"]
        t = acct.txn(int(tid)) if tid.isdigit() else None
        if t is None:
            raise HTTPError(404, {"errorCode": "NO_SUCH_TRANSACTION",
                                  "errorMessage": "The transaction ID specified does not exist",
                                  "lastTransactionID": str(acct.last_id)})
        return json_response(200, {"transaction": self._render_txn(acct, t, self._unix(request)),
                                   "lastTransactionID": str(acct.last_id)})

    async def txn_stream(self, request):
        acct = self._acct(request)
        unix = self._unix(request)
        resp = await self._open_stream(request)
        queue: asyncio.Queue = asyncio.Queue()

        def on_txns(a, txns):
            if a is acct:
                for t in txns:
                    queue.put_nowait(t)

        async def pull(timeout: float) -> list:
            try:
                t = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                return []
            items = [t]
            while not queue.empty():
                items.append(queue.get_nowait())
            f = self.faults
            out = []
            for x in items:
                if f.stream_skip_next > 0 and f.take_stream_skip():
                    self.stats.stream_lines_skipped.append(x.id)  # left out; the connection stays open
                    continue
                out.append(self._render_txn(acct, x, unix))
            return out

        self.venue.on_transactions(on_txns)
        try:
            return await self._stream_loop(
                request, resp, [], pull,
                lambda: {"type": "HEARTBEAT", "lastTransactionID": str(acct.last_id),
                         "time": fmt_time(time.time_ns(), unix)})
        finally:
            self.venue.remove_transactions_listener(on_txns)


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastexec sim", description="Run the OANDA v20 HTTP simulator.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--accounts", type=int, default=1)
    p.add_argument("--balance", default="100000", help="opening balance per account (decimal string)")
    p.add_argument("--currency", default="USD")
    p.add_argument("--token", default=DEFAULT_TOKEN)
    p.add_argument("--tick-interval", type=float, default=0.25, help="seconds between random-walk ticks (0 = still)")
    p.add_argument("--replay", help="CSV/JSONL file of recorded ticks to play instead of the random walk")
    p.add_argument("--latency", type=float, default=0.0, help="added latency per request, seconds")
    p.add_argument("--jitter", type=float, default=0.0, help="uniform extra latency up to this, seconds")
    p.add_argument("--rate-limit", type=int, default=None, help="requests/s before 429 (OANDA: 120)")
    p.add_argument("--connection-rate-limit", type=int, default=None, help="new connections/s (OANDA: 2)")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of a 5xx answer")
    p.add_argument("--timeout-rate", type=float, default=0.0, help="probability a request is held")
    p.add_argument("--hold", type=float, default=5.0, help="seconds a held request is held")
    p.add_argument("--timeout-not-applied", action="store_true", help="held requests are not applied")
    p.add_argument("--drop-rate", type=float, default=0.0, help="probability the connection drops after applying")
    p.add_argument("--drop-before-apply-rate", type=float, default=0.0,
                   help="probability the connection drops before the request is applied")
    p.add_argument("--heartbeat", type=float, default=5.0)
    p.add_argument("--history", type=int, default=DEFAULT_HISTORY,
                   help="transactions kept per account; older ones, and the finished orders and closed trades "
                        "they concern, are forgotten (404 by id, 416 for sinceid/idrange/changes before them); "
                        "0 keeps everything")
    return p


async def _replay(sim: V20Sim, path: str) -> None:
    from .prices import read_ticks

    prev = None
    for tick in read_ticks(path, sim.venue.by_name):
        if prev is not None and tick.time_ns > prev:
            await asyncio.sleep(min(5.0, (tick.time_ns - prev) / 1e9))
        prev = tick.time_ns
        sim.venue.set_price(tick.instrument, tick.bid, tick.ask)


async def serve(args: argparse.Namespace, ready: Optional[asyncio.Event] = None) -> None:
    faults = FaultConfig(seed=args.seed, latency=args.latency, jitter=args.jitter, rate_limit=args.rate_limit,
                         connection_rate_limit=args.connection_rate_limit, error_rate=args.error_rate,
                         timeout_rate=args.timeout_rate, hold=args.hold, timeout_applies=not args.timeout_not_applied,
                         drop_rate=args.drop_rate, drop_before_apply_rate=args.drop_before_apply_rate,
                         heartbeat=args.heartbeat)
    history = getattr(args, "history", DEFAULT_HISTORY)
    venue = Venue(seed=args.seed, accounts=args.accounts, balance=args.balance, currency=args.currency,
                  history=history if history else None)
    sim = V20Sim(venue, token=args.token, faults=faults,
                 tick_interval=(args.tick_interval or None) if not args.replay else None)
    await sim.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    print(f"fastexec sim: v20 API on {sim.base_url}/v3 token={args.token} accounts={','.join(venue.accounts)}",
          flush=True)
    replay = asyncio.create_task(_replay(sim, args.replay)) if args.replay else None
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        if replay is not None:
            replay.cancel()
        await sim.stop()


def main(argv: Optional[list] = None) -> int:
    """Entry point of ``fastexec sim`` (wired by the CLI)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
