//! `RESULTS.md`: every number with the command, machine and date behind it.

use std::fmt::Write as _;

use super::summary::{check_targets, summarize, Spread};
use crate::fixtures::Case;
use crate::load::CACHED_TTL_MS;
use crate::provenance::Provenance;
use crate::results::{LoadResults, MicroResults, DISTURBED_OTHER_CPU_PERCENT};

/// Renders the whole page from the micro-benchmark results and any load tests.
pub fn render(micro: Option<&MicroResults>, loads: &[LoadResults]) -> String {
    let mut page = String::new();
    page.push_str(
        "# Benchmark results\n\n\
         Written by `bench-report` from the JSON files in `benches/results/`. `make bench` in the \
         repository root measures again and rewrites this page and `results.svg`; \
         `benches/README.md` describes the method and its limits.\n\n\
         ![Throughput, latency and per-request cost](results.svg)\n\n",
    );
    match micro {
        Some(micro) => render_micro(&mut page, micro),
        None => page.push_str("## Per-request cost\n\nNo micro-benchmark results yet.\n\n"),
    }
    if loads.is_empty() {
        page.push_str("## End to end\n\nNo load test results yet.\n");
    }
    for load in loads {
        render_load(&mut page, load);
    }
    page
}

fn render_provenance(page: &mut String, provenance: &Provenance) {
    let _ = writeln!(
        page,
        "Measured {} by {} on {}.",
        provenance.date,
        provenance.command_line(),
        provenance.machine.describe()
    );
    let tools: Vec<String> = provenance
        .tools
        .iter()
        .map(|(tool, version)| format!("{tool}: `{version}`"))
        .collect();
    if !tools.is_empty() {
        let _ = writeln!(page, "Tools: {}.", tools.join("; "));
    }
    page.push('\n');
}

/// Formats nanoseconds as `938 ns` or `1.17 µs`.
pub fn format_ns(ns: f64) -> String {
    if ns < 1000.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{:.2} µs", ns / 1000.0)
    }
}

fn case_label(case: Case) -> String {
    let bytes = case.token().len();
    match case {
        Case::Typical => format!("typical token ({bytes} B), allowed"),
        Case::Large => format!("large token ({bytes} B), allowed"),
        Case::Malformed => format!("token without `jti` ({bytes} B), 401"),
    }
}

fn render_micro(page: &mut String, micro: &MicroResults) {
    page.push_str("## Per-request cost\n\n");
    render_provenance(page, &micro.provenance);
    page.push_str(
        "Criterion's mean time per request, with the 95% confidence interval of the mean. \
         *core*: the decision crate alone. *native*: the release `libjwt_revocation.so` loaded \
         with `dlopen` and driven through its exported hooks against a mock Envoy. *wasm*: the \
         release `jwt_revocation.wasm` in wasmtime (Cranelift) against a mock proxy-wasm host. \
         The native and wasm paths include the host calls and the callout's 200 response; the mock \
         hosts do little besides copying, so real Envoy host calls cost more.\n\n",
    );
    page.push_str("| Request | core | native | wasm | wasm / native |\n|---|---|---|---|---|\n");
    let cell = |group: &str, case: Case| {
        micro
            .find(group, case.name())
            .map_or("not measured".to_owned(), |e| {
                format!(
                    "{} [{}, {}]",
                    format_ns(e.mean_ns),
                    format_ns(e.mean_low_ns),
                    format_ns(e.mean_high_ns)
                )
            })
    };
    for case in Case::ALL {
        let ratio = match (
            micro.find("wasm_request", case.name()),
            micro.find("native_request", case.name()),
        ) {
            (Some(wasm), Some(native)) => format!("{:.2}", wasm.mean_ns / native.mean_ns),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} | {} |",
            case_label(case),
            cell("core_request", case),
            cell("native_request", case),
            cell("wasm_request", case),
            ratio
        );
    }

    // In the order the core runs them.
    let order = [
        "request_info",
        "bearer_token",
        "jti",
        "on_request_headers",
        "revoked_local_reply",
    ];
    let mut steps: Vec<_> = micro
        .estimates
        .iter()
        .filter(|e| e.group == "core_steps")
        .collect();
    steps.sort_by_key(|e| {
        order
            .iter()
            .position(|id| *id == e.id)
            .unwrap_or(order.len())
    });
    if !steps.is_empty() {
        page.push_str("\nSteps of the core on the typical token:\n\n| Step | mean |\n|---|---|\n");
        for step in steps {
            let _ = writeln!(page, "| `{}` | {} |", step.id, format_ns(step.mean_ns));
        }
    }
    page.push('\n');
}

fn format_spread(spread: &Spread, digits: usize) -> String {
    format!(
        "{:.digits$} ({:.digits$} to {:.digits$})",
        spread.median, spread.min, spread.max
    )
}

