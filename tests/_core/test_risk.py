"""The risk gateway: each check at its boundary, the order of checks, the batch."""
import array
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastexec._core.fixedpoint import parse_money, parse_price, parse_rate
from fastexec._core.instruments import load_instruments
from fastexec._core.orders import OrderEvent, OrderStore
from fastexec._core.positions import Ledger
from fastexec._core.risk import DENIAL_NAMES, RiskCode, RiskEngine, TradingState

TABLE = load_instruments()
EU = TABLE.index("EUR_USD")
UJ = TABLE.index("USD_JPY")
XAU = TABLE.index("XAU_USD")
SEC = 10**9


def P(text, i=EU):
    return parse_price(text, TABLE.by_index(i).display_precision)


def M(text):
    return parse_money(text)


def R(text):
    return parse_rate(text)


class Core:
    def __init__(self, balance="100000", table=TABLE):
        self.table = table
        self.ledger = Ledger(table, 4)
        self.orders = OrderStore(4, len(table))
        self.risk = RiskEngine(self.ledger, self.orders)
        self.a = self.ledger.add_account("acc", "USD", M(balance))

    def mark(self, i, bid, ask=None):
        self.ledger.mark(i, P(bid, i), P(ask or bid, i))

    def check(self, units, i=EU, now=0):
        return self.risk.check_detail(self.a, i, units, now)


@pytest.fixture
def core():
    c = Core()
    c.mark(EU, "1.20000")  # mid 1.2: one unit is worth 1.2 USD, margin 0.024 USD
    return c


def test_codes_are_stable():
    assert [(c.name, int(c)) for c in RiskCode] == [
        ("OK", 0), ("TRADING_HALTED", 1), ("REDUCE_ONLY_VIOLATION", 2),
        ("INSTRUMENT_RESTRICTED", 3), ("MAX_UNITS_PER_ORDER", 4), ("MAX_POSITION_SIZE", 5),
        ("MAX_POSITIONS_PER_INSTRUMENT", 6), ("MAX_LEVERAGE", 7), ("INSUFFICIENT_MARGIN", 8),
        ("MAX_DAILY_LOSS", 9), ("ORDER_RATE_LIMIT", 10), ("UNKNOWN_ACCOUNT", 11),
        ("UNKNOWN_INSTRUMENT", 12), ("INVALID_UNITS", 13), ("PRICE_UNAVAILABLE", 14),
        ("MAX_CONCURRENT_ORDERS", 15)]
    assert DENIAL_NAMES[7] == "MAX_LEVERAGE"


def test_check_passes_when_no_limits_are_set(core):
    assert core.check(1_000_000) == (RiskCode.OK, None)
    assert core.risk.check(core.a, EU, -5, 0) == 0


def test_check_when_halted_denies_order(core):
    core.risk.set_trading_state(core.a, TradingState.HALTED)
    assert core.check(1000) == (RiskCode.TRADING_HALTED, "TRADING_HALTED: account=0 state=HALTED")
    # halt comes before every other check on the order itself
    assert core.check(0)[0] == RiskCode.TRADING_HALTED
    assert core.check(1, i=999)[0] == RiskCode.TRADING_HALTED
    core.risk.set_trading_state(core.a, TradingState.ACTIVE)
    assert core.check(1000)[0] == RiskCode.OK


def test_check_with_unknown_account_or_instrument_denies(core):
    assert core.risk.check_detail(3, EU, 1, 0) == (RiskCode.UNKNOWN_ACCOUNT,
                                                    "UNKNOWN_ACCOUNT: account=3")
    assert core.risk.check_detail(-1, EU, 1, 0)[0] == RiskCode.UNKNOWN_ACCOUNT
    assert core.check(1, i=18) == (RiskCode.UNKNOWN_INSTRUMENT, "UNKNOWN_INSTRUMENT: instrument=18")


@pytest.mark.parametrize("units", [0, 10**12 + 1, -(10**12) - 1])
def test_check_with_invalid_units_denies(core, units):
    code, detail = core.check(units)
    assert code == RiskCode.INVALID_UNITS
    assert detail.startswith(f"INVALID_UNITS: units={units} ")


