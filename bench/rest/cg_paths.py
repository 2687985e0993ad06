"""REST request paths for callgrind: instructions per request, in-process.

    python bench/rest/cg_rest.py [names...]

Each path drives one keep-alive connection through aiohttp's full server
path (``inproc.Conn``: HTTP parsing, routing, handler, response writing) on
a uvloop loop, with no socket and no client. ``rest_echo`` is the bare
aiohttp JSON echo server (the reference); ``rest_orders`` a market order
through fastexec's app over the real engine (simulated venue, journal durability none);
``rest_orders_stub`` the same app over a stub engine that answers every
submit with one prebuilt filled view, so its count is the REST layer alone
(plus ``OrderView.to_dict``). Counts are ``(I(2N) - I(N)) / N`` as in the
core gate (``bench/callgrind``), so loop and setup costs cancel.

``rest_orders_journal`` is what ``fastexec serve`` runs per order: the same app
over a ``JournaledEngine`` (durability ``none``, so the page-cache write is a
system call callgrind does not count; snapshots off, since a forked child is
not this process's work), measured at steady state, after 30,000 orders have
filled every retention window (engine, journal state, venue history), so the
cost of forgetting old orders is in the figure. Its warm-up makes it the slow
one (about a minute under valgrind).

The ``_32`` paths feed 32 connections in the same loop turn, as ``wrk -c32``
does to a server that keeps up: a journaled order then shares its turn's
page-cache write and waits one loop turn for it, which a lone request (the
paths above) does not; the wrk throughput figure is this case.
"""
from __future__ import annotations

import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "callgrind"))

from paths import HotPath  # noqa: E402


def _loop():
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def _bodies(account: str) -> list[bytes]:
    import orjson

    return [
        orjson.dumps({"account_id": account, "instrument": "EUR_USD", "units": 100, "side": side, "type": "market"})
        for side in ("buy", "sell")
    ]


def _runner(loop, conn, requests):
    def run(n):
        loop.run_until_complete(conn.run(requests, n))
        if conn.tr.statuses.keys() - {200, 201}:
            raise SystemExit(f"unexpected statuses {conn.tr.statuses}")

    return run


def _open(loop, app, clients):
    """One connection (requests one at a time), or ``clients`` fed in the same loop turn."""
    from inproc import Conn, Conns

    return loop.run_until_complete(Conn().open(app) if clients == 1 else Conns().open(app, clients))


def _make_echo(clients=1):
    from echo_server import make_app
    from inproc import _request

    loop = _loop()
    conn = _open(loop, make_app(), clients)
    return _runner(loop, conn, [_request("/echo", b) for b in _bodies("001")])


def _scratch(prefix: str) -> str:
    """A temporary directory removed when the process exits (the engine's journal goes there)."""
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    return d


def _engine(loop, journaled=False):
    from fastexec.config import Settings
    from fastexec.engine import Engine

    settings = Settings.from_env(
        {
            "FASTEXEC_DATA_DIR": _scratch("fastexec-cg-rest-"),
            "MAX_ORDERS_PER_SECOND": "1000000000",
            "FASTEXEC_JOURNAL_DURABILITY": "none",
            # no synthetic price ticks: under valgrind a wall-clock timer fires
            # ~50x more often per request than natively and would be counted
            "FASTEXEC_SIM_TICK_MS": "3600000",
        },
        dotenv=False,
    )
    if journaled:
        from fastexec.journal.integration import JournaledEngine

        engine = JournaledEngine(settings, durability="none", snapshot_every=0)
    else:
        engine = Engine(settings)
    loop.run_until_complete(engine.start())
    return engine


def _make_orders(journaled=False, warm=0, clients=1):
    from inproc import _request

    from fastexec.api import create_app
    from fastexec.metrics import Metrics

    loop = _loop()
    engine = _engine(loop, journaled)
    metrics = Metrics()
    metrics.attach_engine(engine)
    conn = _open(loop, create_app(engine, metrics=metrics), clients)
    run = _runner(loop, conn, [_request("/api/v1/orders", b) for b in _bodies(engine.account_ids[0])])
    if warm:
        run(warm)
    return run


#: past every retention window: engine 10,000 + 4,096, journal state 20,000 finished orders
STEADY_WARM = 30_000


class _StubEngine:
    """Answers every submit with the same filled view (taken from the real engine)."""

    def __init__(self, real, view):
        self.instruments = real.instruments
        self.account_ids = real.account_ids
        self._view = view

    async def submit(self, spec, *, request_id=None):
        return self._view


def _make_orders_stub():
    from inproc import Conn, _request

    from fastexec.api import create_app
    from fastexec.engine.types import OrderSpec
    from fastexec.metrics import Metrics

    loop = _loop()
    engine = _engine(loop)
    account = engine.account_ids[0]
    view = loop.run_until_complete(engine.submit(OrderSpec(account, "EUR_USD", "buy", 100, "market")))
    loop.run_until_complete(engine.stop())  # only its view is used: no timers left running
    stub = _StubEngine(engine, view)
    metrics = Metrics()
    conn = loop.run_until_complete(Conn().open(create_app(stub, metrics=metrics)))
    return _runner(loop, conn, [_request("/api/v1/orders", b) for b in _bodies(account)])


def _make_to_dict():
    loop = _loop()
    engine = _engine(loop)
    from fastexec.engine.types import OrderSpec

    view = loop.run_until_complete(engine.submit(OrderSpec(engine.account_ids[0], "EUR_USD", "buy", 100, "market")))

    def run(n):
        f = view.to_dict
        for _ in range(n):
            f()

    return run


PATHS = [
    HotPath("rest_echo", _make_echo, n=300, gated=False, why="bare aiohttp JSON echo: the reference"),
    HotPath("rest_orders", _make_orders, n=300, gated=False, why="market order over the real engine (sim venue, journal durability none)"),
    HotPath("rest_orders_journal", lambda: _make_orders(journaled=True, warm=STEADY_WARM), n=2000, gated=False,
            why="what fastexec serve runs per order (journal, durability none), at steady state"),
    HotPath("rest_orders_stub", _make_orders_stub, n=300, gated=False, why="the REST layer alone: stub engine"),
    HotPath("rest_echo_32", lambda: _make_echo(clients=32), n=320, gated=False,
            why="echo, 32 connections fed per loop turn (as under wrk -c32): the reference under load"),
    HotPath("rest_orders_journal_32", lambda: _make_orders(journaled=True, warm=STEADY_WARM, clients=32), n=2048,
            gated=False, why="rest_orders_journal with 32 connections per loop turn: the acks share the end-of-turn write"),
    HotPath("order_view_to_dict", _make_to_dict, n=300, gated=False, why="OrderView.to_dict of a filled market order"),
]
