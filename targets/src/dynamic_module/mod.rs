//! The filter as a native Envoy dynamic module for `envoy.filters.http.dynamic_modules`, written
//! against the dynamic-modules ABI of Envoy 1.40.0.
//!
//! A request goes through three files:
//!
//! 1. `hooks.rs`: Envoy calls an exported `envoy_dynamic_module_on_*` hook, which catches any
//!    panic and fails closed.
//! 2. `filter.rs`: the hook passes the event to the stream's [`filter::Filter`], which reads the
//!    headers it needs, makes one call into [`jwt_revocation_core::Stream`], and carries out the
//!    actions that follow (callouts, backoffs, the fail-open header) until the request waits or
//!    is decided.
//! 3. `abi.rs`: every Envoy callback has a safe wrapper there. The hook ends with one of them:
//!    continue the request or send the local reply.
//!
//! A retry backoff ends in `on_http_filter_scheduled`, because `backoff.rs` has the process-wide
//! timer of `timer.rs` commit the stream's Envoy scheduler once the backoff has passed.
//!
//! `config.rs` parses the listener-level and per-route configurations and keeps their circuit
//! breakers, shared by every worker thread. `callout.rs` turns what Envoy reports about a callout
//! into core events. `metrics.rs` defines the metrics and records them, `clock.rs` supplies the
//! time and the jitter of every core call, `log.rs` writes to Envoy's log, and `unused_hooks.rs`
//! exports the no-op hooks that Envoy requires of every module.

mod abi;
mod backoff;
mod callout;
mod clock;
mod config;
mod filter;
mod hooks;
mod log;
mod metrics;
mod timer;
mod unused_hooks;

#[cfg(test)]
mod hooks_test;
#[cfg(test)]
mod mock_host;
