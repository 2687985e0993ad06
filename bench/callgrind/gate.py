"""Instruction-count gate for the core hot paths.

Why instruction counts: wall-clock timings on a shared 2-core machine move by
tens of percent from one run to the next, so a timing gate either cries wolf
or lets real regressions through. Callgrind counts executed instructions,
which do not depend on what else the machine is doing: the same code gives
the same count, and a 10 % threshold then means a real 10 % more work.

How: ``driver.py`` runs under ``valgrind --tool=callgrind --instr-atstart=no``
and, per hot path, dumps the cost of ``run(N)`` and ``run(2N)`` separately
(client requests through the tiny ``cgmark.c`` helper). Instructions per call
= ``(I(2N) - I(N)) / N``: start-up, imports and every constant cost cancel.

    python bench/callgrind/gate.py            # measure and print
    python bench/callgrind/gate.py --check    # exit 1 if any gated path > baseline * 1.10
    python bench/callgrind/gate.py --update --reason "why the cost moved"

The committed baseline (``baseline.json``) records the reason of its last
change; ``--check`` also fails when the last commit that touched the baseline
does not carry that reason in its message, so the baseline cannot drift up in
a commit that does not say why.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import glob
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_BASELINE = os.path.join(HERE, "baseline.json")
DEFAULT_PATHS = os.path.join(HERE, "paths.py") + ":PATHS"
DEFAULT_TOLERANCE = 0.10
LABEL = "fastexec-hotpath"


class GateError(Exception):
    """A problem running the gate itself (not a regression): exit code 2."""


# --- measuring --------------------------------------------------------------

def build_helper() -> str:
    """Compile cgmark.c once per content hash into a temp cache."""
    src = os.path.join(HERE, "cgmark.c")
    with open(src, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), "fastexec-callgrind")
    os.makedirs(cache, exist_ok=True)
    out = os.path.join(cache, f"cgmark-{digest}.so")
    if not os.path.exists(out):
        cc = os.environ.get("CC", "cc")
        tmp = f"{out}.{os.getpid()}.tmp"
        proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", tmp, src], capture_output=True, text=True)
        if proc.returncode != 0:
            raise GateError(f"building {src} failed (needs a C compiler and valgrind's callgrind.h):\n{proc.stderr}")
        os.replace(tmp, out)
    return out


def valgrind_version() -> str:
    exe = shutil.which("valgrind")
    if exe is None:
        raise GateError("valgrind not found: install it (Debian: apt-get install valgrind)")
    return subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()


def parse_dumps(outdir: str, events: dict | None = None) -> dict[tuple[str, int, int], int]:
    """callgrind.out.* files -> {(path, count, rep): instructions}. With
    ``events`` (a dict), also fills ``events[(path, count, rep)]`` with every
    event the dump counted ({"Ir": ..., "D1mr": ..., ...} under ``--cache-sim``)."""
    phases: dict[tuple[str, int, int], int] = {}
    for fn in glob.glob(os.path.join(outdir, "callgrind.out.*")):
        desc = total = names = None
        with open(fn, errors="replace") as fh:
            for line in fh:
                if line.startswith("desc: Trigger:") and LABEL in line:
                    desc = line.split(LABEL, 1)[1].split()
                elif line.startswith("events:"):
                    names = line.split()[1:]
                elif line.startswith("summary:"):
                    values = [int(v) for v in line.split()[1:]]
                    total = values[0]
                if desc and total is not None:
                    break
        if desc:
            if total is None:
                raise GateError(f"no instruction total in {fn}")
            key = (desc[0], int(desc[1]), int(desc[2]))
            phases[key] = total
            if events is not None and names:
                events[key] = dict(zip(names, values))
    return phases


#: ``measure(cache_sim=True)``: this machine's caches as callgrind models them
#: (L1d 48 KiB, and L2 1 MiB per core as the "last level": a miss there goes to the
#: L3 that other tenants of this VM share, which is what retained state costs).
CACHE_SIM = ["--cache-sim=yes", "--D1=49152,12,64", "--LL=1048576,16,64"]


def measure(paths_spec: str, names: list[str] | None = None, reps: int = 2, scale: float = 1.0,
            keep: str | None = None, cache_sim: bool = False) -> dict[str, dict]:
    """Run the driver once under callgrind; return per-path instruction counts
    (with ``cache_sim``, also ``per_call``: every simulated cache event per
    call, from the rep with the fewest instructions)."""
    helper = build_helper()
    valgrind_version()
    outdir = keep or tempfile.mkdtemp(prefix="fastexec-cg-")
    os.makedirs(outdir, exist_ok=True)
    cmd = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no", "--dump-line=no",
        *(CACHE_SIM if cache_sim else []),
        f"--callgrind-out-file={os.path.join(outdir, 'callgrind.out.%p')}",
        sys.executable, os.path.join(HERE, "driver.py"),
        "--helper", helper, "--paths", paths_spec, "--reps", str(reps), "--scale", str(scale),
        *(names or []),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONMALLOC", None)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise GateError(f"driver failed under valgrind (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    events: dict = {}
    phases = parse_dumps(outdir, events)
    if not keep:
        shutil.rmtree(outdir, ignore_errors=True)
    results: dict[str, dict] = {}
    for (name, count, rep), total in phases.items():
        r = results.setdefault(name, {"counts": {}})
        r["counts"][(count, rep)] = total
    for name, r in results.items():
        counts = r.pop("counts")
        n = min(c for c, _ in counts)
        per_rep = []
        for rep in sorted({rp for _, rp in counts}):
            if (n, rep) not in counts or (2 * n, rep) not in counts:
                raise GateError(f"{name}: rep {rep} is missing a phase")
            per_rep.append((counts[(2 * n, rep)] - counts[(n, rep)]) / n)
        r["n"] = n
        r["ir_per_call"] = round(min(per_rep), 2)
        if cache_sim:
            best = sorted({rp for _, rp in counts})[per_rep.index(min(per_rep))]
            hi, lo = events.get((name, 2 * n, best), {}), events.get((name, n, best), {})
            r["per_call"] = {ev: round((hi[ev] - lo[ev]) / n, 2) for ev in hi if ev in lo}
        r["reps"] = [round(x, 2) for x in per_rep]
        r["spread"] = (max(per_rep) - min(per_rep)) / max(min(per_rep), 1e-9)
    missing = [nm for nm in (names or []) if nm not in results]
    if missing:
        raise GateError(f"no dumps for {', '.join(missing)}; driver said:\n{proc.stderr[-2000:]}")
    results["_meta"] = {"seconds": round(elapsed, 1)}
    return results


# --- baseline -------------------------------------------------------------

def load_baseline(path: str) -> dict:
    if not os.path.exists(path):
        raise GateError(f"no baseline at {path}: make one with --update --reason '...'")
    with open(path) as fh:
        return json.load(fh)


def compare(measured: dict[str, float], baseline: dict[str, float], tolerance: float,
            gated: set[str]) -> tuple[list[str], list[tuple]]:
    """Return (failures, rows). A gated path fails when it costs more than
    ``baseline * (1 + tolerance)``, or when either side lacks it (a path with
    no baseline is unguarded; a baseline with no path is stale)."""
    failures, rows = [], []
    for name in sorted(set(measured) | set(baseline), key=lambda n: (n not in measured, n)):
        m, b = measured.get(name), baseline.get(name)
        is_gated = name in gated
        if m is None:
            failures.append(f"{name}: in the baseline but not measured (hot path removed? update the baseline and say why)")
            rows.append((name, None, b, None, "STALE"))
            continue
        if b is None:
            if is_gated:
                failures.append(f"{name}: no baseline (run --update --reason '...')")
            rows.append((name, m, None, None, "NO BASELINE" if is_gated else "info"))
            continue
        change = m / b - 1.0
        if not is_gated:
            status = "info"
        elif change > tolerance:
            status = "FAIL"
            failures.append(f"{name}: {m:.1f} instructions/call vs baseline {b:.1f} (+{change:.1%} > {tolerance:.0%})")
        elif change < -tolerance:
            status = "ok (faster: consider --update)"
        else:
            status = "ok"
        rows.append((name, m, b, change, status))
    return failures, rows


def git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def check_baseline_history(path: str, baseline: dict) -> list[str]:
    """The last commit that touched the baseline must say why (carry its reason)."""
    rel = os.path.relpath(path, REPO)
    if rel.startswith(".."):
        return []  # a baseline outside the repo (tests): no history to check
    if git("rev-parse", "--git-dir") is None:
        print("gate: not a git checkout, baseline history not checked", file=sys.stderr)
        return []
    dirty = git("status", "--porcelain", "--", rel)
    if dirty:
        msg = f"{rel} has uncommitted changes: commit it with a message that says why"
        if os.environ.get("CI"):
            return [msg]
        print(f"gate: warning: {msg}", file=sys.stderr)
        return []
    log = git("log", "-1", "--format=%h%n%B", "--", rel)
    if not log:
        return [f"{rel} is not committed"]
    sha, _, body = log.partition("\n")
    reason = (baseline.get("reason") or "").strip()
    if not reason:
        return [f"{rel} records no reason"]
    if " ".join(reason.split()) not in " ".join(body.split()):
        return [f"commit {sha} changed {rel} but its message does not carry the baseline's reason {reason!r}"]
    return []


# --- output -----------------------------------------------------------------

def print_table(rows, results, references: dict[str, str]) -> None:
    print(f"{'hot path':<26} {'N':>6} {'Ir/call':>10} {'baseline':>10} {'change':>8}  status")
    for name, m, b, change, status in rows:
        n = results.get(name, {}).get("n", "")
        ms = f"{m:10.1f}" if m is not None else f"{'-':>10}"
        bs = f"{b:10.1f}" if b is not None else f"{'-':>10}"
        cs = f"{change:+8.1%}" if change is not None else f"{'':>8}"
        extra = ""
        ref = references.get(name)
        if ref and m is not None and ref in results:
            extra = f"  (reference {ref}: {results[ref]['ir_per_call']:.0f} Ir, x{results[ref]['ir_per_call'] / m:.1f})"
        print(f"{name:<26} {n:>6} {ms} {bs} {cs}  {status}{extra}")


def registry_info(paths_spec: str):
    sys.path.insert(0, HERE)
    from driver import load_paths  # noqa: E402

    reg = load_paths(paths_spec)
    return ({p.name for p in reg if p.gated},
            {p.name: getattr(p, "reference", None) for p in reg if getattr(p, "reference", None)},
            [p.name for p in reg])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Callgrind instruction-count gate for the core hot paths.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when a gated path regressed past the tolerance")
    mode.add_argument("--update", action="store_true", help="write the baseline (needs --reason)")
    ap.add_argument("--reason", help="why the baseline changes (goes into the file and must go into the commit message)")
    ap.add_argument("--baseline", default=DEFAULT_BASELINE)
    ap.add_argument("--paths", default=DEFAULT_PATHS, help="FILE.py:ATTR hot-path registry (tests use their own)")
    ap.add_argument("--only", default="", help="comma-separated subset of paths")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="scale every path's N (smaller = faster, coarser)")
    ap.add_argument("--json", help="also write the measurements to this file")
    ap.add_argument("--keep", help="keep callgrind output files in this directory")
    args = ap.parse_args(argv)

    try:
        if args.update and not (args.reason or "").strip():
            raise GateError("--update needs --reason: the baseline changes only with a stated why")
        gated, references, all_names = registry_info(args.paths)
        names = [n for n in args.only.split(",") if n] or None
        if names:
            # references of the chosen paths come along, so ratios can print
            names = list(dict.fromkeys(names + [references[n] for n in names if n in references]))
        results = measure(args.paths, names, reps=args.reps, scale=args.scale, keep=args.keep)
        meta = results.pop("_meta")
        measured = {k: v["ir_per_call"] for k, v in results.items()}
        unstable = [f"{k} reps {v['reps']}" for k, v in results.items() if v["spread"] > 0.02]

        if args.update:
            old = load_baseline(args.baseline) if os.path.exists(args.baseline) else {}
            paths = dict(old.get("paths", {})) if names else {}
            for k, v in results.items():
                paths[k] = {"ir_per_call": v["ir_per_call"], "n": v["n"]}
            baseline = {
                "unit": "instructions (callgrind Ir) per call = (I(2N) - I(N)) / N, from Python",
                "tolerance": old.get("tolerance", DEFAULT_TOLERANCE),
                "reason": " ".join(args.reason.split()),
                "made": {
                    "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "python": platform.python_version(),
                    "valgrind": valgrind_version(),
                    "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
                    "git": (git("rev-parse", "--short", "HEAD") or "").strip(),
                },
                "paths": dict(sorted(paths.items())),
            }
            with open(args.baseline, "w") as fh:
                json.dump(baseline, fh, indent=2)
                fh.write("\n")
            for k in sorted(results):
                print(f"{k:<26} {results[k]['ir_per_call']:10.1f} Ir/call  (N={results[k]['n']}, reps {results[k]['reps']})")
            print(f"baseline written to {args.baseline} ({meta['seconds']} s under valgrind).")
            if os.path.abspath(args.baseline) == DEFAULT_BASELINE:
                print("Commit it on its own, with the reason in the message, e.g.:\n"
                      f"  git commit -m {json.dumps('callgrind baseline: ' + baseline['reason'])} -- "
                      f"{os.path.relpath(args.baseline, os.getcwd())}")
            return 0

        baseline = load_baseline(args.baseline) if (args.check or os.path.exists(args.baseline)) else {"paths": {}}
        base = {k: v["ir_per_call"] for k, v in baseline.get("paths", {}).items()}
        if names:
            base = {k: v for k, v in base.items() if k in results}
        tolerance = float(baseline.get("tolerance", DEFAULT_TOLERANCE))
        failures, rows = compare(measured, base, tolerance, gated)
        print_table(rows, results, references)
        made = baseline.get("made", {})
        print(f"(tolerance +{tolerance:.0%}; {meta['seconds']} s under valgrind; baseline from python "
              f"{made.get('python', '?')} at {made.get('git', '?')}: {baseline.get('reason', '-')})")
        if made.get("python") and made["python"] != platform.python_version():
            print(f"gate: note: baseline made on python {made['python']}, this is {platform.python_version()}; "
                  "counts include the interpreter, re-baseline if they moved for that reason", file=sys.stderr)
        for u in unstable:
            print(f"gate: warning: unstable between reps: {u} (is the path steady-state?)", file=sys.stderr)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"results": results, "baseline": base, "failures": failures}, fh, indent=2)
        if args.check:
            if os.path.abspath(args.baseline) == DEFAULT_BASELINE:
                failures += check_baseline_history(args.baseline, baseline)
            if failures:
                print("\ncallgrind gate FAILED:", file=sys.stderr)
                for f in failures:
                    print(f"  {f}", file=sys.stderr)
                return 1
            print("callgrind gate passed")
        return 0
    except GateError as exc:
        print(f"gate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
