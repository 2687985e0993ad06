"""Order state machine (exhaustive over the table) and the order store."""
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastexec._core.orders import (
    MAX_ORDERS,
    PREVIOUS,
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    OrderError,
    OrderEvent,
    OrderState,
    OrderStore,
    next_state,
)

S, E = OrderState, OrderEvent
UNITS = 100

# How to bring a fresh order (units=100) into each state, and the working state
# a PREVIOUS transition must return to from there.
PATHS = {
    S.PENDING_SUBMIT: ([], False, None),
    S.SUBMITTED: ([E.ACCEPT], False, None),
    S.EMULATED: ([], True, None),
    S.TRIGGERED: ([E.TRIGGER], True, None),
    S.PARTIALLY_FILLED: ([E.ACCEPT, ("fill", 40)], False, None),
    S.FILLED: ([E.ACCEPT, ("fill", 100)], False, None),
    S.PENDING_CANCEL: ([E.ACCEPT, E.CANCEL_REQUEST], False, S.SUBMITTED),
    S.PENDING_REPLACE: ([E.ACCEPT, ("fill", 40), E.REPLACE_REQUEST], False, S.PARTIALLY_FILLED),
    S.CANCELLED: ([E.CANCEL], False, None),
    S.REJECTED: ([E.REJECT], False, None),
    S.EXPIRED: ([E.ACCEPT, E.EXPIRE], False, None),
}


def make(store, oid, state):
    steps, emulated, _ = PATHS[state]
    store.add(oid, 0, 1, UNITS, price=1_100_000_000, emulated=emulated)
    for step in steps:
        if isinstance(step, tuple):
            store.fill(oid, step[1])
        else:
            store.apply(oid, step)
    assert store.state_of(oid) == state
    return oid


def do(store, oid, event):
    """Deliver one event the way the engine would."""
    filled = store.get(oid)[3]
    if event == E.FILL:
        return store.fill(oid, UNITS - filled)
    if event == E.PARTIAL_FILL:
        return store.fill(oid, 10)
    if event == E.REPLACE:
        return store.replace(oid, 200, 1_100_100_000)
    return store.apply(oid, event)


@pytest.fixture
def store():
    return OrderStore(max_accounts=4, n_instruments=18)


def test_enums_cover_the_required_states_and_events():
    assert {s.name for s in S} == {
        "PENDING_SUBMIT", "SUBMITTED", "EMULATED", "TRIGGERED", "PARTIALLY_FILLED", "FILLED",
        "PENDING_CANCEL", "PENDING_REPLACE", "CANCELLED", "REJECTED", "EXPIRED"}
    assert {e.name for e in E} == {
        "SUBMIT", "ACCEPT", "REJECT", "TRIGGER", "PARTIAL_FILL", "FILL", "CANCEL_REQUEST",
        "CANCEL", "CANCEL_REJECT", "REPLACE_REQUEST", "REPLACE", "REPLACE_REJECT", "EXPIRE"}


def test_every_path_reaches_its_state(store):
    assert set(PATHS) == set(S)
    for state in S:
        make(store, f"o-{state.name}", state)


@pytest.mark.parametrize("state,event", list(itertools.product(S, E)),
                         ids=lambda v: v.name)
def test_every_state_event_pair_moves_as_the_table_says_or_raises(store, state, event):
    oid = make(store, "o", state)
    before = store.get(oid)
    expected = TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(InvalidTransition) as e:
            do(store, oid, event)
        assert (e.value.state, e.value.event) == (state, event)
        assert e.value.code == "INVALID_TRANSITION"
        assert state.name in str(e.value) and event.name in str(e.value) and "'o'" in str(e.value)
        assert store.get(oid) == before  # nothing changed
    else:
        if expected is PREVIOUS:
            expected = PATHS[state][2]
        assert do(store, oid, event) == expected
        assert store.state_of(oid) == expected


def test_terminal_states_take_no_event_and_others_have_an_exit():
    for state in S:
        exits = [e for e in E if (state, e) in TRANSITIONS]
        assert (not exits) == (state in TERMINAL_STATES), state


