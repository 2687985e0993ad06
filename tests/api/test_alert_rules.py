"""The alert rules load in Prometheus and fire on the series fastexec exports."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install prometheus (scripts/test installs it)"
    return path


def test_promtool_accepts_the_rules():
    out = subprocess.run([_promtool(), "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_unit_tests_pass():
    out = subprocess.run(
        [_promtool(), "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_seed_alert_has_a_rule():
    text = (RULES / "alerts.yml").read_text()
    for name in (
        "FastexecKillSwitchActivated",
        "FastexecOrderFailureRateHigh",
        "FastexecMemoryCritical",
        "FastexecBrokerDisconnected",
        "FastexecExecutionLatencyP95High",
        "FastexecRiskScoreHigh",
        "FastexecMemoryHigh",
        "FastexecHighSlippage",
    ):
        assert f"alert: {name}" in text
