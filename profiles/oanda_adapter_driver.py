#!/usr/bin/env python3
"""Drive the OANDA v20 adapter against the v20 simulator, for profiling.

    fastexec sim --port 8090 --tick-interval 0.05 &
    py-spy record -o profiles/oanda_adapter.svg -- python profiles/oanda_adapter_driver.py --url http://127.0.0.1:8090 --orders 1200

Only the adapter runs in this process (the simulator is another process), so
the flame graph is the adapter's own cost: the pooled aiohttp client, the
request limiter, JSON encode/decode and v20 wire mapping, and the
transaction and price streams running beside the orders. Orders are market
orders, alternating buy and sell, sent one after another at the adapter's
own OANDA rate limits (about 100 requests/s), so the run is bounded by
``--orders`` and takes about ``orders / 100`` seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request


async def drive(url: str, token: str, orders: int) -> dict:
    from fastexec.brokers.base import OrderRequest
    from fastexec.brokers.oanda import OandaBroker, OandaConfig

    req = urllib.request.Request(f"{url}/v3/accounts", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        accounts = tuple(a["id"] for a in json.load(resp)["accounts"])
    broker = OandaBroker(OandaConfig(token=token, account_ids=accounts, rest_url=url, stream_url=url))
    events = [0]
    broker.set_event_handler(lambda ev: events.__setitem__(0, events[0] + 1))
    await broker.start(streams=True)
    try:
        if hasattr(broker, "subscribe_prices"):
            await broker.subscribe_prices(["EUR_USD", "USD_JPY"])
        t0 = time.monotonic()
        for i in range(orders):
            units = 1000 if i % 2 == 0 else -1000
            got = await broker.submit(OrderRequest(f"prof-{i}", accounts[0], "EUR_USD", units))
            if not got:
                raise RuntimeError(f"order {i}: no events")
        elapsed = time.monotonic() - t0
    finally:
        await broker.stop()
    return {"orders": orders, "seconds": round(elapsed, 2), "orders_per_s": round(orders / elapsed, 1),
            "stream_events": events[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the simulator, e.g. http://127.0.0.1:8090 (loopback only)")
    ap.add_argument("--token", default="sim-token")
    ap.add_argument("--orders", type=int, default=1200)
    args = ap.parse_args(argv)
    if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("loopback simulator URLs only")
    if not 1 <= args.orders <= 20_000:
        raise SystemExit("--orders must be 1..20000")
    print(json.dumps(asyncio.run(drive(args.url, args.token, args.orders))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