def test_next_state_is_the_table():
    for (s, e), t in TRANSITIONS.items():
        assert next_state(s, e, previous=S.SUBMITTED) == (S.SUBMITTED if t is PREVIOUS else t)
    with pytest.raises(InvalidTransition):
        next_state(S.FILLED, E.FILL)


def test_results_are_the_enum_members_themselves(store):
    # The store hands back the OrderState members (``is``-comparable, with
    # .name), not bare ints, from every call that returns a state.
    store.add("o", 0, 1, UNITS)
    assert store.state_of("o") is S.PENDING_SUBMIT
    assert store.apply("o", E.ACCEPT) is S.SUBMITTED
    assert store.fill("o", 40) is S.PARTIALLY_FILLED
    assert store.apply("o", E.REPLACE_REQUEST) is S.PENDING_REPLACE
    assert store.replace("o", 200) is S.PARTIALLY_FILLED
    got = store.get("o")[6]
    assert got is S.PARTIALLY_FILLED and type(got) is OrderState and got.name == "PARTIALLY_FILLED"
    assert store.fill("o", 160) is S.FILLED


# --- the real-world edges ------------------------------------------------------

def test_fill_after_cancel_request_completes_the_order(store):
    make(store, "o", S.PENDING_CANCEL)
    assert store.fill("o", 100) == S.FILLED
    with pytest.raises(InvalidTransition):
        store.apply("o", E.CANCEL)  # the late cancel confirmation is an error to look at


def test_partial_fill_during_cancel_then_cancel_reject_returns_to_partially_filled(store):
    make(store, "o", S.PENDING_CANCEL)
    assert store.fill("o", 30) == S.PENDING_CANCEL
    assert store.apply("o", E.CANCEL_REJECT) == S.PARTIALLY_FILLED
    assert store.get("o")[3] == 30


def test_partial_fill_then_cancel(store):
    make(store, "o", S.SUBMITTED)
    assert store.fill("o", 40) == S.PARTIALLY_FILLED
    assert store.apply("o", E.CANCEL_REQUEST) == S.PENDING_CANCEL
    assert store.apply("o", E.CANCEL) == S.CANCELLED
    assert store.get("o")[3] == 40


def test_fill_while_replace_pending(store):
    make(store, "o", S.SUBMITTED)
    store.apply("o", E.REPLACE_REQUEST)
    assert store.fill("o", 20) == S.PENDING_REPLACE
    assert store.replace("o", 150, 1_100_000_000) == S.PARTIALLY_FILLED
    assert store.get("o")[2:4] == (150, 20)
    store.apply("o", E.REPLACE_REQUEST)
    assert store.fill("o", 130) == S.FILLED


def test_cancel_reject_returns_to_previous_working_state(store):
    make(store, "o", S.SUBMITTED)
    store.apply("o", E.CANCEL_REQUEST)
    assert store.apply("o", E.CANCEL_REJECT) == S.SUBMITTED


def test_accept_after_cancel_request_sent_before_ack(store):
    store.add("o", 0, 1, 100)
    assert store.apply("o", E.CANCEL_REQUEST) == S.PENDING_CANCEL
    assert store.apply("o", E.ACCEPT) == S.PENDING_CANCEL
    assert store.apply("o", E.CANCEL_REJECT) == S.SUBMITTED


def test_cancel_request_while_replace_pending_then_reject(store):
    make(store, "o", S.SUBMITTED)
    store.apply("o", E.REPLACE_REQUEST)
    assert store.apply("o", E.CANCEL_REQUEST) == S.PENDING_CANCEL
    assert store.apply("o", E.CANCEL_REJECT) == S.SUBMITTED


def test_emulated_order_lifecycle(store):
    store.add("o", 1, 2, -500, price=1_100_000_000, stop_price=1_090_000_000, emulated=True)
    store.set_stop_price("o", 1_095_000_000)
    assert store.get("o")[5] == 1_095_000_000
    assert store.apply("o", E.TRIGGER) == S.TRIGGERED
    with pytest.raises(OrderError):
        store.set_stop_price("o", 1)  # only while emulated
    assert store.apply("o", E.SUBMIT) == S.PENDING_SUBMIT
    assert store.apply("o", E.ACCEPT) == S.SUBMITTED
    assert store.fill("o", -500) == S.FILLED


