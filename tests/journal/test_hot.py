"""The compiled hot path (``fastexec.journal._hot``) against the Python it replaces.

``_hot`` ports ``codec.encode`` and the fold of ``order.submitted`` /
``broker.filled`` (with ``_set_status`` and ``_forget``) to Cython. These tests
feed both implementations the same input and require identical output: frames
byte for byte (and readable by the scanner), CRCs equal to ``zlib.crc32``,
states equal key for key after seeded streams and after hypothesis-generated
records (including awkward ones: missing keys, duplicates, unknown orders,
re-opened orders, retention at its limit).
"""
from __future__ import annotations

import copy
import sys
import zlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastexec.journal import JournalState, codec
from fastexec.journal import state as state_mod

from .streams import stream

_hot = pytest.importorskip("fastexec.journal._hot")


def test_the_compiled_path_is_the_one_in_use():
    assert codec.encode is _hot.encode
    assert state_mod._HANDLERS["order.submitted"] is _hot.on_submitted
    assert state_mod._HANDLERS["broker.filled"] is _hot.on_filled
    assert state_mod.PY_HANDLERS["order.submitted"] is JournalState._on_submitted


@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_crc32_is_zlibs(data, start):
    assert _hot.crc32(data) == zlib.crc32(data)
    assert _hot.crc32(data, start) == zlib.crc32(data, start)


@pytest.mark.parametrize("n", [*range(60, 150), 255, 256, 257, 1000, 4096, 65536 + 7])
def test_crc32_is_zlibs_across_the_folded_lengths(n):
    """64 bytes and more are folded with PCLMULQDQ where the CPU has it (``_hot.CLMUL``):
    every remainder length, one and several 64-byte steps."""
    data = bytes((i * 131 + n) & 0xFF for i in range(n))
    for start in (0, 1, 0xFFFFFFFF, 0x12345678):
        assert _hot.crc32(data, start) == zlib.crc32(data, start)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=20))
_payloads = st.dictionaries(st.text(max_size=12), st.one_of(_scalars, st.lists(_scalars, max_size=3),
                                                            st.dictionaries(st.text(max_size=5), _scalars, max_size=3)),
                            max_size=25)


# what the in-place encoder writes itself and what it hands to orjson (floats, tuples, ints past
# 64 bits, control and non-ASCII characters, quotes and backslashes, nesting, non-str keys)
_awkward = st.one_of(
    st.floats(allow_nan=False), st.integers(-(2**70), 2**70), st.text(alphabet='a"\\\n\x7f\x00é/ ', max_size=6),
    st.tuples(st.integers(), st.none()),
    st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                 max_leaves=12))
_awkward_payloads = st.dictionaries(st.one_of(st.text(alphabet='ab"\\\tç', max_size=4), st.integers(0, 3)), _awkward,
                                    max_size=8)


@given(st.integers(0, 2**63 - 1), st.one_of(_payloads, _awkward_payloads))
def test_encode_is_byte_identical_to_the_python_frame(seq, payload):
    try:
        expected = codec.encode_py(seq, payload)
    except TypeError:  # non-str keys, ints past 64 bits: orjson refuses them, so must the compiled path
        with pytest.raises(TypeError):
            _hot.encode(seq, payload)
        return
    frame = _hot.encode(seq, payload)
    assert frame == expected
    res = codec.scan_bytes(frame, expect_seq=seq, allow_torn_tail=False)
    assert [(r.seq, r.payload) for r in res.records] == [(seq, orjson.loads(orjson.dumps(payload)))]


def test_encode_of_interned_strings_matches_orjson_through_the_cache():
    """Interned strings are remembered encoded, by identity: many of them (slots reused),
    again and again, with a string that needs escaping and one past the cached length."""
    words = [sys.intern(f"k{i}") for i in range(2000)] + [sys.intern('q"\\'), sys.intern("x" * 60)]
    for rnd in range(3):
        for i in range(0, len(words), 7):
            payload = {w: words[(i + j + rnd) % len(words)] for j, w in enumerate(words[i:i + 7])}
            assert _hot.encode(i, payload) == codec.encode_py(i, payload)


def test_encode_deep_nesting_and_big_records_match_orjson():
    for depth in (10, 70, 300):  # past the in-place encoder's depth, and past orjson's own limit
        payload = {"d": 1}
        for _ in range(depth):
            payload = {"d": [payload]}
        try:
            expected = codec.encode_py(3, payload)
        except TypeError:
            with pytest.raises(TypeError):
                _hot.encode(3, payload)
            continue
        assert _hot.encode(3, payload) == expected
    big = {"x": "a" * (2 * 1024 * 1024), "y": list(range(1000))}
    assert _hot.encode(5, big) == codec.encode_py(5, big)
    assert _hot.encode(6, {"a": 1}) == codec.encode_py(6, {"a": 1})  # and small again after it


