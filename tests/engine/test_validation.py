"""Bad input is refused with a ValidationError naming the field and a stable
code, before anything is recorded or sent: no order, no venue transaction,
no rate token."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fastexec.engine import ExitSpec, OrderSpec
from fastexec.errors import ValidationError

from .harness import SEC

def _gtd(h, seconds: int) -> datetime:
    return datetime.fromtimestamp(h.clock.now // SEC + seconds, tz=timezone.utc)


CASES = [
    # (spec overrides, code, field)
    (dict(account_id="nope"), "UNKNOWN_ACCOUNT", "account_id"),
    (dict(account_id=["a", "b"]), "UNKNOWN_ACCOUNT", "account_id"),
    (dict(instrument=["EUR_USD"]), "UNKNOWN_INSTRUMENT", "instrument"),
    (dict(side=["buy"]), "INVALID_SIDE", "side"),
    (dict(time_in_force=["FOK"]), "TIME_IN_FORCE_INVALID", "time_in_force"),
    (dict(instrument="EUR_XXX"), "UNKNOWN_INSTRUMENT", "instrument"),
    (dict(instrument=None), "UNKNOWN_INSTRUMENT", "instrument"),
    (dict(side="long"), "INVALID_SIDE", "side"),
    (dict(units=0), "INVALID_UNITS", "units"),
    (dict(units=-5), "INVALID_UNITS", "units"),
    (dict(units=1.5), "INVALID_UNITS", "units"),
    (dict(units=True), "INVALID_UNITS", "units"),
    (dict(units="100"), "INVALID_UNITS", "units"),
    (dict(units=10**13), "UNITS_LIMIT_EXCEEDED", "units"),
    (dict(type="iceberg"), "INVALID_ORDER_TYPE", "type"),
    (dict(type=None), "INVALID_ORDER_TYPE", "type"),
    (dict(type="limit"), "PRICE_REQUIRED", "price"),
    (dict(price=1_100_000_000), "PRICE_NOT_ALLOWED", "price"),
    (dict(type="limit", price=1_100_001_000), "PRICE_PRECISION_EXCEEDED", "price"),
    (dict(type="limit", price=-1), "INVALID_PRICE", "price"),
    (dict(type="limit", price=0), "INVALID_PRICE", "price"),
    (dict(type="limit", price=1.1), "INVALID_PRICE", "price"),
    (dict(type="limit", price=10**19), "INVALID_PRICE", "price"),
    (dict(type="stop_limit", price=1_100_000_000), "STOP_PRICE_REQUIRED", "stop_price"),
    (dict(type="limit", price=1_100_000_000, stop_price=1_100_000_000), "STOP_PRICE_NOT_ALLOWED", "stop_price"),
    (dict(type="trailing_stop"), "TRAILING_DISTANCE_REQUIRED", "trailing_distance"),
    (dict(type="trailing_stop", trailing_distance=100_000), "TRAILING_DISTANCE_OUT_OF_RANGE", "trailing_distance"),
    (dict(type="trailing_stop", trailing_distance=2_000_000_000), "TRAILING_DISTANCE_OUT_OF_RANGE", "trailing_distance"),
    (dict(trailing_distance=1_000_000), "TRAILING_DISTANCE_NOT_ALLOWED", "trailing_distance"),
    (dict(time_in_force="GTC"), "TIME_IN_FORCE_INVALID", "time_in_force"),
    (dict(type="market_if_touched", price=1_100_000_000, time_in_force="FOK"), "TIME_IN_FORCE_INVALID", "time_in_force"),
    (dict(type="fok", time_in_force="IOC"), "TIME_IN_FORCE_INVALID", "time_in_force"),
    (dict(type="limit", price=1_100_000_000, time_in_force="GTD"), "GTD_TIME_REQUIRED", "gtd_time"),
    (dict(type="limit", price=1_100_000_000, time_in_force="GTD", gtd_time=datetime(2030, 1, 1)), "INVALID_GTD_TIME", "gtd_time"),
    (dict(type="limit", price=1_100_000_000, time_in_force="GTD", gtd_time="past"), "GTD_TIME_IN_PAST", "gtd_time"),
    (dict(type="limit", price=1_100_000_000, gtd_time="future"), "GTD_TIME_NOT_ALLOWED", "gtd_time"),
    (dict(stop_loss=ExitSpec()), "INVALID_EXIT", "stop_loss"),
    (dict(stop_loss=ExitSpec(price=1_090_000_000, distance=1_000_000)), "INVALID_EXIT", "stop_loss"),
    (dict(stop_loss={"price": "1.09"}), "INVALID_EXIT", "stop_loss"),
    (dict(stop_loss=ExitSpec(price=1_090_000_100)), "PRICE_PRECISION_EXCEEDED", "stop_loss.price"),
    (dict(take_profit=ExitSpec(distance=1_000_000)), "EXIT_DISTANCE_NOT_SUPPORTED", "take_profit"),
    (dict(take_profit=ExitSpec(price=1_120_000_000, guaranteed=True)), "GUARANTEED_NOT_ALLOWED", "take_profit"),
    (dict(trailing_stop_distance=1_000), "PRICE_PRECISION_EXCEEDED", "trailing_stop_distance"),
    (dict(trailing_stop_distance=100_000), "TRAILING_DISTANCE_OUT_OF_RANGE", "trailing_stop_distance"),
    (dict(client_order_id=""), "INVALID_CLIENT_ORDER_ID", "client_order_id"),
    (dict(client_order_id="has space"), "INVALID_CLIENT_ORDER_ID", "client_order_id"),
    (dict(client_order_id="x" * 129), "INVALID_CLIENT_ORDER_ID", "client_order_id"),
    (dict(client_order_id=42), "INVALID_CLIENT_ORDER_ID", "client_order_id"),
]


@pytest.mark.parametrize("overrides, code, field", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
async def test_bad_order_is_refused_and_changes_nothing(h, overrides, code, field):
    if overrides.get("gtd_time") == "past":
        overrides = {**overrides, "gtd_time": _gtd(h, -1)}
    elif overrides.get("gtd_time") == "future":
        overrides = {**overrides, "gtd_time": _gtd(h, 60)}
    base = dict(account_id=h.a1, instrument="EUR_USD", side="buy", units=1000)
    if "account_id" in overrides:
        base["account_id"] = overrides.pop("account_id")
        overrides = dict(overrides)
    spec = OrderSpec(**{**base, **overrides})
    venue_txns = h.venue.accounts[h.a1].last_id
    decision = h.engine.validate(spec)
    assert not decision.allowed and decision.code == code
    with pytest.raises(ValidationError) as err:
        await h.engine.submit(spec)
    assert err.value.code == code
    assert err.value.field == field
    assert err.value.http_status == 400
    assert err.value.to_dict()["error"]["code"] == code
    assert h.engine.list_orders() == []
    assert h.venue.accounts[h.a1].last_id == venue_txns
    assert h.engine.performance()["counters"]["orders"] == 0


async def test_refusals_take_no_rate_token(h):
    h.engine.set_risk_limits(h.a1, max_orders_per_second=1)
    for _ in range(5):
        with pytest.raises(ValidationError):
            await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 0))
    assert (await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1))).status == "filled"


async def test_not_an_order_spec(h):
    with pytest.raises(ValidationError) as err:
        await h.engine.submit({"account_id": h.a1})
    assert err.value.code == "INVALID_ORDER"


async def test_order_types_accept_strings_and_enums(h):
    from fastexec.engine import OrderType

    a = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 10, type="ioc"))
    b = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 10, type=OrderType.IOC))
    assert a.type == b.type == "ioc"
    assert a.time_in_force == b.time_in_force == "IOC"


async def test_close_position_input(h):
    from fastexec.errors import ConflictError

    with pytest.raises(ConflictError) as err:
        await h.engine.close_position(h.a1, "EUR_USD")
    assert err.value.code == "NO_OPEN_POSITION"
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "sell", 1000))
    for units, code in ((0, "INVALID_UNITS"), (-1, "INVALID_UNITS"), (1.5, "INVALID_UNITS"), (1001, "UNITS_EXCEED_POSITION")):
        with pytest.raises(ValidationError) as err:
            await h.engine.close_position(h.a1, "EUR_USD", units=units)
        assert err.value.code == code
    with pytest.raises(ValidationError):
        await h.engine.close_position(h.a1, "EUR_XXX")
    partial = await h.engine.close_position(h.a1, "EUR_USD", units=400, reason="trim")
    assert partial.units == -600
    assert (await h.engine.close_position(h.a1, "EUR_USD")).units == 0


def _slots(n):
    from fastexec.engine.hotpath import NORMALIZED_FIELDS

    return {k: getattr(n, k) for k in NORMALIZED_FIELDS}


@pytest.mark.parametrize("otype", ["market", "fok", "ioc", "limit", "stop_limit", "trailing_stop"])
@pytest.mark.parametrize("side", ["buy", "sell"])
@pytest.mark.parametrize("coid", [None, "my-1"])
def test_plain_fast_path_gives_what_the_full_checks_give(monkeypatch, otype, side, coid):
    """normalize's fast path for specs without optional fields returns the
    same Normalized (every slot) as the full checks; types that need a price,
    stop or trailing distance still fail the same way."""
    from fastexec._core.instruments import load_instruments
    from fastexec.engine import validation as V

    inst = next(i for i in load_instruments() if i.name == "EUR_USD")
    spec = OrderSpec("acct", "EUR_USD", side, 1000, type=otype, client_order_id=coid)

    def run():
        try:
            return _slots(V.normalize(spec, inst, 0))
        except ValidationError as exc:
            return (exc.code, exc.field)

    fast = run()
    for info in V._INFO_LIST:
        monkeypatch.setattr(info, "plain", False)
    assert run() == fast
    if otype in ("market", "fok", "ioc"):
        assert fast["units"] == (1000 if side == "buy" else -1000) and fast["client_order_id"] == coid


def test_normalized_factory_sets_what_the_constructor_sets():
    from fastexec.engine import validation as V

    info = V._INFO_BY_NAME["stop_limit"]
    args = (info, -5, 1, 2, 3, "GTD", 4, "sl", "tp", "tsl", "c")
    assert _slots(V._normalized(*args)) == _slots(V.Normalized(*args))


def test_broker_request_sets_every_order_request_field():
    """broker_request builds the OrderRequest without its constructor: it must
    equal the constructor's object, field for field, and leave none unset."""
    import dataclasses

    from fastexec._core.instruments import load_instruments
    from fastexec.brokers.base import OrderRequest
    from fastexec.engine import OrderSpec
    from fastexec.engine.hotpath import broker_request
    from fastexec.engine.validation import normalize

    inst = next(i for i in load_instruments() if i.name == "EUR_USD")
    for spec in (OrderSpec("acc", "EUR_USD", "sell", 10),
                 OrderSpec("acc", "EUR_USD", "buy", 10, type="limit", price=1_090_000_000)):
        n = normalize(spec, inst, 0)
        got = broker_request(n, "cid", "acc", "EUR_USD")
        for f in dataclasses.fields(OrderRequest):
            getattr(got, f.name)  # AttributeError if a slot was left unset
        info = n.info
        vtype = info.v20 if n.price is None else info.v20_priced
        want = OrderRequest("cid", "acc", "EUR_USD", n.units, vtype,
                            None if vtype.value == "MARKET" else n.price, None,
                            got.time_in_force, None)
        assert got == want
        assert got.time_in_force.value == n.tif
