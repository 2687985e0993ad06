"""Price sources: the seeded random walk and recorded-tick replay."""
from __future__ import annotations

import json

import pytest

from fastexec.sim.fixed import FixedPointError, parse_price
from fastexec.sim.instruments import load_sim_instruments
from fastexec.sim.prices import RandomWalk, read_ticks
from fastexec.sim.venue import Venue


def walk_ticks(seed, n=200):
    insts = load_sim_instruments()
    w = RandomWalk(insts, seed)
    return [w.step(i % len(insts)) for i in range(n)], insts


def test_random_walk_is_deterministic_per_seed():
    a, _ = walk_ticks(42)
    b, _ = walk_ticks(42)
    c, _ = walk_ticks(43)
    assert a == b and a != c


def test_random_walk_prices_are_on_grid_with_positive_spread():
    ticks, insts = walk_ticks(7, 2000)
    for k, (bid, ask) in enumerate(ticks):
        inst = insts[k % len(insts)]
        assert bid > 0 and ask > bid
        assert bid % inst.unit == 0 and ask % inst.unit == 0  # displayPrecision grid
        assert (ask - bid) // inst.unit <= 2 * 40  # realistic spreads, in fractional pips


def test_venue_tick_moves_prices_and_same_seed_same_venue_prices():
    v1, v2 = Venue(seed=5), Venue(seed=5)
    for _ in range(50):
        v1.tick()
        v2.tick()
    assert v1.bids == v2.bids and v1.asks == v2.asks
    assert v1.bids != Venue(seed=5).bids


def test_replay_csv_and_jsonl(tmp_path):
    insts = {i.name: i for i in load_sim_instruments()}
    csv_path = tmp_path / "ticks.csv"
    csv_path.write_text("time,instrument,bid,ask\n"
                        "2026-01-15T10:00:00.000000000Z,EUR_USD,1.10000,1.10012\n"
                        "1768471201.5,USD_JPY,150.001,150.015\n")
    ticks = list(read_ticks(str(csv_path), insts))
    assert ticks[0].instrument == "EUR_USD" and ticks[0].bid == parse_price("1.10000", 5)
    assert ticks[1].ask == parse_price("150.015", 3) and ticks[1].time_ns == 1768471201_500000000
    assert ticks[0].time_ns == 1768471200_000000000
    jl = tmp_path / "ticks.jsonl"
    lines = [{"type": "PRICE", "instrument": "EUR_USD", "time": "2016-09-20T15:05:47.960449532Z",
              "bids": [{"price": "1.11695", "liquidity": 10000000}], "asks": [{"price": "1.11710", "liquidity": 10000000}]},
             {"type": "HEARTBEAT", "time": "2016-09-20T15:05:50.163791738Z"},
             {"instrument": "GBP_USD", "time": "1474383950", "bid": "1.30000", "ask": "1.30020"}]
    jl.write_text("\n".join(json.dumps(x) for x in lines))
    ticks = list(read_ticks(str(jl), insts))
    assert [t.instrument for t in ticks] == ["EUR_USD", "GBP_USD"]
    assert ticks[0].ask == parse_price("1.11710", 5)


def test_replay_of_the_docs_stream_example():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "oanda", "examples",
                        "docs_2016_pricing_stream.jsonl")
    insts = {i.name: i for i in load_sim_instruments()}
    ticks = list(read_ticks(path, insts))
    assert ticks and all(t.ask >= t.bid for t in ticks)
    v = Venue(seed=1)
    for t in ticks:
        v.set_price(t.instrument, t.bid, t.ask, t.time_ns)
    b, a, tm = v.price(ticks[-1].instrument)
    assert (b, a, tm) == (ticks[-1].bid, ticks[-1].ask, ticks[-1].time_ns)


def test_replay_refuses_excess_precision(tmp_path):
    insts = {i.name: i for i in load_sim_instruments()}
    p = tmp_path / "bad.csv"
    p.write_text("time,instrument,bid,ask\n1,EUR_USD,1.100001,1.10012\n")
    with pytest.raises(FixedPointError):
        list(read_ticks(str(p), insts))


def test_set_price_refuses_crossed_or_off_grid_quotes():
    v = Venue(seed=1)
    with pytest.raises(ValueError):
        v.set_price("EUR_USD", parse_price("1.1", 5), parse_price("1.09", 5))
    with pytest.raises(ValueError):
        v.set_price("EUR_USD", parse_price("1.1", 5) + 1, parse_price("1.2", 5))


def test_fresh_venue_accepts_the_seed_readme_example():
    """The seed README buys EUR_USD with stop loss 1.0950 and take profit
    1.1050: a fresh simulator (start price 1.10000) must fill it and attach
    both exits, not refuse it with STOP_LOSS_ON_FILL_LOSS."""
    from fastexec.sim.venue import OnFill, Order

    v = Venue(seed=1)
    bid, ask, _ = v.price("EUR_USD")
    assert (bid + ask) // 2 == parse_price("1.10000", 5)
    aid = next(iter(v.accounts))
    inst = v.by_name["EUR_USD"]
    r = v.place_order(aid, Order("MARKET", inst, 10000, sl=OnFill(price=parse_price("1.0950", 5)),
                                 tp=OnFill(price=parse_price("1.1050", 5))))
    assert r.status == 201 and "orderFillTransaction" in r.keys and "orderCancelTransaction" not in r.keys
    (trade,) = v.open_trades(aid)
    assert trade.sl.price == parse_price("1.0950", 5) and trade.tp.price == parse_price("1.1050", 5)


def test_start_prices_are_coherent_crosses():
    """EUR crosses start near EUR_USD times/over the other USD leg (within 1%)."""
    v = Venue(seed=1)
    mid = {n: sum(v.price(n)[:2]) // 2 for n in v.by_name}
    S = 10**9
    for cross, other, mul in (("EUR_GBP", "GBP_USD", False), ("EUR_JPY", "USD_JPY", True),
                              ("EUR_CHF", "USD_CHF", True), ("EUR_AUD", "AUD_USD", False),
                              ("EUR_CAD", "USD_CAD", True)):
        implied = mid["EUR_USD"] * mid[other] // S if mul else mid["EUR_USD"] * S // mid[other]
        assert abs(mid[cross] - implied) * 100 <= implied, cross
