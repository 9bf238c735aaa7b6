#!/usr/bin/env bash
# The AI function's latency on the host, per agent, side by side in one run: each agent called
# directly (`"agent"` named: no routing), then routed, with all-MiniLM-L6-v2 embeddings (the
# default) and with none (`ai_embedding_model` empty: words alone, as Fermyon Wasm Functions
# runs); GET /api/v1/menu is the floor (the same gateway, token check and component instance,
# no agent). One connection (a request's own latency) and four (two cores shared with oha).
# No language model: answers are retrieval and templates (README, "AI").
#   DURATION=10s bench/ai.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PORT=${PORT:-3940}
STATE=target/bench-ai

source tests/host.sh
source bench/oha.sh
export SPIN_VARIABLE_RATE_LIMITS='{"credentials":{"requests":1000,"per_seconds":1,"burst":100000},"write":{"requests":1000,"per_seconds":1,"burst":100000},"read":{"requests":1000,"per_seconds":1,"burst":100000}}'
export SPIN_VARIABLE_JWT_SECRET=bench-secret-bench-secret-bench-secret
export SPIN_VARIABLE_ADMIN_EMAIL=admin@bench.local SPIN_VARIABLE_ADMIN_PASSWORD=bench-admin-password

bench_host() {
  local label=$1 port=$2
  local app="http://127.0.0.1:$port"
  local customer manager
  customer=$(curl -sf "$app/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  manager=$(curl -sf "$app/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$SPIN_VARIABLE_ADMIN_EMAIL\",\"password\":\"$SPIN_VARIABLE_ADMIN_PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  # An order, so the customer-service agent has one to find and analytics a sale.
  curl -sf -o /dev/null "$app/api/v1/orders" -H 'content-type: application/json' -H "authorization: Bearer $customer" \
    -d '{"lines":[{"item_id":"latte","size":"medium","quantity":1}]}'
  ask() { # LABEL TOKEN BODY
    run "$1" -c "$CONNECTIONS" -m POST -T application/json -H "authorization: Bearer $2" -d "$3" "$app/api/v1/ai/ask"
  }
  # Warm up: the first request of each agent embeds its catalogue (cached by the host after).
  for body in '{"message":"oat latte under $5","agent":"search"}' '{"message":"when do you open on sunday?","agent":"customer-service"}'; do
    oha --no-tui -n 20 -c 1 -m POST -T application/json -H "authorization: Bearer $customer" -d "$body" "$app/api/v1/ai/ask" >/dev/null
  done
  for CONNECTIONS in 1 4; do
    echo "-- $label, $CONNECTIONS connection(s)"
    run "GET /api/v1/menu (floor)" -c "$CONNECTIONS" "$app/api/v1/menu"
    ask "search" "$customer" '{"message":"something vegan to eat under $6","agent":"search"}'
    ask "customer service, a question" "$customer" '{"message":"do you have oat milk?","agent":"customer-service"}'
    ask "customer service, my orders" "$customer" '{"message":"where is my order?","agent":"customer-service"}'
    ask "analytics" "$manager" '{"message":"what sold most today?","agent":"analytics"}'
    ask "routed (search)" "$customer" '{"message":"anything vegan to eat?"}'
    ask "routed (customer service)" "$customer" '{"message":"what time do you open on saturday?"}'
  done
}

start_host "$PORT" "$STATE-embeddings"
SPIN_VARIABLE_AI_EMBEDDING_MODEL= start_host "$((PORT + 1))" "$STATE-words"
echo "== $(nproc) cores; load generator on the same machine; $DURATION per run; no language model"
bench_host "with embeddings (all-MiniLM-L6-v2)" "$PORT"
bench_host "words only (no embedding model)" "$((PORT + 1))"
