"""``OandaBroker``: the ``Broker`` interface over OANDA's v20 REST API.

The rule that shapes this module: an order-changing request (create,
replace, close) is sent exactly once. When its answer is lost (timeout,
dropped connection) or is a 5xx we do not know whether OANDA applied it, so
we ask: ``GET /orders/@{clientID}`` and ``GET /transactions/sinceid`` from the
last transaction id known *before* the request, repeated within a bounded
window. A 5xx is not a refusal: OANDA's order engine can apply a request and
its front end still answer 500/503 (``INTERNAL_SERVER_ERROR`` is even a
transaction reject reason), and a market order's client id does not block a
second one once the first has filled. Only a 429 — OANDA's rate limiter
refusing the request before it reaches the order engine — permits another
attempt, after the wait the venue asks for (``Retry-After``).

Streams keep the engine whole between requests: every transaction reaches
the event handler once (deduped by id), a reconnect first replays
``sinceid`` from the last delivered id, and a heartbeat that reports a newer
``lastTransactionID`` than we have seen triggers the same replay. A
transaction counts as delivered only once it was handled; one that cannot be
turned into an event is logged by id and skipped on its own.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from functools import partial
from operator import itemgetter
from importlib import resources
from urllib.parse import quote
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import orjson

from ..base import (
    AccountSnapshot,
    Broker,
    BrokerError,
    BrokerEvent,
    BrokerOrder,
    BrokerPosition,
    EventHandler,
    OrderRejected,
    OrderRequest,
    PriceTick,
)
from . import wire
from .config import OandaConfig
from .transport import TRANSPORT_ERRORS, V20Http, _safe_path
from .types import AccountChanges, OandaInstrument, OandaTrade

log = logging.getLogger("fastexec.brokers.oanda")

NOT_PLACED = "NOT_PLACED"
# The one answer that proves an order request was not processed: OANDA's rate
# limiter refuses it before it reaches the order engine. Every 5xx may come
# after the order engine applied it.
_RATE_LIMITED = 429
_MAX_CLIENT_IDS = 200_000


def _now_ns() -> int:
    return time.time_ns()


def _packaged_precisions() -> dict[str, int]:
    try:
        raw = resources.files("fastexec").joinpath("data/instruments.json").read_bytes()
        data = orjson.loads(raw)
    except (OSError, ValueError):
        return {}
    items = data.get("instruments", data) if isinstance(data, dict) else data
    return {i["name"]: int(i["displayPrecision"]) for i in items if "name" in i and "displayPrecision" in i}


# How long stop() waits for a cancelled stream task before cancelling it
# again, and how many times. A task outlives its first cancel() only if some
# await below it lost the CancelledError (Python 3.11's asyncio.wait_for does
# when the awaited future completes in the same loop step as the cancel, which
# stop() itself provokes: ending one stream releases a connection and wakes
# another stream waiting for one).
_CANCEL_GRACE_S = 0.2
_CANCEL_ROUNDS = 10


async def _cancel_and_wait(tasks: Sequence[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait until all have ended.

    ``asyncio.wait`` never raises the tasks' own outcome, so a
    ``CancelledError`` out of this coroutine always means the caller was
    cancelled. Tasks are cancelled again while they ignore it, and given up
    (logged) after ``_CANCEL_ROUNDS`` rounds rather than hanging the caller.
    """
    for t in tasks:  # in order: which stream unwinds first is then the same every run
        t.cancel()
    pending = {t for t in tasks if not t.done()}
    rounds = 0
    while pending:
        _, pending = await asyncio.wait(pending, timeout=_CANCEL_GRACE_S)
        if not pending:
            break
        rounds += 1
        names = ", ".join(sorted(t.get_name() for t in pending))
        if rounds >= _CANCEL_ROUNDS:
            log.error("abandoning tasks that ignore cancellation: %s", names)
            break
        log.warning("cancelling again tasks that lost their cancellation: %s", names)
        for t in tasks:
            if t in pending:
                t.cancel()
    for t in tasks:
        if t.done() and not t.cancelled():
            exc = t.exception()  # retrieved, so asyncio does not log it at GC
            if exc is not None:
                log.warning("%s ended with %r", t.get_name(), exc)



