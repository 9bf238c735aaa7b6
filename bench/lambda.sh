#!/usr/bin/env bash
# The Lambda bootstraps: each function built with `cargo lambda` for arm64 (what the template
# deploys) and x86_64, in the `lambda` profile (fat LTO, size-optimized); the stripped size of
# each, and the init time of each x86_64 one on this machine (process start to its first
# `GET /runtime/invocation/next` under the Runtime API emulator; median of RUNS starts); then the
# whole cold request of each release build on moto (process start to its first invocation's
# response, beside the same event warm), against health's.
# Targets: every binary under 8 MB, median init under 20 ms, every function's cold request
# within 2x of health's.
#   RUNS=20 bench/lambda.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
FUNCTIONS=(health web identity menu orders kitchen order-consumer payments payments-consumer payments-watcher reconciler analytics analytics-consumer live notifier ai)

tests/tools.sh main
export PATH="$PWD/.venv/bin:$PATH"
for arch in arm64 x86-64; do
  target=$([ "$arch" = arm64 ] && echo aarch64-unknown-linux-gnu || echo x86_64-unknown-linux-gnu)
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  cargo lambda build --profile lambda "--$arch" --lambda-dir "target/lambda-$arch" $(printf -- "-p %s " "${FUNCTIONS[@]}")
done

echo "== bootstrap sizes (stripped; limit 8 MB)"
printf '%-16s %12s %12s\n' function arm64 x86_64
for f in "${FUNCTIONS[@]}"; do
  printf '%-16s %12d %12d\n' "$f" "$(stat -c %s "target/lambda-arm64/$f/bootstrap")" "$(stat -c %s "target/lambda-x86-64/$f/bootstrap")"
done

echo "== init time, x86_64, $RUNS starts each (limit: median 20 ms)"
cargo build --release -p gocoffee-tests --bin lambda-init --quiet
target/release/lambda-init --runs "$RUNS" target/lambda-x86-64

echo "== whole cold requests on moto, release builds, $RUNS starts each"
cargo build --release -p gocoffee-tests --bin lambda-cold --quiet
target/release/lambda-cold --runs "$RUNS"
