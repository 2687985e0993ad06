"""Risk check cost: from Python (target <= 100 ns/call) and inside a Cython
batch (target <= 10 ns/order). Run: pytest bench/test_core_*.py --benchmark-enable"""
import array

from conftest import EU

N_BATCH = 10_000
N_LOOP = 1_000


def test_risk_check_from_python(benchmark, core):
    """One call as the engine makes it: all limits on, the order passes."""
    check = core.risk.check
    assert check(0, EU, 10_000, 0) == 0
    benchmark(check, 0, EU, 10_000, 0)


def test_risk_check_from_python_loop_of_1000(benchmark, core):
    """1,000 calls in a plain Python loop; per-call time = median / 1000. Takes
    the benchmark harness's own per-call overhead out of the number."""
    check = core.risk.check

    def loop():
        for _ in range(N_LOOP):
            check(0, EU, 10_000, 0)

    benchmark(loop)
    benchmark.extra_info["ns_per_call_median"] = benchmark.stats.stats.median / N_LOOP * 1e9


def test_risk_check_denied_from_python(benchmark, core):
    """A denial pays for the detail text (built only then)."""
    core.risk.set_limits(0, max_units_per_order=1)
    check = core.risk.check
    assert check(0, EU, 10_000, 0) != 0
    benchmark(check, 0, EU, 10_000, 0)


def test_risk_check_batch_in_cython(benchmark, core):
    """10,000 orders checked in one C loop; ns/order = median / 10,000."""
    accts = array.array("i", [0] * N_BATCH)
    instrs = array.array("i", [EU] * N_BATCH)
    units = array.array("q", [(n % 50 + 1) * 1_000 * (1 if n % 3 else -1) for n in range(N_BATCH)])
    out = array.array("i", [0] * N_BATCH)
    assert core.risk.check_batch(accts, instrs, units, 0, out) == 0
    benchmark(core.risk.check_batch, accts, instrs, units, 0, out)
    benchmark.extra_info["ns_per_order_median"] = benchmark.stats.stats.median / N_BATCH * 1e9
