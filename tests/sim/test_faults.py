"""Each fault mode of the simulator, shown to really happen over loopback.

Every test is bounded: a fixed number of requests and a wait of at most a
couple of seconds. Time is only used to make faults happen (a client timeout
shorter than the server's hold), never asserted as a performance figure.
"""
from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from fastexec.sim.faults import FaultConfig, Stats
from fastexec.sim.testing import SimServer

MARKET = {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "100"}}


def market(cid: str) -> dict:
    return {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "100", "clientExtensions": {"id": cid}}}


async def _session(sim, **kw):
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}, **kw)


async def test_latency_fixed_and_jitter_delays_each_request():
    async with SimServer(faults=FaultConfig(seed=7, latency=0.03, jitter=0.02)) as sim:
        async with await _session(sim) as s:
            loop = asyncio.get_running_loop()
            for _ in range(3):
                t0 = loop.time()
                async with s.get(sim.base_url + "/v3/accounts") as r:
                    assert r.status == 200
                # the server really waited: the client cannot see the answer sooner
                assert loop.time() - t0 >= 0.03
        delays = [r.delay for r in sim.stats.requests]
        assert len(delays) == 3 and all(0.03 <= d <= 0.05 for d in delays)
        assert len(set(delays)) == 3  # jitter drawn per request


async def test_rate_limit_answers_429_beyond_limit_per_second():
    # a small limit keeps the test independent of machine load: 60 concurrent
    # requests would have to spread over 3 s for none of them to be refused
    async with SimServer(faults=FaultConfig(rate_limit=20)) as sim:
        async with await _session(sim) as s:
            async def one():
                async with s.get(sim.base_url + "/v3/accounts") as r:
                    return r.status, await r.json(), r.headers.get("Retry-After")
            results = await asyncio.gather(*(one() for _ in range(60)))
        statuses = [st for st, _, _ in results]
        limited = [(b, ra) for st, b, ra in results if st == 429]
        assert statuses.count(200) >= 20 and len(limited) >= 1
        assert all("Rate limit" in b["errorMessage"] and ra == "1" for b, ra in limited)
        ok_times = [r.time for r in sim.stats.requests if r.status == 200]
        assert Stats.max_in_window(ok_times) <= 20
        assert sim.stats.count(fault="429") == len(limited)


def test_sliding_window_admits_the_limit_per_second():
    from fastexec.sim.faults import SlidingWindow

    w = SlidingWindow()
    assert [w.admit(120, 10.0 + k * 0.001) for k in range(125)] == [True] * 120 + [False] * 5
    assert w.admit(120, 11.0005)  # the first second's oldest requests have left the window
    c = SlidingWindow()
    assert [c.admit(2, t) for t in (0.0, 0.1, 0.2, 1.05, 1.2)] == [True, True, False, True, True]


async def test_new_connection_limit_refuses_excess_connections():
    async with SimServer(faults=FaultConfig(connection_rate_limit=2)) as sim:
        outcomes = []
        for _ in range(5):  # each session opens a fresh connection
            async with await _session(sim) as s:
                try:
                    async with s.get(sim.base_url + "/v3/accounts") as r:
                        outcomes.append(r.status)
                except aiohttp.ClientError:
                    outcomes.append("refused")
        assert outcomes.count(200) >= 2 and "refused" in outcomes
        assert Stats.max_in_window(sim.stats.connections) <= 2
        # aiohttp retries a GET once on a fresh connection, so refusals >= failed requests
        assert len(sim.stats.rejected_connections) >= outcomes.count("refused")


async def test_new_connection_limit_can_answer_429_instead():
    async with SimServer(faults=FaultConfig(connection_rate_limit=1, connection_reject_with_429=True)) as sim:
        statuses = []
        for _ in range(3):
            async with await _session(sim) as s:
                async with s.get(sim.base_url + "/v3/accounts") as r:
                    statuses.append(r.status)
        assert statuses[0] == 200 and 429 in statuses


