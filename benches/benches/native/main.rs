//! The per-request path of the dynamic module against a mock Envoy, on the
//! `libjwt_revocation.so` that `make module` builds.
//!
//! `native_request/<case>` runs filter creation, the request-headers hook, the callout-done hook
//! with a 200 (when the module started a callout), stream completion and filter destruction.
//!
//! The module is `JWT_REVOCATION_MODULE`, else `target/release/libjwt_revocation.so` in the
//! repository. Without it the benchmark prints why and measures nothing.

mod host;

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use host::{MockStream, NativeFilter, STOP_ITERATION};
use jwt_revocation_benches::fixtures::{self, Case, FILTER_CONFIG};
use jwt_revocation_benches::repository_root;

fn module_path() -> PathBuf {
    std::env::var_os("JWT_REVOCATION_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target/release/libjwt_revocation.so"))
}

/// Checks that `case` takes the path the benchmark is meant to measure.
fn check(filter: &mut NativeFilter, case: Case) {
    let mut stream = MockStream::new(&fixtures::request_headers(&case.token()));
    let outcome = filter.run_request(&mut stream);
    let calls = outcome.calls;
    assert_eq!(outcome.request_headers_status, STOP_ITERATION, "{case:?}");
    assert_eq!(calls.callouts, u64::from(case.makes_callout()), "{case:?}");
    assert_eq!(calls.continues, u64::from(case.makes_callout()), "{case:?}");
    let reply = (calls.replies > 0).then_some(calls.last_reply_status);
    assert_eq!(reply, case.expected_reply_status(), "{case:?}");
    assert_eq!(host::scheduled_events(), 0, "{case:?}");
}

fn request(c: &mut Criterion) {
    let path = module_path();
    if !path.is_file() {
        eprintln!(
            "native: {} does not exist; run `make module` first. Nothing measured.",
            path.display()
        );
        return;
    }
    let mut filter = match NativeFilter::load(&path, FILTER_CONFIG) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("native: {error}. Nothing measured.");
            return;
        }
    };
    eprintln!(
        "native: {} (ABI {}), {} log lines at load",
        path.display(),
        filter.abi_version(),
        host::log_lines()
    );

    let mut group = c.benchmark_group("native_request");
    for case in Case::ALL {
        check(&mut filter, case);
        let mut stream = MockStream::new(&fixtures::request_headers(&case.token()));
        group.bench_function(case.name(), |b| {
            b.iter(|| filter.run_request(black_box(&mut stream)))
        });
    }
    group.finish();
}

criterion_group!(benches, request);
criterion_main!(benches);
