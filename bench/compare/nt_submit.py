"""NautilusTrader side of the submit comparison (runs in its own venv).

The leanest real path through NautilusTrader's risk and execution engines to a
simulated venue that we found in its source (backtest/engine.pyx,
SimulatedExchange.send): a BacktestEngine kernel with one SimulatedExchange
whose ``use_message_queue=False``, so a SubmitOrder is processed the moment it
arrives instead of waiting for the next data event. From inside a Strategy's
``on_quote_tick`` each order then runs, synchronously, through

    order_factory.market -> Strategy.submit_order -> RiskEngine (pre-trade checks)
    -> ExecutionEngine -> BacktestExecClient -> SimulatedExchange / OrderMatchingEngine
    -> OrderSubmitted, OrderAccepted, OrderFilled -> ExecutionEngine -> cache, Portfolio
    (position and account updates) -> the strategy's event handlers

and is filled by the time ``submit_order`` returns (asserted per order: a
benchmark of orders that did not fill would be measuring a shortcut). Logging
is bypassed (fastexec's hot path does not log either); the risk engine's
submit-rate throttle keeps running with its limit lifted.

Two flows (``--flow``), the same on both sides:

* ``roundtrip``: the position goes flat and reopens every two orders. On each
  reopen NautilusTrader pickles a snapshot of the netting position (cache.pyx
  ``snapshot_position``), part of its real cost for this flow.
* ``held``: one untimed 1,000,000 buy first, then sells and buys of 10,000, so
  the position never closes and never reopens (no snapshot). Orders alternate buy
and sell so the netting position stays flat and no state grows.

Prints one JSON line: per-order latencies (ns) summary, version.

    <nautilus venv>/bin/python bench/compare/nt_submit.py --orders 5000 --warmup 500
"""
from __future__ import annotations

import gc
import sys
import time
from decimal import Decimal

from submit_common import parse_args, print_summary


def main(argv=None) -> int:
    args = parse_args(argv)

    import nautilus_trader
    from nautilus_trader.backtest.engine import BacktestEngine
    from nautilus_trader.config import BacktestEngineConfig, LoggingConfig, RiskEngineConfig, StrategyConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.data import QuoteTick
    from nautilus_trader.model.enums import AccountType, OmsType, OrderSide, OrderStatus
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Money, Price, Quantity
    from nautilus_trader.test_kit.providers import TestInstrumentProvider
    from nautilus_trader.trading.strategy import Strategy

    venue = Venue("SIM")
    instrument = TestInstrumentProvider.default_fx_ccy("EUR/USD", venue)
    result: dict = {}

    class SubmitBench(Strategy):
        def __init__(self, config):
            super().__init__(config)
            self.done = False

        def on_start(self):
            self.subscribe_quote_ticks(instrument.id)

        def on_quote_tick(self, tick):
            if self.done:
                return
            self.done = True
            factory = self.order_factory
            submit = self.submit_order
            iid = instrument.id
            qty = Quantity.from_int(args.units)
            sides = (OrderSide.BUY, OrderSide.SELL)
            if args.flow == "held":
                base = factory.market(iid, OrderSide.BUY, Quantity.from_int(1_000_000))
                submit(base)
                if base.status != OrderStatus.FILLED:
                    raise RuntimeError("base order not filled")
                sides = (OrderSide.SELL, OrderSide.BUY)
            filled = OrderStatus.FILLED
            clock = time.perf_counter_ns
            total = args.warmup + args.orders
            samples = [0] * total
            gc.collect()
            gc.disable()
            try:
                for i in range(total):
                    t0 = clock()
                    order = factory.market(iid, sides[i & 1], qty)
                    submit(order)
                    t1 = clock()
                    if order.status != filled:
                        raise RuntimeError(f"order {i} not filled synchronously: {order.status_string()}")
                    samples[i] = t1 - t0
            finally:
                gc.enable()
            result["samples"] = samples[args.warmup:]

    engine = BacktestEngine(config=BacktestEngineConfig(
        logging=LoggingConfig(bypass_logging=True),
        # The default throttle (100 orders/s) would deny order 101 because the
        # backtest clock stands still inside one handler; the throttle still
        # runs, only its limit is lifted (fastexec throttles at the broker
        # adapter, not in-process, so neither side is throttled here).
        risk_engine=RiskEngineConfig(max_order_submit_rate="100000000/00:00:01"),
    ))
    engine.add_venue(
        venue=venue,
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USD,
        starting_balances=[Money(1_000_000_000, USD)],
        default_leverage=Decimal(50),
        use_message_queue=False,
    )
    engine.add_instrument(instrument)
    ticks = [
        QuoteTick(
            instrument_id=instrument.id,
            bid_price=Price.from_str("1.10520"),
            ask_price=Price.from_str("1.10523"),
            bid_size=Quantity.from_int(100_000_000),
            ask_size=Quantity.from_int(100_000_000),
            ts_event=ts,
            ts_init=ts,
        )
        for ts in (1_700_000_000_000_000_000, 1_700_000_001_000_000_000)
    ]
    engine.add_data(ticks)
    strategy = SubmitBench(StrategyConfig(strategy_id="SubmitBench-001"))
    engine.add_strategy(strategy)
    engine.run()
    if "samples" not in result:
        raise SystemExit("the benchmark strategy never saw a quote tick")
    fills = len([o for o in engine.cache.orders() if o.status == OrderStatus.FILLED])
    engine.dispose()

    # NautilusTrader pickles a netting position's snapshot on every reopen,
    # and the snapshot grows with the position's fills: the first/last 500
    # figures disclose the drift.
    print_summary("nautilus_trader", args.flow, nautilus_trader.__version__, result["samples"], filled_total=fills)
    return 0


if __name__ == "__main__":
    sys.exit(main())
