#!/usr/bin/env bash
# The same application on its two Spin stores, side by side in one run on one machine: the host on
# the real components with their state in SQLite (the default) and in PostgreSQL (a throwaway
# local server, through Spin's postgres interface: `database_url`). GET /api/v1/menu and
# authenticated POST /api/v1/orders, flat out with CONNECTIONS connections. Builds nothing
# (`make bench` builds the components, the host and target/release/pg-server first).
#   DURATION=10s CONNECTIONS=8 ROUNDS=2 bench/stores.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-3940}
STATE=target/bench-stores
mkdir -p "$STATE"

source tests/host.sh
source bench/oha.sh
source bench/pg.sh
export SPIN_VARIABLE_RATE_LIMITS='{"credentials":{"requests":1000,"per_seconds":1,"burst":100000},"write":{"requests":1000,"per_seconds":1,"burst":100000},"read":{"requests":1000,"per_seconds":1,"burst":100000}}'
export SPIN_VARIABLE_JWT_SECRET=bench-secret-bench-secret-bench-secret

start_pg "$STATE"

start_host "$PORT" "$STATE/sqlite"
SPIN_VARIABLE_DATABASE_URL="$DATABASE_URL" SPIN_VARIABLE_DATABASE_ORIGIN="postgres://127.0.0.1:$PG_PORT" start_host "$((PORT + 1))" "$STATE/postgres"
# Stop the hosts, then let the PostgreSQL server go (closing its input).
trap 'kill "${HOST_PIDS[@]}" 2>/dev/null || true; stop_pg' EXIT

ORDER='{"lines":[{"item_id":"latte","size":"medium","modifiers":["oat-milk"],"quantity":1}]}'
declare -A TOKEN
for store in sqlite postgres; do
  port=$PORT; [ "$store" = postgres ] && port=$((PORT + 1))
  TOKEN[$store]=$(curl -sf "http://127.0.0.1:$port/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  oha --no-tui -n 500 -c 4 "http://127.0.0.1:$port/api/v1/menu" >/dev/null   # warm up
done

echo "== $(nproc) cores; load generator and database on the same machine; $DURATION per run, $CONNECTIONS connections"
# Reads first: the orders placed below keep each host's consumers busy for a while afterwards.
for round in $(seq 1 "$ROUNDS"); do
  run "GET /api/v1/menu, sqlite ($round)" -c "$CONNECTIONS" "http://127.0.0.1:$PORT/api/v1/menu"
  run "GET /api/v1/menu, postgres ($round)" -c "$CONNECTIONS" "http://127.0.0.1:$((PORT + 1))/api/v1/menu"
done
for store in sqlite postgres; do
  port=$PORT; [ "$store" = postgres ] && port=$((PORT + 1))
  run "POST /api/v1/orders, $store" -c "$CONNECTIONS" -m POST -T application/json \
    -H "authorization: Bearer ${TOKEN[$store]}" -d "$ORDER" "http://127.0.0.1:$port/api/v1/orders"
done