def test_check_below_minimum_trade_size_denies(tmp_path):
    d = TABLE["EUR_USD"].to_v20()
    d["minimumTradeSize"] = "100"
    p = tmp_path / "i.json"
    p.write_text(json.dumps({"instruments": [d]}))
    c = Core(table=load_instruments(str(p)))
    c.ledger.mark(0, P("1.20000"), P("1.20000"))
    assert c.risk.check_detail(c.a, 0, -99, 0) == (
        RiskCode.INVALID_UNITS, "INVALID_UNITS: units=-99 minimum=100 maximum=1000000000000")
    assert c.risk.check(c.a, 0, -100, 0) == 0


def test_check_restricted_instrument_by_allow_list_and_deny_list(core):
    core.mark(UJ, "150.000")
    core.risk.allow_only(core.a, [UJ])
    assert core.check(1) == (RiskCode.INSTRUMENT_RESTRICTED,
                             "INSTRUMENT_RESTRICTED: instrument=EUR_USD account=0")
    assert core.check(1, i=UJ)[0] == RiskCode.OK
    core.risk.allow_all(core.a)
    core.risk.deny(core.a, [UJ])
    assert core.check(1)[0] == RiskCode.OK
    assert core.check(1, i=UJ)[0] == RiskCode.INSTRUMENT_RESTRICTED
    assert not core.risk.is_allowed(core.a, UJ) and core.risk.is_allowed(core.a, EU)
    with pytest.raises(KeyError):
        core.risk.deny(core.a, [18])


def test_check_max_units_per_order_uses_account_and_instrument_limits(core):
    core.risk.set_limits(core.a, max_units_per_order=10_000)
    assert core.check(-10_000)[0] == RiskCode.OK
    assert core.check(-10_001) == (RiskCode.MAX_UNITS_PER_ORDER,
                                   "MAX_UNITS_PER_ORDER: units=10001 limit=10000")
    rich = Core(balance="1000000000")
    rich.mark(XAU, "2000.000")
    assert rich.check(500_000, i=XAU)[0] == RiskCode.OK  # instrument maximumOrderUnits
    assert rich.check(500_001, i=XAU) == (RiskCode.MAX_UNITS_PER_ORDER,
                                          "MAX_UNITS_PER_ORDER: units=500001 limit=500000")


def test_check_when_reducing_allows_only_reducing_orders(core):
    core.ledger.apply_fill(core.a, EU, 1000, P("1.20000"))
    core.risk.set_trading_state(core.a, TradingState.REDUCING)
    assert core.check(-500)[0] == RiskCode.OK
    assert core.check(-1000)[0] == RiskCode.OK
    assert core.check(-1001) == (RiskCode.REDUCE_ONLY_VIOLATION,
                                 "REDUCE_ONLY_VIOLATION: units=-1001 position=1000 working_same_side=0 state=REDUCING")
    assert core.check(1)[0] == RiskCode.REDUCE_ONLY_VIOLATION
    core.mark(UJ, "150.000")
    assert core.check(-1, i=UJ)[0] == RiskCode.REDUCE_ONLY_VIOLATION  # flat: nothing reduces


def test_check_max_position_size_counts_the_resulting_position(core):
    core.risk.set_limits(core.a, max_position_size=100_000)
    assert core.check(150_000) == (RiskCode.MAX_POSITION_SIZE,
                                   "MAX_POSITION_SIZE: units=150000 limit=100000 position=0 "
                                   "working_same_side=0 order=150000")
    core.ledger.apply_fill(core.a, EU, -60_000, P("1.20000"))
    assert core.check(-40_000)[0] == RiskCode.OK
    assert core.check(-40_001)[0] == RiskCode.MAX_POSITION_SIZE
    assert core.check(160_000)[0] == RiskCode.OK        # flips to +100,000
    assert core.check(160_001)[0] == RiskCode.MAX_POSITION_SIZE


def test_check_max_position_size_lets_a_position_above_limit_shrink(core):
    core.ledger.apply_fill(core.a, EU, 120_000, P("1.20000"))
    core.risk.set_limits(core.a, max_position_size=100_000)
    assert core.check(-10_000)[0] == RiskCode.OK
    assert core.check(1)[0] == RiskCode.MAX_POSITION_SIZE


