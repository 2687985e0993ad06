"""Positions, P&L, conversion, margin and NAV against the Decimal reference model."""
import json
from decimal import Decimal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import reference_model as ref
from fastexec._core.fixedpoint import FixedPointError, parse_money, parse_price, parse_rate
from fastexec._core.instruments import load_instruments
from fastexec._core.positions import Ledger, LedgerError

TABLE = load_instruments()
REF_INSTRUMENTS = [ref.RefInstrument(it.name, Decimal(it.to_v20()["marginRate"])) for it in TABLE]

# Rough levels (in display units) so generated prices look like markets.
LEVELS = {
    "EUR_USD": "1.10000", "GBP_USD": "1.27000", "USD_JPY": "150.000", "USD_CHF": "0.88000",
    "AUD_USD": "0.66000", "USD_CAD": "1.36000", "NZD_USD": "0.61000", "EUR_GBP": "0.86000",
    "EUR_JPY": "163.000", "GBP_JPY": "190.000", "EUR_CHF": "0.96000", "AUD_JPY": "99.000",
    "EUR_AUD": "1.66000", "GBP_CHF": "1.12000", "CHF_JPY": "170.000", "EUR_CAD": "1.49000",
    "AUD_NZD": "1.08000", "XAU_USD": "2000.000",
}
assert set(LEVELS) == set(TABLE.names)


def P(text, name="EUR_USD"):
    return parse_price(text, TABLE[name].display_precision)


def M(text):
    return parse_money(text)


def dec_price(raw):
    return ref.from_raw(raw, "price")


def raw_money(d):
    return ref.to_raw(d, "money")


def state_raw(refstate):
    out = {}
    for k, v in refstate.items():
        out[k] = v if k == "open_positions" else raw_money(v)
    return out


def pos_raw(refpos):
    return dict(units=refpos["units"], average_price=ref.to_raw(refpos["average_price"], "price"),
                unrealized_pl=raw_money(refpos["unrealized_pl"]),
                position_value=raw_money(refpos["position_value"]),
                margin_used=raw_money(refpos["margin_used"]),
                realized_pl=raw_money(refpos["realized_pl"]))


def mark_all(ledger, model=None):
    for name, level in LEVELS.items():
        mid = P(level, name)
        tick = TABLE[name].price_tick
        ledger.mark(TABLE.index(name), mid - tick, mid + tick)
        if model is not None:
            model.mark(name, dec_price(mid - tick), dec_price(mid + tick))


@pytest.fixture
def ledger():
    return Ledger(TABLE, max_accounts=8)


# --- scenarios ----------------------------------------------------------------------

def test_apply_fill_long_then_partial_close_realizes_pnl_in_home(ledger):
    a = ledger.add_account("acc", "USD", M("100000"))
    eu = TABLE.index("EUR_USD")
    ledger.mark(eu, P("1.10000"), P("1.10020"))
    assert ledger.apply_fill(a, eu, 100_000, P("1.10020")) == 0
    assert ledger.apply_fill(a, eu, -40_000, P("1.10520")) == M("200")  # 40k * 0.005
    pos = ledger.position(a, eu)
    assert (pos.units, pos.average_price, pos.realized_pl) == (60_000, P("1.10020"), M("200"))
    assert ledger.account_state(a).balance == M("100200")


def test_short_close_at_a_loss_realizes_negative_pnl(ledger):
    a = ledger.add_account("acc", "USD", M("1000"))
    eu = TABLE.index("EUR_USD")
    ledger.mark(eu, P("1.10000"), P("1.10020"))
    ledger.apply_fill(a, eu, -10_000, P("1.10000"))
    assert ledger.apply_fill(a, eu, 10_000, P("1.10100")) == M("-10")
    assert ledger.position(a, eu).units == 0
    assert ledger.position(a, eu).average_price == 0
    assert ledger.account_state(a).open_positions == 0


def test_flip_through_zero_resets_average_to_fill_price(ledger):
    a = ledger.add_account("acc", "USD", M("100000"))
    eu = TABLE.index("EUR_USD")
    ledger.mark(eu, P("1.10000"), P("1.10020"))
    ledger.apply_fill(a, eu, 1_000, P("1.10000"))
    realized = ledger.apply_fill(a, eu, -3_000, P("1.10500"))
    assert realized == M("5")  # only the 1,000 closed units realize
    pos = ledger.position(a, eu)
    assert (pos.units, pos.average_price) == (-2_000, P("1.10500"))


