"""Snapshots + replay give exactly the state from before the restart."""
from __future__ import annotations

import copy
import os

import pytest

from fastexec.journal import Journal, JournalState, apply_retention, load_latest_snapshot, read_records, write_snapshot
from fastexec.journal.reader import list_segments
from fastexec.journal.snapshot import list_snapshots, read_snapshot

from .streams import ACCOUNTS, stream


def fold(records) -> JournalState:
    st = JournalState()
    for i, r in enumerate(records, 1):
        st.apply(r, i)
    return st


async def write_all(j: Journal, records, snapshot_at=()):
    for i, r in enumerate(records, 1):
        j.append(copy.deepcopy(r))
        if i in snapshot_at:
            await j.snapshot(engine_state={"engine_seq": i})
    await j.flush()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_state_after_reopen_equals_state_before(tmp_path, seed):
    recs = stream(1500, seed)
    j = Journal(str(tmp_path), segment_bytes=8192, keep_snapshots=2)
    j.open()
    await write_all(j, recs, snapshot_at={400, 900, 1300})
    before = j.state.to_dict()
    await j.close()

    j2 = Journal(str(tmp_path), segment_bytes=8192)
    report = j2.open()
    assert report.snapshot_seq == 1300 and report.replayed == 200
    assert j2.state.to_dict() == before
    assert j2.engine_state == {"engine_seq": 1300}
    # and equal to a fold of every record from the beginning, without any snapshot
    assert fold(recs).to_dict() == before
    await j2.close()


async def test_the_fold_holds_what_must_survive_a_restart(tmp_path):
    recs = stream(2000, 5)
    st = fold(recs)
    # kill switches, risk limits and trading states in force
    assert st.kill_switches and st.risk_limits and st.trading_states
    # emulated orders still waiting
    assert any(o["status"] == "emulated" and o.get("emulation") for o in st.orders.values())
    # positions and balances for the accounts that traded
    assert set(st.balances) <= set(ACCOUNTS) and st.balances
    assert any(st.positions.get(a) for a in ACCOUNTS)
    # duplicated fills (same txn twice) were counted once: recompute positions from unique fills
    seen, pos = set(), {}
    for r in recs:
        if r["type"] == "broker.filled" and (r["account_id"], r["txn_id"]) not in seen:
            seen.add((r["account_id"], r["txn_id"]))
            key = (r["account_id"], r["instrument"])
            pos[key] = pos.get(key, 0) + r["units"]
    assert {(a, i): u for a, b in st.positions.items() for i, u in b.items()} == {k: v for k, v in pos.items() if v}


async def test_snapshot_at_every_point_matches_full_replay(tmp_path):
    """Cut the journal at many points: snapshot(k) + records after k == fold of all."""
    recs = stream(300, 9)
    full = fold(recs).to_dict()
    j = Journal(str(tmp_path), keep_snapshots=1000)
    j.open()
    await write_all(j, recs, snapshot_at=set(range(1, 301, 23)))
    await j.close()
    for seq, path in list_snapshots(str(tmp_path)):
        snap = read_snapshot(path)
        st = JournalState.from_dict(snap.state["journal"])
        for r in read_records(str(tmp_path), after_seq=snap.seq):
            st.apply(r.payload, r.seq)
        assert st.to_dict() == full, seq