def test_reducing_denies_sells_that_with_working_sells_would_flip(core):
    """Long +50000 in REDUCING: three resting sells of 50000 each used to pass
    one by one and end the position at -100000 (audit defect 3). A sell reduces
    only if it and the account's other working sells fit in the position."""
    a, r, o = core.a, core.risk, core.orders
    core.ledger.apply_fill(a, EU, 50_000, P("1.20000"))
    r.set_trading_state(a, TradingState.REDUCING)
    assert core.check(-50_000)[0] == RiskCode.OK
    o.add("s1", a, EU, -50_000)                       # rests
    assert core.check(-50_000) == (
        RiskCode.REDUCE_ONLY_VIOLATION,
        "REDUCE_ONLY_VIOLATION: units=-50000 position=50000 working_same_side=50000 state=REDUCING")
    assert core.check(-1)[0] == RiskCode.REDUCE_ONLY_VIOLATION
    o.apply("s1", OrderEvent.CANCEL)
    o.add("s2", a, EU, -20_000)
    o.add("b", a, EU, 30_000)                         # a working buy does not make room for sells
    assert core.check(-30_000)[0] == RiskCode.OK      # 30000 + 20000 <= 50000
    assert core.check(-30_001)[0] == RiskCode.REDUCE_ONLY_VIOLATION
    o.add("s3", a, EU, -30_000)
    assert core.check(-1)[0] == RiskCode.REDUCE_ONLY_VIOLATION
    o.apply("s3", OrderEvent.ACCEPT)
    o.fill("s3", -10_000)                             # position 40000, s3 has 20000 left
    core.ledger.apply_fill(a, EU, -10_000, P("1.20000"))
    assert core.check(-1) == (
        RiskCode.REDUCE_ONLY_VIOLATION,
        "REDUCE_ONLY_VIOLATION: units=-1 position=40000 working_same_side=40000 state=REDUCING")
    o.apply("s3", OrderEvent.CANCEL)                  # partial fill then cancel: its rest no longer counts
    assert core.check(-20_000)[0] == RiskCode.OK
    assert core.check(-20_001)[0] == RiskCode.REDUCE_ONLY_VIOLATION
    # short positions: the same rule on the buy side (the working buy counts now)
    assert core.check(1, i=UJ)[0] == RiskCode.REDUCE_ONLY_VIOLATION


def test_active_only_true_reductions_skip_the_exposure_checks(core):
    """In ACTIVE an opposite order that, with the working orders on its side,
    could flip the position is not a reduction: checks 8-13 apply to it."""
    a, r, o = core.a, core.risk, core.orders
    core.ledger.apply_fill(a, EU, 50_000, P("1.20000"))
    core.mark(EU, "1.10000")                          # daily loss 5000
    r.set_limits(a, max_daily_loss=M("1000"))
    assert core.check(-50_000)[0] == RiskCode.OK      # reduces: not subject to the daily loss
    o.add("s", a, EU, -40_000)
    assert core.check(-10_000)[0] == RiskCode.OK
    assert core.check(-10_001)[0] == RiskCode.MAX_DAILY_LOSS