# --- fills ---------------------------------------------------------------------------

def test_overfill_raises_and_leaves_order_unchanged(store):
    make(store, "o", S.PARTIALLY_FILLED)
    before = store.get("o")
    with pytest.raises(OrderError) as e:
        store.fill("o", 61)
    assert e.value.code == "OVERFILL"
    assert store.get("o") == before


@pytest.mark.parametrize("units", [0, -10])
def test_fill_with_wrong_sign_or_zero_raises(store, units):
    make(store, "o", S.SUBMITTED)
    with pytest.raises(OrderError) as e:
        store.fill("o", units)
    assert e.value.code == "INVALID_FILL"
    assert store.state_of("o") == S.SUBMITTED


def test_apply_refuses_fill_and_replace_events(store):
    make(store, "o", S.SUBMITTED)
    for ev in (E.FILL, E.PARTIAL_FILL, E.REPLACE):
        with pytest.raises(OrderError):
            store.apply("o", ev)


def test_replace_below_filled_units_raises(store):
    make(store, "o", S.PENDING_REPLACE)  # 40 filled
    with pytest.raises(OrderError) as e:
        store.replace("o", 40)
    assert e.value.code == "INVALID_UNITS"


# --- ids, validation ---------------------------------------------------------------------

def test_duplicate_and_unknown_ids(store):
    store.add("o", 0, 0, 1)
    with pytest.raises(OrderError) as e:
        store.add("o", 0, 0, 1)
    assert e.value.code == "DUPLICATE_ORDER_ID"
    with pytest.raises(OrderError) as e:
        store.apply("nope", E.ACCEPT)
    assert e.value.code == "UNKNOWN_ORDER"


@pytest.mark.parametrize("args,code", [
    ((4, 0, 1), "UNKNOWN_ACCOUNT"), ((-1, 0, 1), "UNKNOWN_ACCOUNT"),
    ((0, 18, 1), "UNKNOWN_INSTRUMENT"), ((0, 0, 0), "INVALID_UNITS"),
    ((0, 0, 10**12 + 1), "INVALID_UNITS"),
])
def test_add_validates_indexes_and_units(store, args, code):
    with pytest.raises(OrderError) as e:
        store.add("o", *args)
    assert e.value.code == code
    assert "o" not in store


def test_add_refuses_negative_price(store):
    with pytest.raises(OrderError) as e:
        store.add("o", 0, 0, 1, price=-1)
    assert e.value.code == "INVALID_PRICE"


# --- working counts and eviction --------------------------------------------------------------

def test_working_counts_follow_non_terminal_orders(store):
    store.add("a", 0, 3, 10)
    store.add("b", 0, 3, -10, emulated=True)
    store.add("c", 0, 4, 10)
    store.add("d", 1, 3, 10)
    assert store.working_count(0, 3) == 2
    assert store.working_count_account(0) == 3
    store.apply("a", E.ACCEPT)
    store.fill("a", 10)
    store.apply("b", E.CANCEL)
    assert store.working_count(0, 3) == 0
    assert store.working_count(0, 4) == 1
    assert store.working_count(1, 3) == 1
    assert store.working_count_account(0) == 1


# --- pending units (what the risk gateway counts as working exposure) -------------------------