def test_average_price_is_the_lots_weighted_average_rounded_half_even():
    t = load_instruments()
    L = Ledger(t, 1)
    a = L.add_account("acc", "USD", 0)
    i = t.index("XAU_USD")
    L.apply_fill(a, i, 1, 1)      # 1 unit at 1 nano (raw), exact
    L.apply_fill(a, i, 1, 2)      # avg (1 + 2) / 2 = 1.5 nano -> 2 (even)
    assert L.position(a, i).average_price == 2
    L.apply_fill(a, i, 2, 5)      # (1 + 2 + 2*5) / 4 = 3.25 -> 3 (from the lots, not the old average)
    assert L.position(a, i).average_price == 3
    L.apply_fill(a, i, 1, 3)      # (13 + 3) / 5 = 3.2 -> 3
    L.apply_fill(a, i, 1, 4)      # (16 + 4) / 6 = 3.33 -> 3 ; lots 1@1 1@2 2@5 1@3 1@4
    assert L.lots(a, i) == [(1, 1, 0), (1, 2, 0), (2, 5, 0), (1, 3, 0), (1, 4, 0)]
    L.apply_fill(a, i, -3, 5)     # FIFO closes 1@1, 1@2, 1 of 2@5: left 1@5 1@3 1@4
    assert L.lots(a, i) == [(1, 5, 0), (1, 3, 0), (1, 4, 0)]
    assert L.position(a, i).average_price == 4      # 12 / 3
    L.apply_fill(a, i, -2, 5)     # left 1@4
    assert L.position(a, i).average_price == 4
    L.apply_fill(a, i, -2, 5)     # flip: short 1@5
    assert L.lots(a, i) == [(-1, 5, 0)] and L.position(a, i).average_price == 5


def test_reducing_fill_realizes_per_lot_oldest_first(ledger):
    """5 buys then 3 sells of 1,000 EUR_USD: each sell closes the oldest lot
    and realizes against that lot's price (v20 FIFO), not the average."""
    a = ledger.add_account("acc", "USD", M("100000"))
    eu = TABLE.index("EUR_USD")
    ledger.mark(eu, P("1.10000"), P("1.10020"))
    for px in ("1.10010", "1.10030", "1.10020", "1.10050", "1.10040"):
        assert ledger.apply_fill(a, eu, 1_000, P(px)) == 0
    assert ledger.position(a, eu).average_price == P("1.10030")
    assert ledger.apply_fill(a, eu, -1_000, P("1.10000")) == M("-0.1")    # vs lot 1.10010
    assert ledger.apply_fill(a, eu, -1_000, P("1.10010")) == M("-0.2")    # vs lot 1.10030
    assert ledger.apply_fill(a, eu, -1_000, P("1.10020")) == M("0")       # vs lot 1.10020
    pos = ledger.position(a, eu)
    assert (pos.units, pos.average_price, pos.realized_pl) == (2_000, P("1.10045"), M("-0.3"))
    # average cost would have realized 3 * 1,000 * (1.1001 - 1.1003) = -0.6
    assert ledger.account_state(a).balance == M("99999.7")
    # one sell across two lots: the 1.10050 lot and half of the 1.10040 one
    assert ledger.apply_fill(a, eu, -1_500, P("1.10060")) == M("0.1") + M("0.1")
    assert ledger.lots(a, eu) == [(500, P("1.10040"), 0)]


def test_realized_pnl_is_rounded_per_lot_half_even_to_4_decimals(ledger):
    a = ledger.add_account("acc", "USD", 0)
    eu = TABLE.index("EUR_USD")
    ledger.mark(eu, P("1.10000"), P("1.10000"))
    ledger.apply_fill(a, eu, 1, P("1.10000"))
    ledger.apply_fill(a, eu, 3, P("1.10000"))
    ledger.apply_fill(a, eu, 1, P("1.10000"))
    # 1 unit * 0.00005 = 0.00005 -> 0.0000 (even); 3 units -> 0.00015 -> 0.0002;
    # 1 unit -> 0.0000: per lot 0 + 0.0002 + 0, where the fill as a whole
    # (5 units * 0.00005 = 0.00025) would round to 0.0002 as well but
    # 4 * 0.00005 = 0.0002 vs 0 + 0.0002 shows the per-lot steps:
    assert ledger.apply_fill(a, eu, -4, P("1.10005")) == M("0.0002")   # 0 + 0.0002
    assert ledger.apply_fill(a, eu, -1, P("1.10005")) == 0             # 0.00005 -> 0
    assert ledger.apply_fill(a, eu, -1, P("1.10005")) == 0             # short 1 opens
    assert ledger.apply_fill(a, eu, 1, P("1.09990")) == M("0.0002")    # 0.00015 -> 0.0002


def test_unrealized_is_computed_on_the_net_position_rounded_to_4_decimals(ledger):
    a = ledger.add_account("acc", "USD", 0)
    eu = TABLE.index("EUR_USD")
    ledger.apply_fill(a, eu, 1, P("1.10000"))
    ledger.apply_fill(a, eu, 2, P("1.10001"))
    ledger.mark(eu, P("1.10002"), P("1.10004"))
    # 3 * 1.10002 - (1.10000 + 2 * 1.10001) = 0.00004 -> 0.0000 (per lot it
    # would be 0.00002 -> 0.0000 and 0.00002 -> 0.0000 too); 0.00005 -> 0:
    assert ledger.position(a, eu).unrealized_pl == 0
    ledger.mark(eu, P("1.10003"), P("1.10004"))   # 0.00007 -> 0.0001
    assert ledger.position(a, eu).unrealized_pl == M("0.0001")