def test_position_limit_counts_working_orders_on_the_same_side(core):
    """Two resting buys of 100000 under a limit of 100000 used to both pass
    (audit defect 4): the limit holds the worst case on the order's side."""
    a, r, o = core.a, core.risk, core.orders
    r.set_limits(a, max_position_size=100_000)
    assert core.check(100_000)[0] == RiskCode.OK
    o.add("b1", a, EU, 100_000)
    assert core.check(1) == (RiskCode.MAX_POSITION_SIZE,
                             "MAX_POSITION_SIZE: units=100001 limit=100000 position=0 "
                             "working_same_side=100000 order=1")
    o.add("s1", a, EU, -100_000)                      # working sells do not offset working buys
    assert core.check(1)[0] == RiskCode.MAX_POSITION_SIZE
    assert core.check(-1) == (RiskCode.MAX_POSITION_SIZE,
                              "MAX_POSITION_SIZE: units=100001 limit=100000 position=0 "
                              "working_same_side=100000 order=-1")
    o.apply("b1", OrderEvent.ACCEPT)
    o.fill("b1", 60_000)                              # position 60000, 40000 still to fill
    core.ledger.apply_fill(a, EU, 60_000, P("1.20000"))
    assert core.check(1)[0] == RiskCode.MAX_POSITION_SIZE
    o.apply("b1", OrderEvent.CANCEL)
    assert core.check(40_000)[0] == RiskCode.OK
    assert core.check(40_001)[0] == RiskCode.MAX_POSITION_SIZE
    # sell side: position 60000 - working sells 100000 = -40000; 60000 more reaches -100000
    assert core.check(-60_000)[0] == RiskCode.OK
    assert core.check(-60_001)[0] == RiskCode.MAX_POSITION_SIZE
    o.add("e", a, EU, 40_000, emulated=True)          # an emulated order counts: it can trigger
    assert core.check(1)[0] == RiskCode.MAX_POSITION_SIZE
    # a worst case that does not grow passes, as a position above the limit may shrink
    r.set_limits(a, max_position_size=10_000)
    assert core.check(-1)[0] == RiskCode.MAX_POSITION_SIZE       # -40000 -> -40001
    o.apply("s1", OrderEvent.CANCEL)
    assert core.check(-100_000)[0] == RiskCode.OK                # +60000 -> -40000: |worst| shrinks
    assert core.check(-200_000)[0] == RiskCode.MAX_POSITION_SIZE  # to -140000 it grows


def test_trigger_of_reducing_stop_does_not_count_itself(core):
    """An emulated stop that reduces is in the store (and in the sell-side sum)
    when it triggers: re-checked with ``own``, it is not counted twice."""
    a, r, o = core.a, core.risk, core.orders
    core.ledger.apply_fill(a, EU, 50_000, P("1.20000"))
    o.add("stop", a, EU, -50_000, emulated=True)
    r.set_trading_state(a, TradingState.REDUCING)
    o.apply("stop", OrderEvent.TRIGGER)
    assert r.check(a, EU, -50_000, 0, existing=True, own=-50_000) == 0
    assert r.check_detail(a, EU, -50_000, 0, existing=True, own=-50_000) == (RiskCode.OK, None)
    assert r._check_exact(a, EU, -50_000, 0, existing=True, own=-50_000) == (RiskCode.OK, None)
    assert r.check(a, EU, -50_000, 0, existing=True) == RiskCode.REDUCE_ONLY_VIOLATION  # counted twice
    o.add("s", a, EU, -1)                               # another sell: now it would flip
    assert r.check_detail(a, EU, -50_000, 0, existing=True, own=-50_000) == (
        RiskCode.REDUCE_ONLY_VIOLATION,
        "REDUCE_ONLY_VIOLATION: units=-50000 position=50000 working_same_side=1 state=REDUCING")
    with pytest.raises(ValueError):
        r.check(a, EU, -1, 0, own=-1)                   # own belongs to an existing order


def test_modify_does_not_count_its_own_remaining(core):
    """A modify passes the new remaining as the order and the old remaining
    (what the store counts now) as ``own``."""
    a, r, o = core.a, core.risk, core.orders
    r.set_limits(a, max_position_size=100_000)
    o.add("b", a, EU, 60_000)
    o.apply("b", OrderEvent.ACCEPT)
    o.fill("b", 20_000)
    core.ledger.apply_fill(a, EU, 20_000, P("1.20000"))
    # to 100000 in all: 80000 left, position 20000 -> worst case 100000
    assert r.check(a, EU, 80_000, 0, existing=True, own=40_000) == 0
    assert r.check_detail(a, EU, 80_001, 0, existing=True, own=40_000) == (
        RiskCode.MAX_POSITION_SIZE,
        "MAX_POSITION_SIZE: units=100001 limit=100000 position=20000 working_same_side=0 order=80001")
    assert r.check(a, EU, 80_000, 0, existing=True) == RiskCode.MAX_POSITION_SIZE  # counted twice
    # a modify that changes side (nothing filled): its old remaining is on the other side
    o.add("e", a, EU, 30_000, emulated=True)
    r.set_trading_state(a, TradingState.REDUCING)
    assert r.check(a, EU, -20_000, 0, existing=True, own=30_000) == 0
    assert r.check(a, EU, -20_001, 0, existing=True, own=30_000) == RiskCode.REDUCE_ONLY_VIOLATION