def test_pending_units_follow_fills_cancels_and_terminal_states(store):
    """pend_buy / pend_sell: units - filled of the non-terminal orders, per side."""
    store.add("b", 0, 3, 100)
    store.add("s", 0, 3, -70, emulated=True)  # emulated orders can trigger: they count
    store.add("other", 1, 3, 5)
    assert store.pending_units(0, 3) == (100, 70)
    assert store.pending_units(1, 3) == (5, 0) and store.pending_units(0, 4) == (0, 0)
    store.apply("b", E.ACCEPT)
    store.fill("b", 40)
    assert store.pending_units(0, 3) == (60, 70)
    store.apply("b", E.CANCEL_REQUEST)
    store.fill("b", 10)                       # a fill racing the cancel
    assert store.pending_units(0, 3) == (50, 70)
    store.apply("b", E.CANCEL)                # partial fill then cancel: the rest goes
    assert store.pending_units(0, 3) == (0, 70)
    store.apply("s", E.TRIGGER)
    assert store.pending_units(0, 3) == (0, 70)
    store.apply("s", E.REJECT)                # e.g. denied at its trigger
    assert store.pending_units(0, 3) == (0, 0)
    store.add("x", 0, 3, -30)
    store.apply("x", E.ACCEPT)
    store.apply("x", E.EXPIRE)
    store.add("f", 0, 3, -20)
    store.fill("f", -20)
    assert store.pending_units(0, 3) == (0, 0)
    with pytest.raises(IndexError):
        store.pending_units(4, 0)


def test_pending_units_follow_a_replace_of_units_and_side(store):
    store.add("o", 0, 1, 100)
    store.apply("o", E.ACCEPT)
    store.fill("o", 30)
    store.apply("o", E.REPLACE_REQUEST)
    store.fill("o", 10)                       # while the replace is pending
    assert store.pending_units(0, 1) == (60, 0)
    store.replace("o", 250, 1)                # 250 - 40 left
    assert store.pending_units(0, 1) == (210, 0)
    store.add("e", 0, 1, 50, emulated=True)
    assert store.pending_units(0, 1) == (260, 0)
    store.replace("e", -80, 1)                # nothing filled: it may change side
    assert store.pending_units(0, 1) == (210, 80)
    with pytest.raises(OrderError):
        store.replace("o", -10, 1)            # partly filled: refused, nothing moves
    assert store.pending_units(0, 1) == (210, 80)


def test_pending_units_of_an_evicted_and_reused_slot_start_from_scratch():
    s = OrderStore(1, 2, capacity=2, max_orders=2, keyed=False)
    k = s.add("a", 0, 0, 100)
    s.add("b", 0, 1, -100)
    s.fill_at(k, "a", 60)
    s.apply_at(k, "a", E.CANCEL)
    assert s.pending_units(0, 0) == (0, 0)
    assert s.add("c", 0, 1, -5) == k          # full: the terminal slot is evicted and reused
    assert s.pending_units(0, 0) == (0, 0) and s.pending_units(0, 1) == (0, 105)


def test_max_orders_is_bounded_so_pending_sums_fit_int64():
    assert MAX_ORDERS == 2**23
    # every pending sum, plus a position and an order (each <= MAX_UNITS), fits int64
    assert MAX_ORDERS * 10**12 + 2 * 10**12 < 2**63
    OrderStore(1, 1, capacity=1, max_orders=MAX_ORDERS)
    with pytest.raises(ValueError):
        OrderStore(1, 1, capacity=1, max_orders=MAX_ORDERS + 1)


def _pending_recount(s, live):
    """pend_buy / pend_sell recomputed from the orders themselves."""
    out = {}
    for oid in live:
        a, i, units, filled, _, _, state = s.get(oid)
        if state in TERMINAL_STATES:
            continue
        b, sl = out.get((a, i), (0, 0))
        out[(a, i)] = (b + units - filled, sl) if units > 0 else (b, sl + filled - units)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "event", "event", "event", "replace", "evict"]),
                          st.integers(0, 11), st.sampled_from(list(E)), st.integers(-150, 150),
                          st.booleans()), max_size=120))
