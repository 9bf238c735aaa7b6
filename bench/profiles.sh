#!/usr/bin/env bash
# The application's deployment profiles side by side in one run on one machine, each under its
# platform's rules on the host: spin.toml (events through the host's durable log, as Redis on
# Spin), on SQLite and on PostgreSQL; the Fermyon Cloud profile (events handled in process by the
# component that wrote them, SQLite); and the Fermyon Wasm Functions profile (events delivered by
# service chaining to private routes, PostgreSQL). For each: authenticated POST /api/v1/orders flat
# out with CONNECTIONS connections, then the time from a POST to the order reading `confirmed`
# (ORDERS orders placed one at a time). Builds nothing (`make bench` builds the components, the
# host and target/release/pg-server first).
#   DURATION=10s CONNECTIONS=8 ORDERS=200 bench/profiles.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
ORDERS=${ORDERS:-200}
PORT=${PORT:-3950}
STATE=target/bench-profiles
mkdir -p "$STATE"

source tests/host.sh
source bench/oha.sh
source bench/pg.sh
export SPIN_VARIABLE_RATE_LIMITS='{"credentials":{"requests":1000,"per_seconds":1,"burst":100000},"write":{"requests":1000,"per_seconds":1,"burst":100000},"read":{"requests":1000,"per_seconds":1,"burst":100000}}'
export SPIN_VARIABLE_JWT_SECRET=bench-secret-bench-secret-bench-secret
export SPIN_VARIABLE_CRON_SECRET=bench-cron-secret-bench-cron-secret

# One PostgreSQL server, a database per host that uses it.
start_pg "$STATE"
ORIGIN="postgres://127.0.0.1:$PG_PORT"
# The Wasm Functions host gets a database of its own on the same server.
WF_URL="${DATABASE_URL%/*}/gocoffee_wf"
psql_create() { "$(ls -d /usr/lib/postgresql/*/bin | tail -1)/psql" "$DATABASE_URL" -qc "CREATE DATABASE $1" >/dev/null; }
psql_create gocoffee_wf

PROFILES=(spin-sqlite spin-postgres fermyon-cloud fermyon-wasm-functions)
start_host "$PORT" "$STATE/spin-sqlite"
SPIN_VARIABLE_DATABASE_URL="$DATABASE_URL" SPIN_VARIABLE_DATABASE_ORIGIN="$ORIGIN" start_host "$((PORT + 1))" "$STATE/spin-postgres"
start_host "$((PORT + 2))" "$STATE/fermyon-cloud" -f spin.fermyon-cloud.toml --platform fermyon-cloud
SPIN_VARIABLE_DATABASE_URL="$WF_URL" SPIN_VARIABLE_DATABASE_ORIGIN="$ORIGIN" \
  start_host "$((PORT + 3))" "$STATE/fermyon-wasm-functions" -f spin.fermyon-wasm-functions.toml --platform fermyon-wasm-functions
trap 'kill "${HOST_PIDS[@]}" 2>/dev/null || true; stop_pg' EXIT

ORDER='{"lines":[{"item_id":"latte","size":"medium","modifiers":["oat-milk"],"quantity":1}]}'
declare -A TOKEN
for i in "${!PROFILES[@]}"; do
  TOKEN[${PROFILES[$i]}]=$(curl -sf "http://127.0.0.1:$((PORT + i))/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
done

echo "== $(nproc) cores; load generator and database on the same machine"
echo "-- time from POST /api/v1/orders to the order reading confirmed, $ORDERS orders one at a time"
for i in "${!PROFILES[@]}"; do
  python3 - "${PROFILES[$i]}" "http://127.0.0.1:$((PORT + i))" "${TOKEN[${PROFILES[$i]}]}" "$ORDERS" "$ORDER" <<'PY'
import json, sys, time, urllib.request
label, base, token, n, order = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5].encode()
headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
def call(method, path, body=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())
posts, confirmed = [], []
for _ in range(n):
    start = time.perf_counter()
    placed = call("POST", "/api/v1/orders", order)
    posts.append(time.perf_counter() - start)
    while placed.get("status") != "confirmed":
        time.sleep(0.0005)
        placed = call("GET", f"/api/v1/orders/{placed['id']}")
    confirmed.append(time.perf_counter() - start)
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000
print(f"{label:<26} POST p50 {pct(posts, 50):6.2f} ms  p99 {pct(posts, 99):6.2f} ms   confirmed p50 {pct(confirmed, 50):6.2f} ms  p99 {pct(confirmed, 99):6.2f} ms")
PY
done
echo "-- POST /api/v1/orders flat out, $DURATION per run, $CONNECTIONS connections"
for i in "${!PROFILES[@]}"; do
  run "POST /api/v1/orders, ${PROFILES[$i]}" -c "$CONNECTIONS" -m POST -T application/json \
    -H "authorization: Bearer ${TOKEN[${PROFILES[$i]}]}" -d "$ORDER" "http://127.0.0.1:$((PORT + i))/api/v1/orders"
done
