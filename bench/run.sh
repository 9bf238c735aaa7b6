#!/usr/bin/env bash
# Load benchmark of the local host on the real components. Builds nothing itself: `make bench`
# builds the components and the host in release first. Sends traffic only to 127.0.0.1.
#   DURATION=10s RATE=500 CONNECTIONS=16 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
RATE=${RATE:-500}
CONNECTIONS=${CONNECTIONS:-16}
PORT=${PORT:-3900}
BASE="http://127.0.0.1:$PORT"
STATE=target/bench-state

source tests/host.sh
source bench/oha.sh
# Every request pays for the rate limiter (limits on, as deployed), set high enough that the load
# generator's one address and one user are never refused.
SPIN_VARIABLE_RATE_LIMITS='{"credentials":{"requests":1000,"per_seconds":1,"burst":100000},"write":{"requests":1000,"per_seconds":1,"burst":100000},"read":{"requests":1000,"per_seconds":1,"burst":100000}}' \
SPIN_VARIABLE_JWT_SECRET=bench-secret-bench-secret-bench-secret \
  SPIN_VARIABLE_ADMIN_EMAIL=admin@bench.test SPIN_VARIABLE_ADMIN_PASSWORD='bench admin password' \
  start_host "$PORT" "$STATE"

TOKEN=$(curl -sf "$BASE/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
ORDER='{"lines":[{"item_id":"latte","size":"medium","modifiers":["oat-milk"],"quantity":1}]}'

echo "== gocoffee-host on $(nproc) cores, load generator on the same machine; $DURATION per run"
oha --no-tui -n 200 -c 4 "$BASE/api/v1/menu" >/dev/null   # warm up
run "GET /api/v1/menu @ ${RATE}/s, ${CONNECTIONS} conns" -q "$RATE" -c "$CONNECTIONS" "$BASE/api/v1/menu"
run "GET /api/v1/menu flat out, ${CONNECTIONS} conns" -c "$CONNECTIONS" "$BASE/api/v1/menu"
# What the gateway's rate limiter costs a read (one SQLite upsert per request): the same menu
# from a second host with rate_limits=off, in alternating runs.
SPIN_VARIABLE_RATE_LIMITS=off SPIN_VARIABLE_JWT_SECRET=bench-secret-bench-secret-bench-secret \
  start_host "$((PORT + 1))" "$STATE-unlimited"
UNLIMITED="http://127.0.0.1:$((PORT + 1))"
oha --no-tui -n 200 -c 4 "$UNLIMITED/api/v1/menu" >/dev/null
for round in 1 2; do
  run "GET /api/v1/menu flat out, limits off ($round)" -c "$CONNECTIONS" "$UNLIMITED/api/v1/menu"
  run "GET /api/v1/menu flat out, limits on ($round)" -c "$CONNECTIONS" "$BASE/api/v1/menu"
done
kill "$HOST_PID" 2>/dev/null || true
run "POST /api/v1/orders @ ${RATE}/s, ${CONNECTIONS} conns" -q "$RATE" -c "$CONNECTIONS" -m POST -T application/json -H "authorization: Bearer $TOKEN" -d "$ORDER" "$BASE/api/v1/orders"
run "POST /api/v1/orders flat out, ${CONNECTIONS} conns" -c "$CONNECTIONS" -m POST -T application/json -H "authorization: Bearer $TOKEN" -d "$ORDER" "$BASE/api/v1/orders"

# Every accepted order must get through the consumer.
for _ in $(seq 1 600); do
  pending=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from deliveries").fetchone()[0])' "$STATE/log.db")
  [ "$pending" = 0 ] && break; sleep 0.1
done
echo "orders stream backlog after the runs: $pending"

# The analytics reports read every order of the range from the read model and compute in the
# component: the range here holds all the orders just placed. Beside it, a page of the write
# side's order list, the cheapest staff read, as the baseline.
ADMIN=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"admin@bench.test","password":"bench admin password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
FACTS=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from order_facts").fetchone()[0])' "$STATE/sqlite/analytics.db")
RANGE="from=$(date -u -d yesterday +%F)&to=$(date -u -d tomorrow +%F)"
run "GET /api/v1/orders?limit=100 (baseline) flat out" -c "$CONNECTIONS" -H "authorization: Bearer $ADMIN" "$BASE/api/v1/orders?limit=100"
run "GET /api/v1/analytics/sales over $FACTS orders flat out" -c "$CONNECTIONS" -H "authorization: Bearer $ADMIN" "$BASE/api/v1/analytics/sales?$RANGE"
run "GET /api/v1/analytics/items over $FACTS orders flat out" -c "$CONNECTIONS" -H "authorization: Bearer $ADMIN" "$BASE/api/v1/analytics/items?$RANGE"

# Every item gets a 48 KB picture, uploaded through the URL the menu hands out: the menu then
# signs 16 download URLs per response, and pictures come out of key-value.
PICTURE=$(python3 - "$BASE" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
def call(method, url, body=None, headers={}):
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req) as r:
        raw = r.read()
        return json.loads(raw) if raw else None
login = call("POST", f"{base}/api/v1/auth/login", json.dumps({"email": "admin@bench.test", "password": "bench admin password"}).encode(), {"content-type": "application/json"})
auth = {"authorization": f"Bearer {login['access_token']}", "content-type": "application/json"}
picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 188
for item in call("GET", f"{base}/api/v1/menu")["items"]:
    issued = call("PUT", f"{base}/api/v1/menu/items/{item['id']}/image", json.dumps({"content_type": "image/png", "content_length": len(picture)}).encode(), auth)
    call("PUT", issued["upload_url"], picture, {"content-type": "image/png"})
print(call("GET", f"{base}/api/v1/menu/items/latte")["image_url"])
PY
)
run "GET /api/v1/menu, 16 pictures @ ${RATE}/s" -q "$RATE" -c "$CONNECTIONS" "$BASE/api/v1/menu"
run "GET /api/v1/menu, 16 pictures flat out" -c "$CONNECTIONS" "$BASE/api/v1/menu"
run "GET a 48 KB picture flat out" -c "$CONNECTIONS" "$PICTURE"

echo "== component sizes (limit 2 MB)"
for f in target/wasm32-wasip2/release/*.wasm; do
  printf '%-44s %8d bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done
