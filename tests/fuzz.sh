#!/usr/bin/env bash
# Property-based fuzzing of the whole HTTP API from openapi.yaml (schemathesis) against the real
# host and components: no 5xx for any generated input, every status and response body as
# documented. Fixed seed, so CI is reproducible; SEED=random explores new inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PORT=${PORT:-3907}
SEED=${SEED:-20261124}
MAX_EXAMPLES=${MAX_EXAMPLES:-40}
BASE="http://127.0.0.1:$PORT"
STATE=target/fuzz-state

tests/tools.sh main

source tests/host.sh
# The fuzzer acts as the bootstrap admin, so every handler is reached past its role check
# (customer-level rules are covered by the contract tests). Its rate limits are high enough that
# thousands of requests from one address and one user go through the limiter without a 429.
# Live event streams end after a second instead of 25, so each fuzzed one doesn't hold the run.
SPIN_VARIABLE_RATE_LIMITS='{"credentials":{"requests":1000,"per_seconds":1,"burst":100000},"write":{"requests":1000,"per_seconds":1,"burst":100000},"read":{"requests":1000,"per_seconds":1,"burst":100000}}' \
SPIN_VARIABLE_LIVE_STREAM_SECONDS=1 \
SPIN_VARIABLE_JWT_SECRET=fuzz-secret-fuzz-secret-fuzz-secret-1 \
SPIN_VARIABLE_ADMIN_EMAIL=fuzz-admin@example.com SPIN_VARIABLE_ADMIN_PASSWORD=fuzz-admin-password \
  start_host "$PORT" "$STATE"

TOKEN=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"fuzz-admin@example.com","password":"fuzz-admin-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

seed_args=(--seed "$SEED")
[ "$SEED" = random ] && seed_args=()
# Business rules reject some schema-valid input on purpose (an unknown menu item is a 422), so
# the "schema-valid data is accepted" check is left out.
"$VENV/bin/schemathesis" run openapi.yaml --url "$BASE" -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,unsupported_method \
  --max-examples "$MAX_EXAMPLES" "${seed_args[@]}" --no-color

if grep -q "status=5" "$STATE/host.log"; then
  echo "the host logged a 5xx:"; grep "status=5" "$STATE/host.log" | head; exit 1
fi