def test_cross_currency_pnl_uses_gain_and_loss_factors(ledger):
    """Profit converts at the gain factor (selling the quote currency), loss at
    the loss factor (buying it), REFERENCE.md 9.4: USD account, EUR_JPY, the
    JPY->USD factor is 1/ask (gain) or 1/bid (loss) of USD_JPY."""
    a = ledger.add_account("acc", "USD", M("100000"))
    ej, uj = TABLE.index("EUR_JPY"), TABLE.index("USD_JPY")
    ledger.mark(uj, P("149.000", "USD_JPY"), P("151.000", "USD_JPY"))
    ledger.mark(ej, P("163.000", "EUR_JPY"), P("163.000", "EUR_JPY"))
    gain, loss = ledger.pl_factors("JPY", "USD")
    assert (gain, loss) == (parse_rate("0.006622516556"), parse_rate("0.006711409396"))
    assert ledger.conversion("JPY", "USD") == parse_rate("0.006666666667")   # mid, for margin
    ledger.apply_fill(a, ej, 1_000, P("163.000", "EUR_JPY"))
    ledger.apply_fill(a, ej, 1_000, P("165.000", "EUR_JPY"))
    ledger.mark(ej, P("164.000", "EUR_JPY"), P("164.000", "EUR_JPY"))
    # net: 2,000 * 164 - (163,000 + 165,000) = 0 JPY
    assert ledger.position(a, ej).unrealized_pl == 0
    assert ledger.apply_fill(a, ej, -1_000, P("164.000", "EUR_JPY")) == M("6.6225")   # +1,000 JPY at gain
    assert ledger.apply_fill(a, ej, -1_000, P("164.000", "EUR_JPY")) == M("-6.7114")  # -1,000 JPY at loss


def test_lot_capacity_is_bounded_and_refusal_changes_nothing():
    L = Ledger(TABLE, 1, max_lots=3)
    assert L.max_lots == 3
    a = L.add_account("acc", "USD", M("1000"))
    eu = TABLE.index("EUR_USD")
    L.mark(eu, P("1.10000"), P("1.10000"))
    for n in range(3):
        L.apply_fill(a, eu, 10, P("1.10000") + n * 10**4)
    before = (L.lots(a, eu), L.position(a, eu), L.account_state(a))
    with pytest.raises(LedgerError) as e:
        L.apply_fill(a, eu, 10, P("1.20000"))
    assert e.value.code == "TOO_MANY_LOTS"
    assert (L.lots(a, eu), L.position(a, eu), L.account_state(a)) == before
    # reducing always works; a flip that closes every lot opens just one
    L.apply_fill(a, eu, -15, P("1.10000"))
    L.apply_fill(a, eu, 10, P("1.10000"))
    L.apply_fill(a, eu, -40, P("1.10000"))
    assert L.lots(a, eu) == [(-15, P("1.10000"), 0)]
    with pytest.raises(ValueError):
        Ledger(TABLE, 1, max_lots=0)


def test_lot_ring_wraps_and_grows_in_order():
    L = Ledger(TABLE, 1)
    a = L.add_account("acc", "USD", M("1000000"))
    x = TABLE.index("XAU_USD")
    L.mark(x, P("2000.000", "XAU_USD"), P("2000.000", "XAU_USD"))
    model = []
    price = P("2000.000", "XAU_USD")
    for step in range(300):
        u = step % 7 + 1
        L.apply_fill(a, x, u, price + step * 10**6, 0, step + 1)
        model.append((u, price + step * 10**6, step + 1))
        if step % 3 == 2:           # close a bit: the ring's head moves, it wraps and grows
            k = 5
            L.apply_fill(a, x, -k, price)
            while k:
                t = min(k, model[0][0])
                model[0] = (model[0][0] - t,) + model[0][1:]
                if model[0][0] == 0:
                    model.pop(0)
                k -= t
        assert L.lots(a, x) == model


# --- fills that name the broker's trades they close -----------------------------------

def _three_lots(ledger, ids=(11, 12, 13)):
    """Long EUR_USD: 1,000 @ 1.10000 (id 11), 2,000 @ 1.10100 (12), 3,000 @ 1.10200 (13)."""
    a = ledger.add_account("acc", "USD", M("100000"))
    eu = TABLE.index("EUR_USD")
    ledger.mark(eu, P("1.10000"), P("1.10000"))
    for (u, px), tid in zip([(1_000, "1.10000"), (2_000, "1.10100"), (3_000, "1.10200")], ids):
        assert ledger.apply_fill(a, eu, u, P(px), 0, tid) == 0
    return a, eu


def test_lots_carry_the_broker_trade_id(ledger):
    a, eu = _three_lots(ledger)
    assert ledger.lots(a, eu) == [(1_000, P("1.10000"), 11), (2_000, P("1.10100"), 12),
                                  (3_000, P("1.10200"), 13)]
    assert ledger.unmatched_trade_ids == 0


def test_stop_loss_on_a_younger_trade_closes_that_trade_not_the_oldest(ledger):
    """v20: a stop loss attached to trade 13 closes trade 13 (tradesClosed
    [13]); FIFO would have closed 1,000 of 11 and 2,000 of 12 instead."""
    a, eu = _three_lots(ledger)
    realized = ledger.apply_fill(a, eu, -3_000, P("1.10150"), 0, 0, (13,))
    assert realized == M("-1.5")                     # 3,000 * (1.10150 - 1.10200)
    assert ledger.lots(a, eu) == [(1_000, P("1.10000"), 11), (2_000, P("1.10100"), 12)]
    pos = ledger.position(a, eu)
    assert (pos.units, pos.average_price, pos.realized_pl) == (3_000, 1_100_666_667, M("-1.5"))   # 3,302 / 3,000
    assert ledger.account_state(a).balance == M("99998.5")
    # the same fill FIFO realizes 1,000 * 0.0015 + 2,000 * 0.0005 = 2.5: not the broker's
    other = Ledger(TABLE, 1)
    b, _ = _three_lots(other)
    assert other.apply_fill(b, eu, -3_000, P("1.10150")) == M("2.5")


