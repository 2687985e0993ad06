"""Snapshots encoded and written by a forked child (``Journal(snapshot_in_child=True)``).

The fork is the capture instant; the parent reaps the child off the loop, waits until the
snapshot's records are durable, then publishes it. Real files and real child processes.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os

import orjson
import pytest

from fastexec.journal import Journal, JournalState
from fastexec.journal import store as store_mod
from fastexec.journal.snapshot import list_snapshots, read_snapshot, snapshot_body
from fastexec.journal.store import SnapshotError

from .streams import stream

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def fold(records) -> JournalState:
    st = JournalState()
    for i, r in enumerate(records, 1):
        st.apply(r, i)
    return st


@pytest.fixture
def forks(monkeypatch):
    """Every pid the journal forks, to check each one was reaped."""
    pids: list[int] = []
    real = os.fork

    def fork():
        pid = real()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    yield pids
    for pid in pids:
        with pytest.raises(ChildProcessError):  # not our child any more: reaped
            os.waitpid(pid, os.WNOHANG)


def leftovers(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


async def fill(j: Journal, records) -> None:
    for r in records:
        j.append(copy.deepcopy(r))
    await j.flush()


async def test_forked_body_equals_the_in_loop_body(tmp_path, forks):
    recs = stream(1500, 7)
    j = Journal(str(tmp_path), snapshot_in_child=True, keep_snapshots=5)
    j.open()
    await fill(j, recs)
    engine = {"engine_seq": 1500, "nested": {"a": [1, 2, 3]}}
    forked = read_snapshot(await j.snapshot(engine_state=engine))
    assert len(forks) == 1
    expected = orjson.loads(snapshot_body(j.last_seq, {"journal": j.state.to_dict(copy=False), "engine": engine}))
    assert forked.seq == expected["seq"] == 1500
    assert forked.state == expected["state"]

    j.snapshot_in_child = False  # the same state through the in-loop path
    in_loop = read_snapshot(await j.snapshot(engine_state=engine))
    assert len(forks) == 1
    assert in_loop.seq == forked.seq and in_loop.state == forked.state
    await j.close()


async def test_records_after_the_capture_are_not_in_it_and_restart_replays_them(tmp_path, forks):
    recs = stream(2000, 3)
    j = Journal(str(tmp_path), snapshot_in_child=True)
    j.open()
    await fill(j, recs[:1200])
    task = asyncio.ensure_future(j.snapshot(engine_state={"at": 1200}))
    await asyncio.sleep(0)
    assert j._snapshot_child is not None  # forked: the state is captured
    for r in recs[1200:]:  # appended while the child encodes
        j.append(copy.deepcopy(r))
    snap = read_snapshot(await task)
    assert snap.seq == 1200 and snap.state["journal"]["seq"] == 1200
    assert snap.state["journal"] == orjson.loads(orjson.dumps(fold(recs[:1200]).to_dict()))
    assert snap.state["engine"] == {"at": 1200}
    await j.flush()
    before = j.state.to_dict()
    await j.close()

    j2 = Journal(str(tmp_path))
    report = j2.open()
    assert report.snapshot_seq == 1200 and report.replayed == 800
    assert j2.state.to_dict() == before == fold(recs).to_dict()
    assert j2.engine_state == {"at": 1200}
    await j2.close()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("in_child", [True, False])
async def test_automatic_snapshots_both_ways(tmp_path, forks, in_child):
    recs = stream(1000, 11)
    j = Journal(str(tmp_path), snapshot_every=300, keep_snapshots=2, snapshot_in_child=in_child,
                state_provider=lambda: {"ok": True})
    j.open()
    for r in recs:
        j.append(copy.deepcopy(r))
        if j._snapshot_task is not None and len(j.state.orders) % 7 == 0:
            await asyncio.sleep(0)
    await j.flush()
    await j.close()  # waits for an automatic snapshot still running
    snaps = list_snapshots(str(tmp_path))
    assert snaps and len(snaps) <= 2
    assert bool(forks) == in_child
    j2 = Journal(str(tmp_path))
    report = j2.open()
    assert report.snapshot_seq == snaps[-1][0]
    assert j2.state.to_dict() == fold(recs).to_dict()
    assert j2.engine_state == {"ok": True}
    await j2.close()
    assert leftovers(tmp_path) == []


async def test_unencodable_state_fails_in_the_child_and_leaves_nothing(tmp_path, forks, caplog):
    recs = stream(500, 2)
    j = Journal(str(tmp_path), snapshot_in_child=True)
    j.open()
    await fill(j, recs[:300])
    with pytest.raises(SnapshotError, match="TypeError"):
        await j.snapshot(engine_state={"bad": object()})
    assert list_snapshots(str(tmp_path)) == [] and leftovers(tmp_path) == []

    # the automatic path logs it and the journal keeps working
    j.state_provider = lambda: {"bad": {1, 2}}
    j.snapshot_every = 50
    with caplog.at_level(logging.ERROR, logger="fastexec.journal"):
        for r in recs[300:360]:
            j.append(copy.deepcopy(r))
        while j._snapshot_task is not None:
            await asyncio.sleep(0.005)
    assert "automatic snapshot failed" in caplog.text and "TypeError" in caplog.text
    assert list_snapshots(str(tmp_path)) == [] and leftovers(tmp_path) == []
    j.snapshot_every = 0
    j.state_provider = None
    for r in recs[360:]:
        j.append(copy.deepcopy(r))
    await j.flush()
    snap = read_snapshot(await j.snapshot())
    assert snap.seq == 500
    await j.close()
    j2 = Journal(str(tmp_path))
    assert j2.open().replayed == 0
    assert j2.state.to_dict() == fold(recs).to_dict()
    await j2.close()
    assert len(forks) == 3


async def test_unwritable_target_fails_in_the_child(tmp_path, forks, monkeypatch):
    j = Journal(str(tmp_path), snapshot_in_child=True)
    j.open()
    await fill(j, stream(100, 4))
    monkeypatch.setattr(store_mod, "snapshot_tmp_path",
                        lambda d, seq: os.path.join(d, "no-such-dir", f".snap-{seq}.tmp"))
    with pytest.raises(SnapshotError, match="FileNotFoundError"):
        await j.snapshot()
    assert list_snapshots(str(tmp_path)) == [] and leftovers(tmp_path) == []
    assert await j.write({"type": "note", "text": "still journaling"}) == 101
    await j.close()


async def test_fork_failure_falls_back_to_the_loop(tmp_path, monkeypatch, caplog):
    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    j = Journal(str(tmp_path), snapshot_in_child=True)
    j.open()
    await fill(j, stream(200, 5))
    with caplog.at_level(logging.WARNING, logger="fastexec.journal"):
        path = await j.snapshot()
    assert "on the loop" in caplog.text
    assert read_snapshot(path).seq == 200
    await j.close()


async def test_close_waits_for_an_explicit_snapshot_in_flight(tmp_path, forks):
    recs = stream(800, 9)
    j = Journal(str(tmp_path), snapshot_in_child=True)
    j.open()
    await fill(j, recs)
    task = asyncio.ensure_future(j.snapshot())
    await asyncio.sleep(0)
    assert j._snapshot_child is not None
    await j.close()
    assert task.done()
    assert read_snapshot(task.result()).seq == 800
    assert leftovers(tmp_path) == []


async def test_abandon_kills_the_child_and_leaves_no_temporary(tmp_path, forks):
    recs = stream(800, 10)
    j = Journal(str(tmp_path), snapshot_in_child=True)
    j.open()
    await fill(j, recs)  # durable: a crash keeps them
    j._start_auto_snapshot()
    task = j._snapshot_task
    await asyncio.sleep(0)
    assert j._snapshot_child is not None
    j.abandon()
    assert j._snapshot_child is None  # killed and reaped at once
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert list_snapshots(str(tmp_path)) == [] and leftovers(tmp_path) == []
    j2 = Journal(str(tmp_path))  # nothing lost: a full replay
    j2.open()
    assert j2.state.to_dict() == fold(recs).to_dict()
    await j2.close()