def test_check_max_positions_per_instrument_counts_working_orders_and_position(core):
    core.risk.set_limits(core.a, max_positions_per_instrument=2)
    core.orders.add("w1", core.a, EU, 100)
    assert core.check(100)[0] == RiskCode.OK
    core.orders.add("w2", core.a, EU, 100)
    assert core.check(100) == (RiskCode.MAX_POSITIONS_PER_INSTRUMENT,
                               "MAX_POSITIONS_PER_INSTRUMENT: count=3 limit=2")
    core.orders.apply("w2", OrderEvent.REJECT)
    assert core.check(100)[0] == RiskCode.OK
    core.ledger.apply_fill(core.a, EU, 100, P("1.20000"))
    assert core.check(100)[0] == RiskCode.MAX_POSITIONS_PER_INSTRUMENT
    assert core.check(-50)[0] == RiskCode.OK  # reducing orders are never blocked


def test_check_max_daily_loss_blocks_new_risk_until_next_day(core):
    core.risk.set_limits(core.a, max_daily_loss=M("500"))
    core.ledger.apply_fill(core.a, EU, 100_000, P("1.20000"))
    core.mark(EU, "1.19501")  # -499 USD: inside the limit
    assert core.check(1)[0] == RiskCode.OK
    core.mark(EU, "1.19499")
    assert core.check(1) == (RiskCode.MAX_DAILY_LOSS,
                             "MAX_DAILY_LOSS: daily_pl=-501 limit=500")
    assert core.check(-1)[0] == RiskCode.OK
    core.ledger.start_trading_day(core.a)
    assert core.check(1)[0] == RiskCode.OK


def test_daily_loss_at_exactly_the_limit_denies(core):
    """Reaching the maximum daily loss stops new risk (the risk score reads 100
    there); reducing orders still pass. Audit defect 7: the limit used to hold
    only past the limit."""
    core.risk.set_limits(core.a, max_daily_loss=M("500"))
    core.ledger.apply_fill(core.a, EU, 100_000, P("1.20000"))
    core.mark(EU, "1.19500")  # -500 USD: exactly the limit
    for check in (core.check, lambda u: core.risk._check_exact(core.a, EU, u, 0)):
        assert check(1) == (RiskCode.MAX_DAILY_LOSS, "MAX_DAILY_LOSS: daily_pl=-500 limit=500")
        assert check(-1)[0] == RiskCode.OK
    out = array.array("i", [9])
    core.risk.check_batch(array.array("i", [core.a]), array.array("i", [EU]), array.array("q", [1]), 0, out)
    assert list(out) == [RiskCode.MAX_DAILY_LOSS]
    core.ledger.apply_charge(core.a, M("0.000001"))  # one micro-unit inside
    assert core.check(1)[0] == RiskCode.OK
    core.risk.set_limits(core.a, max_daily_loss=0)  # 0: new risk only on a day in profit
    core.ledger.start_trading_day(core.a)
    assert core.check(1)[0] == RiskCode.MAX_DAILY_LOSS
    core.ledger.apply_charge(core.a, M("0.000001"))
    assert core.check(1)[0] == RiskCode.OK


def test_check_without_price_denies_new_exposure_but_not_reduction(core):
    core.ledger.apply_fill(core.a, UJ, 100, P("150.000", UJ))
    assert core.check(1, i=UJ) == (RiskCode.PRICE_UNAVAILABLE,
                                   "PRICE_UNAVAILABLE: instrument=USD_JPY")
    assert core.check(-100, i=UJ)[0] == RiskCode.OK


def test_check_max_leverage_at_the_boundary(core):
    core.risk.set_limits(core.a, max_leverage=R("30"))
    # NAV 100,000; 2,500,000 units * 1.2 = 3,000,000 = 30 x NAV exactly
    assert core.check(2_500_000)[0] == RiskCode.OK
    assert core.check(2_500_001) == (RiskCode.MAX_LEVERAGE,
                                     "MAX_LEVERAGE: gross=3000001.2 nav=100000 max_leverage=30")
    core.ledger.apply_fill(core.a, EU, 2_500_000, P("1.20000"))
    assert core.check(-3_000_000)[0] == RiskCode.OK  # flip to a smaller gross
    assert core.check(-5_000_001)[0] == RiskCode.MAX_LEVERAGE