def test_named_closes_in_the_order_given_the_last_partially(ledger):
    """tradesClosed [13, 11] then tradeReduced 12: 13 and 11 fully, 500 of 12."""
    a, eu = _three_lots(ledger)
    realized = ledger.apply_fill(a, eu, -4_500, P("1.10300"), 0, 0, (13, 11, 12))
    # 3,000 * 0.001 + 1,000 * 0.003 + 500 * 0.002 = 3 + 3 + 1
    assert realized == M("7")
    assert ledger.lots(a, eu) == [(1_500, P("1.10100"), 12)]
    assert ledger.position(a, eu).average_price == P("1.10100")
    assert ledger.unmatched_trade_ids == 0


def test_partial_close_of_a_named_trade_keeps_its_place(ledger):
    """A close-trade of 1,000 units of trade 12 (tradeReduced 12)."""
    a, eu = _three_lots(ledger)
    assert ledger.apply_fill(a, eu, -1_000, P("1.10000"), 0, 0, (12,)) == M("-1")
    assert ledger.lots(a, eu) == [(1_000, P("1.10000"), 11), (1_000, P("1.10100"), 12),
                                  (3_000, P("1.10200"), 13)]
    # the next plain fill is FIFO again: 11 first
    assert ledger.apply_fill(a, eu, -1_500, P("1.10100")) == M("1") + M("0")
    assert ledger.lots(a, eu) == [(500, P("1.10100"), 12), (3_000, P("1.10200"), 13)]


def test_unknown_trade_id_falls_back_to_fifo_and_is_counted(ledger):
    a, eu = _three_lots(ledger)
    before = ledger.unmatched_trade_ids
    # 99 is no open trade of the position: the fill closes oldest first
    assert ledger.apply_fill(a, eu, -1_500, P("1.10100"), 0, 0, (99,)) == M("1") + M("0")
    assert ledger.unmatched_trade_ids == before + 1
    assert ledger.lots(a, eu) == [(1_500, P("1.10100"), 12), (3_000, P("1.10200"), 13)]
    # a known id first, then FIFO for the units the names do not cover
    assert ledger.apply_fill(a, eu, -4_000, P("1.10200"), 0, 0, (13, 98)) == M("0") + M("1")
    assert ledger.unmatched_trade_ids == before + 2
    assert ledger.lots(a, eu) == [(500, P("1.10100"), 12)]


def test_ids_that_close_nothing_are_counted(ledger):
    a, eu = _three_lots(ledger)
    # named twice, 0, and one after the fill is used up: three misses, one close
    ledger.apply_fill(a, eu, -3_000, P("1.10200"), 0, 0, (13, 13, 0, 11))
    assert ledger.unmatched_trade_ids == 3
    assert [lot[2] for lot in ledger.lots(a, eu)] == [11, 12]
    # names on a fill that opens (adds to the long) close nothing
    ledger.apply_fill(a, eu, 1_000, P("1.10200"), 0, 14, (11,))
    assert ledger.unmatched_trade_ids == 4
    assert [lot[2] for lot in ledger.lots(a, eu)] == [11, 12, 14]
    # an empty tuple is a FIFO fill
    ledger.apply_fill(a, eu, -500, P("1.10200"), 0, 0, ())
    assert ledger.unmatched_trade_ids == 4 and ledger.lots(a, eu)[0] == (500, P("1.10000"), 11)


def test_named_close_then_flip_opens_the_new_trade_with_its_id(ledger):
    a, eu = _three_lots(ledger)
    # v20 closes every trade (named in its order) and opens trade 20 with the rest
    realized = ledger.apply_fill(a, eu, -7_000, P("1.10100"), 0, 20, (12, 13, 11))
    assert realized == M("0") + M("-3") + M("1")
    assert ledger.lots(a, eu) == [(-1_000, P("1.10100"), 20)]
    assert ledger.position(a, eu).average_price == P("1.10100")
    assert ledger.unmatched_trade_ids == 0


