//! The jwt-revocation filter for Envoy, built for one host per feature:
//!
//! - `proxy-wasm`: a WebAssembly module for `envoy.filters.http.wasm` (and Istio's `WasmPlugin`),
//!   built for `wasm32-wasip1`;
//! - `dynamic-module`: a native shared library for `envoy.filters.http.dynamic_modules`.
//!
//! Both translate host events into calls on [`jwt_revocation_core::Stream`] and carry out the
//! actions it returns. Without a feature the crate is empty.

cfg_if::cfg_if! {
    if #[cfg(all(feature = "proxy-wasm", feature = "dynamic-module"))] {
        compile_error!("enable one of the features proxy-wasm and dynamic-module, not both");
    } else if #[cfg(feature = "proxy-wasm")] {
        mod proxy_wasm_filter;
    } else if #[cfg(feature = "dynamic-module")] {
        mod dynamic_module;
    }
}