def test_encode_errors_match():
    with pytest.raises(TypeError):
        _hot.encode(1, {"x": object()})
    with pytest.raises(TypeError):
        codec.encode_py(1, {"x": object()})
    with pytest.raises(OverflowError):
        _hot.encode(-1, {})
    big = {"x": "a" * (codec.MAX_PAYLOAD + 1)}
    with pytest.raises(ValueError):
        _hot.encode(1, big)
    with pytest.raises(ValueError):
        codec.encode_py(1, big)


def _fold(records, handlers, retain, batch=2):
    st_ = JournalState(retain_terminal=retain, forget_batch=batch)  # small: forgetting is exercised
    handlers = dict(handlers)
    saved = dict(state_mod._HANDLERS)
    state_mod._HANDLERS.clear()
    state_mod._HANDLERS.update(handlers)
    errors = []
    try:
        for seq, rec in enumerate(records, 1):
            try:
                st_.apply(copy.deepcopy(rec), seq)
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - both sides must fail alike
                errors.append(type(exc).__name__)
    finally:
        state_mod._HANDLERS.clear()
        state_mod._HANDLERS.update(saved)
    return orjson.dumps(st_.to_dict(), option=orjson.OPT_SORT_KEYS), errors, st_


def _same_state(c_state, py_state):
    """Beyond to_dict(): the snapshot's bytes (key order included), the indexes, the
    finished client ids and every order, key order included."""
    assert orjson.dumps(c_state.to_dict(copy=False)) == orjson.dumps(py_state.to_dict(copy=False))
    assert (c_state.by_client, c_state.by_broker, c_state._recent) == (py_state.by_client, py_state.by_broker,
                                                                       py_state._recent)
    assert list(c_state._terminal) == list(py_state._terminal)
    assert list(c_state.orders) == list(py_state.orders)
    assert [list(o.items()) for o in c_state.orders.values()] == [list(o.items()) for o in py_state.orders.values()]
    assert c_state.orders == py_state.orders
    assert c_state.open_orders() == py_state.open_orders()
    accounts = []
    for state in (c_state, py_state):
        try:
            accounts.append(state.accounts())
        except TypeError as exc:  # an unhashable account id: both alike
            accounts.append(str(exc))
    assert accounts[0] == accounts[1]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("retain", [3, 200, 100_000])
def test_compiled_fold_equals_python_fold_on_seeded_streams(seed, retain):
    records = stream(2000, seed=seed)
    py, py_err, py_state = _fold(records, state_mod.PY_HANDLERS, retain)
    c, c_err, c_state = _fold(records, state_mod._HANDLERS, retain)
    assert c != _fold([], state_mod._HANDLERS, retain)[0]  # the stream did fold into something
    assert c == py and c_err == py_err
    assert len(c_state._terminal) >= min(retain, 10)  # orders did finish (and leave)
    _same_state(c_state, py_state)


_ids = st.sampled_from(["o1", "o2", "o3", "o4"])
_submitted = st.fixed_dictionaries(
    {"type": st.just("order.submitted"), "order_id": _ids, "account_id": st.sampled_from(["A", "B"]),
     "units": st.integers(1, 5000)},
    optional={"client_order_id": st.sampled_from(["", "c1", "c2", "c3", None]), "ts": st.integers(0, 10**6),
              "emulated": st.one_of(st.booleans(), st.none(), st.integers(0, 1)),
              "broker_order_id": st.sampled_from(["b1", "b2", None]), "source": st.just("reconcile"),
              "stop_loss": st.none(), "request_id": st.text(max_size=3), "status": st.just("x"),
              "created_at": st.just(-1), "filled_units": st.just(7)})
_filled = st.fixed_dictionaries(
    {"type": st.just("broker.filled"), "account_id": st.sampled_from(["A", "B"]),
     "units": st.integers(-5000, 5000), "instrument": st.sampled_from(["EUR_USD", "USD_JPY"]),
     "price": st.integers(1, 2 * 10**9)},
    optional={"txn_id": st.one_of(st.none(), st.integers(1, 30)), "client_id": st.sampled_from(["c1", "c2", "c3", None]),
              "broker_order_id": st.sampled_from(["b1", "b2", "b3", None]), "ts": st.integers(0, 10**6),
              "account_balance": st.one_of(st.none(), st.integers(0, 10**9)), "pl": st.integers(-100, 100),
              "financing": st.integers(-5, 5), "commission": st.integers(0, 5)})
