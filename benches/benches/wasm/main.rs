//! The per-request path of the proxy-wasm build, run by wasmtime with Cranelift against a mock
//! proxy-wasm host, on the `jwt_revocation.wasm` that `make wasm` builds.
//!
//! `wasm_request/<case>` runs context creation, `proxy_on_request_headers`,
//! `proxy_on_http_call_response` with a 200 (when the module dispatched a callout),
//! `proxy_on_done`, `proxy_on_log` and `proxy_on_delete`.
//!
//! The module is `JWT_REVOCATION_WASM`, else `target/wasm32-wasip1/release/jwt_revocation.wasm`
//! in the repository. Without it the benchmark prints why and measures nothing.

mod host;

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use host::{WasmFilter, ACTION_PAUSE};
use jwt_revocation_benches::fixtures::{self, Case, FILTER_CONFIG};
use jwt_revocation_benches::repository_root;

fn wasm_path() -> PathBuf {
    std::env::var_os("JWT_REVOCATION_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repository_root().join("target/wasm32-wasip1/release/jwt_revocation.wasm")
        })
}

/// Checks that `case` takes the path the benchmark is meant to measure.
fn check(filter: &mut WasmFilter, case: Case) {
    filter.set_request_headers(fixtures::request_headers(&case.token()));
    let outcome = filter
        .run_request()
        .expect("the request runs without a trap");
    let calls = outcome.calls;
    assert_eq!(outcome.request_headers_action, ACTION_PAUSE, "{case:?}");
    assert_eq!(
        calls.http_calls,
        u64::from(case.makes_callout()),
        "{case:?}"
    );
    assert_eq!(calls.continues, u64::from(case.makes_callout()), "{case:?}");
    let reply = (calls.local_replies > 0).then_some(calls.last_reply_status);
    assert_eq!(reply, case.expected_reply_status(), "{case:?}");
    assert_eq!(
        calls.stub_calls,
        0,
        "{case:?} called {:?}",
        filter.stubs_called()
    );
}

fn request(c: &mut Criterion) {
    let path = wasm_path();
    if !path.is_file() {
        eprintln!(
            "wasm: {} does not exist; run `make wasm` first. Nothing measured.",
            path.display()
        );
        return;
    }
    let mut filter = match WasmFilter::load(&path, FILTER_CONFIG) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!(
                "wasm: cannot run {}: {error:#}. Nothing measured.",
                path.display()
            );
            return;
        }
    };
    let stubbed: Vec<String> = filter
        .imports()
        .iter()
        .filter(|import| !import.implemented)
        .map(|import| format!("{}::{}", import.module, import.name))
        .collect();
    eprintln!(
        "wasm: {} imports {} functions; stubbed with zeros: {}",
        path.display(),
        filter.imports().len(),
        if stubbed.is_empty() {
            "none".to_owned()
        } else {
            stubbed.join(", ")
        }
    );

    let mut group = c.benchmark_group("wasm_request");
    for case in Case::ALL {
        check(&mut filter, case);
        group.bench_function(case.name(), |b| {
            b.iter(|| {
                filter
                    .run_request()
                    .expect("the request runs without a trap")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, request);
criterion_main!(benches);