def _txn_id(t: dict) -> Optional[int]:
    """A transaction's id as an int (OANDA sends a decimal string), or None when it
    has none that reads as one: such a transaction cannot be ordered or marked
    delivered, and failing on it would make every reconnect replay it again."""
    try:
        return int(t["id"])
    except (KeyError, TypeError, ValueError):
        return None

class _StreamStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"stream answered HTTP {status}")
        self.status = status


class OandaBroker(Broker):
    """Broker over v20 REST and streams. Construct with an ``OandaConfig``
    (``OandaConfig.from_env()`` in production), then ``await start()``."""

    name = "oanda"

    def __init__(self, config: OandaConfig) -> None:
        self.config = config
        self.http = V20Http(config)
        self._handler: Optional[EventHandler] = None
        self._accounts: list[str] = list(config.account_ids)
        self._acct_url: dict[str, str] = {}
        self._orders_url: dict[str, str] = {}
        self._precision: dict[str, int] = _packaged_precisions()
        # Latest transaction id seen in any answer, per account: the floor of
        # the sinceid scan that resolves a lost order request.
        self._last_txn: dict[str, int] = {}
        # Highest transaction id delivered to the handler, per account.
        self._delivered: dict[str, int] = {}
        self._resume: dict[str, int] = {}
        self._client_ids: dict[str, dict[str, str]] = {}
        self._recovering: dict[str, asyncio.Lock] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        # Stream tasks replaced by a newer one (re-subscription): cancelled
        # at once, but stop() still waits for them to end.
        self._retired: set[asyncio.Task] = set()
        self._price_instruments: tuple[str, ...] = ()
        self._stopping = False
        self._started = False
        # streams that failed and have not reconnected since: key -> why
        self._streams_down: dict[str, str] = {}
        self.stats: dict[str, int] = {
            "resolved_by_lookup": 0,
            "not_placed": 0,
            "resent_after_refusal": 0,
            "txn_stream_connects": 0,
            "price_stream_connects": 0,
            "txn_stream_errors": 0,
            "price_stream_errors": 0,
            "recovered_txns": 0,
            "heartbeat_gaps": 0,
            "history_gaps": 0,  # replays the venue could no longer serve (sinceid 416)
            "handler_errors": 0,
            "skipped_txns": 0,  # transactions the adapter could not turn into events (logged one by one)
        }

    def __repr__(self) -> str:
        return f"OandaBroker(accounts={self._accounts!r}, rest={self.config.rest_base!r})"

    # ------------------------------------------------------------------ lifecycle

    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    def set_resume_point(self, account_id: str, txn_id: int) -> None:
        """Deliver stream events after ``txn_id`` (the engine's journal
        high-water mark) instead of from the account's state at start."""
        self._resume[account_id] = txn_id

    def account_ids(self) -> Sequence[str]:
        return tuple(self._accounts)

    @property
    def connected(self) -> bool:
        """False from a stream's failure (dropped, or a (re)connect refused or
        unreachable) until that stream has connected again."""
        return not self._streams_down

    @property
    def connection_error(self) -> Optional[str]:
        return next(iter(self._streams_down.values()), None)

    async def start(self, *, streams: bool = True) -> None:
        if self._started:
            return
        self._stopping = False
        await self.http.open()
        if not self._accounts:
            status, data = await self.http.idempotent("GET", self.config.rest_base + "/v3/accounts")
            self._check(status, data, "GET /v3/accounts")
            self._accounts = [a["id"] for a in data.get("accounts", ())]
        for acct in self._accounts:
            self._register(acct)
        for acct in self._accounts:
            snap = await self.account_summary(acct)
            self._delivered[acct] = self._resume.get(acct, snap.last_txn_id)
            try:
                for ins in await self.instruments(acct):
                    self._precision[ins.name] = ins.display_precision
            except BrokerError as exc:
                log.warning("instrument list unavailable for %s (%s); using packaged precisions", acct, exc)
        self._started = True
        if streams:
            for acct in self._accounts:
                self._spawn("txn:" + acct, self._run_txn_stream(acct))

    async def stop(self) -> None:
        """End the streams and close the sessions.

        Returns once every stream task has finished. If the task calling
        ``stop()`` is itself cancelled (``asyncio.wait_for(broker.stop(), t)``
        timing out, a service shutting down), the sessions are still closed
        and the ``CancelledError`` propagates to the caller.
        """
        self._stopping = True
        self._streams_down.clear()
        tasks = [*self._tasks.values(), *self._retired]
        self._tasks.clear()
        self._retired.clear()
        try:
            await _cancel_and_wait(tasks)
        finally:
            await self.http.close()
            self._streams_down.clear()
            self._started = False

    async def __aenter__(self) -> "OandaBroker":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _register(self, acct: str) -> None:
        base = self.config.rest_base + "/v3/accounts/" + acct
        self._acct_url[acct] = base
        self._orders_url[acct] = base + "/orders"
        self._client_ids.setdefault(acct, {})
        self._recovering.setdefault(acct, asyncio.Lock())

    def _url(self, acct: str) -> str:
        url = self._acct_url.get(acct)
        if url is None:
            self._register(acct)
            url = self._acct_url[acct]
        return url

    def _spawn(self, key: str, coro) -> None:
        old = self._tasks.pop(key, None)
        if old is not None and not old.done():
            old.cancel()
            self._retired.add(old)
            old.add_done_callback(self._retired.discard)
        self._tasks[key] = asyncio.get_running_loop().create_task(coro, name=f"oanda-{key}")

    # ------------------------------------------------------------------ helpers

    def _note_last(self, acct: str, data: dict) -> None:
        lt = data.get("lastTransactionID")
        if lt:
            v = int(lt)
            if v > self._last_txn.get(acct, 0):
                self._last_txn[acct] = v

    def _cid_map(self, acct: str) -> dict[str, str]:
        m = self._client_ids.get(acct)
        if m is None:
            m = self._client_ids[acct] = {}
        elif len(m) > _MAX_CLIENT_IDS:
            for k in list(m)[: _MAX_CLIENT_IDS // 2]:
                del m[k]
        return m

    @staticmethod
    def _check(status: int, data: dict, what: str) -> None:
        if status >= 300:
            code = data.get("errorCode") or f"HTTP_{status}"
            raise BrokerError(f"{what}: {code}: {data.get('errorMessage', '')}".rstrip(": "), status=status)

    def _rejected(self, acct: str, cid: Optional[str], status: int, data: dict, keys: tuple[str, ...]) -> list:
        events = wire.response_events(acct, data, keys, self._cid_map(acct))
        if any(isinstance(e, OrderRejected) for e in events):
            return events
        code = data.get("errorCode") or f"HTTP_{status}"
        return events + [OrderRejected(acct, cid, None, code, data.get("errorMessage", code), _now_ns())]

    # ------------------------------------------------------------------ orders

    async def submit(self, request: OrderRequest) -> list[BrokerEvent]:
        acct = request.account_id
        cid = request.client_id
        try:
            body = orjson.dumps(
                wire.order_body(request, self._precision.get(request.instrument, 9), self.config.gslo_style)
            )
        except wire.LocalReject as exc:
            return [OrderRejected(acct, cid, None, exc.reason, str(exc), _now_ns())]
        url = self._orders_url.get(acct)
        if url is None:
            self._url(acct)
            url = self._orders_url[acct]
        since = self._last_txn.get(acct, 0)
        return await self._send_resolved(
            acct, "POST", url, body, 201, wire.CREATE_KEYS, lambda: self._lookup_submit(acct, cid, since), cid
        )

    async def _send_resolved(
        self, acct: str, method: str, url: str, body: bytes, ok: int, keys: tuple, lookup, cid: Optional[str]
    ) -> list:
        """Send a request that changes the venue; only a 429 sends it again.

        A lost answer (timeout, dropped connection) and every 5xx leave the
        outcome unknown and are resolved by lookups alone (``_resolve``).

        A 429 is resent after the wait the venue asks for, with no lookup
        first: every earlier attempt was a 429 as well (any other answer ends
        the loop), so the venue holds nothing to find, and reads sent straight
        after "too many requests" would only add to the excess. After
        ``max_attempts`` 429s, or a ``Retry-After`` longer than
        ``retry_after_max_s``, the order is reported not placed — which the
        429s prove."""
        http = self.http
        why = ""
        for attempt in range(self.config.max_attempts):
            try:
                status, data, headers = await http.send(method, url, body, http.t_order)
            except TRANSPORT_ERRORS as exc:
                return await self._resolve(acct, lookup, cid, type(exc).__name__)
            if data:
                self._note_last(acct, data)
            if status == ok:
                return wire.response_events(acct, data, keys, self._cid_map(acct))
            if status == _RATE_LIMITED:
                why = f"venue refused {attempt + 1} attempts with HTTP 429"
                if attempt + 1 >= self.config.max_attempts:
                    break
                delay = http.retry_delay(attempt, headers)
                if delay is None:
                    why += f" and asks to wait longer than {self.config.retry_after_max_s:g} s"
                    break
                self.stats["resent_after_refusal"] += 1
                await asyncio.sleep(delay)
                continue
            if status >= 500:
                return await self._resolve(acct, lookup, cid, f"HTTP {status}")
            return self._rejected(acct, cid, status, data, keys)
        self.stats["not_placed"] += 1
        return [OrderRejected(acct, cid, None, NOT_PLACED, why, _now_ns())]

    async def _lookup_submit(self, acct: str, cid: str, since: int) -> Optional[list]:
        """Events of the order created under ``cid`` after ``since`` (or of its
        reject), or None when the venue has neither."""
        url = self._url(acct)
        status, data = await self.http.idempotent("GET", url + "/orders/@" + quote(cid, safe=""))
        self._note_last(acct, data)
        order_id = None
        if status == 200:
            order_id = data["order"]["id"]
            self.stats["resolved_by_lookup"] += 1
        elif status not in (404, 400):
            self._check(status, data, "GET order by client id")
        if order_id is not None:
            if int(order_id) <= since:
                # An older order reusing the client id: not ours.
                order_id = None
            else:
                # its transactions start with its own id: ask from there, not from ``since``
                # (which the venue may no longer serve after a long outage)
                txns = await self._txns_since(acct, int(order_id) - 1)
                return self._events_for(acct, txns, lambda t: t.get("id") == order_id or t.get("orderID") == order_id)
        txns = await self._txns_since(acct, since)
        rejects = [t for t in txns if t.get("type", "").endswith("_REJECT") and wire.client_id_of(t) == cid]
        if rejects:
            self.stats["resolved_by_lookup"] += 1
            return self._events_for(acct, rejects, lambda t: True)
        return None

    async def _resolve(self, acct: str, lookup: Callable[[], Any], cid: Optional[str], cause: str) -> list:
        """Look up an unanswered request until found or the window closes.

        A request that timed out may still be in flight at the venue, so one
        negative lookup is not proof; the window (``resolve_window_s``) must be
        longer than the venue's worst processing time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.resolve_window_s
        delay = 0.05
        last_error: Optional[BaseException] = None
        while True:
            try:
                found = await lookup()
            except BrokerError as exc:
                last_error = exc
            else:
                last_error = None
                if found is not None:
                    return found
            if loop.time() >= deadline:
                break
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, 1.0)
        if last_error is not None:
            raise BrokerError(
                f"request outcome unknown after {cause}; lookups failing ({last_error}); the transaction "
                "stream will report it if it was applied",
                retryable=False,
            )
        self.stats["not_placed"] += 1
        return [
            OrderRejected(
                acct, cid, None, NOT_PLACED, f"request failed ({cause}) and the venue has no record of it", _now_ns()
            )
        ]

    def _events_for(self, acct: str, txns: Iterable[dict], pred: Callable[[dict], bool]) -> list:
        chosen = sorted((t for t in txns if pred(t)), key=lambda t: int(t["id"]))
        return wire.txns_events(acct, chosen, "", self._cid_map(acct))

    async def _txns_since(self, acct: str, since: int) -> list[dict]:
        status, data = await self.http.idempotent(
            "GET", self._url(acct) + "/transactions/sinceid", params={"id": str(since)}
        )
        self._check(status, data, "GET transactions/sinceid")
        self._note_last(acct, data)
        return data.get("transactions", [])

    async def replace(self, account_id: str, broker_order_id: str, request: OrderRequest) -> list[BrokerEvent]:
        acct = account_id
        cid = request.client_id
        try:
            body = orjson.dumps(
                wire.order_body(request, self._precision.get(request.instrument, 9), self.config.gslo_style)
            )
        except wire.LocalReject as exc:
            return [OrderRejected(acct, cid, None, exc.reason, str(exc), _now_ns())]
        url = self._url(acct) + "/orders/" + broker_order_id
        since = self._last_txn.get(acct, 0)
        return await self._send_resolved(
            acct, "PUT", url, body, 201, wire.REPLACE_KEYS, lambda: self._lookup_replace(acct, broker_order_id, since), cid
        )

    async def _lookup_replace(self, acct: str, old_id: str, since: int) -> Optional[list]:
        status, data = await self.http.idempotent("GET", self._url(acct) + "/orders/" + old_id)
        self._note_last(acct, data)
        if status != 200:
            return None
        o = data["order"]
        if o.get("state") == "PENDING":
            return None
        new_id = o.get("replacedByOrderID")
        ids = {old_id, new_id} if new_id else {old_id}
        txns = await self._txns_since(acct, since)
        events = self._events_for(acct, txns, lambda t: t.get("id") in ids or t.get("orderID") in ids)
        if not new_id:
            # Filled or cancelled before the replace landed: report that, and
            # that the replace itself did not happen.
            events.append(
                OrderRejected(acct, None, None, "ORDER_DOESNT_EXIST", f"order {old_id} is {o.get('state')}", _now_ns())
            )
        return events

    async def cancel(self, account_id: str, broker_order_id: str) -> list[BrokerEvent]:
        """Cancels repeat safely (a second cancel is refused, never doubled),
        so transport failures and 429/5xx are retried; a refusal after an
        attempt whose answer was lost is checked against the order itself."""
        acct = account_id
        url = self._url(acct) + "/orders/" + broker_order_id + "/cancel"
        http = self.http
        in_doubt = False
        last = ""
        for attempt in range(self.config.max_attempts):
            headers = None
            try:
                status, data, headers = await http.send("PUT", url, None, http.t_cancel)
            except TRANSPORT_ERRORS as exc:
                in_doubt = True
                last = type(exc).__name__
            else:
                if data:
                    self._note_last(acct, data)
                if status == 200:
                    return wire.response_events(acct, data, wire.CANCEL_KEYS, self._cid_map(acct))
                if status == 429 or status >= 500:
                    in_doubt = in_doubt or status >= 500
                    last = f"HTTP {status}"
                else:
                    if in_doubt:
                        done = await self._cancelled_already(acct, broker_order_id)
                        if done is not None:
                            return done
                    return self._rejected(acct, None, status, data, wire.CANCEL_KEYS)
            if attempt + 1 < self.config.max_attempts:
                delay = http.retry_delay(attempt, headers)
                if delay is None:
                    last += f", Retry-After beyond {self.config.retry_after_max_s:g} s"
                    break
                await asyncio.sleep(delay)
        done = await self._cancelled_already(acct, broker_order_id)
        if done is not None:
            return done
        raise BrokerError(f"cancel of order {broker_order_id} failed: {last}", retryable=True)

    async def _cancelled_already(self, acct: str, oid: str) -> Optional[list]:
        status, data = await self.http.idempotent("GET", self._url(acct) + "/orders/" + oid)
        if status != 200:
            return None
        o = data["order"]
        ctx = o.get("cancellingTransactionID")
        if o.get("state") != "CANCELLED" or not ctx:
            return None
        status, data = await self.http.idempotent("GET", self._url(acct) + "/transactions/" + ctx)
        if status != 200:
            return None
        ev = wire.txn_event(acct, data["transaction"], "", self._cid_map(acct))
        return [ev] if ev is not None else []

    async def close_trade(self, account_id: str, trade_id: str, units: Union[int, str] = "ALL") -> list[BrokerEvent]:
        acct = account_id
        try:
            body = orjson.dumps({"units": wire.units_arg(units, "units")})
        except wire.LocalReject as exc:
            return [OrderRejected(acct, None, None, exc.reason, str(exc), _now_ns())]

        def match(t: dict) -> bool:
            tc = t.get("tradeClose")
            return bool(tc) and tc.get("tradeID") == trade_id

        return await self._close(acct, self._url(acct) + "/trades/" + trade_id + "/close", body, match, wire.CLOSE_TRADE_KEYS)

    async def close_position(
        self, account_id: str, instrument: str, long_units: Union[int, str, None], short_units: Union[int, str, None]
    ) -> list[BrokerEvent]:
        acct = account_id
        payload: dict[str, str] = {}
        try:
            if long_units is not None:
                payload["longUnits"] = wire.units_arg(long_units, "longUnits")
            if short_units is not None:
                payload["shortUnits"] = wire.units_arg(short_units, "shortUnits")
        except wire.LocalReject as exc:
            return [OrderRejected(acct, None, None, exc.reason, str(exc), _now_ns())]
        if not payload:
            return [OrderRejected(acct, None, None, "CLOSEOUT_POSITION_INCOMPLETE_SPECIFICATION", "nothing to close", _now_ns())]

        def match(t: dict) -> bool:
            for key in ("longPositionCloseout", "shortPositionCloseout"):
                pc = t.get(key)
                if pc and pc.get("instrument") == instrument:
                    return True
            return False

        url = self._url(acct) + "/positions/" + instrument + "/close"
        return await self._close(acct, url, orjson.dumps(payload), match, wire.CLOSE_POSITION_KEYS)

    async def _close(self, acct: str, url: str, body: bytes, match: Callable[[dict], bool], keys) -> list:
        """Closes are not idempotent (a repeated partial close closes twice)
        and carry no client id to look up: one attempt (a 429 aside, which
        the venue refused unprocessed), and an unknown outcome — lost answer
        or any 5xx — is resolved from the transactions after ``since``, by the
        closing MARKET_ORDER and its fill the venue records there."""
        since = self._last_txn.get(acct, 0)

        async def lookup() -> Optional[list]:
            txns = await self._txns_since(acct, since)
            ids = {t["id"] for t in txns if match(t)}
            if not ids:
                return None
            self.stats["resolved_by_lookup"] += 1
            return self._events_for(acct, txns, lambda t: t.get("id") in ids or t.get("orderID") in ids)

        return await self._send_resolved(acct, "PUT", url, body, 200, keys, lookup, None)

    # ------------------------------------------------------------------ reads

    async def _get(self, acct: str, path: str, what: str, params: Any = None) -> dict:
        status, data = await self.http.idempotent("GET", self._url(acct) + path, params=params)
        self._check(status, data, what)
        self._note_last(acct, data)
        return data

    async def account_summary(self, account_id: str) -> AccountSnapshot:
        data = await self._get(account_id, "/summary", "GET account summary")
        a = data["account"]
        if "lastTransactionID" not in a and "lastTransactionID" in data:
            a = dict(a, lastTransactionID=data["lastTransactionID"])
        return wire.account_snapshot(a)

    async def account_changes(self, account_id: str, since_txn_id: int) -> AccountChanges:
        data = await self._get(
            account_id, "/changes", "GET account changes", params={"sinceTransactionID": str(since_txn_id)}
        )
        changes = data.get("changes", {})
        events = self._events_for(account_id, changes.get("transactions", ()), lambda t: True)
        return AccountChanges(
            account_id=account_id,
            last_txn_id=int(data.get("lastTransactionID", since_txn_id)),
            events=events,
            changes=changes,
            state=data.get("state", {}),
        )

    async def instruments(self, account_id: str, names: Optional[Sequence[str]] = None) -> list[OandaInstrument]:
        params = {"instruments": ",".join(names)} if names else None
        data = await self._get(account_id, "/instruments", "GET instruments", params=params)
        return [OandaInstrument.from_v20(i) for i in data.get("instruments", ())]

    async def open_positions(self, account_id: str) -> list[BrokerPosition]:
        data = await self._get(account_id, "/openPositions", "GET open positions")
        return [wire.position(account_id, p) for p in data.get("positions", ())]

    async def pending_orders(self, account_id: str) -> list[BrokerOrder]:
        data = await self._get(account_id, "/pendingOrders", "GET pending orders")
        return [wire.order(account_id, o) for o in data.get("orders", ())]

    async def open_trades(self, account_id: str) -> list[OandaTrade]:
        data = await self._get(account_id, "/openTrades", "GET open trades")
        return [OandaTrade.from_v20(account_id, t) for t in data.get("trades", ())]

    async def order(self, account_id: str, order_specifier: str) -> Optional[BrokerOrder]:
        status, data = await self.http.idempotent("GET", self._url(account_id) + "/orders/" + order_specifier)
        if status == 404:
            return None
        self._check(status, data, "GET order")
        self._note_last(account_id, data)
        return wire.order(account_id, data["order"])

    async def order_by_client_id(self, account_id: str, client_id: str) -> Optional[BrokerOrder]:
        return await self.order(account_id, "@" + quote(client_id, safe=""))

    async def transactions_since(self, account_id: str, txn_id: int) -> list[BrokerEvent]:
        return self._events_for(account_id, await self._txns_since(account_id, txn_id), lambda t: True)

    async def latest_prices(self, instruments: Sequence[str]) -> list[PriceTick]:
        acct = self._accounts[0]
        data = await self._get(acct, "/pricing", "GET pricing", params={"instruments": ",".join(instruments)})
        out = []
        for p in data.get("prices", ()):
            tick = wire.price_tick(p)
            if tick is not None:
                out.append(tick)
        return out

    # ------------------------------------------------------------------ streams

    def _emit(self, ev: BrokerEvent) -> None:
        h = self._handler
        if h is None:
            return
        try:
            h(ev)
        except Exception:  # a faulty handler must not kill the stream
            self.stats["handler_errors"] += 1
            log.exception("event handler raised")

    def _skip_txn(self, acct: str, t: dict, exc: Exception) -> None:
        """A transaction that cannot become an event: said once, by id, and
        passed over, so neither its neighbours nor the stream wait on it (a
        replay would meet it again on every reconnect)."""
        self.stats["skipped_txns"] += 1
        log.error(
            "account %s: transaction %s (%s %s) cannot be turned into an event and is skipped: %s: %s",
            acct, t.get("id"), t.get("type"), t.get("instrument", ""), type(exc).__name__, exc,
        )

    def _advance(self, acct: str, t: dict) -> bool:
        """Mark a transaction delivered; False when it already was (dedupe)."""
        tid = int(t["id"])
        if tid <= self._delivered.get(acct, 0):
            return False
        self._delivered[acct] = tid
        if tid > self._last_txn.get(acct, 0):
            self._last_txn[acct] = tid
        return True

    async def _recover(self, acct: str) -> None:
        """Replay transactions after the last delivered id (gap recovery).

        A venue that no longer serves them (``sinceid`` answers 416) cannot be
        replayed from: asking again would fail the same way on every reconnect,
        and the stream would never deliver anything again. The gap is counted
        (``stats["history_gaps"]``) and logged as an error, and delivery goes on
        from the account's present ``lastTransactionID``; what happened inside
        the gap reaches the engine's state through start-up reconciliation,
        which takes the venue's present state when its history is gone."""
        async with self._recovering[acct]:
            since = self._delivered.get(acct, 0)
            try:
                txns = await self._txns_since(acct, since)
            except BrokerError as exc:
                if not exc.history_gap:
                    raise
                last = (await self.account_summary(acct)).last_txn_id
                self.stats["history_gaps"] += 1
                log.error("account %s: the venue no longer serves transactions %d..%d; their events were not "
                          "delivered (a restart reconciles from the venue's present state)", acct, since + 1, last)
                if last > since:
                    self._delivered[acct] = last
                    if last > self._last_txn.get(acct, 0):
                        self._last_txn[acct] = last
                return
            numbered = []
            for t in txns:
                tid = _txn_id(t)
                if tid is None:  # cannot be ordered or marked: said once, never waited on
                    self._skip_txn(acct, t, ValueError(f"unreadable transaction id {t.get('id')!r}"))
                else:
                    numbered.append((tid, t))
            numbered.sort(key=itemgetter(0))
            fresh = []
            floor = self._delivered.get(acct, 0)
            for tid, t in numbered:
                if tid > floor:
                    fresh.append(t)
                    floor = tid
            # Handled first (emitted, or logged and skipped), marked delivered
            # after: a replay that fails part-way is replayed again whole.
            for ev in wire.txns_events(acct, fresh, "", self._cid_map(acct), partial(self._skip_txn, acct)):
                self._emit(ev)
            for t in fresh:
                self._advance(acct, t)
            self.stats["recovered_txns"] += len(fresh)

    def delivered_txn_id(self, account_id: str) -> int:
        """Highest transaction id handed to the event handler."""
        return self._delivered.get(account_id, 0)

    async def _stream_loop(self, kind: str, url: str, params: Any, on_open, on_line) -> None:
        cfg = self.config
        session = self.http.stream_session
        backoff = cfg.stream_backoff_base_s
        key = kind + " " + url
        while not self._stopping:
            try:
                async with session.get(url, params=params, timeout=self.http.t_stream) as resp:
                    if resp.status != 200:
                        raise _StreamStatus(resp.status)
                    if self._stopping:
                        # stop() began while we connected: never go on
                        # streaming on a cancellation something below lost.
                        raise asyncio.CancelledError()
                    self.stats[kind + "_stream_connects"] += 1
                    await on_open()
                    if self._streams_down.pop(key, None) is not None:
                        log.warning("%s stream %s: reconnected", kind, _safe_path(url))
                    got_line = False
                    async for line in resp.content:
                        if self._stopping:
                            raise asyncio.CancelledError()
                        if len(line) <= 1:
                            continue
                        if not got_line:
                            got_line = True
                            backoff = cfg.stream_backoff_base_s
                        pending = on_line(orjson.loads(line))
                        if pending is not None:
                            await pending
                    raise ConnectionResetError("stream closed by the venue")
            except asyncio.CancelledError:
                raise
            except (BrokerError, _StreamStatus, ValueError, *TRANSPORT_ERRORS) as exc:
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    # a timeout raised while we were being cancelled
                    raise asyncio.CancelledError() from None
                self.stats[kind + "_stream_errors"] += 1
                self._streams_down[key] = f"{kind} stream: {type(exc).__name__}"
                log.warning("%s stream %s: %s; reconnecting", kind, _safe_path(url), type(exc).__name__)
            await asyncio.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, cfg.stream_backoff_max_s)

    async def _run_txn_stream(self, acct: str) -> None:
        url = self.config.stream_base + "/v3/accounts/" + acct + "/transactions/stream"
        delivered = self._delivered
        loop = asyncio.get_running_loop()
        cids = self._cid_map(acct)
        # An order-create line is held until the next line shows whether the
        # same batch filled or cancelled it (then the fill/cancel alone is
        # reported, as in responses); a short timer bounds the hold.
        held: list = []  # [event, batchID, orderID, timer]

        def flush() -> None:
            if held:
                ev, _, _, timer = held
                held.clear()
                timer.cancel()
                self._emit(ev)

        async def on_open() -> None:
            flush()
            # The stream is open before the replay, so anything newer than the
            # replay's snapshot is already queued on it: no gap between them.
            await self._recover(acct)

        async def gap(t: Optional[dict]) -> None:
            self.stats["heartbeat_gaps"] += 1
            await self._recover(acct)
            if t is not None:
                on_line(t)

        def on_line(t: dict):
            if t.get("id") is None:
                flush()
                lt = t.get("lastTransactionID")
                if lt and int(lt) > delivered.get(acct, 0):
                    return gap(None)
                return None
            tid = _txn_id(t)
            if tid is None:
                self._skip_txn(acct, t, ValueError(f"unreadable transaction id {t.get('id')!r}"))
                return None
            # Transaction ids are consecutive per account: a jump means the
            # stream skipped something, so replay before going on.
            if tid > delivered.get(acct, 0) + 1:
                flush()
                return gap(t)
            if tid <= delivered.get(acct, 0):
                return None  # already delivered (a replay overlapping the stream)
            try:
                ev = wire.txn_event(acct, t, "", cids)
            except wire.TXN_PARSE_ERRORS as exc:
                self._skip_txn(acct, t, exc)
                ev = None
            typ = t.get("type")
            if held:
                if (typ == "ORDER_FILL" or typ == "ORDER_CANCEL") and t.get("orderID") == held[2] and t.get(
                    "batchID"
                ) == held[1]:
                    held[3].cancel()
                    held.clear()
                else:
                    flush()
            if ev is not None:
                if typ in wire.ORDER_CREATE_TYPES and t.get("reason") == "CLIENT_ORDER":
                    held.extend((ev, t.get("batchID"), t["id"], loop.call_later(0.05, flush)))
                else:
                    self._emit(ev)
            # marked delivered once handled (emitted, held for its batch, or skipped)
            self._advance(acct, t)
            return None

        try:
            await self._stream_loop("txn", url, None, on_open, on_line)
        finally:
            flush()

    async def subscribe_prices(self, instruments: Sequence[str]) -> None:
        wanted = tuple(sorted(set(self._price_instruments) | set(instruments)))
        if wanted == self._price_instruments and "prices" in self._tasks:
            return
        self._price_instruments = wanted
        acct = self._accounts[0]
        url = self.config.stream_base + "/v3/accounts/" + acct + "/pricing/stream"
        params = {"instruments": ",".join(wanted), "snapshot": "true"}

        async def on_open() -> None:
            return None

        emit = self._emit

        def on_line(p: dict) -> None:
            typ = p.get("type")
            if typ is None or typ == "PRICE":
                tick = wire.price_tick(p)
                if tick is not None:
                    emit(tick)

        self._spawn("prices", self._stream_loop("price", url, params, on_open, on_line))