def test_check_leverage_with_non_positive_nav_denies_new_exposure():
    c = Core(balance="0")
    c.mark(EU, "1.20000")
    c.risk.set_limits(c.a, max_leverage=R("30"))
    assert c.check(1)[0] == RiskCode.MAX_LEVERAGE


def test_check_insufficient_margin_keeps_required_ratio(core):
    core.risk.set_limits(core.a, required_margin_ratio=R("0.5"))
    # margin 0.024 USD per unit; used may reach 50,000 of NAV 100,000
    assert core.check(2_083_333)[0] == RiskCode.OK       # 49,999.992
    assert core.check(2_083_334) == (                    # 50,000.016
        RiskCode.INSUFFICIENT_MARGIN,
        "INSUFFICIENT_MARGIN: margin_available_after=49999.984 nav=100000 required_margin_ratio=0.5")


def test_check_insufficient_margin_when_order_margin_exceeds_available(core):
    core.ledger.apply_fill(core.a, EU, 1_000_000, P("1.20000"))  # margin 24,000, available 76,000
    # flip to short 4,000,000: margin after 96,000 leaves 4,000, but the opened
    # 4,000,000 units need 96,000 > 76,000 available now
    assert core.check(-5_000_000) == (
        RiskCode.INSUFFICIENT_MARGIN,
        "INSUFFICIENT_MARGIN: order_margin=96000 margin_available=76000")
    assert core.check(-4_166_666)[0] == RiskCode.OK       # opens 3,166,666: 75,999.984
    assert core.check(-1_000_000)[0] == RiskCode.OK       # closing needs no margin