def test_pending_units_equal_a_recount_after_every_step(steps):
    """Random adds (emulated or not), broker events, fills (partial, full, over),
    replaces of units and side, evictions and slot reuse: after every step the
    kept sums equal a recount from the store."""
    s = OrderStore(2, 3, capacity=2, max_orders=8)
    live, n = [], 0
    for op, pick, ev, q, flag in steps:
        try:
            if op == "add" or not live:
                oid = f"o{n}"
                n += 1
                s.add(oid, pick % 2, pick % 3, q or 1, emulated=flag)
                live.append(oid)
            elif op == "evict":
                for oid in list(live):
                    if s.is_terminal(oid):
                        live.remove(oid)
                s.evict_terminal(pick % 3)
                live = [oid for oid in live if oid in s]
            else:
                oid = live[pick % len(live)]
                _, _, units, filled, _, _, _ = s.get(oid)
                if op == "replace":
                    s.replace(oid, q or units, 0)
                elif ev == E.FILL:
                    s.fill(oid, units - filled)
                elif ev == E.PARTIAL_FILL:
                    s.fill(oid, abs(q) if units > 0 else -abs(q))
                elif ev == E.REPLACE:
                    s.replace(oid, units, 0)
                else:
                    s.apply(oid, ev)
        except OrderError as e:
            assert e.code in ("INVALID_TRANSITION", "OVERFILL", "INVALID_UNITS", "INVALID_FILL", "STORE_FULL")
        live = [oid for oid in live if oid in s]  # a full store reuses terminal slots
        want = _pending_recount(s, live)
        for a in range(2):
            for i in range(3):
                assert s.pending_units(a, i) == want.get((a, i), (0, 0)), (a, i, steps)


def test_evict_only_terminal_orders_and_reuse_slots(store):
    store.add("a", 0, 0, 10)
    with pytest.raises(OrderError) as e:
        store.evict("a")
    assert e.value.code == "NOT_TERMINAL"
    slot = store.index_of("a")
    store.apply("a", E.REJECT)
    store.evict("a")
    assert "a" not in store and len(store) == 0
    assert store.add("b", 0, 0, 5) == slot


def test_evict_terminal_keeps_the_newest(store):
    for n in range(5):
        store.add(f"o{n}", 0, 0, 1)
        store.apply(f"o{n}", E.CANCEL)
    store.add("live", 0, 0, 1)
    assert store.evict_terminal(keep=2) == 3
    assert [f"o{n}" in store for n in range(5)] == [False, False, False, True, True]
    assert "live" in store


def test_store_memory_is_bounded_by_max_orders():
    s = OrderStore(1, 1, capacity=2, max_orders=4)
    for n in range(4):
        s.add(f"o{n}", 0, 0, 1)
    s.apply("o1", E.REJECT)
    s.apply("o2", E.REJECT)
    s.add("o4", 0, 0, 1)  # full: reuses the oldest terminal slot
    assert "o1" not in s and "o2" in s and s.capacity == 4
    s.add("o5", 0, 0, 1)
    with pytest.raises(OrderError) as e:
        s.add("o6", 0, 0, 1)
    assert e.value.code == "STORE_FULL"


# --- random walks: invariants hold whatever the broker sends -------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(list(E)),
                          st.integers(1, 60)), max_size=80))
def test_random_event_streams_keep_counts_and_fills_consistent(events):
    s = OrderStore(2, 3)
    ids = [f"o{n}" for n in range(6)]
    for n, oid in enumerate(ids):
        s.add(oid, n % 2, n % 3, 100 if n % 2 else -100, emulated=(n == 5))
    for n, ev, qty in events:
        oid = ids[n]
        _, _, units, filled, _, _, state = s.get(oid)
        try:
            if ev in (E.FILL, E.PARTIAL_FILL):
                s.fill(oid, units - filled if ev == E.FILL else (qty if units > 0 else -qty))
            elif ev == E.REPLACE:
                s.replace(oid, units, 0)
            else:
                s.apply(oid, ev)
        except InvalidTransition:
            assert TRANSITIONS.get((state, ev)) is None or ev == E.PARTIAL_FILL
            assert s.get(oid)[6] == state
        except OrderError as e:
            assert e.code in ("OVERFILL", "INVALID_UNITS")
    for a in range(2):
        for i in range(3):
            live = [o for n, o in enumerate(ids)
                    if n % 2 == a and n % 3 == i and s.get(o)[6] not in TERMINAL_STATES]
            assert s.working_count(a, i) == len(live)
    for oid in ids:
        _, _, units, filled, _, _, state = s.get(oid)
        assert abs(filled) <= abs(units) and (filled == 0 or (filled > 0) == (units > 0))
        assert (state == S.FILLED) == (filled == units)


