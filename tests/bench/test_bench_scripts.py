"""The bench command and its drivers keep working.

Benchmarks are not run in CI (their figures would be noise on a shared
machine), so without these a refactor elsewhere could break ``bench/run_all.py``
unnoticed until someone needs the numbers. Nothing here asserts a timing:
only that each piece runs, produces every field, and measures the path it
claims to (orders filled, the benchmarked order still passing its checks).
"""
import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(ROOT, "bench")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_run_all_core_section_produces_every_figure_with_its_reference(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "run_all.py"), "--quick", "--only", "core",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["failed"] == [] and res["machine"]["python"]
    ops = {r["figure"]: r for r in res["rows"]}
    for op in ("risk check (Python call)", "risk check (batch, per order)", "fill / P&L update", "mark-to-market tick"):
        row = ops[op]
        assert row["value"] > 0 and row["ref_value"] > 0 and row["ratio"] is not None, row
    assert "Decimal reference" in proc.stdout


def test_run_all_rejects_unknown_sections():
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "run_all.py"), "--only", "nope"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "unknown section" in proc.stderr


def test_ratio_reads_the_same_way_for_times_and_rates():
    run_all = _load("_fastexec_run_all", os.path.join(BENCH, "run_all.py"))
    assert run_all.Row("x", "t", 50.0, "ns", "ref", 5000.0).ratio == 100.0  # 100x less time
    assert run_all.Row("x", "r", 6000, "/s", "ref", 10000).ratio == 0.6  # 60 % of the reference rate
    assert run_all.Row("x", "n", 1.0, "us").ratio is None


def test_fastexec_submit_driver_fills_every_order_in_both_flows():
    for flow in ("roundtrip", "held"):
        proc = subprocess.run([sys.executable, os.path.join(BENCH, "compare", "fx_submit.py"), "--orders", "200",
                               "--warmup", "20", "--flow", flow], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        assert res["flow"] == flow and res["orders"] == 200
        assert 0 < res["p50_ns"] <= res["p99_ns"]


def test_benchmark_scenario_order_passes_on_both_sides_after_the_loops():
    scenario = _load("_fastexec_scenario", os.path.join(BENCH, "reference", "scenario.py"))
    core = scenario.Core()
    ref = scenario.Reference(core.table)
    for loop, state, n in (("core_fill_loop", core, 2000), ("core_mark_loop", core, 2000),
                           ("core_check_loop", core, 2000), ("core_check_batch_loop", core, 5000),
                           ("ref_fill_loop", ref, 200), ("ref_mark_loop", ref, 200), ("ref_check_loop", ref, 200)):
        getattr(scenario, loop)(state)(n)
    scenario.still_passes(core, ref)
    # and both sides hold the same numbers after the same steps
    acct = ref.ledger.accounts[ref.account]
    st = core.ledger.account_state(core.account)
    assert st.balance == int(acct.balance.scaleb(6)) and st.margin_used == int(acct.margin.scaleb(6))


def test_journal_handoff_times_every_step_of_an_fsync_ack(tmp_path):
    """bench/journal_handoff.py: the three paths of a one-client fsync acknowledgement are
    timed, each step of the direct write's and the thread's is stamped (the wrappers still
    match the writer's methods), and the journals it made are cleaned up."""
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "journal_handoff.py"), "--orders", "40"],
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "journal fsync; microseconds"
    assert lines[1] == "40 lone acknowledgements, written on the loop" and lines[2].split()[0] == "total"
    assert lines[3].endswith("acknowledgements in a direct write submitted at the end of a busy turn")
    assert int(lines[3].split()[0]) > 0
    steps = [line.split("p10")[0].strip() for line in lines[4:10]]
    assert steps == ["submit -> end of turn (kick)", "kick -> write submitted", "submitted -> completion reaped",
                     "reaped -> loop runs _done", "_done -> ack returned", "total"]
    assert lines[10].endswith("acknowledgements handed to the writer thread (direct I/O off)")
    assert int(lines[10].split()[0]) > 0
    steps = [line.split("p10")[0].strip() for line in lines[11:]]
    assert steps == ["submit -> end of turn (kick)", "kick -> writer thread awake", "awake -> batch taken",
                     "durable write", "written -> loop told", "loop told -> loop runs _done", "_done -> ack returned",
                     "total"]
    for line in lines[2:]:  # every step took time: no stamp out of order
        if "p10" in line:
            assert float(line.split("p10")[1].split()[0]) > 0, line
    assert list(tmp_path.iterdir()) == []


def test_seed_targets_measures_modify_cancel_close_and_cpu_over_http():
    """bench/rest/seed_targets.py against a real fastexec serve (short run): every scenario
    produced answers (no unexpected status), and each target got a verdict."""
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "rest", "seed_targets.py"), "--orders", "6",
                           "--seconds", "1", "--rate", "20", "--concurrency", "5", "--durability", "none", "--json"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(proc.stdout)
    assert res["error_count"] == 0, res["errors"]
    for name in ("modify", "cancel", "close"):
        assert res[name]["n"] == 6 and 0 < res[name]["p50_ms"] <= res[name]["max_ms"], res[name]
    assert res["cpu"]["orders"]["n"] == 20 and res["cpu"]["cpu_percent"] >= 0
    assert set(res["targets"]) == {"modify p95 < 50 ms", "cancel p95 < 50 ms", "close p95 < 100 ms",
                                   "CPU < 10 % at 5 concurrent"}