def test_check_order_rate_limit_token_bucket(core):
    core.risk.set_limits(core.a, orders_per_second=2)   # burst defaults to 2
    assert [core.check(1, now=0)[0] for _ in range(3)] == [0, 0, RiskCode.ORDER_RATE_LIMIT]
    assert core.check(1, now=0)[1] == "ORDER_RATE_LIMIT: orders_per_second=2 burst=2"
    assert core.check(1, now=SEC // 2)[0] == RiskCode.OK           # half a second: one token
    assert core.check(1, now=SEC // 2)[0] == RiskCode.ORDER_RATE_LIMIT
    assert [core.check(1, now=100 * SEC)[0] for _ in range(3)] == [0, 0, RiskCode.ORDER_RATE_LIMIT]
    assert core.check(1, now=50 * SEC)[0] == RiskCode.ORDER_RATE_LIMIT  # clock went back: no refill


def test_check_without_consume_does_not_spend_a_token(core):
    core.risk.set_limits(core.a, orders_per_second=1)
    assert [core.risk.check(core.a, EU, 1, 0, consume=False) for _ in range(3)] == [0, 0, 0]
    assert core.risk.check(core.a, EU, 1, 0) == 0
    assert core.risk.check(core.a, EU, 1, 0, consume=False) == RiskCode.ORDER_RATE_LIMIT


def test_check_max_working_orders_per_account(core):
    core.mark(UJ, "150.000")
    core.risk.set_limits(core.a, max_working_orders=2)
    core.orders.add("w1", core.a, EU, 1)
    core.orders.add("w2", core.a, UJ, 1)
    assert core.check(1) == (RiskCode.MAX_CONCURRENT_ORDERS,
                             "MAX_CONCURRENT_ORDERS: count=3 limit=2")
    assert core.risk.check(core.a, EU, 1, 0, existing=True) == 0  # w1 being modified
    core.orders.apply("w2", OrderEvent.CANCEL)
    assert core.check(1)[0] == RiskCode.OK


def test_check_existing_order_is_not_counted_twice(core):
    core.risk.set_limits(core.a, max_positions_per_instrument=1)
    core.orders.add("w", core.a, EU, 100, emulated=True)
    assert core.check(100)[0] == RiskCode.MAX_POSITIONS_PER_INSTRUMENT
    assert core.risk.check(core.a, EU, 100, 0, existing=True) == 0  # "w" at its trigger


def test_rate_limit_tokens_only_spent_by_orders_that_pass(core):
    core.risk.set_limits(core.a, orders_per_second=1, max_units_per_order=10)
    assert core.check(11)[0] == RiskCode.MAX_UNITS_PER_ORDER
    assert core.check(1)[0] == RiskCode.OK
    assert core.check(1)[0] == RiskCode.ORDER_RATE_LIMIT


def test_checks_run_in_documented_order(core):
    """Make one order break every limit, then lift them one by one: the code
    reported is always the first check still failing."""
    a = core.a
    core.ledger.apply_fill(a, EU, 50_000, P("1.20000"))
    core.orders.add("w", a, EU, 10)
    core.mark(EU, "1.10000")  # daily loss -5,000
    r = core.risk
    r.set_limits(a, max_units_per_order=1, max_position_size=1, max_positions_per_instrument=1,
                 max_daily_loss=M("1"), max_leverage=R("0.001"),
                 required_margin_ratio=R("0.9999999"), orders_per_second=1, burst=1,
                 max_working_orders=1)
    r.set_trading_state(a, TradingState.HALTED)
    r.deny(a, [EU])
    steps = [
        ("TRADING_HALTED", lambda: r.set_trading_state(a, TradingState.REDUCING)),
        ("INSTRUMENT_RESTRICTED", lambda: r.allow_all(a)),
        ("MAX_UNITS_PER_ORDER", lambda: r.set_limits(a, max_units_per_order=None)),
        ("REDUCE_ONLY_VIOLATION", lambda: r.set_trading_state(a, TradingState.ACTIVE)),
        ("MAX_CONCURRENT_ORDERS", lambda: r.set_limits(a, max_working_orders=None)),
        ("MAX_POSITION_SIZE", lambda: r.set_limits(a, max_position_size=None)),
        ("MAX_POSITIONS_PER_INSTRUMENT", lambda: r.set_limits(a, max_positions_per_instrument=None)),
        ("MAX_DAILY_LOSS", lambda: r.set_limits(a, max_daily_loss=None)),
        ("MAX_LEVERAGE", lambda: r.set_limits(a, max_leverage=None)),
        ("INSUFFICIENT_MARGIN", lambda: r.set_limits(a, required_margin_ratio=None)),
        ("OK", None),
    ]
    for name, lift in steps:
        assert r.check_detail(a, EU, 10, 0)[0].name == name
        if lift:
            lift()
    assert r.check_detail(a, EU, 10, 0)[0] == RiskCode.ORDER_RATE_LIMIT  # token spent by the OK


def test_last_denial_only_changes_on_denial(core):
    core.risk.set_limits(core.a, max_units_per_order=5)
    core.risk.check(core.a, EU, 6, 0)
    first = core.risk.last_denial
    assert first == "MAX_UNITS_PER_ORDER: units=6 limit=5"
    assert core.risk.check(core.a, EU, 5, 0) == 0
    assert core.risk.last_denial is first


def test_set_limits_validates_and_reports(core):
    r = core.risk
    with pytest.raises(TypeError):
        r.set_limits(core.a, max_leverage=30.0)
    with pytest.raises(TypeError):
        r.set_limits(core.a, max_units_per_order=True)
    with pytest.raises(ValueError):
        r.set_limits(core.a, max_position_size=-1)
    with pytest.raises(KeyError):
        r.set_limits(3, max_position_size=1)
    r.set_limits(core.a, max_leverage=R("20"), orders_per_second=100, burst=10)
    lim = r.limits(core.a)
    assert lim["max_leverage"] == R("20") and lim["burst"] == 10 and lim["max_units_per_order"] is None
    r.set_limits(core.a, max_leverage=None)
    assert r.limits(core.a)["max_leverage"] is None
    with pytest.raises(ValueError):
        r.set_trading_state(core.a, 7)


def test_set_limits_is_all_or_nothing_and_burst_follows_rate(core):
    r = core.risk
    with pytest.raises(ValueError):
        r.set_limits(core.a, max_units_per_order=5, orders_per_second=10, burst=0)
    assert r.limits(core.a)["max_units_per_order"] is None
    r.set_limits(core.a, orders_per_second=2)
    r.set_limits(core.a, orders_per_second=5)
    assert (r.limits(core.a)["orders_per_second"], r.limits(core.a)["burst"]) == (5, 5)
    r.set_limits(core.a, burst=7)
    assert (r.limits(core.a)["orders_per_second"], r.limits(core.a)["burst"]) == (5, 7)
    r.set_limits(core.a, orders_per_second=None)
    assert r.limits(core.a)["orders_per_second"] is None
    assert [r.check(core.a, EU, 1, 0) for _ in range(20)] == [0] * 20


# --- batch -------------------------------------------------------------------------

def _engine_pair():
    out = []
    for _ in range(2):
        c = Core()
        c.ledger.add_account("b", "JPY", M("5000000"))
        c.mark(EU, "1.20000", "1.20020")
        c.mark(UJ, "150.000", "150.020")
        c.ledger.apply_fill(0, EU, 300_000, P("1.20020"))
        c.ledger.apply_fill(1, UJ, -50_000, P("150.000", UJ))
        c.risk.set_limits(0, max_position_size=1_000_000, max_leverage=R("20"),
                          orders_per_second=50, burst=20)
        c.risk.set_limits(1, max_units_per_order=200_000, required_margin_ratio=R("0.3"))
        c.risk.set_trading_state(1, TradingState.REDUCING)
        c.orders.add("w0", 0, EU, 500_000)            # working orders enter the checks
        c.orders.add("w1", 1, UJ, 20_000)
        out.append(c)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 2), st.sampled_from([EU, UJ, XAU, 40]),
                          st.integers(-3_000_000, 3_000_000)), min_size=1, max_size=60),
       st.integers(0, 10 * SEC))
