#!/usr/bin/env python3
"""REST cost per request without sockets: aiohttp's full server path (HTTP
parsing, routing, middleware, handler, response writing) driven in-process.

    python bench/rest/inproc.py [--requests 20000] [--reps 5]

Bytes of a real HTTP/1.1 request are fed to aiohttp's ``RequestHandler``
through a transport that only collects what the server writes, on one event
loop, for the echo app and for fastexec's app over the real engine (simulated
venue). With no client and no kernel in the loop this is the steadiest figure
this shared 2-core box can give: the microseconds each order costs in the
REST process, beside the echo server's, and their ratio (= the throughput
ratio on one core when the server is the bottleneck). The wrk run
(``run_wrk.py``) remains the end-to-end check.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time

import orjson
from aiohttp import web

sys.path.insert(0, os.path.dirname(__file__))

from echo_server import make_app as make_echo_app  # noqa: E402


class _Transport(asyncio.Transport):
    """Collects writes; counts complete responses by their Content-Length."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray()
        self.responses = 0
        self.statuses: dict[int, int] = {}
        self.waiter: asyncio.Future | None = None
        self._closing = False

    def write(self, data) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.lower() == "content-length":
                    length = int(v)
            if len(self.buf) < end + 4 + length:
                return
            status = int(head.split(" ", 2)[1])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            del self.buf[: end + 4 + length]
            self.responses += 1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    def writelines(self, chunks) -> None:
        for c in chunks:
            self.write(c)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name, default=None):
        if name == "peername":
            return ("127.0.0.1", 1)
        if name == "sockname":
            return ("127.0.0.1", 2)
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _request(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Conn:
    """One keep-alive connection into ``app``'s request handler, no socket."""

    async def open(self, app: web.Application) -> "Conn":
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.proto = self.runner.server()  # type: ignore[misc]
        self.tr = _Transport()
        self.proto.connection_made(self.tr)
        self.loop = asyncio.get_running_loop()
        return self

    async def run(self, requests: list[bytes], n: int) -> None:
        """``n`` requests (cycling through ``requests``), one at a time."""
        tr, proto, loop = self.tr, self.proto, self.loop
        k = len(requests)
        for i in range(n):
            tr.waiter = loop.create_future()
            proto.data_received(requests[i % k])
            await tr.waiter

    async def close(self) -> None:
        self.proto.connection_lost(None)
        await self.runner.cleanup()


class Conns:
    """``k`` keep-alive connections into one app, all fed in the same loop turn:
    what ``wrk -c k`` does to a server that keeps up (every connection has one
    request in flight, and one epoll turn hands the server all that arrived), so
    the turns are shared as under load: in ``none`` mode the journal's acks
    share the end-of-turn write and every handler waits one loop turn for it."""

    async def open(self, app: web.Application, k: int) -> "Conns":
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.loop = asyncio.get_running_loop()
        self.conns = []
        for _ in range(k):
            proto = self.runner.server()  # type: ignore[misc]
            tr = _Transport()
            proto.connection_made(tr)
            self.conns.append((proto, tr))
        self.tr = _Transports([tr for _, tr in self.conns])
        return self

    async def run(self, requests: list[bytes], n: int) -> None:
        """``n`` requests in rounds of ``k`` (one per connection, cycling through ``requests``)."""
        loop, conns = self.loop, self.conns
        k, m = len(conns), len(requests)
        i = 0
        while i < n:
            batch = conns[: min(k, n - i)]
            waiters = []
            for proto, tr in batch:
                tr.waiter = w = loop.create_future()
                waiters.append(w)
                proto.data_received(requests[i % m])
                i += 1
            for w in waiters:
                await w

    async def close(self) -> None:
        for proto, _ in self.conns:
            proto.connection_lost(None)
        await self.runner.cleanup()


class _Transports:
    """The statuses of several connections' transports, summed (``Conns.tr``)."""

    def __init__(self, trs: list[_Transport]) -> None:
        self._trs = trs

    @property
    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for tr in self._trs:
            for k, v in tr.statuses.items():
                out[k] = out.get(k, 0) + v
        return out


async def drive(app: web.Application, requests: list[bytes], n: int) -> tuple[tuple[float, float], dict]:
    """(wall, CPU) seconds for ``n`` requests through one keep-alive
    connection, one at a time. CPU time (the process's, so a journal writer
    thread would count) is what other jobs on the shared box disturb least:
    being preempted costs wall time, not CPU time."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    proto = runner.server()  # type: ignore[misc]
    tr = _Transport()
    proto.connection_made(tr)
    loop = asyncio.get_running_loop()
    try:
        for i in range(min(n, 2000)):  # warm-up
            tr.waiter = loop.create_future()
            proto.data_received(requests[i % len(requests)])
            await tr.waiter
        tr.statuses.clear()
        t0 = time.perf_counter()
        c0 = time.process_time()
        for i in range(n):
            tr.waiter = loop.create_future()
            proto.data_received(requests[i % len(requests)])
            await tr.waiter
        elapsed = (time.perf_counter() - t0, time.process_time() - c0)
    finally:
        proto.connection_lost(None)
        await runner.cleanup()
    return elapsed, dict(tr.statuses)


async def main_async(args) -> dict:
    from fastexec.api import create_app
    from fastexec.config import Settings
    from fastexec.engine import Engine
    from fastexec.metrics import Metrics

    scratch = tempfile.TemporaryDirectory(prefix="fastexec-inproc-")  # the engine's data dir, removed at the end
    settings = Settings.from_env(
        {"FASTEXEC_DATA_DIR": scratch.name, "MAX_ORDERS_PER_SECOND": "1000000000"}, dotenv=False
    )
    engine = Engine(settings)
    await engine.start()
    account = engine.account_ids[0]
    bodies = [
        orjson.dumps({"account_id": account, "instrument": "EUR_USD", "units": 100, "side": side, "type": "market"})
        for side in ("buy", "sell")
    ]
    orders = [_request("/api/v1/orders", b) for b in bodies]
    echoes = [_request("/echo", b) for b in bodies]
    rows = []
    try:
        nan = (float("nan"), float("nan"))
        for _ in range(args.reps):
            e = o = nan
            if args.only != "orders":
                e, es = await drive(make_echo_app(), echoes, args.requests)
            if args.only != "echo":
                if args.gc == "freeze":
                    gc.collect()
                    gc.freeze()
                metrics = Metrics()
                metrics.attach_engine(engine)
                o, os_ = await drive(create_app(engine, metrics=metrics), orders, args.requests)
                assert set(os_) == {201}, os_
            us = 1e6 / args.requests
            rows.append((e[0] * us, o[0] * us, e[1] * us, o[1] * us))
            r = rows[-1]
            print(
                f"echo {r[0]:.1f} us/req   orders {r[1]:.1f} us/req   ratio {r[0] / r[1]:.2f}"
                f"   (CPU: echo {r[2]:.1f}  orders {r[3]:.1f}  ratio {r[2] / r[3]:.2f})",
                file=sys.stderr,
            )
    finally:
        await engine.stop()
    echo_us = statistics.median(r[0] for r in rows)
    order_us = statistics.median(r[1] for r in rows)
    echo_cpu = statistics.median(r[2] for r in rows)
    order_cpu = statistics.median(r[3] for r in rows)
    def r(x, nd=1):  # None for the side --only skipped
        return None if x != x else round(x, nd)

    return {
        "requests": args.requests,
        "reps": args.reps,
        "echo_us_per_req": r(echo_us),
        "orders_us_per_req": r(order_us),
        "ratio": r(echo_us / order_us, 3),
        "orders_per_s_one_core": r(1e6 / order_us, None),
        "echo_per_s_one_core": r(1e6 / echo_us, None),
        "echo_cpu_us_per_req": r(echo_cpu),
        "orders_cpu_us_per_req": r(order_cpu),
        "ratio_cpu": r(echo_cpu / order_cpu, 3),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument(
        "--gc",
        choices=("default", "freeze"),
        default="default",
        help="freeze: gc.freeze() before each orders rep, as fastexec serve's GcPolicy does every 10 s",
    )
    p.add_argument("--only", choices=("both", "orders", "echo"), default="both", help="run one side only (for profilers)")
    args = p.parse_args(argv)
    if not (0 < args.requests <= 200_000 and 0 < args.reps <= 20):
        p.error("--requests 1..200000, --reps 1..20")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(main_async(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