def test_refused_named_fill_changes_nothing_and_counts_nothing():
    L = Ledger(TABLE, 1)
    a = L.add_account("acc", "USD", M("1000"))
    ej = TABLE.index("EUR_JPY")
    L.apply_fill(a, ej, 1_000, P("163.000", "EUR_JPY"), 0, 1)
    L.apply_fill(a, ej, 1_000, P("164.000", "EUR_JPY"), 0, 2)
    before = (L.lots(a, ej), L.position(a, ej), L.account_state(a))
    with pytest.raises(LedgerError) as e:    # JPY -> USD unknown: not marked
        L.apply_fill(a, ej, -500, P("164.000", "EUR_JPY"), 0, 0, (2, 77))
    assert e.value.code == "NO_CONVERSION_RATE"
    assert (L.lots(a, ej), L.position(a, ej), L.account_state(a), L.unmatched_trade_ids) == before + (0,)
    with pytest.raises(LedgerError) as e:
        L.apply_fill(a, ej, 1, P("164.000", "EUR_JPY"), 0, -1)
    assert e.value.code == "INVALID_TRADE_ID"
    with pytest.raises(TypeError):
        L.apply_fill(a, ej, -500, P("164.000", "EUR_JPY"), 10**10, 0, ("2",))   # ids are ints
    with pytest.raises(TypeError):      # every id is read, even after the fill is used up
        L.apply_fill(a, ej, -500, P("164.000", "EUR_JPY"), 10**10, 0, (2, "1"))
    with pytest.raises(TypeError):      # and on a fill that opens
        L.apply_fill(a, ej, 500, P("164.000", "EUR_JPY"), 10**10, 3, (None,))
    with pytest.raises(TypeError):
        L.apply_fill(a, ej, -500, P("164.000", "EUR_JPY"), quote_home_rate=10**10)   # positional only
    assert (L.lots(a, ej), L.position(a, ej), L.account_state(a), L.unmatched_trade_ids) == before + (0,)


def test_named_closes_across_a_wrapped_ring_keep_the_order_of_the_rest():
    """Closing lots from the middle of a ring that has wrapped and grown."""
    L = Ledger(TABLE, 1)
    a = L.add_account("acc", "USD", M("1000000"))
    x = TABLE.index("XAU_USD")
    L.mark(x, P("2000.000", "XAU_USD"), P("2000.000", "XAU_USD"))
    px = P("2000.000", "XAU_USD")
    model = []
    tid = 0
    for step in range(200):
        tid += 1
        L.apply_fill(a, x, 3, px + tid * 10**6, 0, tid)
        model.append([3, px + tid * 10**6, tid])
        if step % 4 == 3:          # close the 2nd-newest and the 2nd-oldest lots, 1 unit FIFO more
            named = [model[-2][2], model[1][2]]
            L.apply_fill(a, x, -7, px, 0, 0, tuple(named))
            model = [lot for lot in model if lot[2] not in named]
            model[0][0] -= 1
            if model[0][0] == 0:
                model.pop(0)
        assert L.lots(a, x) == [tuple(lot) for lot in model]
    assert L.position(a, x).units == sum(lot[0] for lot in model)


def test_unrealized_uses_bid_for_long_and_ask_for_short(ledger):
    a = ledger.add_account("long", "USD", M("10000"))
    b = ledger.add_account("short", "USD", M("10000"))
    eu = TABLE.index("EUR_USD")
    ledger.mark(eu, P("1.10000"), P("1.10000"))
    ledger.apply_fill(a, eu, 1_000, P("1.10000"))
    ledger.apply_fill(b, eu, -1_000, P("1.10000"))
    ledger.mark(eu, P("1.10100"), P("1.10300"))
    assert ledger.position(a, eu).unrealized_pl == M("1")    # (1.10100 - 1.1) * 1000
    assert ledger.position(b, eu).unrealized_pl == M("-3")   # (1.1 - 1.10300) * 1000


def test_margin_matches_oanda_help_example(tmp_path):
    """help.oanda.com (REFERENCE.md 9.1): GBP account buys 1,000,000 EUR_GBP at
    ask 0.8568, bid/mid/ask 0.8566/0.8567/0.8568, margin rate 3.33333%:
    margin used 28,556.64 GBP; NAV and margin available follow."""
    d = {"instruments": [dict(json.loads(json.dumps(TABLE["EUR_GBP"].to_v20())),
                              marginRate="0.0333333")]}
    p = tmp_path / "i.json"
    p.write_text(json.dumps(d))
    t = load_instruments(str(p))
    L = Ledger(t, 1)
    a = L.add_account("gbp", "GBP", M("50000"))
    L.mark(0, parse_price("0.85660", 5), parse_price("0.85680", 5))
    L.apply_fill(a, 0, 1_000_000, parse_price("0.85680", 5))
    s = L.account_state(a)
    assert s.margin_used == M("28556.63811")      # 0.0333333 * 1e6 * 0.8567
    assert s.position_value == M("856700")
    assert s.unrealized_pl == M("-200")           # closing side (bid) for a long
    assert s.nav == M("49800")
    assert s.margin_available == s.nav - s.margin_used


def test_margin_used_is_rate_times_value_at_mid(ledger):
    a = ledger.add_account("acc", "USD", M("100000"))
    eu = TABLE.index("EUR_USD")
    ledger.mark(eu, P("1.10000"), P("1.10020"))
    ledger.apply_fill(a, eu, 100_000, P("1.10020"))
    s = ledger.account_state(a)
    assert s.position_value == M("110010")  # at mid 1.10010
    assert s.margin_used == M("2200.2")     # 0.02 * 110010


