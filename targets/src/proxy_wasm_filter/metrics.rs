//! The filter's metrics as proxy-wasm host metrics.
//!
//! Envoy lists metrics defined by a Wasm module under the `wasmcustom.` prefix, for example
//! `wasmcustom.jwt_revocation.allowed`.

use jwt_revocation_core::metrics::CALLOUT_LATENCY;
use jwt_revocation_core::{Counter, Recorder};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

/// Host ids of every metric, defined once when the plugin is configured.
#[derive(Debug, Clone, Copy)]
pub struct WasmMetrics {
    counters: [u32; Counter::ALL.len()],
    latency: u32,
}

impl WasmMetrics {
    /// Defines every counter and the latency histogram. Envoy returns the existing id when a
    /// metric of that name exists, so reconfiguring keeps the counts.
    pub fn define() -> Result<Self, String> {
        let mut counters = [0; Counter::ALL.len()];
        for counter in Counter::ALL {
            counters[counter.index()] = define(MetricType::Counter, counter.name())?;
        }
        let latency = define(MetricType::Histogram, CALLOUT_LATENCY)?;
        Ok(Self { counters, latency })
    }
}

fn define(kind: MetricType, name: &str) -> Result<u32, String> {
    hostcalls::define_metric(kind, name)
        .map_err(|status: Status| format!("defining the metric {name} failed: {status:?}"))
}

impl Recorder for WasmMetrics {
    fn increment(&mut self, counter: Counter) {
        // A failed increment loses one count and must not fail the request.
        let _ = hostcalls::increment_metric(self.counters[counter.index()], 1);
    }

    fn record_callout_latency(&mut self, milliseconds: u64) {
        let _ = hostcalls::record_metric(self.latency, milliseconds);
    }
}
