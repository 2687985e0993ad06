"""Run hot paths under callgrind, one measured phase at a time.

Started by ``gate.py`` as ``valgrind --tool=callgrind --instr-atstart=no ...
python driver.py --helper cgmark.so --paths FILE:ATTR [NAME ...]``.

Per path: build it, warm it up (instrumented, so valgrind's translations and
CPython's specialised bytecode are in place before counting), then measure
``run(N)`` and ``run(2N)`` as separate zeroed-and-dumped phases, ``reps``
times. ``gate.py`` takes ``(I(2N) - I(N)) / N``: every constant cost (the
ctypes calls that zero and dump, the first loop iteration, the function
lookups in ``run``) cancels, what is left is the cost of one more call.

The garbage collector is off while measuring: a collection lands in whichever
phase crosses the allocation threshold, which would turn a deterministic count
into a noisy one. The hot paths are meant to be allocation-steady anyway.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import sys


def load_paths(spec: str):
    """``path/to/file.py:ATTR`` -> the registry (a list of HotPath)."""
    file, _, attr = spec.rpartition(":")
    if not file or not attr:
        raise SystemExit(f"--paths wants FILE.py:ATTR, got {spec!r}")
    mod_spec = importlib.util.spec_from_file_location(f"_hotpaths_{abs(hash(file))}", file)
    if mod_spec is None or mod_spec.loader is None:
        raise SystemExit(f"cannot load {file}")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module
    mod_spec.loader.exec_module(module)
    return getattr(module, attr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--helper", required=True, help="compiled cgmark shared library")
    ap.add_argument("--paths", required=True, help="FILE.py:ATTR registry of hot paths")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every path's N (tests use < 1)")
    ap.add_argument("names", nargs="*", help="paths to run (default: all)")
    args = ap.parse_args(argv)

    cg = ctypes.CDLL(args.helper)
    cg.cg_dump.argtypes = [ctypes.c_char_p]
    registry = load_paths(args.paths)
    by_name = {p.name: p for p in registry}
    names = args.names or [p.name for p in registry]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        print(f"unknown hot path(s): {', '.join(unknown)}; known: {', '.join(by_name)}", file=sys.stderr)
        return 2

    for name in names:
        path = by_name[name]
        n = max(1, int(path.n * args.scale))
        run = path.make()
        gc.collect()
        gc.disable()
        cg.cg_start()
        run(max(n // 2, 50))  # warm-up
        for rep in range(args.reps):
            for count in (n, 2 * n):
                cg.cg_zero()
                run(count)
                cg.cg_dump(f"fastexec-hotpath {name} {count} {rep}".encode())
        cg.cg_stop()
        gc.enable()
        print(f"driver: {name} N={n} reps={args.reps} done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