def test_mark_of_conversion_instrument_revalues_cross_positions(ledger):
    a = ledger.add_account("acc", "USD", M("100000"))
    ej, uj = TABLE.index("EUR_JPY"), TABLE.index("USD_JPY")
    ledger.mark(ej, P("163.000", "EUR_JPY"), P("163.000", "EUR_JPY"))
    ledger.mark(uj, P("150.000", "USD_JPY"), P("150.000", "USD_JPY"))
    ledger.apply_fill(a, ej, -1_000, P("163.000", "EUR_JPY"))
    ledger.mark(ej, P("162.850", "EUR_JPY"), P("162.850", "EUR_JPY"))
    assert ledger.position(a, ej).unrealized_pl == M("1")   # 150 JPY / 150
    ledger.mark(uj, P("100.000", "USD_JPY"), P("100.000", "USD_JPY"))
    assert ledger.position(a, ej).unrealized_pl == M("1.5")  # only USD_JPY moved


def test_conversion_routes_direct_inverse_and_cross(ledger):
    for home in ("USD", "EUR", "JPY", "NZD", "CAD"):
        ledger.add_account(home, home, 0)
    mark_all(ledger)
    assert ledger.conversion("USD", "USD") == 10**12
    assert ledger.conversion("EUR", "USD") == 1_100_000 * 10**6     # direct: mid
    assert ledger.conversion("USD", "EUR") == parse_rate("0.909090909091")  # inverse, half-even
    assert ledger.conversion("JPY", "NZD") is not None               # cross, both legs inverse
    assert ledger.conversion("GBP", "CAD") == parse_rate("1.7272")    # cross 1.27 * 1.36


def test_reducing_fill_without_conversion_rate_raises_and_changes_nothing(ledger):
    a = ledger.add_account("acc", "USD", M("1000"))
    ej = TABLE.index("EUR_JPY")
    ledger.apply_fill(a, ej, 1_000, P("163.000", "EUR_JPY"))
    before = (ledger.position(a, ej), ledger.account_state(a))
    with pytest.raises(LedgerError) as e:
        ledger.apply_fill(a, ej, -500, P("164.000", "EUR_JPY"))
    assert e.value.code == "NO_CONVERSION_RATE"
    assert (ledger.position(a, ej), ledger.account_state(a)) == before
    # the broker's factor from the fill can be passed instead
    r = ledger.apply_fill(a, ej, -500, P("164.000", "EUR_JPY"), parse_rate("0.0066"))   # quote_home_rate
    assert r == M("3.3")  # 500 JPY * 0.0066


def test_unmarked_position_is_valued_at_zero_until_marked(ledger):
    a = ledger.add_account("acc", "USD", M("1000"))
    eu = TABLE.index("EUR_USD")
    ledger.apply_fill(a, eu, 1_000, P("1.10000"))
    assert ledger.account_state(a).margin_used == 0
    ledger.mark(eu, P("1.10000"), P("1.10000"))
    assert ledger.account_state(a).margin_used == M("22")


def test_deposit_is_not_daily_pnl_but_charges_are(ledger):
    a = ledger.add_account("acc", "USD", M("1000"))
    ledger.deposit(a, M("500"))
    s = ledger.account_state(a)
    assert (s.balance, s.daily_pl) == (M("1500"), 0)
    ledger.apply_charge(a, M("-2.5"))
    assert ledger.account_state(a).daily_pl == M("-2.5")
    ledger.start_trading_day(a)
    assert ledger.account_state(a).daily_pl == 0


@pytest.mark.parametrize("bid,ask", [(0, 10**6), (2 * 10**6, 10**6), (-(10**6), 10**6),
                                     (10**18, 10**18 + 10**6)])
def test_mark_refuses_bad_prices(ledger, bid, ask):
    with pytest.raises(LedgerError) as e:
        ledger.mark(TABLE.index("XAU_USD"), bid, ask)
    assert e.value.code == "INVALID_PRICE"


def test_mark_refuses_prices_finer_than_the_tick(ledger):
    with pytest.raises(LedgerError, match="tick"):
        ledger.mark(TABLE.index("EUR_USD"), 1_100_001_000, 1_100_020_000)


@pytest.mark.parametrize("units,price,code", [
    (0, 1, "INVALID_UNITS"), (10**12 + 1, 1, "INVALID_UNITS"), (1, 0, "INVALID_PRICE"),
])
def test_apply_fill_refuses_bad_input(ledger, units, price, code):
    a = ledger.add_account("acc", "USD", 0)
    with pytest.raises(LedgerError) as e:
        ledger.apply_fill(a, 0, units, price)
    assert e.value.code == code


def test_position_beyond_max_units_refused(ledger):
    a = ledger.add_account("acc", "USD", 0)
    ledger.apply_fill(a, 0, 10**12, 1_000_000_000)
    with pytest.raises(LedgerError) as e:
        ledger.apply_fill(a, 0, 1, 1_000_000_000)
    assert e.value.code == "POSITION_TOO_LARGE"
    assert ledger.position(a, 0).units == 10**12


def test_realized_pnl_overflow_raises_overflow_error_and_changes_nothing(ledger):
    a = ledger.add_account("acc", "USD", 0)
    x = TABLE.index("XAU_USD")
    ledger.apply_fill(a, x, 10**9, P("1.000", "XAU_USD"))  # unmarked: not valued yet
    with pytest.raises(OverflowError):
        ledger.apply_fill(a, x, -10**9, P("100000.000", "XAU_USD"), 10**12)
    assert ledger.position(a, x).units == 10**9
    assert ledger.account_state(a).balance == 0


