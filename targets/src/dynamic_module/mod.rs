//! The filter as a native Envoy dynamic module for `envoy.filters.http.dynamic_modules`, written
//! against the dynamic-modules ABI of Envoy 1.40.0.
//!
//! A request goes through three files:
//!
//! 1. `hooks.rs`: Envoy calls an exported `envoy_dynamic_module_on_*` hook, which catches any
//!    panic and fails closed.
//! 2. `filter.rs`: the hook passes the event to the stream's [`filter::Filter`], which reads the
//!    headers it needs, gets the decision from [`jwt_revocation_core::Stream`], and returns the
//!    next step.
//! 3. `abi.rs`: the hook carries that out through an Envoy callback: continue the request, start
//!    the callout, or send the local reply.
//!
//! `config.rs` parses the listener-level and per-route configurations, `log.rs` writes to Envoy's
//! log, and `unused_hooks.rs` exports the no-op hooks that Envoy requires of every module.

mod abi;
mod config;
mod filter;
mod hooks;
mod log;
mod unused_hooks;

#[cfg(test)]
mod hooks_test;
#[cfg(test)]
mod mock_host;
