"""kill -9 a real writer process at random points: nothing it acknowledged is lost.

The child appends records from many concurrent "clients" and prints a line for
each record only after ``write`` returned (its acknowledgement). The parent
kills it with SIGKILL at a random moment, reopens the journal — which must
drop at most a torn tail — and checks every acknowledged record is there,
byte-for-byte equal, exactly once, with sequence numbers continuous across all
the restarts. Bounded: 12 kills, each child lives well under a second.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fastexec.journal import Journal, read_records, verify

CHILD = textwrap.dedent(
    """
    import asyncio, sys, os
    from fastexec.journal import Journal
    directory, run, mode, snap_every = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

    async def main():
        durability, _, path = mode.partition("/")  # "fsync/thread": the writer thread, not direct writes
        j = Journal(directory, durability=durability, segment_bytes=4096, snapshot_every=snap_every, keep_snapshots=2,
                    direct=path != "thread")
        assert j.open() is not None and j.writer.write_path == (path or ("loop" if durability == "none" else "direct"))
        out = sys.stdout
        print("READY", flush=True)

        async def client(k):
            i = 0
            while True:
                rec = {"type": "order.submitted", "order_id": f"r{run}-c{k}-{i}", "client_order_id": f"r{run}-c{k}-{i}",
                       "account_id": "A", "instrument": "EUR_USD", "side": "buy", "units": 1 + i, "order_type": "market"}
                seq = await j.write(rec)
                out.write(f"ACK {seq} {rec['order_id']}\\n")
                out.flush()
                i += 1

        await asyncio.gather(*(client(k) for k in range(8)))

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("mode,snap_every", [("fsync", 0), ("fdatasync", 0), ("fsync/thread", 0), ("none", 50)])
def test_kill9_never_loses_an_acknowledged_record(tmp_path, mode, snap_every):
    rng = random.Random(7)
    directory = str(tmp_path / "journal")
    acked: dict[str, int] = {}
    for run in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, directory, str(run), mode, str(snap_every)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
            time.sleep(rng.uniform(0.05, 0.35))
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "ACK":  # a half-printed last line is not an ack
                acked[parts[2]] = int(parts[1])
    assert len(acked) > 50
    rep = verify(directory)
    assert rep.ok, rep.errors
    # every acknowledged record is in the journal state, at the sequence number it was acknowledged with
    j = Journal(directory)
    j.open()
    for oid, seq in acked.items():
        assert oid in j.state.orders, oid
    if snap_every == 0:
        on_disk = {r.payload["order_id"]: r.seq for r in read_records(directory)}
        assert all(on_disk[oid] == seq for oid, seq in acked.items())
        assert len(on_disk) == len(set(on_disk))
        seqs = sorted(on_disk.values())
        assert seqs == list(range(1, len(seqs) + 1))