async def test_random_5xx_is_seeded_and_applies_nothing():
    async def run():
        async with SimServer(faults=FaultConfig(seed=11, error_rate=0.5, fault_path="/orders")) as sim:
            async with await _session(sim) as s:
                out = []
                for i in range(12):
                    async with s.post(f"{sim.base_url}/v3/accounts/{sim.account_ids[0]}/orders", json=market(f"e{i}")) as r:
                        out.append(r.status)
            acct = sim.venue.accounts[sim.account_ids[0]]
            return out, {cid for cid in acct.by_client}
    first, placed = await run()
    again, _ = await run()
    assert first == again  # same seed, same faults
    assert 503 in first and 201 in first
    failed = {f"e{i}" for i, st in enumerate(first) if st == 503}
    assert failed and not (failed & placed)  # a 5xx here never applied the order


async def test_error_next_forces_exactly_n_errors():
    async with SimServer(faults=FaultConfig(error_next=2, error_status=500)) as sim:
        async with await _session(sim) as s:
            got = []
            for _ in range(4):
                async with s.get(sim.base_url + "/v3/accounts") as r:
                    got.append(r.status)
        assert got == [500, 500, 200, 200]


@pytest.mark.parametrize("delay", [0.0, 0.3], ids=["before-the-answer", "after-the-answer"])
async def test_5xx_after_the_venue_applied_the_order(delay):
    faults = FaultConfig(error_next=1, error_status=500, error_applies=True, error_apply_delay=delay,
                         fault_path="/orders")
    async with SimServer(faults=faults) as sim:
        aid = sim.account_ids[0]
        acct = sim.venue.accounts[aid]
        async with await _session(sim) as s:
            async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market("applied-500")) as r:
                assert r.status == 500
                assert "lastTransactionID" not in await r.json()  # nothing in the answer tells
        # with a delay, a lookup straight after the answer finds nothing yet...
        assert ("applied-500" in acct.by_client) is (delay == 0)
        await asyncio.sleep(delay + 0.2)  # bounded: past the delay
        # ...and the order shows up once the venue took it, exactly once
        creates = [t for t in acct.txns if t.type == "MARKET_ORDER" and t.p.client_id == "applied-500"]
        assert len(creates) == 1 and creates[0].p.state == "FILLED"
        (rec,) = [r for r in sim.stats.requests if r.fault == "5xx"]
        assert rec.status == 500 and rec.applied is True


async def test_5xx_retry_after_header_is_sent_when_set():
    async with SimServer(faults=FaultConfig(error_next=1, error_status=429, error_retry_after="7")) as sim:
        async with await _session(sim) as s:
            async with s.get(sim.base_url + "/v3/accounts") as r:
                assert r.status == 429 and r.headers.get("Retry-After") == "7"
            async with s.get(sim.base_url + "/v3/accounts") as r:
                assert r.status == 200 and "Retry-After" not in r.headers


async def test_txn_overrides_change_what_clients_read_not_the_books():
    async with SimServer(faults=FaultConfig(heartbeat=0.05)) as sim:
        aid = sim.account_ids[0]
        acct = sim.venue.accounts[aid]
        base = f"{sim.base_url}/v3/accounts/{aid}"
        async with await _session(sim) as s:
            since = acct.last_id
            fill_id = since + 2  # the market order's create, then its fill
            sim.faults.txn_overrides[fill_id] = {"instrument": "SPX500_USD", "units": "0.5"}
            async with s.get(base + "/transactions/stream") as stream:
                async with s.post(base + "/orders", json=market("ov-1")) as r:
                    assert (await r.json())["orderFillTransaction"]["id"] == str(fill_id)
                lines = []
                while not any(b'"ORDER_FILL"' in ln for ln in lines):
                    lines.append(await _read_line(stream, 1.0))
            async with s.get(base + "/transactions/sinceid", params={"id": str(since)}) as r:
                replayed = (await r.json())["transactions"]
            async with s.get(base + f"/transactions/{fill_id}") as r:
                one = (await r.json())["transaction"]
        (streamed,) = [orjson.loads(ln) for ln in lines if b'"ORDER_FILL"' in ln]
        (fill,) = [t for t in replayed if t["type"] == "ORDER_FILL"]
        for t in (streamed, fill, one):
            assert (t["id"], t["instrument"], t["units"]) == (str(fill_id), "SPX500_USD", "0.5")
        assert sum(p.units for p in acct.positions.values() if p.inst.name == "EUR_USD") == 100