_others = st.one_of(
    st.fixed_dictionaries({"type": st.just("order.status"), "order_id": _ids,
                           "status": st.sampled_from(["working", "cancelled", "filled", "accepted"])}),
    st.fixed_dictionaries({"type": st.just("reconcile.balance"), "account_id": st.sampled_from(["A", "B"]),
                           "balance": st.integers(0, 10**6)}),
)


# order fields of every kind, carried through the fold as they came: floats, ints past
# 64 bits, escapes, non-ASCII, tuples, nesting, str subclasses
_odd_submitted = st.builds(lambda rec, extra: {**rec, **extra}, _submitted, st.dictionaries(
    st.sampled_from(["note", "tag", "stop_loss", "request_id", "client_order_id", "broker_order_id", "account_id"]),
    st.one_of(st.floats(allow_nan=False), st.integers(-(2**63), 2**64 - 1), st.text(alphabet='a"\\\n\x7f\x00é/ ', max_size=6),
              st.tuples(st.integers(0, 9), st.none()), st.builds(type("S", (str,), {}), st.text(max_size=2)),
              st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                                          max_size=3), max_leaves=8)),
    max_size=3))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_submitted, _odd_submitted, _filled, _others), max_size=40), st.integers(0, 4))
def test_compiled_fold_equals_python_fold_on_generated_records(records, retain):
    py, py_err, py_state = _fold(records, state_mod.PY_HANDLERS, retain)
    c, c_err, c_state = _fold(records, state_mod._HANDLERS, retain)
    assert c_err == py_err
    assert c == py
    _same_state(c_state, py_state)


def test_submitted_orders_from_the_template_and_from_a_copy_match_python():
    """The order dict is built from a template of the record's shape (its entries written in
    place) when the record is a plain table, else from a copy of it: both are the reference's
    dict, key order and garbage-collector tracking included, however the shapes alternate."""
    import gc

    def rec(i, **extra):
        r = {"type": "order.submitted", "ts": i, "order_id": f"o{i}", "client_order_id": f"c{i}",
             "account_id": "A", "units": 10, "stop_loss": None, "emulated": i % 2 == 0}
        r.update(extra)
        return r

    holed = rec(5, gone=1)
    del holed["gone"]  # a deleted entry: not a plain table
    records = [rec(1), rec(2, stop_loss={"price": 5}), rec(3, source="x", broker_order_id="b3"), rec(4), holed,
               rec(6, created_at=-1, status="x"), {"type": "order.submitted", "order_id": "o7"}, rec(8)]
    for handlers in (state_mod.PY_HANDLERS, state_mod._HANDLERS):
        st_ = JournalState()
        for seq, r in enumerate(records, 1):
            handlers["order.submitted"](st_, r)
        got = [(list(o.items()), gc.is_tracked(o)) for o in dict.values(st_.orders)]
        if handlers is state_mod.PY_HANDLERS:
            expected = got
    assert got == expected and (st_.by_client, st_.by_broker) == ({"A": {f"c{i}": f"o{i}" for i in (1, 2, 3, 4, 5, 6, 8)}},
                                                                  {"A/b3": "o3"})


def _finished_state():
    st_ = JournalState(retain_terminal=10)
    for i in range(3):
        st_.apply({"type": "order.submitted", "order_id": f"o{i}", "client_order_id": f"c{i}", "account_id": "A",
                   "units": 10, "ts": i, "stop_loss": {"price": 5}, "request_id": "r"}, 2 * i + 1)
        st_.apply({"type": "broker.filled", "account_id": "A", "client_id": f"c{i}", "broker_order_id": f"b{i}",
                   "units": 10, "price": 7, "instrument": "EUR_USD", "txn_id": i + 1, "ts": 9}, 2 * i + 2)
    return st_


def test_a_finished_order_leaves_the_state_and_its_client_id_stays():
    st_ = _finished_state()
    assert st_.orders == {} and st_.by_broker == {} and st_.open_orders() == []
    assert st_.by_client == {"A": {"c0": "o0", "c1": "o1", "c2": "o2"}}
    assert list(st_._terminal) == [("A", "c0"), ("A", "c1"), ("A", "c2")]
    assert st_.order_for("A", "c1", "b1") is None  # a late event for it changes no order
    assert st_.positions == {"A": {"EUR_USD": 30}} and st_.last_txn == {"A": 3}


