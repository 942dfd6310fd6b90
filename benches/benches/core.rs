//! The core's per-request work, without any host: collecting the headers into `RequestInfo`,
//! reading the bearer token and its `jti`, building the callout headers, and mapping the
//! callout's status to a verdict and its local reply.
//!
//! `core_request/<case>` runs the whole request for each case of [`Case`]; `core_steps/<step>`
//! runs one step at a time on the typical token.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use jwt_revocation_benches::fixtures::{self, Case, FILTER_CONFIG};
use jwt_revocation_core::token::{bearer_token, jti};
use jwt_revocation_core::{
    Action, Breakers, Config, DecisionCache, Env, LocalReply, NoMetrics, RequestInfo, Stream,
    Verdict,
};

/// Request headers as the byte pairs that both targets hand the core.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn headers_of(case: Case) -> Headers {
    fixtures::request_headers(&case.token())
        .into_iter()
        .map(|(name, value)| (name.into_bytes(), value.into_bytes()))
        .collect()
}

/// The end of one request: the verdict, the callout's header count, and the local reply.
struct Outcome {
    verdict: Verdict,
    callout_headers: usize,
    reply: Option<LocalReply>,
}

/// The host side of the core's events: a fixed clock, the worker's breakers and cache (off in
/// [`FILTER_CONFIG`]), no metrics.
struct Host {
    breakers: Breakers,
    cache: DecisionCache,
    metrics: NoMetrics,
}

impl Host {
    fn new(config: &Config) -> Self {
        Self {
            breakers: Breakers::new(config),
            cache: DecisionCache::new(config.cache),
            metrics: NoMetrics,
        }
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            now: Duration::from_secs(1),
            unix_time: Duration::from_secs(1_800_000_000),
            jitter: 0.5,
            breakers: &mut self.breakers,
            cache: &mut self.cache,
            metrics: &mut self.metrics,
        }
    }
}

/// Runs one request through the core, completing a callout with `status`.
fn decide(config: &Config, host: &mut Host, headers: &Headers, status: &[u8]) -> Outcome {
    let info = RequestInfo::from_headers(
        headers
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice())),
    );
    let mut stream = Stream::new();
    let (verdict, callout_headers) = match stream.on_request_headers(config, &info, host.env()) {
        Action::Finish(verdict) => (verdict, 0),
        Action::Dispatch(callout) => {
            let count = black_box(callout.headers()).len();
            match stream.on_callout_response(config, Some(status), host.env()) {
                Action::Finish(verdict) => (verdict, count),
                other => panic!("a 200 response must finish the request, got {other:?}"),
            }
        }
        other => panic!("request headers must dispatch or finish, got {other:?}"),
    };
    let reply = verdict.local_reply();
    Outcome {
        verdict,
        callout_headers,
        reply,
    }
}

/// Checks that `case` ends as the benchmark expects, so a change in the core cannot turn a
/// benchmark into a measurement of another path.
fn check(config: &Config, case: Case) {
    let outcome = decide(config, &mut Host::new(config), &headers_of(case), b"200");
    let status = outcome.reply.as_ref().map(|reply| u32::from(reply.status));
    assert_eq!(status, case.expected_reply_status(), "{case:?}");
    assert_eq!(
        outcome.callout_headers > 0,
        case.makes_callout(),
        "{case:?}"
    );
    if case.makes_callout() {
        assert_eq!(outcome.verdict, Verdict::Allowed, "{case:?}");
    }
}

fn request(c: &mut Criterion) {
    let config = Config::from_json(FILTER_CONFIG.as_bytes()).expect("valid filter configuration");
    let mut host = Host::new(&config);
    let mut group = c.benchmark_group("core_request");
    for case in Case::ALL {
        check(&config, case);
        let headers = headers_of(case);
        group.bench_function(case.name(), |b| {
            b.iter(|| decide(&config, &mut host, black_box(&headers), black_box(b"200")))
        });
    }
    group.finish();
}

fn steps(c: &mut Criterion) {
    let config = Config::from_json(FILTER_CONFIG.as_bytes()).expect("valid filter configuration");
    let headers = headers_of(Case::Typical);
    let authorization = format!("Bearer {}", fixtures::typical_token());
    let token = fixtures::typical_token();
    let info = RequestInfo::from_headers(
        headers
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice())),
    );

    let mut host = Host::new(&config);
    let mut group = c.benchmark_group("core_steps");
    group.bench_function("request_info", |b| {
        b.iter(|| {
            RequestInfo::from_headers(
                black_box(&headers)
                    .iter()
                    .map(|(name, value)| (name.as_slice(), value.as_slice())),
            )
        })
    });
    group.bench_function("bearer_token", |b| {
        b.iter(|| bearer_token(black_box(authorization.as_bytes())).map(str::len))
    });
    group.bench_function("jti", |b| b.iter(|| jti(black_box(&token))));
    group.bench_function("on_request_headers", |b| {
        b.iter(|| {
            let mut stream = Stream::new();
            match stream.on_request_headers(&config, black_box(&info), host.env()) {
                Action::Dispatch(callout) => callout.headers().len(),
                _ => 0,
            }
        })
    });
    group.bench_function("revoked_local_reply", |b| {
        b.iter(|| black_box(&Verdict::Revoked).local_reply())
    });
    group.finish();
}

criterion_group!(benches, request, steps);
criterion_main!(benches);
