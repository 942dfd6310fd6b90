//! The filter's metrics as Envoy counters and a histogram.
//!
//! Every metric is defined once, when Envoy creates the listener-level configuration, and a
//! per-route configuration uses the same ones. Envoy 1.40 lists them under
//! `dynamicmodulescustom.`, for example `dynamicmodulescustom.jwt_revocation.allowed`.

use jwt_revocation_core::metrics::CALLOUT_LATENCY;
use jwt_revocation_core::{Counter, Recorder};

use super::abi::{FilterConfigHandle, HttpFilterHandle};

/// Envoy's ids of every metric, from the listener-level configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricIds {
    counters: [usize; Counter::ALL.len()],
    callout_latency: usize,
}

impl MetricIds {
    /// Defines every counter in [`Counter::ALL`] and the callout latency histogram.
    pub fn define(config: &FilterConfigHandle) -> Result<Self, String> {
        let mut counters = [0; Counter::ALL.len()];
        for counter in Counter::ALL {
            counters[counter.index()] = config
                .define_counter(counter.name())
                .map_err(|error| format!("defining counter {} failed: {error}", counter.name()))?;
        }
        let callout_latency = config
            .define_histogram(CALLOUT_LATENCY)
            .map_err(|error| format!("defining histogram {CALLOUT_LATENCY} failed: {error}"))?;
        Ok(Self {
            counters,
            callout_latency,
        })
    }
}

/// The metrics of one stream, recorded through Envoy's per-stream callbacks.
pub struct HostMetrics<'a> {
    pub host: &'a HttpFilterHandle,
    pub ids: &'a MetricIds,
}

impl Recorder for HostMetrics<'_> {
    fn increment(&mut self, counter: Counter) {
        // A failed increment loses one count and must not fail the request.
        let _ = self
            .host
            .increment_counter(self.ids.counters[counter.index()], 1);
    }

    fn record_callout_latency(&mut self, milliseconds: u64) {
        let _ = self
            .host
            .record_histogram_value(self.ids.callout_latency, milliseconds);
    }
}

/// Metrics reported during one core call, held back so that no host call is made while the
/// circuit breakers are locked, then passed on with [`MetricBuffer::replay`].
#[derive(Debug, Default)]
pub struct MetricBuffer {
    counts: [u32; Counter::ALL.len()],
    callout_latencies: Vec<u64>,
}

impl Recorder for MetricBuffer {
    fn increment(&mut self, counter: Counter) {
        self.counts[counter.index()] += 1;
    }

    fn record_callout_latency(&mut self, milliseconds: u64) {
        self.callout_latencies.push(milliseconds);
    }
}

impl MetricBuffer {
    /// Passes every held metric to `recorder`.
    pub fn replay(&self, recorder: &mut dyn Recorder) {
        for counter in Counter::ALL {
            for _ in 0..self.counts[counter.index()] {
                recorder.increment(counter);
            }
        }
        for &milliseconds in &self.callout_latencies {
            recorder.record_callout_latency(milliseconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<String>);

    impl Recorder for Log {
        fn increment(&mut self, counter: Counter) {
            self.0.push(counter.name().to_owned());
        }

        fn record_callout_latency(&mut self, milliseconds: u64) {
            self.0.push(format!("latency {milliseconds}"));
        }
    }

    #[test]
    fn buffer_replays_everything() {
        let mut buffer = MetricBuffer::default();
        buffer.increment(Counter::Retries);
        buffer.increment(Counter::Allowed);
        buffer.increment(Counter::Retries);
        buffer.record_callout_latency(12);

        let mut log = Log::default();
        buffer.replay(&mut log);
        assert_eq!(
            log.0,
            [
                "jwt_revocation.allowed",
                "jwt_revocation.retries",
                "jwt_revocation.retries",
                "latency 12"
            ]
        );
    }

    #[test]
    fn empty_buffer_replays_nothing() {
        let mut log = Log::default();
        MetricBuffer::default().replay(&mut log);
        assert!(log.0.is_empty());
    }
}