def test_only_string_client_ids_are_indexed_and_remembered():
    """Hypothesis found it (CI, 2026-11-22): a record whose client_order_id was a list put the
    list among the finished ids, and the snapshot could not be built. The engine only writes
    non-empty strings; anything else is neither indexed nor remembered, by both folds."""
    records = []
    for i, cid in enumerate([["x"], 5, "", "c", type("S", (str,), {})("s")]):
        records += [{"type": "order.submitted", "order_id": f"o{i}", "client_order_id": cid, "account_id": "A",
                     "units": 1},
                    {"type": "order.status", "order_id": f"o{i}", "status": "cancelled"}]
    for retain in (0, 3):
        py, py_err, py_state = _fold(records, state_mod.PY_HANDLERS, retain)
        c, c_err, c_state = _fold(records, state_mod._HANDLERS, retain)
        assert py_err == c_err == [None] * len(records) and c == py
        _same_state(c_state, py_state)
        assert list(py_state._terminal) == [("A", "c")] and py_state.by_client == {"A": {"c": "o3"}}


def test_finished_client_ids_are_forgotten_in_batches_oldest_first():
    st_ = JournalState(retain_terminal=3, forget_batch=2)
    for i in range(6):
        st_.apply({"type": "order.submitted", "order_id": f"o{i}", "client_order_id": f"c{i}", "account_id": "A",
                   "units": 1}, 2 * i + 1)
        st_.apply({"type": "order.status", "order_id": f"o{i}", "status": "cancelled"}, 2 * i + 2)
        if i == 4:  # 5 = 3 + 2 kept until the sixth finishes
            assert list(st_._terminal) == [("A", f"c{j}") for j in range(5)]
    assert list(st_._terminal) == [("A", "c3"), ("A", "c4"), ("A", "c5")] and set(st_.by_client["A"]) == {"c3", "c4", "c5"}


def test_a_client_id_reused_by_an_open_order_is_not_forgotten_under_it():
    st_ = JournalState(retain_terminal=1, forget_batch=0)
    st_.apply({"type": "order.submitted", "order_id": "o1", "client_order_id": "c", "account_id": "A", "units": 1}, 1)
    st_.apply({"type": "order.status", "order_id": "o1", "status": "rejected"}, 2)
    st_.apply({"type": "reconcile.adopted", "order_id": "o2", "client_order_id": "c", "account_id": "A",
               "units": 1, "broker_order_id": "b2"}, 3)
    st_.apply({"type": "order.submitted", "order_id": "o3", "client_order_id": "d", "account_id": "A", "units": 1}, 4)
    st_.apply({"type": "order.status", "order_id": "o3", "status": "cancelled"}, 5)  # forgets "c": o2 is open
    assert st_.by_client == {"A": {"c": "o2", "d": "o3"}} and list(st_.orders) == ["o2"]
    assert list(st_._terminal) == [("A", "d")]


def test_late_events_for_finished_orders_and_forgetting_them_match_python():
    records = [*_records_of(_finished_state),
               {"type": "broker.filled", "account_id": "A", "client_id": "c1", "units": 3, "price": 7,
                "instrument": "EUR_USD", "txn_id": 50, "ts": 11},
               {"type": "order.status", "order_id": "o2", "status": "working"}]
    records += [{"type": "order.submitted", "order_id": f"n{i}", "client_order_id": f"d{i}", "account_id": "A",
                 "units": 1} for i in range(12)]
    records += [{"type": "broker.filled", "account_id": "A", "client_id": f"d{i}", "broker_order_id": f"x{i}",
                 "units": 1, "price": 1, "instrument": "EUR_USD", "txn_id": 60 + i} for i in range(12)]
    for retain in (1, 3, 10):
        for batch in (0, 1, 4):
            _, _, py_state = _fold(records, state_mod.PY_HANDLERS, retain, batch)
            _, _, c_state = _fold(records, state_mod._HANDLERS, retain, batch)
            _same_state(c_state, py_state)


def _records_of(make):
    return [{"type": "order.submitted", "order_id": f"o{i}", "client_order_id": f"c{i}", "account_id": "A",
             "units": 10, "ts": i, "stop_loss": {"price": 5}, "request_id": "r"} for i in range(3)] + [
        {"type": "broker.filled", "account_id": "A", "client_id": f"c{i}", "broker_order_id": f"b{i}", "units": 10,
         "price": 7, "instrument": "EUR_USD", "txn_id": i + 1, "ts": 9} for i in range(3)]