def test_fill_whose_valuation_overflows_changes_nothing(ledger):
    a = ledger.add_account("acc", "USD", 0)
    x = TABLE.index("XAU_USD")
    ledger.mark(x, P("2000.000", "XAU_USD"), P("2000.000", "XAU_USD"))
    with pytest.raises(OverflowError):
        ledger.apply_fill(a, x, 10**9, P("1.000", "XAU_USD"))  # 2e12 USD unrealized
    assert ledger.position(a, x).units == 0
    assert ledger.account_state(a).open_positions == 0


def test_mark_whose_valuation_overflows_changes_nothing(ledger):
    a = ledger.add_account("acc", "USD", 0)
    x = TABLE.index("XAU_USD")
    ledger.mark(x, P("1.000", "XAU_USD"), P("1.000", "XAU_USD"))
    ledger.apply_fill(a, x, 10**9, P("1.000", "XAU_USD"))
    before = (ledger.price(x), ledger.position(a, x), ledger.account_state(a),
              ledger.value_per_unit(x, "USD"))
    with pytest.raises(OverflowError):
        ledger.mark(x, P("2000.000", "XAU_USD"), P("2000.000", "XAU_USD"))
    assert (ledger.price(x), ledger.position(a, x), ledger.account_state(a),
            ledger.value_per_unit(x, "USD")) == before


def test_accounts_by_name_and_errors(ledger):
    a = ledger.add_account("acc", "EUR", 0)
    assert ledger.account_index("acc") == a and ledger.home_currency(a) == "EUR"
    with pytest.raises(LedgerError):
        ledger.add_account("acc", "EUR", 0)
    with pytest.raises(LedgerError) as e:
        ledger.add_account("x", "SGD", 0)
    assert e.value.code == "UNKNOWN_CURRENCY"
    with pytest.raises(LedgerError) as e:
        ledger.account_state(5)
    assert e.value.code == "UNKNOWN_ACCOUNT"


# --- properties against the reference -------------------------------------------------------

HOMES = ["USD", "EUR", "JPY", "GBP", "NZD", "CAD", "CHF", "AUD"]
NAMES = list(LEVELS)


@st.composite
def ops(draw):
    out = []
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    for _ in range(draw(st.integers(1, 40))):
        name = draw(st.sampled_from(names))
        tick = TABLE[name].price_tick
        level = P(LEVELS[name], name) // tick
        px = draw(st.integers(level * 8 // 10, level * 12 // 10)) * tick
        kind = draw(st.sampled_from(["mark", "fill", "fill", "add", "add", "part", "close", "flip",
                                     "named", "named"]))
        if kind == "mark":
            out.append(("mark", name, px, px + draw(st.integers(0, 30)) * tick))
        else:
            # fill: any size and side; add: small, on the position's side
            # (many lots); part: a fraction (in 1/8) of the position, across
            # lots; close: all of it; flip: all of it and more; named: closes
            # lots by trade id (see _named)
            small = draw(st.booleans())
            units = draw(st.integers(1, 3_000 if small else 2_000_000)) * draw(st.sampled_from([1, -1]))
            naming = None
            if kind == "named":
                naming = (draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=4)),
                         draw(st.sampled_from(["exact", "reduce", "more", "any"])),
                         draw(st.sampled_from([None, None, "unknown", "zero"])))
            # the broker's id of the trade the fill may open: unique, or 0 (unknown)
            tid = 0 if draw(st.integers(0, 4)) == 0 else len(out) + 1
            out.append((kind, draw(st.integers(0, 2)), name, units, px, tid, naming))
    return out


