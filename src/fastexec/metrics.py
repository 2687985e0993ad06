"""Prometheus metrics with the seed's names and labels, served on their own port.

Hot-path cost is kept to a dict lookup plus a ``observe``/``inc`` on a
pre-bound child: label children are cached per label tuple, so
``.labels()`` (which formats and validates every call) runs once per
combination. State that already lives in the engine (working orders, open
positions, risk score, kill switches) is not mirrored into gauges on every
change; a custom collector reads it from the engine at scrape time, which is
also what makes the gauges always agree with the engine.

Counters and histograms are our own small classes, exported through a
collector, rather than prometheus_client's: those take a lock and re-validate
on every ``inc``/``observe``, which a single-threaded event loop does not
need, and they showed up in REST profiles. prometheus_client still renders the
exposition.

Label values never carry client text: a kill-switch reason (free text from
the caller) is mapped to a fixed vocabulary (``KILL_SWITCH_REASONS``), so the
series count stays bounded and no order id or name ends up in a label.

Counters an alert watches with ``increase`` (kill-switch activations, broker
errors) have their children created at 0 when the engine is attached: a
series born at 1 has no earlier sample, so ``increase`` never sees its first
event.
"""
from __future__ import annotations

import logging
import os
import re
import resource
import time
from typing import Any, Optional

from bisect import bisect_left

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("fastexec.metrics")

# Seconds; dense below 10 ms where the engine lives, then the seed's 50/100/200 ms marks.
DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0,
)
SLIPPAGE_BUCKETS = (-10.0, -5.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0)

_LABEL_RE = re.compile(r"[^a-z0-9_]+")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def label_token(text: Optional[str], default: str = "unspecified") -> str:
    """A bounded, safe label value for client-supplied text."""
    if not text:
        return default
    token = _LABEL_RE.sub("_", text.lower()).strip("_")[:32]
    return token or default


# The ``reason`` label of execution_kill_switch_activations_total: a bounded set.
# manual: an operator or client pulled it without a recognised cause (or said "manual");
# risk / daily_loss: the given reason names risk limits or the daily loss limit;
# restored: the switch was active in the journal when fastexec started;
# other: any other free text (the text itself is in the log and GET .../kill-switch).
KILL_SWITCH_REASONS = ("manual", "risk", "daily_loss", "restored", "other")

# The ``operation`` label of execution_broker_errors_total: submit (order
# submission failed to reach the broker), stream (a price or transaction stream
# failed or could not reconnect).
BROKER_ERROR_OPERATIONS = ("submit", "stream")


