"""Acceptance: kill -9 the serving engine under 1,000 orders/s, many times.

Three real processes on loopback: the v20 simulator (``fastexec sim``), the
engine with its REST API and journal (``fastexec serve`` with the journal, as
``fastexec serve``) configured only through OANDA_*
environment variables pointing at the simulator, and this test as the client,
sending market orders open-loop at 1,000/s with unique client order ids.

The engine is killed with SIGKILL at random moments (KILLS times) and
restarted each time. Afterwards:

* every order the client got a 201 for exists exactly once at the simulator
  (counted in its transaction log by client order id), and no order was sent
  twice, acknowledged or not;
* fastexec's positions and balance equal the simulator's.

Bounded: KILLS cycles of a random 0.3-1.2 s of load each, every wait with a
timeout; the whole test stays well under two minutes on two cores.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import aiohttp
import pytest

KILLS = 20
RATE = 1000
TOKEN = "crash-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sim(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fastexec", "sim", "--port", str(port), "--token", TOKEN, "--seed", "5",
         "--tick-interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def serve_env(sim_port: int, account: str, data_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OANDA_", "FASTEXEC_", "MAX_"))}
    env.update({
        "OANDA_API_KEY": TOKEN,
        "OANDA_ACCOUNT_ID": account,
        "OANDA_REST_URL": f"http://127.0.0.1:{sim_port}",
        "OANDA_STREAM_URL": f"http://127.0.0.1:{sim_port}",
        "OANDA_MAX_REQUESTS_PER_S": "20000",
        "FASTEXEC_DATA_DIR": data_dir,
        "FASTEXEC_JOURNAL_DURABILITY": "fsync",
        "MAX_ORDERS_PER_SECOND": "100000",
        "MAX_CONCURRENT_ORDERS": "5000",
        "MAX_POSITION_SIZE": "10000000",
        "MAX_UNITS_PER_ORDER": "100000",
        "MAX_POSITIONS_PER_INSTRUMENT": "1000000",
        "LOG_LEVEL": "warning",
    })
    return env


def start_serve(env: dict, port: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fastexec", "serve", "--port", str(port), "--metrics-port", "0"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )


async def wait_healthy(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"fastexec serve exited with {proc.returncode} during start-up")
        try:
            async with session.get(url + "/health") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("fastexec serve did not become healthy")


async def sim_account(session, sim_url: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            async with session.get(f"{sim_url}/v3/accounts", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                return (await r.json())["accounts"][0]["id"]
        except aiohttp.ClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class Client:
    """Open-loop order flow; remembers what was acknowledged."""

    def __init__(self, session: aiohttp.ClientSession, api: str, account: str):
        self.session, self.api, self.account = session, api, account
        self.n = 0
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.statuses: Counter = Counter()

    async def one(self, cid: str, side: str) -> None:
        body = {"account_id": self.account, "instrument": "EUR_USD", "units": 1000, "side": side, "type": "market",
                "client_order_id": cid}
        self.sent.add(cid)
        try:
            async with self.session.post(self.api + "/api/v1/orders", json=body) as r:
                self.statuses[r.status] += 1
                if r.status == 201:
                    data = await r.json()
                    assert data["client_order_id"] == cid
                    self.acked.add(cid)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            self.statuses["conn"] += 1

    async def run(self, seconds: float, rng: random.Random, kill=None) -> None:
        """Send at RATE/s for ``seconds``; call ``kill`` at a random moment inside the window."""
        tasks = set()
        start = time.monotonic()
        kill_at = start + rng.uniform(0.2, seconds) if kill else None
        sent = 0
        while True:
            now = time.monotonic()
            if kill_at is not None and now >= kill_at:
                kill()
                kill_at = None
                break
            if now - start >= seconds:
                break
            due = int((now - start) * RATE) + 1
            while sent < due:
                self.n += 1
                t = asyncio.ensure_future(self.one(f"crash-{self.n}", "buy" if self.n % 2 else "sell"))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.001)
        if tasks:
            await asyncio.wait(tasks, timeout=30)


def money(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.0001"))


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_kill9_under_load_loses_no_acknowledged_order(tmp_path):
    rng = random.Random(20261121)
    sim_port, api_port = free_port(), free_port()
    sim = start_sim(sim_port)
    sim_url = f"http://127.0.0.1:{sim_port}"
    api = f"http://127.0.0.1:{api_port}"
    log_path = tmp_path / "serve.log"
    serve = None
    t_begin = time.monotonic()
    try:
        timeout = aiohttp.ClientTimeout(total=20)
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            account = await sim_account(session, sim_url)
            env = serve_env(sim_port, account, str(tmp_path / "data"))
            client = Client(session, api, account)
            with open(log_path, "ab") as log:
                for cycle in range(KILLS):
                    serve = start_serve(env, api_port, log)
                    await wait_healthy(session, api, serve)
                    victim = serve

                    def kill(p=victim):
                        os.kill(p.pid, signal.SIGKILL)

                    await client.run(rng.uniform(0.3, 1.2), rng, kill=kill)
                    victim.wait(timeout=20)
                    assert victim.returncode == -signal.SIGKILL, f"cycle {cycle}: exited {victim.returncode}"
                    serve = None
                # the last start: recovery, then compare before and after more trading
                serve = start_serve(env, api_port, log)
                await wait_healthy(session, api, serve)
                after_recovery = await compare(session, api, sim_url, account)
                await client.run(0.5, rng)  # it still takes orders after all that
                await asyncio.sleep(0.5)  # let stream events for the last fills land
                after_trading = await compare(session, api, sim_url, account)
                auth = {"Authorization": f"Bearer {TOKEN}"}
                async with session.get(f"{sim_url}/v3/accounts/{account}/transactions/sinceid",
                                       params={"id": "0"}, headers=auth) as r:
                    txns = (await r.json())["transactions"]
                created = Counter(t.get("clientExtensions", {}).get("id") for t in txns
                                  if t["type"] == "MARKET_ORDER")
    finally:
        for p in (serve, sim):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)

    elapsed = time.monotonic() - t_begin
    print(f"\ncrash test: {KILLS} kills in {elapsed:.1f}s, {len(client.sent)} orders sent, {len(client.acked)} acked, "
          f"{sum(created.values())} at the simulator, statuses {dict(client.statuses)}; "
          f"after recovery {after_recovery}; after trading {after_trading}")
    assert client.acked, client.statuses
    missing = [c for c in client.acked if created[c] != 1]
    assert not missing, f"{len(missing)} acknowledged orders not exactly once at the simulator: {missing[:10]}"
    twice = [c for c, n in created.items() if c is not None and n > 1]
    assert not twice, f"orders sent more than once: {twice[:10]}"
    assert set(created) - {None} <= client.sent  # nothing invented
    for label, (ours, theirs) in (("after recovery", after_recovery), ("after trading", after_trading)):
        assert ours == theirs, f"{label}: fastexec {ours} != simulator {theirs}"


async def compare(session, api: str, sim_url: str, account: str):
    """(fastexec's, the simulator's) net positions and balance, read now."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with session.get(f"{sim_url}/v3/accounts/{account}/openPositions", headers=auth) as r:
        sim_positions = {p["instrument"]: int(p["long"]["units"]) + int(p["short"]["units"])
                         for p in (await r.json())["positions"]}
    async with session.get(f"{sim_url}/v3/accounts/{account}/summary", headers=auth) as r:
        sim_balance = money((await r.json())["account"]["balance"])
    async with session.get(api + "/api/v1/positions", params={"account_id": account}) as r:
        assert r.status == 200
        ours = {p["instrument"]: int(p["units"]) for p in (await r.json())["positions"] if int(p["units"])}
    async with session.get(api + "/api/v1/accounts") as r:
        accounts = (await r.json())["accounts"]
        our_balance = money(next(a for a in accounts if a["account_id"] == account)["balance"])
    return (ours, our_balance), ({k: v for k, v in sim_positions.items() if v}, sim_balance)
