"""The callgrind gate catches a slowdown and passes the real code.

These tests run valgrind (a few seconds each, at a reduced N): they test the
gate end to end on the real core hot paths, not a mock of valgrind.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GATE = os.path.join(ROOT, "bench", "callgrind", "gate.py")
SLOWED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "callgrind_slowed_paths.py")
SCALE = "0.25"


def _load_gate():
    spec = importlib.util.spec_from_file_location("_fastexec_callgrind_gate", GATE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


gate = _load_gate()


def run_gate(*args):
    proc = subprocess.run([sys.executable, GATE, "--scale", SCALE, *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def real_baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("cg") / "baseline.json"
    rc, out = run_gate("--update", "--reason", "gate self-test", "--baseline", str(path),
                       "--paths", f"{SLOWED}:REAL")
    assert rc == 0, out
    return path


def test_real_paths_pass_their_own_baseline(real_baseline):
    rc, out = run_gate("--check", "--baseline", str(real_baseline), "--paths", f"{SLOWED}:REAL")
    assert rc == 0, out
    assert "callgrind gate passed" in out


def test_deliberate_slowdown_fails_the_gate(real_baseline):
    rc, out = run_gate("--check", "--baseline", str(real_baseline), "--paths", f"{SLOWED}:SLOWED")
    assert rc == 1, out
    assert "callgrind gate FAILED" in out
    baseline = json.loads(real_baseline.read_text())["paths"]
    for name in baseline:
        assert f"{name}: " in out and "instructions/call vs baseline" in out, out


def test_tolerance_is_ten_percent_on_real_paths(real_baseline, monkeypatch):
    """+15 % more instructions per call fails, +5 % passes: the gate resolves
    a regression well inside what wall-clock timings on this machine can."""
    unit = gate.measure(f"{SLOWED}:UNIT", scale=float(SCALE))["increment"]["ir_per_call"]
    baseline = {k: v["ir_per_call"] for k, v in json.loads(real_baseline.read_text())["paths"].items()}
    low = {k: round(0.05 * c / unit, 4) for k, c in baseline.items()}
    high = {k: round(0.15 * c / unit, 4) for k, c in baseline.items()}

    monkeypatch.setenv("FASTEXEC_GATE_PAD", ",".join(f"{k}:{v}" for k, v in low.items()))
    rc, out = run_gate("--check", "--baseline", str(real_baseline), "--paths", f"{SLOWED}:PADDED")
    assert rc == 0, (low, unit, out)

    monkeypatch.setenv("FASTEXEC_GATE_PAD", ",".join(f"{k}:{v}" for k, v in high.items()))
    rc, out = run_gate("--check", "--baseline", str(real_baseline), "--paths", f"{SLOWED}:PADDED")
    assert rc == 1, (high, unit, out)
    for name in baseline:
        assert f"{name}: " in out, out
    changes = [float(m) for m in re.findall(r"\(\+(\d+\.\d)% > 10%\)", out)]
    assert len(changes) == len(baseline) and all(12 < c < 18 for c in changes), out


def test_counts_are_reproducible_between_runs(real_baseline):
    # Instruction counts, not timings: a second run lands within 1 % of the first.
    first = json.loads(real_baseline.read_text())["paths"]
    again = gate.measure(f"{SLOWED}:REAL", scale=float(SCALE))
    again.pop("_meta")
    for name, rec in first.items():
        assert abs(again[name]["ir_per_call"] / rec["ir_per_call"] - 1) < 0.01, (name, rec, again[name])


def test_update_refuses_without_a_reason(tmp_path):
    rc, out = run_gate("--update", "--baseline", str(tmp_path / "b.json"), "--paths", f"{SLOWED}:REAL",
                       "--only", gate_first_path())
    assert rc == 2 and "--reason" in out, out
    assert not (tmp_path / "b.json").exists()


def gate_first_path():
    spec = importlib.util.spec_from_file_location("_fastexec_slowed_paths", SLOWED)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.REAL[0].name


# --- the comparison rule itself, without valgrind ----------------------------

def test_threshold_is_strictly_ten_percent():
    fails, _ = gate.compare({"a": 1099.0}, {"a": 1000.0}, 0.10, {"a"})
    assert fails == []
    fails, _ = gate.compare({"a": 1101.0}, {"a": 1000.0}, 0.10, {"a"})
    assert len(fails) == 1 and "+10.1%" in fails[0]


def test_missing_and_stale_paths_fail_but_info_paths_never_do():
    fails, _ = gate.compare({"new": 10.0}, {}, 0.10, {"new"})
    assert "no baseline" in fails[0]
    fails, _ = gate.compare({}, {"gone": 10.0}, 0.10, set())
    assert "not measured" in fails[0]
    fails, _ = gate.compare({"ref": 99999.0}, {"ref": 10.0}, 0.10, set())
    assert fails == []


def test_committed_baseline_covers_every_gated_path():
    with open(gate.DEFAULT_BASELINE) as fh:
        baseline = json.load(fh)
    gated, _, names = gate.registry_info(gate.DEFAULT_PATHS)
    assert baseline["reason"].strip()
    assert gated <= set(baseline["paths"]), gated - set(baseline["paths"])
    assert set(baseline["paths"]) <= set(names)


def test_baseline_commit_must_say_why(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "bench" / "callgrind").mkdir(parents=True)
    path = repo / "bench" / "callgrind" / "baseline.json"
    g = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*g[:3], "init", "-q"], check=True)
    monkeypatch.setattr(gate, "REPO", str(repo))
    monkeypatch.delenv("CI", raising=False)

    path.write_text(json.dumps({"reason": "risk check now also checks margin", "paths": {}}))
    subprocess.run([*g, "add", "."], check=True)
    subprocess.run([*g, "commit", "-q", "-m", "tweak numbers"], check=True)
    errs = gate.check_baseline_history(str(path), json.loads(path.read_text()))
    assert errs and "does not carry the baseline's reason" in errs[0]

    path.write_text(json.dumps({"reason": "risk check now also checks margin", "paths": {"x": 1}}))
    subprocess.run([*g, "commit", "-q", "-am", "callgrind baseline: risk check now also checks margin"], check=True)
    assert gate.check_baseline_history(str(path), json.loads(path.read_text())) == []

    path.write_text("{}")
    monkeypatch.setenv("CI", "true")
    errs = gate.check_baseline_history(str(path), {"reason": "x"})
    assert errs and "uncommitted" in errs[0]