@pytest.mark.parametrize("applies,late", [(True, False), (True, True), (False, False)])
async def test_held_request_times_out_client_then_applies_or_not(applies, late):
    faults = FaultConfig(timeout_next=1, hold=0.4, timeout_applies=applies, timeout_apply_late=late,
                         fault_path="/orders")
    async with SimServer(faults=faults) as sim:
        aid = sim.account_ids[0]
        acct = sim.venue.accounts[aid]
        async with await _session(sim, timeout=aiohttp.ClientTimeout(total=0.1)) as s:
            with pytest.raises(asyncio.TimeoutError):
                async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market("held-1")) as r:
                    await r.read()
        if applies and not late:
            assert "held-1" in acct.by_client  # applied while the client waited
        else:
            assert "held-1" not in acct.by_client  # a lookup right after the timeout finds nothing...
        await asyncio.sleep(0.6)  # bounded: past the hold
        assert ("held-1" in acct.by_client) is applies  # ...and late application shows up afterwards
        rec = [r for r in sim.stats.requests if r.fault == "timeout"]
        assert len(rec) == 1 and rec[0].applied is applies


async def test_connection_dropped_after_order_applied():
    async with SimServer(faults=FaultConfig(drop_next=1, fault_methods=("POST",))) as sim:
        aid = sim.account_ids[0]
        async with await _session(sim) as s:
            with pytest.raises(aiohttp.ClientError):
                async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market("lost-1")) as r:
                    await r.read()
            # the order exists at the venue although the client never got the 201
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/orders/@lost-1") as r:
                assert r.status == 200
                body = await r.json()
        assert body["order"]["state"] == "FILLED"
        (rec,) = [r for r in sim.stats.requests if r.fault == "drop"]
        assert rec.status == 201 and rec.applied is True


async def _read_line(resp, timeout):
    return await asyncio.wait_for(resp.content.readline(), timeout)


async def test_stream_stall_sends_nothing_not_even_heartbeats():
    faults = FaultConfig(heartbeat=0.05, stream_stall_after=1, stream_stall_for=1.0, price_interval=0)
    async with SimServer(faults=faults) as sim:
        aid = sim.account_ids[0]
        async with await _session(sim) as s:
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/pricing/stream?instruments=EUR_USD") as r:
                first = await _read_line(r, 1.0)
                assert b'"PRICE"' in first
                with pytest.raises(asyncio.TimeoutError):
                    await _read_line(r, 0.5)  # heartbeats are due every 0.05 s, yet silence
                after = await _read_line(r, 2.0)  # the stall ends, the stream resumes
                assert after.strip()


async def test_stream_disconnect_after_n_lines():
    faults = FaultConfig(heartbeat=0.02, stream_disconnect_after=3)
    async with SimServer(faults=faults) as sim:
        aid = sim.account_ids[0]
        async with await _session(sim) as s:
            lines = []
            with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionResetError)):
                async with s.get(f"{sim.base_url}/v3/accounts/{aid}/transactions/stream") as r:
                    for _ in range(10):
                        line = await _read_line(r, 1.0)
                        if not line:
                            raise aiohttp.ServerDisconnectedError()
                        lines.append(line)
            assert len(lines) == 3 and all(b"HEARTBEAT" in x for x in lines)


async def test_faults_are_mutable_at_run_time():
    async with SimServer() as sim:
        async with await _session(sim) as s:
            async with s.get(sim.base_url + "/v3/accounts") as r:
                assert r.status == 200
            sim.faults.error_next = 1
            async with s.get(sim.base_url + "/v3/accounts") as r:
                assert r.status == 503
            async with s.get(sim.base_url + "/v3/accounts") as r:
                assert r.status == 200


