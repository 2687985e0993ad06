"""Every risk check passes at its limit and denies at limit + 1 with its
stable code; trading states; run-time limit changes; the risk score."""
from __future__ import annotations

import pytest

from fastexec._core.fixedpoint import MONEY_SCALE, RATE_SCALE
from fastexec.config import Settings
from fastexec.engine import OrderSpec
from fastexec.errors import KillSwitchActiveError, RiskDeniedError, ValidationError

from .harness import SEC, make_harness, make_settings, px


def buy(h, units, instrument="EUR_USD", account=None, **kw):
    return OrderSpec(account or h.a1, instrument, "buy", units, **kw)


def sell(h, units, instrument="EUR_USD", account=None, **kw):
    return OrderSpec(account or h.a1, instrument, "sell", units, **kw)


async def assert_denied(h, spec, code):
    decision = h.engine.validate(spec)
    assert not decision.allowed and decision.code == code, decision
    with pytest.raises(RiskDeniedError) as err:
        await h.engine.submit(spec)
    assert err.value.code == code
    assert err.value.http_status == 422
    assert err.value.detail.startswith(code + ":")
    return err.value


def assert_allowed(h, spec):
    decision = h.engine.validate(spec)
    assert decision.allowed and decision.code == "OK", decision


async def test_max_units_per_order(h):
    h.engine.set_risk_limits(h.a1, max_units_per_order=5000)
    assert_allowed(h, buy(h, 5000))
    err = await assert_denied(h, buy(h, 5001), "MAX_UNITS_PER_ORDER")
    assert "units=5001 limit=5000" in err.detail
    assert (await h.engine.submit(buy(h, 5000))).status == "filled"


async def test_max_position_size_counts_the_net_position(h):
    h.engine.set_risk_limits(h.a1, max_position_size=10_000)
    assert (await h.engine.submit(buy(h, 6000))).status == "filled"
    assert_allowed(h, buy(h, 4000))
    await assert_denied(h, buy(h, 4001), "MAX_POSITION_SIZE")
    # selling through zero to -10000 is fine, to -10001 is not
    assert_allowed(h, sell(h, 16_000))
    await assert_denied(h, sell(h, 16_001), "MAX_POSITION_SIZE")


async def test_max_positions_per_instrument_counts_position_and_working_orders(h):
    h.engine.set_risk_limits(h.a1, max_positions_per_instrument=3)
    await h.engine.submit(buy(h, 1000))  # the open position counts one
    await h.engine.submit(buy(h, 1000, type="limit", price=px("1.09000")))  # a working order counts one
    assert_allowed(h, buy(h, 1000, type="limit", price=px("1.08000")))  # 3rd
    await h.engine.submit(buy(h, 1000, type="limit", price=px("1.08000")))
    err = await assert_denied(h, buy(h, 1000, type="limit", price=px("1.07000")), "MAX_POSITIONS_PER_INSTRUMENT")
    assert "count=4 limit=3" in err.detail
    # another instrument is not affected
    assert_allowed(h, buy(h, 1000, instrument="USD_JPY"))


async def test_max_leverage_on_gross_position_value(h):
    # NAV 100000 USD, EUR_USD mid 1.10005: at 1x the largest position is 90904 units
    h.engine.set_risk_limits(h.a1, max_leverage=RATE_SCALE, max_position_size=200_000, max_units_per_order=200_000)
    assert_allowed(h, buy(h, 90_904))
    err = await assert_denied(h, buy(h, 90_905), "MAX_LEVERAGE")
    assert "max_leverage=1" in err.detail


