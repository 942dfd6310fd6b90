# OCI image of the Wasm filter, in the compat form that Istio's WasmPlugin pulls
# from an oci:// URL. The top-level Makefile includes this file. It also works
# alone from the repository root:
#   make -f packaging/oci.mk oci WASM=path/to/filter.wasm
#
# Targets:
#   oci        Build the OCI image layout $(OCI_DIR) from $(WASM), without a
#              Docker daemon, and print its manifest digest. The same .wasm
#              always gives the same digest.
#   oci-push   Copy the layout to the registry reference $(OCI_IMAGE) with skopeo.
#   oci-test   Run the packaging tests against $(WASM).
#   oci-clean  Remove $(OCI_DIR).
#
# For an oci:// URL, Istio checks WasmPlugin.spec.sha256 against the manifest
# digest that `oci` prints, not against the sha256 of the .wasm file.

# A WASM given on the command line or in the environment is packaged as it is.
# Otherwise the `wasm` target of the top-level Makefile builds it first.
ifeq ($(filter command line environment,$(origin WASM)),)
OCI_WASM_PREREQ := wasm
endif

# Release build of the filter.
WASM ?= target/wasm32-wasip1/release/jwt_revocation.wasm
# Output OCI image layout directory; a layout already there is replaced.
OCI_DIR ?= target/oci
# Tag recorded in the layout; defaults to the workspace version in Cargo.toml.
ifndef OCI_TAG
OCI_TAG := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
endif
# Destination of oci-push, REGISTRY/REPOSITORY:TAG. It has no default.
OCI_IMAGE ?=
CARGO ?= cargo
SKOPEO ?= skopeo
# Extra skopeo copy flags, for example --dest-creds=USER:PASSWORD, or
# --dest-tls-verify=false for a registry that serves plain HTTP.
SKOPEO_FLAGS ?=

.PHONY: oci oci-push oci-test oci-clean

oci: $(OCI_WASM_PREREQ)
	@test -n "$(OCI_TAG)" || { echo "oci: OCI_TAG is empty and no version was found in Cargo.toml; set OCI_TAG" >&2; exit 2; }
	$(CARGO) run --quiet --package packaging --bin oci-image -- \
		--wasm "$(WASM)" --out "$(OCI_DIR)" --tag "$(OCI_TAG)"

# --preserve-digests makes skopeo fail instead of rewriting the manifest, so the
# pushed image keeps the digest that `oci` printed.
oci-push: oci
	@test -n "$(OCI_IMAGE)" || { echo "oci-push: set OCI_IMAGE=REGISTRY/REPOSITORY:TAG" >&2; exit 2; }
	$(SKOPEO) copy --preserve-digests $(SKOPEO_FLAGS) \
		"oci:$(OCI_DIR):$(OCI_TAG)" "docker://$(OCI_IMAGE)"

oci-test: $(OCI_WASM_PREREQ)
	JWT_REVOCATION_WASM="$(abspath $(WASM))" $(CARGO) test --package packaging

oci-clean:
	rm -rf "$(OCI_DIR)"
