"""Hot-path registries for the gate's own tests: the real paths, and the same
paths with deliberate extra work per call.

Why a separate registry instead of a switch in the product code: the gate is
what is under test, so the slowdown must reach it exactly the way a real
regression would — a path whose ``run(n)`` does more work per call — while
``bench/callgrind/paths.py`` stays free of test hooks.
"""
import importlib.util
import os
import sys

_PATHS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "callgrind", "paths.py")
_spec = importlib.util.spec_from_file_location("_fastexec_bench_paths", _PATHS_FILE)
_paths = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _paths  # dataclasses look their module up there
_spec.loader.exec_module(_paths)

HotPath = _paths.HotPath
REAL = [p for p in _paths.PATHS if p.gated]


def _slowed(path, extra_calls):
    def make():
        run = path.make()
        waste = divmod

        def slowed_run(n):
            run(n)
            # The same number of extra C calls per call of the path: about
            # 700 instructions each here, i.e. far above the 10 % tolerance
            # for every core path, yet nothing a timer could see on one run.
            for _ in range(n * extra_calls):
                waste(7, 3)

        return slowed_run

    return HotPath(path.name, make, n=path.n, gated=True, why="deliberately slowed copy")


SLOWED = [_slowed(p, 1) for p in REAL]
