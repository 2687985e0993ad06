"""Risk check cost: from Python (target <= 100 ns/call) and inside a Cython
batch (target <= 10 ns/order). Run: pytest bench/test_core_*.py --benchmark-enable

pytest-benchmark calls the function through ``function(*args, **kwargs)`` in
its own loop, which costs more than the check itself; the ``loop_of_1000``
benchmark measures calls the way the engine makes them (a bound method held in
a local, positional int arguments), and ``harness_noop`` shows the harness's
own cost in the same run so the two can be compared."""
import array

from fastexec._core.instruments import load_instruments

EU = load_instruments().index("EUR_USD")

N_BATCH = 10_000
N_LOOP = 1_000


def test_risk_check_from_python_loop_of_1000(benchmark, core, note_median):
    """1,000 calls in a plain Python loop, all limits on, every order passes;
    per-call time = median / 1000 (includes the Python loop itself)."""
    check = core.risk.check
    assert check(0, EU, 10_000, 0) == 0

    def loop():
        for _ in range(N_LOOP):
            check(0, EU, 10_000, 0)

    benchmark(loop)
    note_median("ns_per_call_median", N_LOOP)


def test_python_loop_of_1000_noop_baseline(benchmark, note_median):
    """The same loop calling a C builtin that does nothing useful: the floor."""
    f = abs

    def loop():
        for _ in range(N_LOOP):
            f(0)

    benchmark(loop)
    note_median("ns_per_call_median", N_LOOP)


def test_risk_check_from_python_via_harness(benchmark, core):
    """One call per harness iteration (harness overhead included)."""
    benchmark(core.risk.check, 0, EU, 10_000, 0)


def test_harness_noop(benchmark):
    benchmark(abs, 0)


def test_risk_check_denied_from_python(benchmark, core):
    """A denial pays for the detail text (built only then)."""
    core.risk.set_limits(0, max_units_per_order=1)
    check = core.risk.check
    assert check(0, EU, 10_000, 0) != 0
    benchmark(check, 0, EU, 10_000, 0)


def test_risk_check_batch_in_cython(benchmark, core, note_median):
    """10,000 orders checked in one C loop; ns/order = median / 10,000.
    Two thirds add to the position (every check runs), one third reduce it."""
    accts = array.array("i", [0] * N_BATCH)
    instrs = array.array("i", [EU] * N_BATCH)
    units = array.array("q", [(n % 50 + 1) * 1_000 * (1 if n % 3 else -1) for n in range(N_BATCH)])
    out = array.array("i", [0] * N_BATCH)
    assert core.risk.check_batch(accts, instrs, units, 0, out) == 0
    benchmark(core.risk.check_batch, accts, instrs, units, 0, out)
    note_median("ns_per_order_median", N_BATCH)


def test_risk_check_batch_all_adding_in_cython(benchmark, core, note_median):
    """Worst case: every order adds to the position, so every check runs."""
    accts = array.array("i", [0] * N_BATCH)
    instrs = array.array("i", [EU] * N_BATCH)
    units = array.array("q", [(n % 50 + 1) * 1_000 for n in range(N_BATCH)])
    out = array.array("i", [0] * N_BATCH)
    assert core.risk.check_batch(accts, instrs, units, 0, out) == 0
    benchmark(core.risk.check_batch, accts, instrs, units, 0, out)
    note_median("ns_per_order_median", N_BATCH)