def kill_switch_reason(text: Optional[str]) -> str:
    """Map a kill-switch reason (free text) onto ``KILL_SWITCH_REASONS``."""
    token = label_token(text, default="")
    if not token or token == "manual":
        return "manual"
    if token in KILL_SWITCH_REASONS:
        return token
    words = set(token.split("_"))
    if "daily" in words and ("loss" in words or "losses" in words) or "daily_loss" in token:
        return "daily_loss"
    if "risk" in words or token.startswith("risk"):
        return "risk"
    if "restored" in words or "journal" in words:
        return "restored"
    return "other"


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - non-Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _CpuSampler:
    """Process CPU % over the interval since the previous scrape (100 = one core)."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def sample(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        dw = wall - self._wall
        pct = 0.0 if dw <= 0 else 100.0 * (cpu - self._cpu) / dw
        self._wall, self._cpu = wall, cpu
        return pct


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last = above every bound (+Inf only)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bucket i holds values <= bounds[i] (Prometheus "le")
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class LightCounter:
    """A labelled counter for one event loop: no locks, children cached by labels."""

    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.children: dict[tuple, _CounterChild] = {}

    def labels(self, *values: str) -> _CounterChild:
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = _CounterChild()
        return child

    def family(self):
        fam = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self.children.items()):
            fam.add_metric(list(key), child.value)
        return fam


class LightHistogram:
    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: list[str], buckets: tuple) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self.children: dict[tuple, _HistogramChild] = {}

    def labels(self, *values: str) -> _HistogramChild:
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = _HistogramChild(self.bounds)
        return child

    def family(self):
        fam = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self.children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(self.bounds, child.counts):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            cumulative += child.counts[-1]
            buckets.append(("+Inf", cumulative))
            fam.add_metric(list(key), buckets, child.sum)
        return fam


def _le(bound: float) -> str:
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"


class _LightCollector:
    def __init__(self, metrics: list) -> None:
        self.metrics = metrics

    def describe(self):
        return [m.family() for m in self.metrics]

    def collect(self):
        return [m.family() for m in self.metrics]


class EngineCollector:
    """Gauges computed from engine state when Prometheus scrapes."""

    def __init__(self, metrics: "Metrics") -> None:
        self.metrics = metrics
        self._cpu = _CpuSampler()

    def describe(self):  # no up-front description: families depend on the engine
        return []

    def collect(self):
        engine = self.metrics.engine
        active = GaugeMetricFamily("execution_active_orders", "Working (not yet final) orders per account", labels=["account_id"])
        positions = GaugeMetricFamily(
            "execution_open_positions", "Open net position (units, signed) per account and instrument", labels=["account_id", "instrument"]
        )
        risk = GaugeMetricFamily("execution_risk_score", "Engine risk score 0-100 per account", labels=["account_id"])
        halted = GaugeMetricFamily("execution_kill_switch_active", "1 while an account's kill switch is on", labels=["account_id"])
        broker_up = GaugeMetricFamily("execution_broker_connected", "1 while the broker answers", labels=["broker"])
        gaps = CounterMetricFamily(
            "execution_broker_history_gaps",
            "Transaction-stream gaps the broker could no longer replay (v20 sinceid 416): their events never "
            "reached the engine, whose orders and positions may be stale until a restart reconciles them",
            labels=["broker"],
        )
        journal_ok = GaugeMetricFamily(
            "execution_journal_ok", "1 while the journal can acknowledge (open, no failed write)", labels=["durability"]
        )
        mem = GaugeMetricFamily("execution_memory_usage_bytes", "Resident memory", labels=["component"])
        cpu = GaugeMetricFamily("execution_cpu_usage_percent", "CPU use since the previous scrape (100 = one core)", labels=["component"])
        mem.add_metric(["process"], float(rss_bytes()))
        cpu.add_metric(["process"], self._cpu.sample())
        if engine is not None:
            try:
                for account_id in list(engine.account_ids):
                    rm = engine.risk_metrics(account_id)
                    active.add_metric([account_id], float(rm.working_orders))
                    risk.add_metric([account_id], float(rm.risk_score))
                    acct = engine.account(account_id)
                    halted.add_metric([account_id], 1.0 if acct.kill_switch_active else 0.0)

                    for pos in engine.positions(account_id):
                        if pos.units:
                            positions.add_metric([account_id, pos.instrument], float(pos.units))
                name, ok = self.metrics.broker_status()
                broker_up.add_metric([name], 1.0 if ok else 0.0)
                stats = getattr(getattr(engine, "broker", None), "stats", None)
                if isinstance(stats, dict) and "history_gaps" in stats:
                    gaps.add_metric([name], float(stats["history_gaps"]))
                journal = getattr(engine, "journal", None)
                if journal is not None and callable(getattr(journal, "health", None)):
                    jh = journal.health()
                    journal_ok.add_metric([jh["durability"]], 1.0 if jh["ok"] else 0.0)
            except Exception:  # a scrape must never take the process down
                log.exception("metrics collection from the engine failed")
        return [active, positions, risk, halted, broker_up, gaps, journal_ok, mem, cpu]


class Metrics:
    """The process's metric set. One instance per engine (tests make several)."""

    def __init__(self, registry: Optional[CollectorRegistry] = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.engine: Any = None
        self.order_duration = LightHistogram(
            "execution_order_duration_seconds",
            "Order submission time inside fastexec, from request parsed to engine answer",
            ["order_type", "instrument", "result"],
            DURATION_BUCKETS,
        )
        self.orders = LightCounter(
            "execution_orders",
            "Orders submitted. result: success (accepted by the venue), denied (risk gateway or kill switch), "
            "rejected (broker refused), invalid (malformed for the engine), error (broker unreachable)",
            ["order_type", "instrument", "status", "result"],
        )
        self.slippage = LightHistogram(
            "execution_slippage_basis_points",
            "Fill price versus the order's reference price in basis points (positive = worse for the client)",
            ["instrument", "order_type"],
            SLIPPAGE_BUCKETS,
        )
        self.risk_violations = LightCounter(
            "execution_risk_violations", "Orders refused by the risk gateway", ["account_id", "violation_type"]
        )
        self.kill_switch_activations = LightCounter(
            "execution_kill_switch_activations", "Kill switch activations", ["account_id", "reason"]
        )
        self.broker_errors = LightCounter(
            "execution_broker_errors", "Broker requests that failed (connection, timeout, 5xx)", ["operation"]
        )
        self.http_requests = LightCounter(
            "execution_http_requests", "REST requests by route and status class", ["route", "method", "status"]
        )
        self.operation_duration = LightHistogram(
            "execution_operation_duration_seconds",
            "Modify, cancel and position close time inside fastexec",
            ["operation", "result"],
            DURATION_BUCKETS,
        )
        r.register(
            _LightCollector(
                [
                    self.order_duration,
                    self.orders,
                    self.slippage,
                    self.risk_violations,
                    self.kill_switch_activations,
                    self.broker_errors,
                    self.http_requests,
                    self.operation_duration,
                ]
            )
        )
        self._children: dict[tuple, Any] = {}
        self._collector = EngineCollector(self)
        r.register(self._collector)
        self._ks_counted: dict[str, Any] = {}
        self._stream_errors_seen = 0
        self._last_broker_ok = True

    # ------------------------------------------------------------ engine wiring
    def attach_engine(self, engine: Any) -> None:
        """Read gauges from ``engine`` at scrape time.

        Deliberately no ``engine.subscribe``: a subscriber makes the engine
        build event objects for every order, which would tax the hot path just
        to count kill switches. Activations are counted when the API makes them
        and, for those the engine makes itself (daily-loss breach), when a
        scrape finds a switch on whose activation was not counted yet.
        """
        self.engine = engine
        if engine is None:
            return
        accounts = ["all"]
        try:
            accounts.extend(engine.account_ids)
        except Exception:  # pragma: no cover - defensive
            log.exception("metrics: cannot list the engine's accounts")
        for account in accounts:
            for reason in KILL_SWITCH_REASONS:
                self.kill_switch_activations.labels(account, reason)
        for operation in BROKER_ERROR_OPERATIONS:
            self.broker_errors.labels(operation)
        # A switch already on when the engine is attached was restored (journal)
        # at start-up: counted once, as "restored", at the next scrape.
        ks = getattr(engine, "kill_switch", None)
        if ks is not None:
            try:
                for account in [None, *engine.account_ids]:
                    self.kill_switch_seen(ks(account), reason="restored")
            except Exception:  # pragma: no cover - defensive
                log.exception("metrics: kill switch scan at attach failed")

    def detach(self) -> None:
        self.engine = None

    def kill_switch_seen(self, view: Any, reason: Optional[str] = None) -> None:
        """Count an active kill switch once per activation (keyed by its time);
        ``reason`` overrides the mapping of the switch's own reason."""
        if not getattr(view, "active", False):
            return
        account = view.account_id or "all"
        stamp = view.activated_at
        if self._ks_counted.get(account) == stamp:
            return
        self._ks_counted[account] = stamp
        if reason is not None:
            self.kill_switch_activations.labels(account, reason).inc()
        else:
            self.kill_switch(account, view.reason)

    def broker_status(self) -> tuple[str, bool]:
        engine = self.engine
        broker = getattr(engine, "broker", None)
        name = getattr(broker, "name", "broker")
        health = getattr(engine, "health", None)
        if callable(health):
            try:
                h = health()
                ok = bool(h.get("broker", {}).get("ok", self._last_broker_ok)) if isinstance(h, dict) else self._last_broker_ok
                return name, ok
            except Exception:  # pragma: no cover - defensive
                return name, False
        return name, self._last_broker_ok

    # ------------------------------------------------------------ hot path
    def order(self, order_type: str, instrument: str, status: str, result: str, seconds: float) -> None:
        key = ("o", order_type, instrument, status, result)
        pair = self._children.get(key)
        if pair is None:
            pair = self._children[key] = (
                self.orders.labels(order_type, instrument, status, result),
                self.order_duration.labels(order_type, instrument, result),
            )
        pair[0].value += 1.0  # _CounterChild.inc and _HistogramChild.observe, inlined
        h = pair[1]
        h.counts[bisect_left(h.bounds, seconds)] += 1
        h.sum += seconds

    def operation(self, operation: str, result: str, seconds: float) -> None:
        key = ("op", operation, result)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.operation_duration.labels(operation, result)
        child.observe(seconds)

    def slippage_bp(self, instrument: str, order_type: str, bp: float) -> None:
        key = ("s", instrument, order_type)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.slippage.labels(instrument, order_type)
        child.observe(bp)

    def risk_violation(self, account_id: str, violation_type: str) -> None:
        key = ("r", account_id, violation_type)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.risk_violations.labels(account_id, label_token(violation_type))
        child.inc()

    def kill_switch(self, account_id: str, reason: Optional[str]) -> None:
        self.kill_switch_activations.labels(account_id, kill_switch_reason(reason)).inc()

    def broker_error(self, operation: str) -> None:
        self._last_broker_ok = False
        self.broker_errors.labels(operation).inc()

    def broker_ok(self) -> None:
        self._last_broker_ok = True

    def http(self, route: str, method: str, status: int) -> None:
        self.http_counter(route, method, status).inc()

    def http_counter(self, route: str, method: str, status: int) -> _CounterChild:
        """The request counter child of one route, method and status (the API
        caches it per route, so a request costs one ``inc``)."""
        key = ("h", route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.http_requests.labels(route, method, str(status))
        return child

    # ------------------------------------------------------------ exposition
    def refresh(self) -> None:
        """Catch kill switches the engine activated by itself; runs before the
        registry is collected so the count appears in this very scrape."""
        engine = self.engine
        self._count_stream_errors(engine)
        ks = getattr(engine, "kill_switch", None)
        if ks is None:
            return
        try:
            self.kill_switch_seen(ks(None))
            for account_id in list(engine.account_ids):
                self.kill_switch_seen(ks(account_id))
        except Exception:  # a scrape must never take the process down
            log.exception("kill switch scan failed")

    def _count_stream_errors(self, engine: Any) -> None:
        """Stream failures (dropped stream, refused or unreachable reconnect)
        the broker adapter counted since the last scrape go into
        ``execution_broker_errors_total{operation="stream"}``."""
        stats = getattr(getattr(engine, "broker", None), "stats", None)
        if not isinstance(stats, dict):
            return
        try:
            seen = int(stats.get("txn_stream_errors", 0)) + int(stats.get("price_stream_errors", 0))
        except (TypeError, ValueError):  # pragma: no cover - defensive
            return
        delta = seen - self._stream_errors_seen
        if delta < 0:  # a new adapter: its counters start again
            delta = seen
        self._stream_errors_seen = seen
        if delta:
            self.broker_errors.labels("stream").inc(delta)

    def render(self) -> bytes:
        self.refresh()
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST


def metrics_app(metrics: Metrics):
    """The aiohttp app of the metrics port: ``/metrics`` only."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    return app