def test_terminal_queue_wraps_and_evicts_from_the_middle(store):
    """The terminal queue is a ring: past its first capacity (64) and after
    pops from the head it wraps; evicting one order from its middle keeps the
    others oldest first."""
    live = []
    for n in range(200):
        store.add(f"o{n}", 0, 0, 1)
        store.apply(f"o{n}", E.CANCEL)
        live.append(f"o{n}")
        if n % 3 == 2:
            assert store.evict_terminal(keep=len(live) - 1) == 1  # the oldest
            live.pop(0)
    for oid in (live[0], live[len(live) // 2], live[-1]):
        store.evict(oid)
        live.remove(oid)
    assert all(oid in store for oid in live)
    assert store.evict_terminal(keep=10) == len(live) - 10
    assert [oid for oid in live if oid in store] == live[-10:]


# --- a store without ids (keyed=False): the same store addressed by slot ------------------------

def _outcome(f):
    try:
        return f()
    except OrderError as e:  # InvalidTransition included
        return (type(e).__name__, e.code, str(e))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(list(E)), st.integers(1, 60),
                          st.integers(0, 3)), max_size=80))
def test_a_store_addressed_by_slot_does_what_the_keyed_store_does(events):
    """The *_at methods of a keyed=False store against the by-id methods of a keyed one (the
    reference): the same results, errors, states, counts and evictions."""
    ref, s = OrderStore(2, 3, capacity=2, max_orders=8), OrderStore(2, 3, capacity=2, max_orders=8, keyed=False)
    ids = [f"o{n}" for n in range(6)]
    slots = {}
    for n, oid in enumerate(ids):
        args = (oid, n % 2, n % 3, 100 if n % 2 else -100)
        assert ref.add(*args, emulated=(n == 5)) == s.add(*args, emulated=(n == 5))
        slots[oid] = ref.index_of(oid)
    for n, ev, qty, keep in events:
        oid, k = ids[n], slots[ids[n]]
        if oid not in ref:  # evicted: its slot refuses it in both (or now holds another order)
            assert _outcome(lambda: s.apply_at(k, oid, E.CANCEL))[1] == "UNKNOWN_ORDER"
            continue
        _, _, units, filled, _, _, state = ref.get(oid)
        if ev in (E.FILL, E.PARTIAL_FILL):
            u = units - filled if ev == E.FILL else (qty if units > 0 else -qty)
            got = (_outcome(lambda: ref.fill(oid, u)), _outcome(lambda: s.fill_at(k, oid, u)))
        elif ev == E.REPLACE:
            got = (_outcome(lambda: ref.replace(oid, units, qty)), _outcome(lambda: s.replace_at(k, oid, units, qty)))
        elif ev == E.TRIGGER and state == S.EMULATED:
            got = (_outcome(lambda: ref.set_stop_price(oid, qty)), _outcome(lambda: s.set_stop_price_at(k, oid, qty)))
        else:
            got = (_outcome(lambda: ref.apply(oid, ev)), _outcome(lambda: s.apply_at(k, oid, ev)))
        assert got[0] == got[1]
        if keep == 0:
            assert ref.evict_terminal(2) == s.evict_terminal(2)
        assert len(ref) == len(s)
        for a in range(2):
            assert ref.working_count_account(a) == s.working_count_account(a)


def test_a_store_without_ids_refuses_ids_and_stale_slots():
    s = OrderStore(1, 1, keyed=False)
    k = s.add("a", 0, 0, 10)
    assert not s.keyed and len(s) == 1
    for call in (lambda: s.state_of("a"), lambda: s.fill("a", 1), lambda: "a" in s):
        with pytest.raises(TypeError):
            call()
    assert s.fill_at(k, "a", 10) == S.FILLED
    assert s.evict_terminal(0) == 1 and len(s) == 0
    assert s.add("b", 0, 0, 5) == k  # the slot is reused: "a" no longer answers from it
    with pytest.raises(OrderError) as e:
        s.apply_at(k, "a", E.CANCEL)
    assert e.value.code == "UNKNOWN_ORDER"
    with pytest.raises(OrderError):
        s.apply_at(99, "b", E.CANCEL)
    assert s.apply_at(k, "b", E.CANCEL) == S.CANCELLED
