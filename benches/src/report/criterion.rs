//! Reading criterion's estimates from its output directory.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;

use crate::results::MicroEstimate;

#[derive(Deserialize)]
struct Benchmark {
    group_id: String,
    function_id: Option<String>,
}

#[derive(Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Deserialize)]
struct Estimate {
    confidence_interval: Interval,
    point_estimate: f64,
}

#[derive(Deserialize)]
struct Estimates {
    mean: Estimate,
    median: Estimate,
}

/// Returns the estimates under `criterion_dir` (`<group>/<id>/new/`) written at or after
/// `since`, sorted by group and id. Older ones belong to earlier runs and are left out.
pub fn collect(criterion_dir: &Path, since: SystemTime) -> Result<Vec<MicroEstimate>, String> {
    let mut estimates = Vec::new();
    let groups = fs::read_dir(criterion_dir)
        .map_err(|e| format!("cannot read {}: {e}", criterion_dir.display()))?;
    for group in groups.flatten() {
        let Ok(benchmarks) = fs::read_dir(group.path()) else {
            continue;
        };
        for benchmark in benchmarks.flatten() {
            let dir = benchmark.path().join("new");
            let estimates_path = dir.join("estimates.json");
            let modified = fs::metadata(&estimates_path).and_then(|m| m.modified());
            if !modified.is_ok_and(|time| time >= since) {
                continue;
            }
            let info: Benchmark = read(&dir.join("benchmark.json"))?;
            let values: Estimates = read(&estimates_path)?;
            estimates.push(MicroEstimate {
                group: info.group_id,
                id: info.function_id.unwrap_or_default(),
                mean_ns: values.mean.point_estimate,
                mean_low_ns: values.mean.confidence_interval.lower_bound,
                mean_high_ns: values.mean.confidence_interval.upper_bound,
                median_ns: values.median.point_estimate,
            });
        }
    }
    estimates.sort_by(|a, b| (&a.group, &a.id).cmp(&(&b.group, &b.id)));
    Ok(estimates)
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid JSON in {}: {e}", path.display()))
}