async def test_connection_dropped_before_the_venue_saw_the_order():
    faults = FaultConfig(drop_before_apply_next=1, fault_methods=("POST",), fault_path="/orders")
    async with SimServer(faults=faults) as sim:
        aid = sim.account_ids[0]
        acct = sim.venue.accounts[aid]
        last = acct.last_id
        async with await _session(sim) as s:
            with pytest.raises(aiohttp.ClientError):
                async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market("never-1")) as r:
                    await r.read()
            # nothing happened at the venue: no order, no transaction id consumed
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/orders/@never-1") as r:
                assert r.status == 404
            assert acct.last_id == last and "never-1" not in acct.by_client
            # the lookup says "not there", so sending it again is safe and fills once
            async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market("never-1")) as r:
                assert r.status == 201
        assert sum(1 for o in acct.orders.values() if o.client_id == "never-1") == 1
        (rec,) = [r for r in sim.stats.requests if r.fault == "drop_before_apply"]
        assert rec.applied is False and rec.method == "POST"
        assert faults.drop_before_apply_next == 0


async def test_drop_before_apply_rate_is_seeded_and_applies_nothing():
    async def run():
        faults = FaultConfig(seed=5, drop_before_apply_rate=0.5, fault_methods=("POST",))
        async with SimServer(faults=faults) as sim:
            aid = sim.account_ids[0]
            out = []
            for i in range(10):
                async with await _session(sim) as s:  # a dropped connection is gone: fresh session each time
                    try:
                        async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market(f"d{i}")) as r:
                            out.append(r.status)
                    except aiohttp.ClientError:
                        out.append("dropped")
            return out, set(sim.venue.accounts[aid].by_client)
    first, placed = await run()
    again, _ = await run()
    assert first == again and "dropped" in first and 201 in first
    dropped = {f"d{i}" for i, st in enumerate(first) if st == "dropped"}
    assert placed == {f"d{i}" for i in range(10)} - dropped


async def test_error_fault_takes_precedence_over_timeout_on_the_same_request():
    faults = FaultConfig(error_next=1, timeout_next=1, hold=0.3, timeout_applies=False, fault_path="/orders")
    async with SimServer(faults=faults) as sim:
        aid = sim.account_ids[0]
        async with await _session(sim) as s:
            async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market("p-1")) as r:
                assert r.status == 503  # answered at once, not held
        assert faults.error_next == 0 and faults.timeout_next == 1  # the timeout was not consumed
        assert [r.fault for r in sim.stats.requests] == ["5xx"]


async def test_transaction_stream_skips_next_n_lines_and_sinceid_replays_them():
    faults = FaultConfig(heartbeat=0.05)
    async with SimServer(faults=faults) as sim:
        aid = sim.account_ids[0]
        acct = sim.venue.accounts[aid]
        start = acct.last_id
        async with await _session(sim) as s:
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/transactions/stream") as stream:
                faults.stream_skip_next = 2
                for i in range(2):  # create + fill each
                    async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market(f"sk{i}")) as r:
                        assert r.status == 201
                seen, beat = [], None
                while beat is None or int(beat["lastTransactionID"]) < start + 4:
                    line = orjson.loads(await _read_line(stream, 2.0))
                    if line["type"] == "HEARTBEAT":
                        beat = line
                    else:
                        seen.append(int(line["id"]))
                # the first two transaction lines never came, the later ones did
                assert seen == [start + 3, start + 4]
                assert sim.stats.stream_lines_skipped == [start + 1, start + 2]
                # the heartbeat still tells the truth, so the gap is detectable
                assert int(beat["lastTransactionID"]) == start + 4
                # the connection is still open: a later transaction arrives on it
                async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json=market("sk-late")) as r:
                    assert r.status == 201
                nxt = []
                while len(nxt) < 2:
                    line = orjson.loads(await _read_line(stream, 2.0))
                    if line["type"] != "HEARTBEAT":
                        nxt.append(int(line["id"]))
                assert nxt == [start + 5, start + 6]
            # gap recovery: sinceid replays what the stream left out
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/transactions/sinceid?id={start}") as r:
                body = await r.json()
        ids = [int(t["id"]) for t in body["transactions"]]
        assert ids == list(range(start + 1, start + 7))
        assert [t["type"] for t in body["transactions"][:2]] == ["MARKET_ORDER", "ORDER_FILL"]
        assert faults.stream_skip_next == 0
