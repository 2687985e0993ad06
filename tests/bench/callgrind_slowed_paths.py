"""Hot-path registries for the gate's own tests: the real paths, and the same
paths with deliberate extra work per call.

Why a separate registry instead of a switch in the product code: the gate is
what is under test, so the slowdown must reach it exactly the way a real
regression would (a path whose ``run(n)`` does more work per call) while
``bench/callgrind/paths.py`` stays free of test hooks.

``SLOWED`` adds one extra C call (``divmod``) per call of each path: a gross
regression. ``PADDED`` adds ``f`` pure-Python increments per call on
average (``round(n * f)`` after ``n`` calls, ``f`` a float per path from
``FASTEXEC_GATE_PAD="name:f,..."`` in the environment, inherited through
valgrind by the driver), so a test can place a slowdown just above or just
below the 10 % tolerance using the measured cost of one increment (``UNIT``).
"""
import importlib.util
import os
import sys
from itertools import repeat

_PATHS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "callgrind", "paths.py")
_spec = importlib.util.spec_from_file_location("_fastexec_bench_paths", _PATHS_FILE)
_paths = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _paths  # dataclasses look their module up there
_spec.loader.exec_module(_paths)

HotPath = _paths.HotPath
# the core paths: steady at the reduced N these tests use (see paths.WHOLE_ORDER_PATHS)
REAL = [p for p in _paths.PATHS if p.gated and p.name not in _paths.WHOLE_ORDER_PATHS]


def _slowed(path):
    def make():
        run = path.make()
        waste = divmod

        def slowed_run(n):
            run(n)
            for _ in range(n):
                waste(7, 3)

        return slowed_run

    return HotPath(path.name, make, n=path.n, gated=True, why="deliberately slowed copy")


def _pad_for(name):
    spec = dict(item.split(":") for item in os.environ.get("FASTEXEC_GATE_PAD", "").split(",") if item)
    return float(spec.get(name, 0))


def _padded(path):
    def make():
        run = path.make()
        f = _pad_for(path.name)

        def padded_run(n):
            run(n)
            x = 1 << 20  # past the small-int cache: every step costs the same
            for _ in repeat(None, round(n * f)):
                x += 1

        return padded_run

    return HotPath(path.name, make, n=path.n, gated=True, why="copy with f increments per call")


def _make_unit():
    def run(n):
        x = 1 << 20
        for _ in repeat(None, n):
            x += 1

    return run


SLOWED = [_slowed(p) for p in REAL]
PADDED = [_padded(p) for p in REAL]
UNIT = [HotPath("increment", _make_unit, n=4000, gated=False, why="cost of one padding step")]
