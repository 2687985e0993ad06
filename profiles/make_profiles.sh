#!/usr/bin/env bash
# Record the py-spy flame graphs in profiles/ (each bounded in time, loopback only).
#
#   profiles/make_profiles.sh [submit|serve|oanda ...]    (default: all three)
#
# Needs py-spy (pip install py-spy) and, for `serve`, wrk. Why these three:
# they are the process shapes fastexec runs in (embedded engine, REST
# service, OANDA adapter); a flame graph of each shows where a change would
# pay, which the benchmarks' single numbers cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=profiles
RATE=${RATE:-250}   # samples/s
# NATIVE=1: also show compiled (Cython/C) frames; py-spy then stops the process for each
# sample, so use a lower RATE (e.g. RATE=100) and read shares, not rates
SPY_OPTS=(--function -r "$RATE")
[ -n "${NATIVE:-}" ] && SPY_OPTS+=(--native)
command -v py-spy >/dev/null || { echo "py-spy not found: pip install py-spy" >&2; exit 1; }

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {  # url, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    if "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not come up" >&2; return 1
}
wait_port() {  # port, seconds: up once it accepts a TCP connection
  for _ in $(seq 1 $(( $2 * 10 ))); do
    if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2; return 1
}
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

submit() {
  # In-process submit -> filled through the engine on the simulated venue.
  py-spy record "${SPY_OPTS[@]}" -o "$OUT/inprocess_submit.svg" -- \
    "$PY" bench/compare/fx_submit.py --orders 1000000 --warmup 1000
}

serve() {
  # `fastexec serve` (simulated venue) under 32 wrk connections posting market orders,
  # profiled at steady state: WARM seconds of load first (default 8: every retention
  # window full, and past the journal's first 64 MiB segment, so its segments come from
  # the spare made ahead, as in a long-running service), then py-spy attaches.
  local port mport data account pid
  port=$(free_port); mport=$(free_port); data=$(mktemp -d)
  LOG_LEVEL=warning FASTEXEC_DATA_DIR="$data" MAX_ORDERS_PER_SECOND=1000000 MAX_CONCURRENT_ORDERS=100000 \
    MAX_DAILY_LOSS=1000000000 FASTEXEC_API_TOKENS="" "$PY" -m fastexec.service --port "$port" --metrics-port "$mport" >/dev/null 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_http "http://127.0.0.1:$port/health" 30
  account=$("$PY" -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))['accounts'][0]['account_id'])" \
    "http://127.0.0.1:$port/api/v1/accounts")
  wrk -t1 -c32 -d"${WARM:-8}s" --timeout 5s -s bench/rest/post.lua "http://127.0.0.1:$port/api/v1/orders" -- "$account" >/dev/null
  wrk -t1 -c32 -d16s --timeout 5s -s bench/rest/post.lua "http://127.0.0.1:$port/api/v1/orders" -- "$account" &
  local load=$!
  py-spy record "${SPY_OPTS[@]}" -d 14 -o "$OUT/serve_under_load.svg" -p "$pid"
  wait "$load" || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}

oanda() {
  # The OANDA v20 adapter (orders + transaction and price streams) against the v20 simulator process.
  local port
  port=$(free_port)
  "$PY" -m fastexec sim --port "$port" --tick-interval 0.05 >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$port" 30
  py-spy record "${SPY_OPTS[@]}" -o "$OUT/oanda_adapter.svg" -- \
    "$PY" profiles/oanda_adapter_driver.py --url "http://127.0.0.1:$port" --orders 1200
  kill "${PIDS[-1]}" 2>/dev/null || true
}

for what in "${@:-submit serve oanda}"; do
  for w in $what; do "$w"; done
done
