# Go Coffee: the two commands are `make up` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test unit
test: unit

unit:
	$(CARGO) test --release --workspace
