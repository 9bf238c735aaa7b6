# Sourced by bench/host.sh, bench/run.sh and bench/metrics.sh: installs oha (from crates.io, once)
# and defines `run LABEL OHA_ARGS...`, which runs oha for $DURATION and prints one line:
# requests/s, p50 ms, p99 ms, non-2xx count and errors.
if ! command -v oha >/dev/null; then
  echo "installing oha (load generator) from crates.io..."
  cargo install oha --locked --quiet
fi
run() {
  local label=$1; shift
  local out; out=$(oha --no-tui --output-format json -z "$DURATION" "$@")
  python3 - "$label" "$out" <<'PY'
import json, sys
label, raw = sys.argv[1], sys.argv[2]
d = json.loads(raw)
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
bad = sum(n for c, n in codes.items() if not c.startswith("2"))
# In-flight requests cut off when the run ends are not failures.
errors = sum(n for e, n in d.get("errorDistribution", {}).items() if e != "aborted due to deadline")
print(f"{label:<44} {s['requestsPerSec']:>9.0f} req/s   p50 {p['p50']*1000:6.2f} ms   p99 {p['p99']*1000:6.2f} ms   non-2xx {bad}   errors {errors}")
PY
}