def test_from_dict_restores_finished_client_ids_and_snapshots_the_same_bytes():
    st_ = _finished_state()
    st_.apply({"type": "order.submitted", "order_id": "o9", "client_order_id": "c9", "account_id": "A", "units": 1,
               "broker_order_id": "b9"}, 7)
    body = orjson.dumps(st_.to_dict(copy=False))
    again = JournalState.from_dict(orjson.loads(body), retain_terminal=10)
    assert orjson.dumps(again.to_dict(copy=False)) == body and again == st_
    assert (again.by_client, again.by_broker, list(again._terminal)) == (st_.by_client, st_.by_broker,
                                                                         list(st_._terminal))


def test_from_dict_reads_a_snapshot_that_held_finished_orders_whole():
    """Snapshots written before 2026-11-22 hold finished orders in "orders" and their
    order ids in "terminal": read as the fold would have left them now."""
    old = {"seq": 4, "positions": {"A": {"EUR_USD": 10}}, "balances": {}, "last_txn": {"A": 1}, "watermark": {},
           "kill_switches": {}, "risk_limits": {}, "trading_states": {}, "recent_txns": {"A": [1]},
           "orders": {"o0": {"order_id": "o0", "client_order_id": "c0", "account_id": "A", "status": "filled",
                             "broker_order_id": "b0"},
                      "o1": {"order_id": "o1", "client_order_id": "c1", "account_id": "A", "status": "working",
                             "broker_order_id": "b1"},
                      "o2": {"order_id": "o2", "client_order_id": None, "account_id": "A", "status": "cancelled",
                             "broker_order_id": None}},
           "terminal": ["o0", "o2"]}
    st_ = JournalState.from_dict(old)
    assert list(st_.orders) == ["o1"] and st_.by_client == {"A": {"c0": "o0", "c1": "o1"}}
    assert st_.by_broker == {"A/b1": "o1"}
    assert list(st_._terminal) == [("A", "c0")] and st_.to_dict()["finished_client_ids"] == [["A", "c0", "o0"]]


def test_client_ids_are_per_account_in_both_folds():
    """The same client id in two accounts: two orders, each event reaching its own account's
    order, each finished id remembered and forgotten under its account; the compiled fold
    leaves what the Python one does."""
    records = []
    for acct, oid in (("A", "oa"), ("B", "ob")):
        records.append({"type": "order.submitted", "order_id": oid, "client_order_id": "same", "account_id": acct,
                        "units": 10, "ts": 1})
    records += [{"type": "broker.filled", "account_id": "B", "client_id": "same", "broker_order_id": "b1",
                 "units": 4, "price": 7, "instrument": "EUR_USD", "txn_id": 1, "ts": 2},
                {"type": "broker.filled", "account_id": "A", "client_id": "same", "broker_order_id": "a1",
                 "units": 10, "price": 7, "instrument": "EUR_USD", "txn_id": 1, "ts": 3}]
    for retain in (0, 5):
        py, py_err, py_state = _fold(records, state_mod.PY_HANDLERS, retain)
        c, c_err, c_state = _fold(records, state_mod._HANDLERS, retain)
        assert py_err == c_err == [None] * len(records) and c == py
        _same_state(c_state, py_state)
        assert list(py_state.orders) == ["ob"] and py_state.orders["ob"]["filled_units"] == 4
        assert py_state.order_for("B", "same", None)["order_id"] == "ob" and py_state.order_for("A", "same", None) is None
        assert py_state.client_id_known("A", "same") and py_state.client_id_known("B", "same")  # finished: remembered
        assert not py_state.client_id_known("C", "same")
    assert py_state.by_client == {"A": {"same": "oa"}, "B": {"same": "ob"}} and list(py_state._terminal) == [("A", "same")]
    body = py_state.to_dict()
    assert body["finished_client_ids"] == [["A", "same", "oa"]]
    assert JournalState.from_dict(body, retain_terminal=5) == py_state


def test_from_dict_reads_finished_client_ids_without_their_account():
    """Snapshots written before client ids were per account hold [client id, order id]: each
    is kept under every account the state knows, so a retry stays refused in its own."""
    old = {"seq": 4, "positions": {"A": {"EUR_USD": 10}}, "balances": {"B": 5}, "last_txn": {}, "watermark": {},
           "kill_switches": {}, "risk_limits": {}, "trading_states": {}, "recent_txns": {}, "orders": {},
           "finished_client_ids": [["c0", "o0"]]}
    st_ = JournalState.from_dict(old)
    assert st_.by_client == {"A": {"c0": "o0"}, "B": {"c0": "o0"}}
    assert list(st_._terminal) == [("A", "c0"), ("B", "c0")]
    assert st_.to_dict()["finished_client_ids"] == [["A", "c0", "o0"], ["B", "c0", "o0"]]
