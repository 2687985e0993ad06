"""The v20 wire mapping: every order type and option of DESIGN's table
becomes the body OANDA documents, and v20 transactions become the engine's
events with exact fixed-point values."""
import calendar
import datetime as dt

import orjson
import pytest
from hypothesis import given, strategies as st

from fastexec.brokers.base import (
    ExitDetails,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderRequest,
    PositionFill,
    TimeInForce,
    TriggerCondition,
    V20OrderType,
)
from fastexec.brokers.oanda import wire

ACCT = "101-001-0000001-001"
P = 10**9  # PRICE_SCALE


def req(**kw):
    base = dict(client_id="c-1", account_id=ACCT, instrument="EUR_USD", units=10_000)
    base.update(kw)
    return OrderRequest(**base)


def test_market_order_body_matches_reference_example():
    body = wire.order_body(
        req(
            time_in_force=TimeInForce.FOK,
            take_profit=ExitDetails(price=1_200_000_000),
            stop_loss=ExitDetails(price=1_050_000_000),
            trailing_stop=ExitDetails(distance=5_000_000),
            tag="strat-a",
            comment="entry",
        ),
        5,
    )
    assert body == {
        "order": {
            "type": "MARKET",
            "instrument": "EUR_USD",
            "units": "10000",
            "timeInForce": "FOK",
            "positionFill": "DEFAULT",
            "clientExtensions": {"id": "c-1", "tag": "strat-a", "comment": "entry"},
            "takeProfitOnFill": {"price": "1.20000", "timeInForce": "GTC"},
            "stopLossOnFill": {"price": "1.05000", "timeInForce": "GTC"},
            "trailingStopLossOnFill": {"distance": "0.00500", "timeInForce": "GTC"},
        }
    }


def test_stop_with_price_bound_gtd_and_trigger_condition():
    gtd = calendar.timegm((2026, 1, 2, 21, 0, 0)) * 10**9
    body = wire.order_body(
        req(
            instrument="USD_JPY",
            units=-1000,
            type=V20OrderType.STOP,
            price=110_123_000_000,
            price_bound=110_000_000_000,
            time_in_force=TimeInForce.GTD,
            gtd_time_ns=gtd,
            trigger_condition=TriggerCondition.MID,
            position_fill=PositionFill.REDUCE_FIRST,
        ),
        3,
    )["order"]
    assert body["type"] == "STOP" and body["units"] == "-1000"
    assert body["price"] == "110.123" and body["priceBound"] == "110.000"
    assert body["timeInForce"] == "GTD" and body["gtdTime"] == "2026-01-02T21:00:00.000000000Z"
    assert body["triggerCondition"] == "MID" and body["positionFill"] == "REDUCE_FIRST"


@pytest.mark.parametrize("tif", list(TimeInForce))
@pytest.mark.parametrize("typ", [V20OrderType.LIMIT, V20OrderType.STOP, V20OrderType.MARKET_IF_TOUCHED])
def test_pending_types_carry_price_tif_and_trigger(typ, tif):
    body = wire.order_body(
        req(type=typ, price=1_085_000_000, time_in_force=tif, gtd_time_ns=2 * 10**18 if tif is TimeInForce.GTD else None),
        5,
    )["order"]
    assert body["type"] == typ.value and body["price"] == "1.08500"
    assert body["timeInForce"] == tif.value and body["triggerCondition"] == "DEFAULT"
    assert ("gtdTime" in body) == (tif is TimeInForce.GTD)


def test_guaranteed_stop_loss_on_fill_by_distance():
    body = wire.order_body(req(stop_loss=ExitDetails(distance=2_500_000, guaranteed=True)), 5)["order"]
    assert body["stopLossOnFill"] == {"distance": "0.00250", "timeInForce": "GTC", "guaranteed": True}


@pytest.mark.parametrize(
    "exit_kw, expected",
    [
        (dict(distance=2_500_000), {"distance": "0.00250", "timeInForce": "GTC"}),
        (dict(price=1_050_000_000), {"price": "1.05000", "timeInForce": "GTC"}),
        (
            dict(price=1_050_000_000, time_in_force=TimeInForce.GTD, gtd_time_ns=2 * 10**18),
            {"price": "1.05000", "timeInForce": "GTD", "gtdTime": "2033-05-18T03:33:20.000000000Z"},
        ),
    ],
)
def test_guaranteed_stop_loss_on_fill_modern_style(exit_kw, expected):
    """Newer servers: a GuaranteedStopLossDetails of its own, no flag and no
    stopLossOnFill beside it."""
    body = wire.order_body(req(stop_loss=ExitDetails(guaranteed=True, **exit_kw)), 5, "modern")["order"]
    assert body["guaranteedStopLossOnFill"] == expected
    assert "stopLossOnFill" not in body
    legacy = wire.order_body(req(stop_loss=ExitDetails(guaranteed=True, **exit_kw)), 5, "legacy")["order"]
    assert legacy["stopLossOnFill"] == dict(expected, guaranteed=True)
    assert "guaranteedStopLossOnFill" not in legacy
    assert wire.order_body(req(stop_loss=ExitDetails(guaranteed=True, **exit_kw)), 5)["order"] == legacy


