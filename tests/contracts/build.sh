#!/usr/bin/env bash
# Compiles the test contracts with solc from npm (package.json pins it) into the committed
# tests/contracts/*.bin. With --check, compiles to a scratch folder and fails if the committed
# bytecode differs from the source (the tests run the committed bytecode).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
node_modules/.bin/solcjs --bin --optimize --optimize-runs 200 -o "$out" tests/contracts/TestToken.sol >/dev/null
for contract in TestToken FakeTransfer TestPriceFeed Multicall3Subset; do
  built="$out/tests_contracts_TestToken_sol_$contract.bin"
  if [ "${1:-}" = "--check" ]; then
    cmp -s "$built" "tests/contracts/$contract.bin" || { echo "tests/contracts/$contract.bin is stale: run tests/contracts/build.sh" >&2; exit 1; }
  else
    cp "$built" "tests/contracts/$contract.bin"
  fi
done