async def test_a_damaged_snapshot_falls_back_to_an_older_one(tmp_path):
    recs = stream(600, 4)
    j = Journal(str(tmp_path), keep_snapshots=3)
    j.open()
    await write_all(j, recs, snapshot_at={200, 400})
    before = j.state.to_dict()
    await j.close()
    newest = list_snapshots(str(tmp_path))[-1][1]
    data = bytearray(open(newest, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(newest, "wb").write(bytes(data))
    j2 = Journal(str(tmp_path))
    rep = j2.open()
    assert rep.snapshot_seq == 200 and rep.replayed == 400
    assert j2.state.to_dict() == before
    await j2.close()


async def test_retention_deletes_only_segments_the_oldest_kept_snapshot_covers(tmp_path):
    recs = stream(1200, 6)
    j = Journal(str(tmp_path), segment_bytes=4096, keep_snapshots=2)
    j.open()
    await write_all(j, recs, snapshot_at={300, 700, 1100})
    await j.close()
    snaps = list_snapshots(str(tmp_path))
    assert [s for s, _ in snaps] == [700, 1100]
    segs = list_segments(str(tmp_path))
    # the first kept segment still holds record 701 (needed if snapshot 1100 is ever unreadable)
    assert segs[0][0] <= 701
    assert len(segs) >= 2 and segs[1][0] > 701
    # falling back to snapshot 700 still works: delete the newest and reopen
    os.unlink(snaps[-1][1])
    j2 = Journal(str(tmp_path))
    assert j2.open().snapshot_seq == 700
    assert j2.state.to_dict() == fold(recs).to_dict()
    await j2.close()


def test_snapshot_write_is_atomic_and_leftover_temp_files_are_ignored(tmp_path):
    d = str(tmp_path)
    write_snapshot(d, 10, {"journal": JournalState().to_dict(), "engine": None})
    # a crash in the middle of writing the next one leaves only a temp file
    with open(os.path.join(d, ".snap-00000000000000000020.fxs.123.tmp"), "wb") as fh:
        fh.write(b"FXJ\x01partial")
    snap = load_latest_snapshot(d)
    assert snap.seq == 10
    apply_retention(d, keep_snapshots=1)
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]


async def test_reopen_after_retention_continues_the_sequence(tmp_path):
    """All segments but the newest are gone; the next record still gets the next number."""
    recs = stream(200, 8)
    j = Journal(str(tmp_path), segment_bytes=1024, keep_snapshots=1)
    j.open()
    await write_all(j, recs, snapshot_at={200})
    await j.close()
    j2 = Journal(str(tmp_path))
    assert j2.open().last_seq == 200
    assert await j2.write({"type": "kill_switch", "account_id": None, "active": True, "reason": "r", "actor": "a"}) == 201
    assert j2.state.kill_switches["*"]["active"] is True
    await j2.close()
    j3 = Journal(str(tmp_path))
    j3.open()
    assert j3.state.kill_switches["*"]["active"] is True and j3.state.seq == 201
    await j3.close()


async def test_automatic_snapshots(tmp_path):
    recs = stream(500, 10)
    j = Journal(str(tmp_path), snapshot_every=100, keep_snapshots=2, state_provider=lambda: {"ok": True})
    j.open()
    for r in recs:
        await j.write(r)
        if j._snapshot_task is not None:
            # the counter started one: let it finish before going on (one runs at a time and
            # a due one is skipped while another is in flight, so on a loaded machine fewer
            # would be cut and the count below would depend on timing)
            await j._snapshot_task
    await j.close()
    snaps = list_snapshots(str(tmp_path))
    assert [seq for seq, _ in snaps] == [400, 500]  # five cut, the newest two kept
    j2 = Journal(str(tmp_path))
    j2.open()
    assert j2.engine_state == {"ok": True}
    assert j2.state.to_dict() == fold(recs).to_dict()
    await j2.close()


async def test_finished_orders_are_retired_identically_live_and_after_restart(tmp_path):
    recs = stream(1500, 12)
    live = JournalState(retain_terminal=50, forget_batch=20)
    for i, r in enumerate(recs, 1):
        live.apply(r, i)
        if i == 700:
            cut = live.to_dict()
    assert 50 <= len(live._terminal) <= 70  # finished orders' client ids: the newest 50, plus a batch
    assert not any(o["status"] in ("filled", "cancelled", "rejected") for o in live.orders.values())
    resumed = JournalState.from_dict(cut, retain_terminal=50, forget_batch=20)
    for i, r in enumerate(recs[700:], 701):
        resumed.apply(r, i)
    assert resumed.to_dict() == live.to_dict()
    assert (resumed.by_client, list(resumed._terminal)) == (live.by_client, list(live._terminal))
    # the snapshot indexes open orders by their current broker id; live, an order replaced at the
    # broker is also still found by its old one
    assert resumed.by_broker.items() <= live.by_broker.items()
    # every open order is indexed by its client id; of the finished, only the retained ones are
    indexed = {(acct, c) for acct, d in live.by_client.items() for c in d}
    assert indexed == {(o["account_id"], o["client_order_id"]) for o in live.orders.values()
                       if o.get("client_order_id")} | set(live._terminal)
    assert all(live.by_client[o["account_id"]][o["client_order_id"]] == o["order_id"]
               for o in live.orders.values() if o.get("client_order_id"))


def test_a_snapshot_larger_than_a_record_limit_round_trips(tmp_path):
    from fastexec.journal.codec import MAX_PAYLOAD

    big = {"journal": JournalState().to_dict(), "engine": {"blob": "x" * (MAX_PAYLOAD + 1024)}}
    write_snapshot(str(tmp_path), 7, big)
    snap = load_latest_snapshot(str(tmp_path))
    assert snap.seq == 7 and len(snap.state["engine"]["blob"]) == MAX_PAYLOAD + 1024