@pytest.mark.parametrize("style", ["legacy", "modern"])
def test_plain_stop_loss_is_the_same_in_both_styles(style):
    body = wire.order_body(req(stop_loss=ExitDetails(distance=2_500_000)), 5, style)["order"]
    assert body["stopLossOnFill"] == {"distance": "0.00250", "timeInForce": "GTC"}
    assert "guaranteedStopLossOnFill" not in body


@pytest.mark.parametrize(
    "style, reason",
    [
        ("legacy", "STOP_LOSS_ON_FILL_DISTANCE_PRECISION_EXCEEDED"),
        ("modern", "GUARANTEED_STOP_LOSS_ON_FILL_DISTANCE_PRECISION_EXCEEDED"),
    ],
)
def test_unrepresentable_guaranteed_stop_loss_is_refused_with_the_styles_reason(style, reason):
    with pytest.raises(wire.LocalReject) as err:
        wire.order_body(req(stop_loss=ExitDetails(distance=1, guaranteed=True)), 5, style)
    assert err.value.reason == reason


def test_default_time_in_force_is_left_to_the_venue():
    assert "timeInForce" not in wire.order_body(req(), 5)["order"]


@pytest.mark.parametrize(
    "kw,reason",
    [
        (dict(type=V20OrderType.LIMIT, price=1_085_001_000), "PRICE_PRECISION_EXCEEDED"),
        (dict(type=V20OrderType.LIMIT), "PRICE_MISSING"),
        (dict(price_bound=1_000_000_001), "PRICE_BOUND_PRECISION_EXCEEDED"),
        (dict(take_profit=ExitDetails(price=1_100_000_001)), "TAKE_PROFIT_ON_FILL_PRICE_PRECISION_EXCEEDED"),
        (dict(stop_loss=ExitDetails(distance=1)), "STOP_LOSS_ON_FILL_DISTANCE_PRECISION_EXCEEDED"),
        (dict(trailing_stop=ExitDetails(price=1_000_000_000)), "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MISSING"),
        (dict(time_in_force=TimeInForce.GTD), "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING"),
    ],
)
def test_unrepresentable_requests_are_refused_with_v20_reason(kw, reason):
    with pytest.raises(wire.LocalReject) as err:
        wire.order_body(req(**kw), 5)
    assert err.value.reason == reason


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9 - 1))
def test_time_round_trips_through_rfc3339(ns):
    text = wire.format_time(ns)
    assert wire.parse_time_ns(text) == ns
    ref = dt.datetime.fromtimestamp(ns // 10**9, dt.timezone.utc)
    assert text.startswith(ref.strftime("%Y-%m-%dT%H:%M:%S."))


def test_unix_and_short_fraction_times():
    assert wire.parse_time_ns("1474383950.163791738") == 1474383950163791738
    assert wire.parse_time_ns("2023-12-29T15:22:00Z") == calendar.timegm((2023, 12, 29, 15, 22, 0)) * 10**9
    assert wire.parse_time_ns("2023-12-29T15:22:00.5Z") == calendar.timegm((2023, 12, 29, 15, 22, 0)) * 10**9 + 500_000_000


# Real bodies from REFERENCE.md §5.4/5.5 ------------------------------------------------------------

CREATE_201 = orjson.loads(
    b"""{"orderCreateTransaction": {"id":"7578","batchID":"7578","type":"MARKET_ORDER","instrument":"EUR_USD","units":"10000",
 "timeInForce":"FOK","positionFill":"DEFAULT","reason":"CLIENT_ORDER","clientExtensions":{"id":"my-order-1"},
 "accountID":"101-004-1435156-001","userID":1435156,"time":"2017-03-09T13:22:13.832587780Z"},
 "orderFillTransaction": {"id":"7579","batchID":"7578","type":"ORDER_FILL","orderID":"7578","clientOrderID":"my-order-1",
 "instrument":"EUR_USD","units":"10000","price":"1.05563","pl":"-0.1455","financing":"0.0000","commission":"0.0000",
 "accountBalance":"102107.4442","reason":"MARKET_ORDER","tradeOpened":{"tradeID":"7579","units":"10000"},
 "accountID":"101-004-1435156-001","userID":1435156,"time":"2017-03-09T13:22:13.832587780Z"},
 "relatedTransactionIDs":["7578","7579","7580","7581"], "lastTransactionID":"7581"}"""
)

REJECT_400 = orjson.loads(
    b"""{"orderRejectTransaction":{"id":"64","accountID":"001-004-123456-001","userID":123456,"batchID":"64",
 "requestID":"24910393117751396","time":"2022-02-06T07:40:36.837630106Z","type":"LIMIT_ORDER_REJECT","instrument":"EUR_USD",
 "units":"0","price":"1212","timeInForce":"GTC","triggerCondition":"DEFAULT","partialFill":"DEFAULT","positionFill":"DEFAULT",
 "reason":"CLIENT_ORDER","rejectReason":"UNITS_INVALID","clientExtensions":{"id":"x-9"}},
 "relatedTransactionIDs":["64"],"lastTransactionID":"64","errorMessage":"Order units specified are invalid","errorCode":"UNITS_INVALID"}"""
)


def test_order_filled_in_its_own_batch_is_reported_by_the_fill_alone():
    # Same rule as the in-process SimulatedBroker: OrderAccepted means working.
    cids: dict = {}
    events = wire.response_events(ACCT, CREATE_201, wire.CREATE_KEYS, cids)
    assert [type(e) for e in events] == [OrderFilled]
    (fill,) = events
    assert fill.client_id == "my-order-1" and fill.txn_id == 7579 and fill.units == 10_000
    assert fill.price == 1_055_630_000 and fill.pl == -145_500 and fill.account_balance == 102_107_444_200
    assert fill.trade_opened_id == "7579" and fill.reason == "MARKET_ORDER"
    assert cids == {"7578": "my-order-1"}


def test_reject_response_carries_v20_reason_and_message():
    (ev,) = wire.response_events(ACCT, REJECT_400, wire.CREATE_KEYS)
    assert isinstance(ev, OrderRejected)
    assert ev.reason == "UNITS_INVALID" and ev.message == "Order units specified are invalid"
    assert ev.client_id == "x-9" and ev.txn_id == 64


def test_cancel_and_replace_transactions():
    cids = {"10": "c-7"}
    cancel = {"id": "12", "type": "ORDER_CANCEL", "orderID": "10", "reason": "CLIENT_REQUEST_REPLACED",
              "replacedByOrderID": "13", "time": "2024-01-01T00:00:00.000000000Z"}
    create = {"id": "13", "type": "LIMIT_ORDER", "reason": "REPLACEMENT", "replacesOrderID": "10",
              "clientExtensions": {"id": "c-7"}, "instrument": "EUR_USD", "units": "5", "price": "1.00000",
              "time": "2024-01-01T00:00:00.000000000Z"}
    events = wire.txns_events(ACCT, [cancel, create], "", cids)
    assert [type(e) for e in events] == [OrderReplaced]  # the replaced-cancel is implied
    (ev_r,) = events
    assert ev_r.client_id == "c-7"
    assert isinstance(ev_r, OrderReplaced) and ev_r.old_broker_order_id == "10" and ev_r.new_broker_order_id == "13"


def test_pending_create_and_plain_cancel():
    create = {"id": "20", "batchID": "20", "type": "LIMIT_ORDER", "reason": "CLIENT_ORDER", "clientExtensions": {"id": "c-8"},
              "instrument": "EUR_USD", "units": "5", "price": "1.00000", "timeInForce": "GTC", "time": "2024-01-01T00:00:00Z"}
    cancel = {"id": "21", "batchID": "21", "type": "ORDER_CANCEL", "orderID": "20", "reason": "CLIENT_REQUEST",
              "time": "2024-01-01T00:00:01Z"}
    cids: dict = {}
    acc, can = wire.txns_events(ACCT, [create, cancel], "", cids)
    assert isinstance(acc, OrderAccepted) and acc.client_id == "c-8" and acc.txn_id == 20
    assert isinstance(can, OrderCancelled) and can.client_id == "c-8" and can.reason == "CLIENT_REQUEST"


def test_exit_orders_created_on_fill_are_not_engine_events():
    t = {"id": "7580", "type": "TAKE_PROFIT_ORDER", "reason": "ON_FILL", "tradeID": "7579", "price": "1.10000"}
    assert wire.txn_event(ACCT, t) is None
    close = {"id": "90", "type": "MARKET_ORDER", "reason": "TRADE_CLOSE", "tradeClose": {"tradeID": "7579", "units": "ALL"}}
    assert wire.txn_event(ACCT, close) is None


def test_price_line_uses_best_bucket_and_closeout_fallback():
    line = {"type": "PRICE", "instrument": "EUR_USD", "time": "2016-09-20T15:05:47.960449532Z", "tradeable": True,
            "bids": [{"price": "1.11695", "liquidity": 10000000}], "asks": [{"price": "1.11707", "liquidity": "10000000"}],
            "closeoutBid": "1.11695", "closeoutAsk": "1.11707"}
    tick = wire.price_tick(line)
    assert tick.bid == 1_116_950_000 and tick.ask == 1_117_070_000 and tick.tradeable
    halted = dict(line, bids=[], asks=[], tradeable=False)
    tick2 = wire.price_tick(halted)
    assert tick2.bid == 1_116_950_000 and not tick2.tradeable