fn render_load(page: &mut String, load: &LoadResults) {
    let settings = &load.settings;
    let _ = writeln!(page, "## End to end, authorization by {}\n", settings.authz);
    render_provenance(page, &load.provenance);
    let _ = writeln!(
        page,
        "One Envoy with `--concurrency {}` and one listener per variant, all routed to the same \
         upstream. Callouts: {}. wrk with {} thread(s) and {} connections, {} s per variant and \
         round after a {} s warm-up, {} rounds in the order {}; every request carries a {}-byte \
         bearer token. Medians over the rounds, with the range in brackets; ratios are taken \
         within each round, then their median.\n",
        settings.envoy_concurrency,
        settings.authz_description,
        settings.wrk_threads,
        settings.wrk_connections,
        settings.round_seconds,
        settings.warmup_seconds,
        settings.rounds,
        load.variants.join(", "),
        settings.token_bytes
    );
    if load.variants.iter().any(|v| v.ends_with("_cached")) {
        let _ = writeln!(
            page,
            "The `_cached` variants add `\"cache\": {{\"ttl\": {CACHED_TTL_MS}}}` to the filter \
             configuration: a decision is reused for the same token for {CACHED_TTL_MS} ms, so a \
             revocation can take that long to apply. The load repeats one token, so nearly every \
             request is a cache hit and these rows show the cache's ceiling; with real traffic \
             the share of requests that skip the callout is the share whose token got a decision \
             less than {CACHED_TTL_MS} ms before. The other jwt-revocation variants send one \
             callout per request.\n"
        );
    }

    let summaries = summarize(load);
    page.push_str(
        "| Variant | req/s | p50 (µs) | p99 (µs) | vs passthrough | vs ext_authz | Envoy CPU per \
         request (µs) | callouts per request | failed requests |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for summary in &summaries {
        let ratio = |spread: &Option<Spread>| {
            spread
                .as_ref()
                .map_or("n/a".to_owned(), |s| format_spread(s, 2))
        };
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            summary.variant,
            format_spread(&summary.requests_per_second, 0),
            format_spread(&summary.p50_us, 0),
            format_spread(&summary.p99_us, 0),
            ratio(&summary.vs_passthrough),
            ratio(&summary.vs_ext_authz),
            summary
                .cpu_us_per_request
                .as_ref()
                .map_or("n/a".to_owned(), |s| format_spread(s, 1)),
            summary
                .callouts_per_request
                .map_or("none".to_owned(), |c| format!("{c:.3}")),
            summary.failed_requests
        );
    }
    for skipped in &load.skipped {
        let _ = writeln!(
            page,
            "\nNot measured: {}, because {}.",
            skipped.variant, skipped.reason
        );
    }

    let flagged: Vec<String> = load
        .runs
        .iter()
        .filter(|run| run.has_failures())
        .map(|run| format!("round {} {}", run.round, run.variant))
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(
            page,
            "\n**FLAGGED: requests failed in {}; the numbers above are not valid.**",
            flagged.join(", ")
        );
    }
    let disturbed: Vec<String> = load
        .runs
        .iter()
        .filter(|run| run.is_disturbed())
        .map(|run| format!("round {} {}", run.round, run.variant))
        .collect();
    if !disturbed.is_empty() {
        let _ = writeln!(
            page,
            "\n**Disturbed: other processes used more than {DISTURBED_OTHER_CPU_PERCENT:.0}% of a \
             CPU in {}; compare those rounds with care.**",
            disturbed.join(", ")
        );
    }

    page.push_str("\nProject targets, checked against the medians above:\n\n");
    for check in check_targets(&summaries) {
        let verdict = match check.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not checked",
        };
        let _ = writeln!(page, "- {}: **{verdict}**, {}.", check.target, check.detail);
    }

    page.push_str(
        "\nEvery round, with CPU use in percent of one CPU: of the Envoy under test, of the \
         helpers (stand-in Envoy, authorization service), of wrk, and of every other process:\n\n\
         | Round | Variant | requests | req/s | p50 (µs) | p75 (µs) | p90 (µs) | p99 (µs) | \
         non-2xx/3xx | socket errors | callouts | CPU under test | CPU helpers | CPU wrk | CPU \
         other |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in &load.runs {
        let _ = writeln!(
            page,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.0} | {:.0} \
             | {:.0} | {:.0} |",
            run.round,
            run.variant,
            run.requests,
            run.requests_per_second,
            run.p50_us,
            run.p75_us,
            run.p90_us,
            run.p99_us,
            run.non_2xx_3xx,
            run.socket_errors,
            run.callouts.map_or("none".to_owned(), |c| c.to_string()),
            run.cpu_under_test_percent,
            run.cpu_helpers_percent,
            run.cpu_wrk_percent,
            run.cpu_other_percent
        );
    }
    page.push('\n');
}
