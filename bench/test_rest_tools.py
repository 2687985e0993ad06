"""The REST load tools in ``bench/rest`` run end to end (untimed: a smoke check that
they start ``fastexec serve`` and the echo server, drive them and report, so they
cannot rot between the runs that produce the README's figures)."""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "rest"))

import tail_latency  # noqa: E402


def test_tail_latency_reports_both_servers_with_every_order_accepted(capsys):
    cpus = os.sched_getaffinity(0)
    assert tail_latency.main(["--requests", "300", "--preload-seconds", "0", "--durability", "none",
                              "--top", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["orders_non_2xx"] == 0 and out["requests"] == 300
    for name in ("orders", "echo"):
        r = out[name]
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["p99.99_us"] <= r["max_us"]
        assert len(r["slowest"]) == 3 and all(0 <= i < 300 for i, _ in r["slowest"])
    assert os.sched_getaffinity(0) == cpus  # the client pinned itself for the run only
