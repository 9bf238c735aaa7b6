#!/usr/bin/env bash
# The host against the runtime's floor, in one run on one machine: the smallest wasi:http
# component (bench/hello) under gocoffee-host and under `wasmtime serve` (wasmtime-cli from
# crates.io, the wasmtime version gocoffee-host links), then GET /api/v1/menu and authenticated
# POST /api/v1/orders under gocoffee-host on the real components. Flat out with CONNECTIONS
# connections, and at 1,000 req/s for the tail. Builds nothing of the project itself (`make bench`
# builds the components and the host first); installs wasmtime-cli into target/wasmtime-cli once.
#   DURATION=10s CONNECTIONS=8 ROUNDS=2 bench/host.sh
# Targets (issue 11): the host matches `wasmtime serve` on hello (req/s and p99), GET /menu flat
# out reaches half the host's hello, and GET /menu's p99 at 1,000 req/s is under 5 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-3920}
STATE=target/bench-host

WASMTIME_VERSION=$(awk '/^name = "wasmtime"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
WASMTIME=target/wasmtime-cli/bin/wasmtime
if ! "$WASMTIME" --version 2>/dev/null | grep -Eq "^wasmtime $WASMTIME_VERSION( |$)"; then
  echo "installing wasmtime-cli $WASMTIME_VERSION from crates.io (once; several minutes)..."
  cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --quiet --root target/wasmtime-cli
fi

source tests/host.sh
source bench/oha.sh
HELLO=target/wasm32-wasip2/release/hello.wasm
# Limits far above what one load generator sends: every request pays for the check, none is refused.
export SPIN_VARIABLE_RATE_LIMITS='{"credentials":{"requests":1000,"per_seconds":1,"burst":100000},"write":{"requests":1000,"per_seconds":1,"burst":100000},"read":{"requests":1000,"per_seconds":1,"burst":100000}}'
export SPIN_VARIABLE_JWT_SECRET=bench-secret-bench-secret-bench-secret

start_host "$PORT" "$STATE-hello" -f bench/hello/spin.toml
# -Scli: the wasi:cli interfaces beside the proxy world's, as gocoffee-host links them (a Rust
# component imports wasi:cli/environment); otherwise wasmtime serve's defaults.
"$WASMTIME" serve -Scli --addr "127.0.0.1:$((PORT + 1))" "$HELLO" >"$STATE-hello/wasmtime.log" 2>&1 &
HOST_PIDS+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$((PORT + 1))/" && break; sleep 0.1; done
start_host "$((PORT + 2))" "$STATE-app"
APP="http://127.0.0.1:$((PORT + 2))"
TOKEN=$(curl -sf "$APP/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
ORDER='{"lines":[{"item_id":"latte","size":"medium","modifiers":["oat-milk"],"quantity":1}]}'
for url in "http://127.0.0.1:$PORT/" "http://127.0.0.1:$((PORT + 1))/" "$APP/api/v1/menu"; do
  oha --no-tui -n 500 -c 4 "$url" >/dev/null   # warm up
done

echo "== $(nproc) cores; load generator on the same machine; $DURATION per run, $CONNECTIONS connections; wasmtime $WASMTIME_VERSION"
for round in $(seq 1 "$ROUNDS"); do
  run "hello, gocoffee-host, flat out ($round)" -c "$CONNECTIONS" "http://127.0.0.1:$PORT/"
  run "hello, wasmtime serve, flat out ($round)" -c "$CONNECTIONS" "http://127.0.0.1:$((PORT + 1))/"
  run "GET /api/v1/menu, flat out ($round)" -c "$CONNECTIONS" "$APP/api/v1/menu"
done
run "hello, gocoffee-host @ 1000/s" -q 1000 -c "$CONNECTIONS" "http://127.0.0.1:$PORT/"
run "hello, wasmtime serve @ 1000/s" -q 1000 -c "$CONNECTIONS" "http://127.0.0.1:$((PORT + 1))/"
run "GET /api/v1/menu @ 1000/s" -q 1000 -c "$CONNECTIONS" "$APP/api/v1/menu"
run "POST /api/v1/orders (authenticated), flat out" -c "$CONNECTIONS" -m POST -T application/json -H "authorization: Bearer $TOKEN" -d "$ORDER" "$APP/api/v1/orders"
