//! Per-variant summaries of a load test and the check of the project's throughput targets.

use crate::results::LoadResults;

/// Median, minimum and maximum of one quantity over the rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Returns the spread of `values`, or `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 0 {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// One variant of a load test over all its rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantSummary {
    pub variant: String,
    pub rounds: usize,
    pub requests_per_second: Spread,
    pub p50_us: Spread,
    pub p99_us: Spread,
    /// Per-round throughput divided by the passthrough's in the same round.
    pub vs_passthrough: Option<Spread>,
    /// Per-round throughput divided by ext_authz's in the same round.
    pub vs_ext_authz: Option<Spread>,
    /// Callouts counted by the variant's authorization cluster per request wrk completed.
    pub callouts_per_request: Option<f64>,
    /// Non-2xx/3xx responses plus socket errors over all rounds.
    pub failed_requests: u64,
    /// CPU time of the Envoy under test per request, in microseconds.
    pub cpu_us_per_request: Option<Spread>,
    /// Rounds in which other processes took more than a small share of the CPU.
    pub disturbed_rounds: usize,
}

/// Summarizes every measured variant of `load`, in measurement order.
pub fn summarize(load: &LoadResults) -> Vec<VariantSummary> {
    let throughput = |variant: &str, round: u32| {
        load.runs
            .iter()
            .find(|run| run.variant == variant && run.round == round)
            .map(|run| run.requests_per_second)
    };
    load.variants
        .iter()
        .filter_map(|variant| {
            let runs: Vec<_> = load.runs.iter().filter(|r| &r.variant == variant).collect();
            let ratio_to = |baseline: &str| {
                let ratios: Vec<f64> = runs
                    .iter()
                    .filter_map(|run| {
                        Some(run.requests_per_second / throughput(baseline, run.round)?)
                    })
                    .collect();
                Spread::of(&ratios)
            };
            let requests: u64 = runs.iter().map(|r| r.requests).sum();
            let callouts: Option<u64> = runs.iter().map(|r| r.callouts).sum();
            Some(VariantSummary {
                variant: variant.clone(),
                rounds: runs.len(),
                requests_per_second: Spread::of(
                    &runs
                        .iter()
                        .map(|r| r.requests_per_second)
                        .collect::<Vec<_>>(),
                )?,
                p50_us: Spread::of(&runs.iter().map(|r| r.p50_us).collect::<Vec<_>>())?,
                p99_us: Spread::of(&runs.iter().map(|r| r.p99_us).collect::<Vec<_>>())?,
                vs_passthrough: ratio_to("passthrough"),
                vs_ext_authz: ratio_to("ext_authz"),
                callouts_per_request: callouts
                    .filter(|_| requests > 0)
                    .map(|c| c as f64 / requests as f64),
                failed_requests: runs.iter().map(|r| r.non_2xx_3xx + r.socket_errors).sum(),
                cpu_us_per_request: Spread::of(
                    &runs
                        .iter()
                        .filter_map(|r| r.cpu_us_per_request())
                        .collect::<Vec<_>>(),
                ),
                disturbed_rounds: runs.iter().filter(|r| r.is_disturbed()).count(),
            })
        })
        .collect()
}

/// One of the project's throughput targets: a jwt-revocation variant's minimum throughput
/// relative to ext_authz, and whether its p99 must be no worse than ext_authz's.
struct Target {
    variant: &'static str,
    text: &'static str,
    min_ratio: f64,
    p99_no_worse: bool,
}

const TARGETS: [Target; 4] = [
    Target {
        variant: "dynamic_module",
        text: "dynamic module: at least 1.2x ext_authz throughput, p99 no worse",
        min_ratio: 1.2,
        p99_no_worse: true,
    },
    Target {
        variant: "wasm",
        text: "proxy-wasm build: at least 1.0x ext_authz throughput",
        min_ratio: 1.0,
        p99_no_worse: false,
    },
    Target {
        variant: "dynamic_module_cached",
        text: "dynamic module with the decision cache: at least 1.2x ext_authz throughput, p99 \
               no worse",
        min_ratio: 1.2,
        p99_no_worse: true,
    },
    Target {
        variant: "wasm_cached",
        text: "proxy-wasm build with the decision cache: at least 1.0x ext_authz throughput",
        min_ratio: 1.0,
        p99_no_worse: false,
    },
];

/// One of the project's throughput targets and whether a load test met it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCheck {
    pub target: &'static str,
    /// `None` when the load test lacks a variant the target needs.
    pub met: Option<bool>,
    pub detail: String,
}

/// Checks the targets against the medians of the per-round ratios: each dynamic-module variant
/// at least 1.2 times ext_authz's throughput with a median p99 no higher, and each wasm variant
/// at least 1.0 times ext_authz's throughput.
pub fn check_targets(summaries: &[VariantSummary]) -> Vec<TargetCheck> {
    let find = |name: &str| summaries.iter().find(|s| s.variant == name);
    let ext_authz = find("ext_authz");
    TARGETS
        .iter()
        .map(|target| {
            let (Some(variant), Some(ext_authz)) = (find(target.variant), ext_authz) else {
                return not_measured(
                    target.text,
                    &format!("{} or ext_authz was not measured", target.variant),
                );
            };
            let Some(ratio) = variant.vs_ext_authz else {
                return not_measured(target.text, "no ext_authz round to compare with");
            };
            let mut detail = format!(
                "{:.2}x ext_authz (rounds {:.2} to {:.2})",
                ratio.median, ratio.min, ratio.max
            );
            let p99_ok = variant.p99_us.median <= ext_authz.p99_us.median;
            if target.p99_no_worse {
                detail.push_str(&format!(
                    "; p99 {:.0} us vs {:.0} us",
                    variant.p99_us.median, ext_authz.p99_us.median
                ));
            }
            TargetCheck {
                target: target.text,
                met: Some(ratio.median >= target.min_ratio && (p99_ok || !target.p99_no_worse)),
                detail,
            }
        })
        .collect()
}

fn not_measured(target: &'static str, reason: &str) -> TargetCheck {
    TargetCheck {
        target,
        met: None,
        detail: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_odd_count() {
        let spread = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(spread.median, 2.0);
        assert_eq!(spread.min, 1.0);
        assert_eq!(spread.max, 3.0);
    }

    #[test]
    fn spread_even_count() {
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
    }

    #[test]
    fn spread_empty() {
        assert_eq!(Spread::of(&[]), None);
    }
}
