#!/usr/bin/env bash
# Installs the Python-packaged test tools into venvs under the repository (idempotent: a venv
# whose stamp matches its pinned requirements is left alone). Separate venvs, because
# aws-sam-cli and checkov pin conflicting versions of shared libraries. The npm tools (anvil,
# solc, playwright-core, jsqr) go to node_modules from package-lock.json.
#   .venv          schemathesis (API fuzzing), moto server (AWS wire protocol), cargo-lambda (+ zig)
#   .venv-sam      aws-sam-cli (sam validate --lint) with its cfn-lint
#   .venv-checkov  checkov (static policy checks of the template)
# and from Debian's packages: redis-server, the real Redis the host's outbound Redis is tested on,
# postgresql, the real PostgreSQL its spin:postgres interface is tested on, and chromium, the
# headless browser the web clients' end-to-end tests drive.
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_venv() {
  local venv=$1; shift
  local want="$*"
  if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$want" ]; then return 0; fi
  echo "installing into $venv: $want"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  echo "$want" > "$venv/.stamp"
}

ensure_npm() {
  local want
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ -f node_modules/.stamp ] && [ "$(cat node_modules/.stamp)" = "$want" ]; then return 0; fi
  echo "installing npm tools: anvil, solc, playwright-core, jsqr"
  npm ci --no-audit --no-fund --silent
  echo "$want" > node_modules/.stamp
}

install_apt() {
  local package=$1
  echo "installing $package from Debian's packages"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q "$package" >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$package" >/dev/null; }
}

ensure_apt() {
  command -v "$1" >/dev/null || install_apt "$2"
}

# The server's binaries live off the PATH, in /usr/lib/postgresql/<version>/bin.
ensure_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || install_apt postgresql
}

case "${1:-all}" in
  apt|all) ensure_apt redis-server redis-server ;;&
  apt|all) ensure_postgres ;;&
  apt|all) ensure_apt chromium chromium ;;&
  openssl|apt|all) ensure_apt openssl openssl ;;&
  npm|all) ensure_npm ;;&
  main|all) ensure_venv .venv "schemathesis==4.32.5" "moto[server]==5.2.1" "cargo-lambda==1.9.2" ;;&
  sam|all) ensure_venv .venv-sam "aws-sam-cli==1.170.0" ;;&
  checkov|all) ensure_venv .venv-checkov "checkov==3.3.30" ;;
esac