def test_batch_gives_the_same_codes_as_single_checks(orders, now):
    a, b = _engine_pair()
    accts = array.array("i", [o[0] for o in orders])
    instrs = array.array("i", [o[1] for o in orders])
    units = array.array("q", [o[2] for o in orders])
    out = array.array("i", [0] * len(orders))
    denied = a.risk.check_batch(accts, instrs, units, now, out)
    single = [b.risk.check(*o, now) for o in orders]
    assert list(out) == single
    assert denied == sum(1 for c in single if c != 0)


def test_batch_refuses_wrong_array_types(core):
    i = array.array("i", [0])
    q = array.array("q", [1])
    with pytest.raises(TypeError):
        core.risk.check_batch(i, i, i, 0, i)  # units must be 'q'
    with pytest.raises(TypeError):
        core.risk.check_batch(i, i, q, 0, q)  # out must be 'i'
    with pytest.raises(ValueError):
        core.risk.check_batch(i, i, array.array("q", [1, 2]), 0, i)


def test_gate_counts_working_orders_right_after_halted(core):
    """``gate`` is ``check`` in the engine gateway's order: the working-order
    count comes before the instrument, units and exposure checks (and after
    halted); the rate bucket stays last and only a passing order takes a token."""
    a = core.a
    r = core.risk
    r.set_limits(a, max_working_orders=1, max_units_per_order=10, orders_per_second=1)
    core.orders.add("w", a, EU, 1)
    assert r.gate(a, EU, 11, 0, True) == RiskCode.MAX_CONCURRENT_ORDERS
    assert r.last_denial == "MAX_CONCURRENT_ORDERS: count=2 limit=1"
    assert r.check(a, EU, 11, 0) == RiskCode.MAX_UNITS_PER_ORDER  # check keeps its own order
    r.set_trading_state(a, TradingState.HALTED)
    assert r.gate(a, EU, 11, 0, True) == RiskCode.TRADING_HALTED
    r.set_trading_state(a, TradingState.ACTIVE)
    r.set_limits(a, max_working_orders=None)
    assert r.gate(a, EU, 11, 0, True) == RiskCode.MAX_UNITS_PER_ORDER
    assert r.gate(a, EU, 1, 0, False) == 0  # looks, takes nothing
    assert r.gate(a, EU, 1, 0, True) == 0
    assert r.gate(a, EU, 1, 0, True) == RiskCode.ORDER_RATE_LIMIT
    assert r.last_denial == "ORDER_RATE_LIMIT: orders_per_second=1 burst=1"
