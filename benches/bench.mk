# Benchmarks, included by the root Makefile. They live in benches/, a Cargo workspace of its own,
# and are never part of `make test`.
#
#   make bench                    micro-benchmarks, then the end-to-end load test, then
#                                 benches/RESULTS.md and benches/results.svg
#   make bench-micro              criterion: the core, the native module, the wasm module
#   make bench-e2e                one Envoy under wrk, callouts handled by a stand-in Envoy
#   make bench-e2e-authz-service  the same with the reference authz-service handling callouts
#   make bench-report             rewrite RESULTS.md and results.svg from benches/results/
#
# BENCH_CRITERION_ARGS passes options to criterion (for example `--quick`), BENCH_E2E_ARGS to
# bench-e2e (for example `--rounds 5 --seconds 20`; `bench-e2e --help` lists them). wrk comes
# from Debian's `wrk` package (`apt-get install wrk`).

BENCH_TARGET_DIR ?= $(CURDIR)/benches/target
BENCH_WASM ?= $(CURDIR)/target/wasm32-wasip1/release/jwt_revocation.wasm
BENCH_MODULE ?= $(CURDIR)/target/release/libjwt_revocation.so
BENCH_CRITERION_ARGS ?=
BENCH_E2E_ARGS ?=
BENCH_CARGO = cd benches && CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) \
	JWT_REVOCATION_WASM=$(BENCH_WASM) JWT_REVOCATION_MODULE=$(BENCH_MODULE) $(CARGO)
BENCH_MICRO_COMMAND = cargo bench --bench core --bench native --bench wasm$(if $(strip \
	$(BENCH_CRITERION_ARGS)), -- $(BENCH_CRITERION_ARGS))

.PHONY: bench bench-micro bench-e2e bench-e2e-authz-service bench-report bench-artifacts

# Recorded in each result file as the command behind its numbers.
bench: export BENCH_MAKE_TARGET := bench
bench-micro: export BENCH_MAKE_TARGET := bench-micro
bench-e2e: export BENCH_MAKE_TARGET := bench-e2e
bench-e2e-authz-service: export BENCH_MAKE_TARGET := bench-e2e-authz-service

define bench_micro_steps
	@mkdir -p $(BENCH_TARGET_DIR)
	@touch $(BENCH_TARGET_DIR)/micro-start
	$(BENCH_CARGO) bench --bench core --bench native --bench wasm -- $(BENCH_CRITERION_ARGS)
	$(BENCH_CARGO) run --release --quiet --bin bench-report -- micro \
		--criterion-dir $(BENCH_TARGET_DIR)/criterion \
		--since-file $(BENCH_TARGET_DIR)/micro-start \
		--command "$(BENCH_MICRO_COMMAND)"
endef

# Runs bench-e2e with the given arguments; when it fails or flags failed requests, the report is
# still rewritten, and the make target fails afterwards.
define bench_e2e_steps
	$(BENCH_CARGO) build --release --quiet --bin bench-e2e --bin bench-report
	@status=0; \
	$(BENCH_TARGET_DIR)/release/bench-e2e --envoy "$(ENVOY)" --wasm "$(BENCH_WASM)" \
		--module "$(BENCH_MODULE)" $(1) $(BENCH_E2E_ARGS) || status=$$?; \
	$(BENCH_TARGET_DIR)/release/bench-report render; \
	exit $$status
endef

# The dynamic module may fail to build while it is being changed; the benchmarks then report it
# as not measured, or measure the previous build, instead of stopping.
bench-artifacts: wasm envoy
	@$(MAKE) --no-print-directory module || \
		echo "warning: make module failed; the dynamic-module benchmarks use $(BENCH_MODULE) if it exists"

bench: bench-artifacts
	$(bench_micro_steps)
	$(call bench_e2e_steps,--authz standin)

bench-micro: bench-artifacts
	$(bench_micro_steps)
	$(BENCH_TARGET_DIR)/release/bench-report render

bench-e2e: bench-artifacts
	$(call bench_e2e_steps,--authz standin)

bench-e2e-authz-service: bench-artifacts bins
	$(call bench_e2e_steps,--authz authz-service)

bench-report:
	$(BENCH_CARGO) run --release --quiet --bin bench-report -- render
