//! The result files under `benches/results/`: `micro.json` from the criterion benchmarks and
//! `e2e-<authz>.json` from each end-to-end load test.

use std::fs;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::provenance::Provenance;

/// The criterion estimates of one `make bench-micro` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MicroResults {
    pub provenance: Provenance,
    pub estimates: Vec<MicroEstimate>,
}

/// Criterion's estimate of one benchmark, in nanoseconds per iteration (one request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MicroEstimate {
    /// Benchmark group, such as `native_request`.
    pub group: String,
    /// Benchmark id inside the group, such as `typical`.
    pub id: String,
    pub mean_ns: f64,
    /// Lower bound of the 95% confidence interval of the mean.
    pub mean_low_ns: f64,
    /// Upper bound of the 95% confidence interval of the mean.
    pub mean_high_ns: f64,
    pub median_ns: f64,
}

impl MicroResults {
    /// Returns the estimate of `group`/`id`, if that benchmark ran.
    pub fn find(&self, group: &str, id: &str) -> Option<&MicroEstimate> {
        self.estimates
            .iter()
            .find(|e| e.group == group && e.id == id)
    }
}

/// One end-to-end load test: every variant measured in interleaved rounds on one Envoy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResults {
    pub provenance: Provenance,
    pub settings: LoadSettings,
    /// Names of the measured variants, in the order each round ran them.
    pub variants: Vec<String>,
    /// Variants that were not measured, with the reason.
    pub skipped: Vec<SkippedVariant>,
    /// One entry per variant and round.
    pub runs: Vec<RunResult>,
}

/// The settings of a load test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSettings {
    /// The service behind the callouts: `standin` (a second Envoy with `direct_response`) or
    /// `authz-service` (the reference service).
    pub authz: String,
    /// Description of the authorization service and upstream, for the report.
    pub authz_description: String,
    /// Protocol of the callouts: `HTTP/1.1` or `HTTP/2`.
    #[serde(default)]
    pub authz_protocol: String,
    /// Worker threads of the Envoy under test (`--concurrency`).
    pub envoy_concurrency: u32,
    pub wrk_threads: u32,
    pub wrk_connections: u32,
    pub round_seconds: u32,
    pub warmup_seconds: u32,
    pub rounds: u32,
    /// Length of the bearer token that every request carries, in bytes.
    pub token_bytes: usize,
}

/// A variant that the load test left out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedVariant {
    pub variant: String,
    pub reason: String,
}

/// One wrk run against one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Round number, from 1.
    pub round: u32,
    pub variant: String,
    /// Requests that wrk completed.
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p75_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    /// Responses with a status outside 200..=399.
    pub non_2xx_3xx: u64,
    /// Connect, read, write and timeout errors added up.
    pub socket_errors: u64,
    /// Requests that the variant's authorization cluster completed during the run; `None` for
    /// the passthrough, which makes no callouts.
    pub callouts: Option<u64>,
    /// CPU time of the Envoy under test, in percent of one CPU.
    #[serde(default)]
    pub cpu_under_test_percent: f64,
    /// CPU time of the stand-in Envoy and the authorization service, in percent of one CPU.
    #[serde(default)]
    pub cpu_helpers_percent: f64,
    #[serde(default)]
    pub cpu_wrk_percent: f64,
    /// Busy time of every other process on the machine, in percent of one CPU.
    #[serde(default)]
    pub cpu_other_percent: f64,
}

/// Busy time of other processes, in percent of one CPU, above which a run counts as disturbed.
pub const DISTURBED_OTHER_CPU_PERCENT: f64 = 10.0;

impl RunResult {
    /// Returns true when a request failed: a status outside 2xx and 3xx, or a socket error.
    pub fn has_failures(&self) -> bool {
        self.non_2xx_3xx > 0 || self.socket_errors > 0
    }

    /// Returns true when other processes used more than [`DISTURBED_OTHER_CPU_PERCENT`] of a
    /// CPU during the run.
    pub fn is_disturbed(&self) -> bool {
        self.cpu_other_percent > DISTURBED_OTHER_CPU_PERCENT
    }

    /// Returns the CPU time the Envoy under test spent per completed request, in microseconds.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| {
            self.cpu_under_test_percent / 100.0 * self.seconds * 1e6 / self.requests as f64
        })
    }
}

/// Reads a JSON result file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid JSON in {}: {e}", path.display()))
}

/// Writes a JSON result file, creating its directory.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| format!("cannot serialize {}: {e}", path.display()))?;
    fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}
