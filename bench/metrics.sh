#!/usr/bin/env bash
# What the instrumentation costs on the host: three hosts on the same components, one without
# metrics, one with `--metrics-listen` (the host recording every request and delivery, and the
# components' EMF lines read into its registry) and one with metrics and traces (spans exported
# over OTLP to a collector that accepts and drops them), measured in turn in one run (off, on,
# traced, off, on, traced) so drift on the machine hits all alike. The components write their
# EMF lines in every case. Builds nothing itself.
#   DURATION=10s CONNECTIONS=16 bench/metrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
OFF_PORT=${OFF_PORT:-3910}
ON_PORT=${ON_PORT:-3911}
TRACED_PORT=${TRACED_PORT:-3913}
METRICS=127.0.0.1:${METRICS_PORT:-3912}
TRACED_METRICS=127.0.0.1:${TRACED_METRICS_PORT:-3914}
COLLECTOR_PORT=${COLLECTOR_PORT:-3915}

source tests/host.sh
source bench/oha.sh
export SPIN_VARIABLE_JWT_SECRET=bench-secret-bench-secret-bench-secret
export SPIN_VARIABLE_RATE_LIMITS='{"credentials":{"requests":1000,"per_seconds":1,"burst":100000},"write":{"requests":1000,"per_seconds":1,"burst":100000},"read":{"requests":1000,"per_seconds":1,"burst":100000}}'
start_host "$OFF_PORT" target/bench-metrics-off
start_host "$ON_PORT" target/bench-metrics-on --metrics-listen "$METRICS"
# A stand-in OTLP/HTTP collector: takes each export and answers 200.
python3 - "$COLLECTOR_PORT" <<'PY' &
import http.server, sys
class Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Collector).serve_forever()
PY
HOST_PIDS+=("$!")
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$COLLECTOR_PORT" start_host "$TRACED_PORT" target/bench-metrics-traced --metrics-listen "$TRACED_METRICS"

token() {
  curl -sf "http://127.0.0.1:$1/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
OFF_TOKEN=$(token "$OFF_PORT")
ON_TOKEN=$(token "$ON_PORT")
TRACED_TOKEN=$(token "$TRACED_PORT")
ORDER='{"lines":[{"item_id":"latte","size":"medium","modifiers":["oat-milk"],"quantity":1}]}'

echo "== instrumentation cost: gocoffee-host on $(nproc) cores, load generator on the same machine; $DURATION per run"
for port in "$OFF_PORT" "$ON_PORT" "$TRACED_PORT"; do oha --no-tui -n 200 -c 4 "http://127.0.0.1:$port/api/v1/menu" >/dev/null; done
for round in 1 2; do
  run "GET /menu flat out, metrics off ($round)" -c "$CONNECTIONS" "http://127.0.0.1:$OFF_PORT/api/v1/menu"
  run "GET /menu flat out, metrics on ($round)" -c "$CONNECTIONS" "http://127.0.0.1:$ON_PORT/api/v1/menu"
  run "GET /menu flat out, metrics+traces ($round)" -c "$CONNECTIONS" "http://127.0.0.1:$TRACED_PORT/api/v1/menu"
done
for round in 1 2; do
  run "POST /orders flat out, metrics off ($round)" -c "$CONNECTIONS" -m POST -T application/json -H "authorization: Bearer $OFF_TOKEN" -d "$ORDER" "http://127.0.0.1:$OFF_PORT/api/v1/orders"
  run "POST /orders flat out, metrics on ($round)" -c "$CONNECTIONS" -m POST -T application/json -H "authorization: Bearer $ON_TOKEN" -d "$ORDER" "http://127.0.0.1:$ON_PORT/api/v1/orders"
  run "POST /orders flat out, metrics+traces ($round)" -c "$CONNECTIONS" -m POST -T application/json -H "authorization: Bearer $TRACED_TOKEN" -d "$ORDER" "http://127.0.0.1:$TRACED_PORT/api/v1/orders"
done
echo "series on the instrumented host: $(curl -sf "http://$METRICS/metrics" | grep -vc '^#')"