async def test_required_margin_ratio_keeps_margin_available(h):
    # 99 % of NAV must stay available: margin used <= 1000 USD; 0.02 * 1.10005 per unit -> 45452 units
    h.engine.set_risk_limits(h.a1, required_margin_ratio=99 * RATE_SCALE // 100)
    assert_allowed(h, buy(h, 45_452))
    await assert_denied(h, buy(h, 45_453), "INSUFFICIENT_MARGIN")


async def test_margin_of_the_order_must_fit_the_margin_available():
    h = await make_harness(make_settings(required_margin_ratio=0, max_position_size=10**9, max_units_per_order=10**9,
                                         max_leverage=10**6 * RATE_SCALE), balance="1000")
    try:
        # 1000 USD of NAV buys 1000 / 0.022001 = 45452 units of EUR_USD margin
        assert_allowed(h, buy(h, 45_452))
        await assert_denied(h, buy(h, 45_453), "INSUFFICIENT_MARGIN")
    finally:
        await h.engine.stop()


async def test_max_daily_loss_counts_unrealized_pnl(h):
    h.engine.set_risk_limits(h.a1, max_daily_loss=100 * MONEY_SCALE)
    # the entry itself costs the spread (1 pip on 10000 = 1 USD); then the bid falls
    await h.engine.submit(buy(h, 10_000))  # at ask 1.10010
    h.quote("EUR_USD", "1.09011", "1.09021")  # unrealized: 10000 * (1.09011 - 1.10010) = -99.90 USD
    assert h.engine.account(h.a1).daily_pl == -999 * MONEY_SCALE // 10
    assert_allowed(h, buy(h, 1, instrument="USD_JPY"))
    h.quote("EUR_USD", "1.09010", "1.09020")  # -100.00 USD: the maximum loss is reached, no new risk
    assert h.engine.account(h.a1).daily_pl == -100 * MONEY_SCALE
    err = await assert_denied(h, buy(h, 1, instrument="USD_JPY"), "MAX_DAILY_LOSS")
    assert "daily_pl=-100 limit=100" in err.detail
    assert h.engine.risk_metrics(h.a1).risk_score == 100  # "at a limit", as the check now says
    # reducing the losing position is still allowed
    assert_allowed(h, sell(h, 10_000))


async def test_daily_loss_resets_at_the_new_york_close(h):
    h.engine.set_risk_limits(h.a1, max_daily_loss=50 * MONEY_SCALE)
    await h.engine.submit(buy(h, 10_000))
    h.quote("EUR_USD", "1.09000", "1.09010")  # -101 USD today
    await assert_denied(h, buy(h, 1, instrument="USD_JPY"), "MAX_DAILY_LOSS")
    start = h.engine.risk_metrics(h.a1).trading_day_start
    # T0 is 10:00 New York; one second before 17:00 it is still the same day
    h.clock.advance(7 * 3600 * SEC - SEC)
    await assert_denied(h, buy(h, 1, instrument="USD_JPY"), "MAX_DAILY_LOSS")
    h.clock.advance(SEC)  # 17:00:00 New York: a new trading day starts from the current NAV
    assert_allowed(h, buy(h, 1, instrument="USD_JPY"))
    metrics = h.engine.risk_metrics(h.a1)
    assert metrics.trading_day_start == start + 24 * 3600 * SEC
    assert metrics.daily_pl == 0
    # losses of the new day count again
    h.quote("EUR_USD", "1.08490", "1.08500")  # another -51 USD
    await assert_denied(h, buy(h, 1, instrument="USD_JPY"), "MAX_DAILY_LOSS")


async def test_instrument_restrictions(h):
    view = h.engine.set_risk_limits(h.a1, restricted_instruments=["USD_JPY"])
    assert view.restricted_instruments == frozenset({"USD_JPY"})
    await assert_denied(h, buy(h, 1, instrument="USD_JPY"), "INSTRUMENT_RESTRICTED")
    assert_allowed(h, buy(h, 1))
    assert_allowed(h, buy(h, 1, instrument="USD_JPY", account=h.a2))  # per account
    h.engine.set_risk_limits(h.a1, restricted_instruments=[])
    assert_allowed(h, buy(h, 1, instrument="USD_JPY"))


async def test_order_rate_limit_token_bucket(h):
    h.engine.set_risk_limits(h.a1, max_orders_per_second=5)
    for _ in range(5):
        assert (await h.engine.submit(buy(h, 1))).status == "filled"
    err = await assert_denied(h, buy(h, 1), "ORDER_RATE_LIMIT")
    assert "orders_per_second=5" in err.detail
    # validate never takes a token: after 1/5 s exactly one more order fits
    h.clock.advance(SEC // 5)
    assert h.engine.validate(buy(h, 1)).allowed
    assert (await h.engine.submit(buy(h, 1))).status == "filled"
    await assert_denied(h, buy(h, 1), "ORDER_RATE_LIMIT")
    # the other account has its own bucket
    assert (await h.engine.submit(buy(h, 1, account=h.a2))).status == "filled"


async def test_max_concurrent_orders(h):
    h.engine.set_risk_limits(h.a1, max_concurrent_orders=2)
    await h.engine.submit(buy(h, 1, type="limit", price=px("1.09000")))
    assert_allowed(h, buy(h, 1, type="limit", price=px("1.09000")))
    await h.engine.submit(buy(h, 1, type="limit", price=px("1.09000")))
    err = await assert_denied(h, buy(h, 1, type="limit", price=px("1.09000")), "MAX_CONCURRENT_ORDERS")
    assert "count=3 limit=2" in err.detail


async def test_reducing_state_allows_only_orders_that_reduce(h):
    await h.engine.submit(buy(h, 1000))
    assert h.engine.set_trading_state(h.a1, "reducing") == "reducing"
    assert h.engine.account(h.a1).trading_state == "reducing"
    await assert_denied(h, buy(h, 1), "REDUCE_ONLY_VIOLATION")
    await assert_denied(h, sell(h, 1001), "REDUCE_ONLY_VIOLATION")  # would flip to short
    await assert_denied(h, buy(h, 1, instrument="USD_JPY"), "REDUCE_ONLY_VIOLATION")  # flat: nothing reduces
    assert (await h.engine.submit(sell(h, 400))).status == "filled"
    assert (await h.engine.submit(sell(h, 600))).status == "filled"
    assert h.engine.position(h.a1, "EUR_USD").units == 0
    h.engine.set_trading_state(h.a1, "active")
    assert_allowed(h, buy(h, 1))
    with pytest.raises(ValidationError):
        h.engine.set_trading_state(h.a1, "halted")  # only the kill switch halts
    with pytest.raises(ValidationError):
        h.engine.set_trading_state(h.a1, "sleepy")


async def test_halted_account_refuses_with_kill_switch_error(h):
    await h.engine.activate_kill_switch(h.a1, reason="test", actor="ops")
    decision = h.engine.validate(buy(h, 1))
    assert not decision.allowed and decision.code == "KILL_SWITCH_ACTIVE"
    assert decision.trading_state == "halted"
    with pytest.raises(KillSwitchActiveError) as err:
        await h.engine.submit(buy(h, 1))
    assert err.value.http_status == 423


async def test_limits_default_from_settings_env_names():
    settings = Settings.from_env(
        {"MAX_POSITION_SIZE": "5000", "MAX_LEVERAGE": "10", "MAX_DAILY_LOSS": "250.5", "MAX_UNITS_PER_ORDER": "3000",
         "REQUIRED_MARGIN_RATIO": "0.05", "MAX_POSITIONS_PER_INSTRUMENT": "2", "MAX_ORDERS_PER_SECOND": "7",
         "MAX_CONCURRENT_ORDERS": "9"},
        dotenv=False,
    )
    h = await make_harness(settings)
    try:
        lim = h.engine.risk_limits(h.a2)
        assert (lim.max_position_size, lim.max_units_per_order, lim.max_positions_per_instrument) == (5000, 3000, 2)
        assert lim.max_leverage == 10 * RATE_SCALE
        assert lim.required_margin_ratio == 5 * RATE_SCALE // 100
        assert lim.max_daily_loss == 250_500_000
        assert (lim.max_orders_per_second, lim.max_concurrent_orders) == (7, 9)
        assert lim.to_dict()["max_daily_loss"] == "250.5000"
        await assert_denied(h, buy(h, 3001), "MAX_UNITS_PER_ORDER")
    finally:
        await h.engine.stop()


async def test_set_risk_limits_is_validated_and_all_or_nothing(h):
    before = h.engine.risk_limits(h.a1)
    for bad, code in (
        ({"max_position_size": -1}, "INVALID_LIMIT"),
        ({"max_position_size": 1.5}, "INVALID_LIMIT"),
        ({"max_position_size": True}, "INVALID_LIMIT"),
        ({"max_units_per_order": 0}, "INVALID_LIMIT"),
        ({"max_wibble": 3}, "UNKNOWN_LIMIT"),
        ({"restricted_instruments": ["EUR_XXX"]}, "UNKNOWN_INSTRUMENT"),
        ({"restricted_instruments": "EUR_USD"}, "INVALID_LIMIT"),
        ({"max_position_size": 10, "max_leverage": -5}, "INVALID_LIMIT"),
    ):
        with pytest.raises(ValidationError) as err:
            h.engine.set_risk_limits(h.a1, **bad)
        assert err.value.code == code, bad
    assert h.engine.risk_limits(h.a1) == before


async def test_risk_score_and_metrics(h):
    m0 = h.engine.risk_metrics(h.a1)
    assert m0.risk_score == 0 and m0.exposure == 0 and m0.trading_state == "active"
    # half the position limit used; the other limits are far away
    await h.engine.submit(buy(h, 50_000))
    m = h.engine.risk_metrics(h.a1)
    assert m.risk_score == 50
    assert m.exposure == m.net_exposure == 50_000 * 1_100_050  # at mid, money scale
    assert m.working_orders == 0 and m.open_positions == 1
    nav = h.engine.account(h.a1).nav
    assert abs(m.leverage * nav - m.exposure * RATE_SCALE) <= nav // 2  # exposure / NAV, rounded half-even
    assert abs(m.margin_utilisation * nav - h.engine.account(h.a1).margin_used * RATE_SCALE) <= nav // 2
    d = m.to_dict()
    assert d["risk_score"] == 50 and d["trading_state"] == "active"
    # the spread paid on entry (5 USD) is more than a 4 USD daily-loss limit: capped at 100
    h.engine.set_risk_limits(h.a1, max_daily_loss=4 * MONEY_SCALE)
    assert h.engine.risk_metrics(h.a1).risk_score == 100
    h.engine.set_risk_limits(h.a1, max_daily_loss=1000 * MONEY_SCALE)
    await h.engine.activate_kill_switch(h.a1, reason="x", actor="ops")
    assert h.engine.risk_metrics(h.a1).risk_score == 100


async def test_concurrent_orders_checked_before_the_kernel_limits(h):
    """The working-order count is the gateway's first check after halted: an
    order over it and over another limit is refused for the count."""
    h.engine.set_risk_limits(h.a1, max_concurrent_orders=1, max_units_per_order=5)
    await h.engine.submit(buy(h, 1, type="limit", price=px("1.09000")))
    err = await assert_denied(h, buy(h, 6), "MAX_CONCURRENT_ORDERS")
    assert "count=2 limit=1" in err.detail
    h.engine.set_risk_limits(h.a1, max_concurrent_orders=2)
    await assert_denied(h, buy(h, 6), "MAX_UNITS_PER_ORDER")


# --- working orders count (audit defects 3 and 4) ------------------------------------------------

async def test_reducing_denies_sells_that_with_working_sells_would_flip(h):
    """Long 50000 in REDUCING: resting sells used to pass one by one and flip
    the position to -100000 once they filled."""
    await h.engine.submit(buy(h, 50_000))
    h.engine.set_trading_state(h.a1, "reducing")
    first = await h.engine.submit(sell(h, 50_000, type="limit", price=px("1.11000")))
    assert first.status == "working"
    err = await assert_denied(h, sell(h, 50_000, type="limit", price=px("1.11000")), "REDUCE_ONLY_VIOLATION")
    assert err.detail == ("REDUCE_ONLY_VIOLATION: units=-50000 position=50000 working_same_side=50000 "
                          "state=REDUCING")
    await assert_denied(h, sell(h, 1), "REDUCE_ONLY_VIOLATION")
    h.quote("EUR_USD", "1.11000", "1.11010")
    await h.settle()
    assert h.engine.get_order(first.order_id).status == "filled"
    assert h.engine.position(h.a1, "EUR_USD").units == 0


async def test_position_limit_counts_working_orders_on_the_same_side(h):
    """Two resting buys of 100000 under a limit of 100000 used to both pass and
    fill to 200000."""
    h.engine.set_risk_limits(h.a1, max_position_size=100_000)
    first = await h.engine.submit(buy(h, 100_000, type="limit", price=px("1.09000")))
    assert first.status == "working"
    err = await assert_denied(h, buy(h, 100_000, type="limit", price=px("1.09000")), "MAX_POSITION_SIZE")
    assert err.detail == ("MAX_POSITION_SIZE: units=200000 limit=100000 position=0 working_same_side=100000 "
                          "order=100000")
    assert_allowed(h, sell(h, 100_000, type="limit", price=px("1.12000")))  # the other side: its own worst case
    await h.engine.cancel(first.order_id)
    assert_allowed(h, buy(h, 100_000, type="limit", price=px("1.09000")))  # cancelled: no longer counted


async def test_trigger_of_reducing_stop_does_not_count_itself(h):
    """A protective stop of the whole position, waiting in the engine, is
    re-checked at its trigger while the store still counts it: it must not be
    counted twice (it would read as a flip and be rejected)."""
    await h.engine.submit(buy(h, 1000))
    stop = await h.engine.submit(sell(h, 1000, type="stop_limit", stop_price=px("1.09500"), price=px("1.09400")))
    assert stop.status == "waiting"
    h.engine.set_trading_state(h.a1, "reducing")
    await assert_denied(h, sell(h, 1), "REDUCE_ONLY_VIOLATION")  # the waiting stop counts for others
    h.quote("EUR_USD", "1.09490", "1.09500")
    await h.settle()
    done = h.engine.get_order(stop.order_id)
    assert done.status == "filled", done.reject_reason
    assert h.engine.position(h.a1, "EUR_USD").units == 0


async def test_modify_does_not_count_its_own_remaining(h):
    """A modify is checked with its new remaining units against the other
    working orders: its old remaining, still in the store, is left out."""
    h.engine.set_risk_limits(h.a1, max_position_size=5000)
    view = await h.engine.submit(buy(h, 4000, type="limit", price=px("1.09500")))
    assert (await h.engine.modify(view.order_id, units=5000)).units == 5000
    with pytest.raises(RiskDeniedError) as err:
        await h.engine.modify(view.order_id, units=5001)
    assert err.value.detail == ("MAX_POSITION_SIZE: units=5001 limit=5000 position=0 working_same_side=0 "
                                "order=5001")
    # in REDUCING: long 1000, a resting sell may grow to the whole position, not past it
    await h.engine.cancel(view.order_id)
    await h.engine.submit(buy(h, 1000))
    h.engine.set_trading_state(h.a1, "reducing")
    s = await h.engine.submit(sell(h, 600, type="limit", price=px("1.11000")))
    assert (await h.engine.modify(s.order_id, units=1000)).units == 1000
    with pytest.raises(RiskDeniedError) as err:
        await h.engine.modify(s.order_id, units=1001)
    assert err.value.code == "REDUCE_ONLY_VIOLATION"