def _named(names, lots, p, units):
    """Units and trade ids of a fill that names lots of the position (as v20
    fills do: tradesClosed, then tradeReduced): ``picks`` choose open lots
    (repeats possible), in any order; the fill closes them exactly, stops
    inside the last (a reduce), goes on FIFO / flips (more), or has any
    size; an unknown or 0 id may be added."""
    picks, mode, odd = names
    if p == 0 or not lots:
        return units, tuple(picks[:1])
    s = 1 if p > 0 else -1
    chosen = [lots[x % len(lots)] for x in picks]
    ids = [lot[2] for lot in chosen]
    size = sum(abs(lot[0]) for lot in {id(lot): lot for lot in chosen}.values())
    if mode == "reduce":
        size = max(1, size - max(1, abs(chosen[-1][0]) // 2))
    elif mode == "more":
        size += abs(units)
    elif mode == "any":
        size = abs(units)
    if odd == "unknown":
        ids.insert(picks[0] % (len(ids) + 1), 10**9 + picks[0])
    elif odd == "zero":
        ids.append(0)
    return -s * size, tuple(ids)


def _shape(kind, p, units):
    """Units of a fill of `kind` against position p (see ops)."""
    if p == 0:
        return units
    s = 1 if p > 0 else -1
    if kind == "add":
        return s * abs(units)
    if kind == "part":
        return -s * max(1, abs(p) * (abs(units) % 8 + 1) // 8)
    if kind == "close":
        return -p
    if kind == "flip":
        return -p - s * abs(units)
    return units


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(HOMES), min_size=3, max_size=3), ops(), st.booleans(),
       st.sampled_from([None, None, 2, 5]))
def test_ledger_matches_reference_model(homes, steps, premark, max_lots):
    """FIFO lots, partial closes across several lots, flips, many lots, lot
    capacity refusals, lots closed by trade id (out of order, partially,
    unknown / repeated ids falling back to FIFO): every result, error code,
    number, lot list (with trade ids) and the count of unmatched ids equals
    the Decimal model's after every step."""
    L = Ledger(TABLE, 4) if max_lots is None else Ledger(TABLE, 4, max_lots=max_lots)
    R = ref.RefLedger(REF_INSTRUMENTS, max_lots=max_lots)
    for n, h in enumerate(homes):
        L.add_account(f"a{n}", h, M("100000"))
        R.add_account(h, Decimal("100000"))
    if premark:
        mark_all(L, R)
    for step in steps:
        if step[0] == "mark":
            _, name, bid, ask = step
            try:
                R.mark(name, dec_price(bid), dec_price(ask))
                expected = ("ok", None)
            except ref.RefError as e:
                expected = ("err", e.code)
            try:
                L.mark(TABLE.index(name), bid, ask)
                got = ("ok", None)
            except (LedgerError, FixedPointError) as e:
                got = ("err", e.code)
            assert got == expected
        else:
            kind, a, name, units, px, tid, names = step
            pos = R.accounts[a].positions.get(name, ref.RefPosition())
            p = pos.units
            closed_ids = None
            if kind == "named":
                units, closed_ids = _named(names, pos.lots, p, units)
                event("named %s%s" % (names[1], "" if names[2] is None else " +" + names[2]))
            else:
                units = _shape(kind, p, units)
            if p and (p > 0) != (units > 0) and closed_ids is None:
                lots = R.accounts[a].positions[name].lots
                closed, left = 0, abs(units)
                while closed < len(lots) and left >= abs(lots[closed][0]):
                    left -= abs(lots[closed][0])
                    closed += 1
                event("closes %s lots" % ("0" if closed == 0 else "1" if closed == 1 else "2+"))
            event("open/add" if p == 0 or (p > 0) == (units > 0) else
                  "close" if p + units == 0 else
                  "partial close" if abs(units) < abs(p) else "flip")
            missed = R.unmatched_trade_ids
            try:
                expected = ("ok", raw_money(R.apply_fill(a, name, units, dec_price(px), None, tid, closed_ids)))
            except ref.RefError as e:
                expected = ("err", e.code)
            try:
                if closed_ids is None and tid == 0 and len(steps) % 2:   # the plain 4-argument call too
                    got = ("ok", L.apply_fill(a, TABLE.index(name), units, px))
                else:
                    got = ("ok", L.apply_fill(a, TABLE.index(name), units, px, 0, tid, closed_ids))
            except (LedgerError, FixedPointError) as e:
                got = ("err", e.code)
            if expected[0] == "err":
                event("refused " + expected[1])
            elif closed_ids is not None and p and (p > 0) != (units > 0):
                event("named ids close lots" + (" (some unmatched)" if R.unmatched_trade_ids > missed else ""))
            assert got == expected
            assert L.unmatched_trade_ids == R.unmatched_trade_ids
            assert L.lots(a, TABLE.index(name)) == [(u, ref.to_raw(q, "price"), t) for u, q, t in
                                                    R.accounts[a].positions.get(name, ref.RefPosition()).lots]
        for a in range(3):
            assert L.account_state(a)._asdict() == state_raw(R.account_state(a))
    for a in range(3):
        for name in NAMES:
            assert L.position(a, TABLE.index(name))._asdict() == pos_raw(R.position(a, name))
            lots = R.accounts[a].positions.get(name, ref.RefPosition()).lots
            assert L.lots(a, TABLE.index(name)) == [(u, ref.to_raw(p, "price"), t) for u, p, t in lots]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), st.integers(-300, 300), min_size=len(NAMES),
                       max_size=len(NAMES)))
def test_every_conversion_matches_reference(moves):
    L = Ledger(TABLE, len(HOMES))
    R = ref.RefLedger(REF_INSTRUMENTS)
    for h in HOMES:
        L.add_account(h, h, 0)
    for name, move in moves.items():
        tick = TABLE[name].price_tick
        mid = P(LEVELS[name], name) + move * 100 * tick
        L.mark(TABLE.index(name), mid, mid + 2 * tick)
        R.mark(name, dec_price(mid), dec_price(mid + 2 * tick))
    for c in TABLE.currencies:
        for h in HOMES:
            f = R.conversion(c, h)
            assert L.conversion(c, h) == (None if f is None else ref.to_raw(f, "rate")), (c, h)
            g, lo = R.conversion(c, h, "gain"), R.conversion(c, h, "loss")
            assert L.pl_factors(c, h) == (None if f is None else (ref.to_raw(g, "rate"), ref.to_raw(lo, "rate")))
    for name in NAMES:
        for h in HOMES:
            pu = R.per_unit(name, h)
            got = L.value_per_unit(TABLE.index(name), h)
            assert got == (None if pu is None else tuple(ref.to_raw(v, "rate") for v in pu))
