# Sourced by bench/run.sh, bench/metrics.sh and tests/fuzz.sh: start_host PORT STATE_DIR [FLAGS...]
# starts the release host on 127.0.0.1:PORT with a fresh state folder and these extra flags
# (variables come from the caller's environment), waits until it listens, and stops it (and every
# other host started this way) when the calling script exits.
HOST_PIDS=()
# The test token keys (shared/app/tests/keys: for tests only), unless the caller set its own.
: "${SPIN_VARIABLE_TOKEN_SIGNING_KEY:=$(cat shared/app/tests/keys/current.pem)}"
: "${SPIN_VARIABLE_TOKEN_PUBLIC_KEYS:=$(cat shared/app/tests/keys/current.pub.pem)}"
export SPIN_VARIABLE_TOKEN_SIGNING_KEY SPIN_VARIABLE_TOKEN_PUBLIC_KEYS
start_host() {
  local port=$1 state=$2; shift 2
  rm -rf "$state"; mkdir -p "$state"
  ./target/release/gocoffee-host --listen "127.0.0.1:$port" --state-dir "$state" --cache-dir target/test-cache --ai-models target/ai-models "$@" \
    >"$state/stdout" 2>"$state/host.log" &
  HOST_PID=$!
  HOST_PIDS+=("$HOST_PID")
  trap 'kill "${HOST_PIDS[@]}" 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do grep -q "^Listening on" "$state/stdout" 2>/dev/null && return 0; sleep 0.1; done
  echo "host did not start"; cat "$state/host.log"; return 1
}
