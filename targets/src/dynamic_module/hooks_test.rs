//! Tests of the exported hooks against the mock Envoy in `mock_host.rs`.

use std::ffi::CStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use jwt_revocation_core::metrics::CALLOUT_LATENCY;
use jwt_revocation_core::{Counter, FAILURE_MODE_HEADER};

use super::abi::{
    CalloutInitResult, CalloutResult, EnvoyBuffer, EnvoyHttpHeader, FilterConfigModulePtr,
    FilterEnvoyPtr, FilterModulePtr, LogLevel, MetricsResult, RequestBodyStatus,
    RequestHeadersStatus, RequestTrailersStatus,
};
use super::clock::fix_jitter;
use super::config::RouteConfig;
use super::filter::TEST_PANIC_HEADER;
use super::hooks::*;
use super::mock_host::{
    fake_filter_envoy_ptr, with_host, MockScheduler, SentCallout, SentResponse,
};

/// A JWS whose payload is `{"jti":"id-1","sub":"alice"}`. The filter does not check the signature.
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJpZC0xIiwic3ViIjoiYWxpY2UifQ.c2ln";
const CLUSTER: &str = "outbound|9001||authz.jwt-revocation.local";
const CONFIG: &str = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "timeout": 250}"#;

fn envoy_buffer(text: &str) -> EnvoyBuffer {
    EnvoyBuffer {
        ptr: text.as_ptr(),
        length: text.len(),
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// One stream of a filter created through the configuration and stream hooks.
struct TestStream {
    /// The configuration, which this stream destroys when it owns it.
    config: FilterConfigModulePtr,
    owns_config: bool,
    filter: FilterModulePtr,
    envoy: FilterEnvoyPtr,
}

impl TestStream {
    fn new(config_json: &str) -> Self {
        let config = envoy_dynamic_module_on_http_filter_config_new(
            std::ptr::null_mut(),
            envoy_buffer("jwt_revocation"),
            envoy_buffer(config_json),
        );
        assert!(!config.is_null(), "config rejected: {config_json}");
        Self::with_config(config, true)
    }

    fn with_config(config: FilterConfigModulePtr, owns_config: bool) -> Self {
        let envoy = fake_filter_envoy_ptr();
        let filter = envoy_dynamic_module_on_http_filter_new(config, envoy);
        assert!(!filter.is_null());
        Self {
            config,
            owns_config,
            filter,
            envoy,
        }
    }

    /// Creates another stream of the same configuration, which must be dropped first.
    fn sibling(&self) -> Self {
        Self::with_config(self.config, false)
    }

    fn request_headers(&self, headers: &[(&str, &str)]) -> RequestHeadersStatus {
        with_host(|host| {
            host.request_headers = headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            host.filter_module_ptr = self.filter;
        });
        envoy_dynamic_module_on_http_filter_request_headers(self.envoy, self.filter, false)
    }

    fn callout_done(&self, result: CalloutResult, headers: &[(&str, &str)]) {
        let mut headers: Vec<EnvoyHttpHeader> = headers
            .iter()
            .map(|(key, value)| EnvoyHttpHeader {
                key_ptr: key.as_ptr(),
                key_length: key.len(),
                value_ptr: value.as_ptr(),
                value_length: value.len(),
            })
            .collect();
        with_host(|host| host.filter_module_ptr = self.filter);
        envoy_dynamic_module_on_http_filter_http_callout_done(
            self.envoy,
            self.filter,
            1,
            result,
            headers.as_mut_ptr(),
            headers.len(),
            std::ptr::null_mut(),
            0,
        );
    }

    fn scheduled(&self, event_id: u64) {
        with_host(|host| host.filter_module_ptr = self.filter);
        envoy_dynamic_module_on_http_filter_scheduled(self.envoy, self.filter, event_id);
    }

    fn request_body(&self) -> RequestBodyStatus {
        envoy_dynamic_module_on_http_filter_request_body(self.envoy, self.filter, true)
    }

    fn request_trailers(&self) -> RequestTrailersStatus {
        envoy_dynamic_module_on_http_filter_request_trailers(self.envoy, self.filter)
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        envoy_dynamic_module_on_http_filter_stream_complete(self.envoy, self.filter);
        envoy_dynamic_module_on_http_filter_destroy(self.filter);
        if self.owns_config {
            envoy_dynamic_module_on_http_filter_config_destroy(self.config);
        }
    }
}

fn responses() -> Vec<SentResponse> {
    with_host(|host| host.responses.clone())
}

fn callouts() -> Vec<SentCallout> {
    with_host(|host| host.callouts.clone())
}

fn continue_decoding_calls() -> usize {
    with_host(|host| host.continue_decoding_calls)
}

fn logs_at(level: LogLevel) -> Vec<String> {
    with_host(|host| {
        host.logs
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, line)| line.clone())
            .collect()
    })
}

fn counter(name: &str) -> u64 {
    with_host(|host| host.counter(name))
}

fn scheduler(index: usize) -> Arc<MockScheduler> {
    with_host(|host| Arc::clone(&host.schedulers[index]))
}

/// Waits up to two seconds for the timer thread to commit `count` events to `scheduler`.
fn wait_for_commits(scheduler: &MockScheduler, count: usize) -> Vec<u64> {
    let give_up = Instant::now() + Duration::from_secs(2);
    while scheduler.commits.lock().unwrap().len() < count && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(1));
    }
    scheduler.commits.lock().unwrap().clone()
}

fn header<'r>(response: &'r SentResponse, name: &str) -> Option<&'r str> {
    response
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn program_init_returns_abi_version() {
    let version = envoy_dynamic_module_on_program_init();
    assert!(!version.is_null());
    // SAFETY: the hook returns a pointer to a static C string.
    let version = unsafe { CStr::from_ptr(version) };
    assert_eq!(version.to_str(), Ok("v0.2.0"));
}

#[test]
fn config_invalid_json_rejected() {
    let config = envoy_dynamic_module_on_http_filter_config_new(
        std::ptr::null_mut(),
        envoy_buffer("jwt_revocation"),
        envoy_buffer(r#"{"timeout": 5}"#),
    );
    assert!(config.is_null());
    let errors = logs_at(LogLevel::ERROR);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("missing key \"cluster\""), "{errors:?}");
}

#[test]
fn valid_token_sends_callout_and_waits() {
    let stream = TestStream::new(CONFIG);
    let auth = bearer();
    let status = stream.request_headers(&[(":method", "GET"), ("authorization", &auth)]);
    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);

    let callouts = callouts();
    assert_eq!(callouts.len(), 1);
    assert_eq!(callouts[0].cluster, CLUSTER);
    assert_eq!(callouts[0].timeout_ms, 250);
    assert!(callouts[0].body.is_empty());
    let expected: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", "/authorize"),
        (":authority", "authz.jwt-revocation.local"),
        ("authorization", auth.as_str()),
        ("content-length", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(callouts[0].headers, expected);
    assert!(responses().is_empty());
}

#[test]
fn status_200_continues_request() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "200")]);
    assert_eq!(continue_decoding_calls(), 1);
    assert!(responses().is_empty());
}

#[test]
fn status_403_sends_revoked_reply() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "403")]);

    assert_eq!(continue_decoding_calls(), 0);
    let responses = responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 403);
    assert_eq!(responses[0].details, "jwt_revocation_revoked");
    assert_eq!(
        header(&responses[0], "content-type"),
        Some("application/json")
    );
    let challenge = header(&responses[0], "www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
}

#[test]
fn status_401_sends_unauthorized_reply() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "401")]);
    assert_eq!(responses()[0].status, 401);
}

#[test]
fn status_500_fails_closed_with_warning() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "500")]);

    assert_eq!(responses()[0].status, 503);
    assert_eq!(continue_decoding_calls(), 0);
    let warnings = logs_at(LogLevel::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("status 500"), "{warnings:?}");
    assert!(warnings[0].contains(CLUSTER), "{warnings:?}");
}

#[test]
fn callout_reset_fails_closed() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::RESET, &[]);
    assert_eq!(responses()[0].status, 503);
    let warnings = logs_at(LogLevel::WARN);
    assert!(
        warnings[0].contains("the callout stream was reset"),
        "{warnings:?}"
    );
}

#[test]
fn missing_token_rejected_without_callout() {
    let stream = TestStream::new(CONFIG);
    let status = stream.request_headers(&[(":method", "GET")]);
    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);
    assert!(callouts().is_empty());
    let responses = responses();
    assert_eq!(responses[0].status, 401);
    assert_eq!(header(&responses[0], "www-authenticate"), Some("Bearer"));
}

#[test]
fn repeated_authorization_rejected() {
    let stream = TestStream::new(CONFIG);
    let auth = bearer();
    stream.request_headers(&[("authorization", &auth), ("Authorization", &auth)]);
    assert!(callouts().is_empty());
    assert_eq!(responses()[0].status, 400);
}

#[test]
fn cors_preflight_passes() {
    let stream = TestStream::new(CONFIG);
    let status = stream.request_headers(&[
        (":method", "OPTIONS"),
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ]);
    assert_eq!(status, RequestHeadersStatus::CONTINUE);
    assert!(callouts().is_empty());
    assert!(responses().is_empty());
}

#[test]
fn body_held_until_decision() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[(":method", "POST"), ("authorization", &bearer())]);
    assert_eq!(
        stream.request_body(),
        RequestBodyStatus::STOP_ITERATION_AND_WATERMARK
    );
    assert_eq!(
        stream.request_trailers(),
        RequestTrailersStatus::STOP_ITERATION
    );

    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "200")]);
    assert_eq!(stream.request_body(), RequestBodyStatus::CONTINUE);
    assert_eq!(stream.request_trailers(), RequestTrailersStatus::CONTINUE);
}

#[test]
fn body_dropped_after_denial() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[(":method", "POST"), ("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "403")]);
    assert_eq!(
        stream.request_body(),
        RequestBodyStatus::STOP_ITERATION_NO_BUFFER
    );
}

#[test]
fn inline_response_503_replies_from_headers_hook() {
    let stream = TestStream::new(CONFIG);
    with_host(|host| {
        host.inline_response = Some((
            CalloutResult::SUCCESS,
            vec![(":status".to_owned(), "503".to_owned())],
        ));
        host.callout_init_result = CalloutInitResult::CANNOT_CREATE_REQUEST;
    });
    let status = stream.request_headers(&[("authorization", &bearer())]);

    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);
    let responses = responses();
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].status, 503);
    assert_eq!(continue_decoding_calls(), 0);
}

#[test]
fn inline_response_200_continues_from_headers_hook() {
    let stream = TestStream::new(CONFIG);
    with_host(|host| {
        host.inline_response = Some((
            CalloutResult::SUCCESS,
            vec![(":status".to_owned(), "200".to_owned())],
        ));
    });
    let status = stream.request_headers(&[("authorization", &bearer())]);

    assert_eq!(status, RequestHeadersStatus::CONTINUE);
    assert!(responses().is_empty());
    assert_eq!(continue_decoding_calls(), 0);
}

#[test]
fn cluster_not_found_fails_closed() {
    let stream = TestStream::new(CONFIG);
    with_host(|host| host.callout_init_result = CalloutInitResult::CLUSTER_NOT_FOUND);
    let status = stream.request_headers(&[("authorization", &bearer())]);

    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);
    assert_eq!(responses()[0].status, 503);
    let warnings = logs_at(LogLevel::WARN);
    assert!(
        warnings[0].contains("the cluster does not exist"),
        "{warnings:?}"
    );
}

#[test]
fn late_callout_after_decision_ignored() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "200")]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "403")]);
    assert_eq!(continue_decoding_calls(), 1);
    assert!(responses().is_empty());
}

#[test]
fn panic_in_request_headers_fails_closed() {
    let stream = TestStream::new(CONFIG);
    let status = stream.request_headers(&[("authorization", &bearer()), (TEST_PANIC_HEADER, "1")]);

    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);
    let responses = responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 503);
    assert_eq!(responses[0].details, "jwt_revocation_filter_failed");
    assert!(callouts().is_empty());
    assert_eq!(
        stream.request_body(),
        RequestBodyStatus::STOP_ITERATION_NO_BUFFER
    );
    assert_eq!(
        stream.request_trailers(),
        RequestTrailersStatus::STOP_ITERATION
    );
    let errors = logs_at(LogLevel::ERROR);
    assert!(
        errors[0].contains("caught a panic in on_http_filter_request_headers"),
        "{errors:?}"
    );
}

#[test]
fn panic_in_callout_done_fails_closed() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(
        CalloutResult::SUCCESS,
        &[(":status", "200"), (TEST_PANIC_HEADER, "1")],
    );

    assert_eq!(continue_decoding_calls(), 0);
    let responses = responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 503);
}

#[test]
fn panic_in_inline_callout_done_replies_once() {
    let stream = TestStream::new(CONFIG);
    with_host(|host| {
        host.inline_response = Some((
            CalloutResult::SUCCESS,
            vec![
                (":status".to_owned(), "200".to_owned()),
                (TEST_PANIC_HEADER.to_owned(), "1".to_owned()),
            ],
        ));
    });
    let status = stream.request_headers(&[("authorization", &bearer())]);

    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);
    let responses = responses();
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].status, 503);
    assert_eq!(continue_decoding_calls(), 0);
}

#[test]
fn stream_without_state_fails_closed() {
    let envoy = fake_filter_envoy_ptr();
    let status = envoy_dynamic_module_on_http_filter_request_headers(envoy, std::ptr::null(), true);
    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);
    assert_eq!(responses()[0].status, 503);
}

#[test]
fn route_disabled_skips_check() {
    let stream = TestStream::new(CONFIG);
    let route = Box::into_raw(Box::new(RouteConfig::Disabled));
    with_host(|host| host.route_config = route.cast_const().cast());
    let status = stream.request_headers(&[(":method", "GET")]);

    assert_eq!(status, RequestHeadersStatus::CONTINUE);
    assert!(callouts().is_empty());
    assert!(responses().is_empty());
    envoy_dynamic_module_on_http_filter_per_route_config_destroy(route.cast_const().cast());
}

#[test]
fn route_override_changes_cluster() {
    let stream = TestStream::new(CONFIG);
    let route = envoy_dynamic_module_on_http_filter_per_route_config_new(
        envoy_buffer("jwt_revocation"),
        envoy_buffer(r#"{"cluster": "outbound|8080||other.ns.svc", "timeout": 75}"#),
    );
    assert!(!route.is_null());
    with_host(|host| host.route_config = route);
    stream.request_headers(&[("authorization", &bearer())]);

    let callouts = callouts();
    assert_eq!(callouts[0].cluster, "outbound|8080||other.ns.svc");
    assert_eq!(callouts[0].timeout_ms, 75);
    envoy_dynamic_module_on_http_filter_per_route_config_destroy(route);
}

#[test]
fn route_invalid_config_rejected() {
    let route = envoy_dynamic_module_on_http_filter_per_route_config_new(
        envoy_buffer("jwt_revocation"),
        envoy_buffer(r#"{"disabled": 1}"#),
    );
    assert!(route.is_null());
    assert_eq!(logs_at(LogLevel::ERROR).len(), 1);
}

#[test]
fn logs_name_jti_never_token() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "403")]);

    let debug = logs_at(LogLevel::DEBUG);
    assert!(
        debug
            .iter()
            .any(|line| line.contains("jti=\"id-1\" verdict=revoked")),
        "{debug:?}"
    );
    let all_logs = with_host(|host| host.logs.clone());
    for (_, line) in &all_logs {
        assert!(!line.contains(TOKEN), "token in log line: {line}");
        assert!(
            !line.contains("eyJqdGkiOiJpZC0xIiwic3ViIjoiYWxpY2UifQ"),
            "{line}"
        );
    }
}

#[test]
fn debug_lines_skipped_when_disabled() {
    with_host(|host| host.log_level = LogLevel::INFO.0);
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "200")]);
    assert!(logs_at(LogLevel::DEBUG).is_empty());
}

#[test]
fn warnings_limited_per_second() {
    for _ in 0..3 {
        let stream = TestStream::new(CONFIG);
        stream.request_headers(&[("authorization", &bearer())]);
        stream.callout_done(CalloutResult::SUCCESS, &[(":status", "504")]);
    }
    let statuses: Vec<u32> = responses().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 503]);
    let warnings = logs_at(LogLevel::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("timed out"), "{warnings:?}");
}

/// 20 ms before the first retry once the jitter is fixed at 1.
const RETRY_CONFIG: &str = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local",
    "retry": {"maxRetries": 1, "baseInterval": 20}}"#;

#[test]
fn retry_sent_from_scheduled_event() {
    fix_jitter(1.0);
    let stream = TestStream::new(RETRY_CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    let started = Instant::now();
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);

    assert_eq!(callouts().len(), 1, "the retry waits for its backoff");
    assert!(responses().is_empty());
    assert_eq!(
        stream.request_body(),
        RequestBodyStatus::STOP_ITERATION_AND_WATERMARK
    );
    let scheduler = scheduler(0);
    assert_eq!(wait_for_commits(&scheduler, 1), [1]);
    assert!(started.elapsed() >= Duration::from_millis(20));

    stream.scheduled(1);
    let callouts = callouts();
    assert_eq!(callouts.len(), 2);
    assert_eq!(callouts[1].cluster, CLUSTER);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "200")]);
    assert_eq!(continue_decoding_calls(), 1);
    assert!(responses().is_empty());
    assert_eq!(counter(Counter::Retries.name()), 1);
    assert_eq!(counter(Counter::ErrorConnect.name()), 1);
    assert_eq!(counter(Counter::Allowed.name()), 1);
}

#[test]
fn scheduled_event_of_other_backoff_ignored() {
    fix_jitter(1.0);
    let stream = TestStream::new(RETRY_CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);

    stream.scheduled(7);
    assert_eq!(callouts().len(), 1);
    stream.scheduled(1);
    assert_eq!(callouts().len(), 2);
    stream.scheduled(1);
    assert_eq!(callouts().len(), 2, "an event ends its backoff only once");
}

#[test]
fn retries_exhausted_fail_closed() {
    fix_jitter(1.0);
    let stream = TestStream::new(RETRY_CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);
    stream.scheduled(1);
    stream.callout_done(CalloutResult::RESET, &[]);

    assert_eq!(responses()[0].status, 503);
    assert_eq!(continue_decoding_calls(), 0);
    assert_eq!(counter(Counter::DeniedUnavailable.name()), 1);
    let warnings = logs_at(LogLevel::WARN);
    assert!(
        warnings[0].contains("the callout stream was reset"),
        "{warnings:?}"
    );
}

#[test]
fn zero_backoff_retries_without_timer() {
    fix_jitter(0.0);
    let stream = TestStream::new(RETRY_CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);

    assert_eq!(callouts().len(), 2);
    assert!(with_host(|host| host.schedulers.is_empty()));
}

#[test]
fn filter_dropped_while_backing_off() {
    fix_jitter(1.0);
    // The first stream keeps the configuration, and with it the timer thread, alive.
    let first = TestStream::new(
        r#"{"cluster": "outbound|9001||authz.jwt-revocation.local",
            "retry": {"maxRetries": 1, "baseInterval": 100}}"#,
    );
    let stream = first.sibling();
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);
    let scheduler = scheduler(0);
    drop(stream);

    assert_eq!(scheduler.deletions.load(Ordering::SeqCst), 1);
    thread::sleep(Duration::from_millis(200));
    assert!(scheduler.commits.lock().unwrap().is_empty());
    assert_eq!(scheduler.commits_after_delete.load(Ordering::SeqCst), 0);
}

#[test]
fn scheduler_created_once_per_stream() {
    fix_jitter(1.0);
    let stream = TestStream::new(
        r#"{"cluster": "outbound|9001||authz.jwt-revocation.local",
            "retry": {"maxRetries": 2, "baseInterval": 5}}"#,
    );
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);
    stream.scheduled(1);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);
    assert_eq!(wait_for_commits(&scheduler(0), 2), [1, 2]);
    stream.scheduled(2);

    assert_eq!(callouts().len(), 3);
    assert_eq!(with_host(|host| host.schedulers.len()), 1);
    drop(stream);
    assert_eq!(scheduler(0).deletions.load(Ordering::SeqCst), 1);
}

#[test]
fn panic_in_scheduled_fails_closed() {
    fix_jitter(1.0);
    let stream = TestStream::new(RETRY_CONFIG);
    stream.request_headers(&[
        ("authorization", &bearer()),
        (TEST_PANIC_HEADER, "scheduled"),
    ]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);
    stream.scheduled(1);

    assert_eq!(callouts().len(), 1);
    let responses = responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].details, "jwt_revocation_filter_failed");
    assert_eq!(continue_decoding_calls(), 0);
}

const FALLBACK_CONFIG: &str = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local",
    "fallbackClusters": ["outbound|9002||authz-b.jwt-revocation.local"]}"#;

#[test]
fn fallback_after_inline_failure() {
    let stream = TestStream::new(FALLBACK_CONFIG);
    with_host(|host| host.inline_response = Some((CalloutResult::RESET, Vec::new())));
    let status = stream.request_headers(&[("authorization", &bearer())]);

    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);
    let clusters: Vec<String> = callouts().into_iter().map(|c| c.cluster).collect();
    assert_eq!(
        clusters,
        [CLUSTER, "outbound|9002||authz-b.jwt-revocation.local"]
    );
    assert!(responses().is_empty());

    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "403")]);
    assert_eq!(responses()[0].status, 403);
    assert_eq!(counter(Counter::ErrorConnect.name()), 1);
}

#[test]
fn fallback_after_rejected_dispatch() {
    let stream = TestStream::new(FALLBACK_CONFIG);
    with_host(|host| {
        host.callout_init_results = [CalloutInitResult::CLUSTER_NOT_FOUND].into();
        host.inline_response = None;
    });
    stream.request_headers(&[("authorization", &bearer())]);

    assert_eq!(callouts().len(), 2);
    assert_eq!(counter(Counter::ErrorDispatch.name()), 1);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "200")]);
    assert_eq!(continue_decoding_calls(), 1);
}

#[test]
fn every_cluster_rejected_fails_closed() {
    let stream = TestStream::new(FALLBACK_CONFIG);
    with_host(|host| host.callout_init_result = CalloutInitResult::CLUSTER_NOT_FOUND);
    let status = stream.request_headers(&[("authorization", &bearer())]);

    assert_eq!(status, RequestHeadersStatus::STOP_ITERATION);
    assert_eq!(callouts().len(), 2);
    assert_eq!(responses()[0].status, 503);
    assert_eq!(counter(Counter::ErrorDispatch.name()), 2);
}

const FAIL_OPEN_CONFIG: &str =
    r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "failOpen": true}"#;

#[test]
fn fail_open_adds_header() {
    let stream = TestStream::new(FAIL_OPEN_CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "500")]);

    assert_eq!(continue_decoding_calls(), 1);
    assert!(responses().is_empty());
    let (name, value) = FAILURE_MODE_HEADER;
    let set_headers = with_host(|host| host.set_headers.clone());
    assert_eq!(set_headers, [(name.to_owned(), value.to_owned())]);
    assert_eq!(counter(Counter::FailureModeAllowed.name()), 1);
    let warnings = logs_at(LogLevel::WARN);
    assert!(warnings[0].contains("status 500"), "{warnings:?}");
    assert!(warnings[0].contains("failOpen"), "{warnings:?}");
}

#[test]
fn fail_open_inline_continues_from_headers_hook() {
    let stream = TestStream::new(FAIL_OPEN_CONFIG);
    with_host(|host| host.callout_init_result = CalloutInitResult::CLUSTER_NOT_FOUND);
    let status = stream.request_headers(&[("authorization", &bearer())]);

    assert_eq!(status, RequestHeadersStatus::CONTINUE);
    assert_eq!(continue_decoding_calls(), 0);
    assert_eq!(with_host(|host| host.set_headers.len()), 1);
}

#[test]
fn forged_failure_mode_header_removed() {
    let stream = TestStream::new(FAIL_OPEN_CONFIG);
    let (name, value) = FAILURE_MODE_HEADER;
    stream.request_headers(&[("authorization", &bearer()), (name, value)]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "200")]);

    assert_eq!(with_host(|host| host.removed_headers.clone()), [name]);
    assert!(with_host(|host| host.set_headers.is_empty()));
    assert_eq!(continue_decoding_calls(), 1);
}

#[test]
fn fail_open_never_overrides_decision() {
    let stream = TestStream::new(FAIL_OPEN_CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "403")]);

    assert_eq!(responses()[0].status, 403);
    assert!(with_host(|host| host.set_headers.is_empty()));
}

#[test]
fn fail_open_header_failure_fails_closed() {
    let stream = TestStream::new(FAIL_OPEN_CONFIG);
    with_host(|host| host.set_header_result = false);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "500")]);

    assert_eq!(continue_decoding_calls(), 0);
    assert_eq!(responses()[0].status, 503);
    assert_eq!(responses()[0].details, "jwt_revocation_filter_failed");
    let errors = logs_at(LogLevel::ERROR);
    assert!(
        errors[0].contains("x-jwt-revocation-failure-mode-allowed"),
        "{errors:?}"
    );
}

#[test]
fn status_on_error_sent() {
    let stream = TestStream::new(
        r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "statusOnError": 429}"#,
    );
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "504")]);
    assert_eq!(responses()[0].status, 429);
}

#[test]
fn metrics_defined_at_config() {
    let _stream = TestStream::new(CONFIG);
    let (counters, histograms) =
        with_host(|host| (host.counter_names.clone(), host.histogram_names.clone()));
    let expected: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(counters, expected);
    assert_eq!(histograms, [CALLOUT_LATENCY]);
}

#[test]
fn metrics_incremented_per_verdict() {
    let stream = TestStream::new(CONFIG);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "403")]);
    let sibling = stream.sibling();
    sibling.request_headers(&[(":method", "GET")]);

    assert_eq!(counter(Counter::DeniedRevoked.name()), 1);
    assert_eq!(counter(Counter::Rejected.name()), 1);
    assert_eq!(counter(Counter::Allowed.name()), 0);
    assert_eq!(with_host(|host| host.histogram(CALLOUT_LATENCY).len()), 1);
}

#[test]
fn metric_definition_failure_rejects_config() {
    with_host(|host| host.define_result = MetricsResult::FROZEN);
    let config = envoy_dynamic_module_on_http_filter_config_new(
        std::ptr::null_mut(),
        envoy_buffer("jwt_revocation"),
        envoy_buffer(CONFIG),
    );
    assert!(config.is_null());
    let errors = logs_at(LogLevel::ERROR);
    assert!(
        errors[0].contains("defining counter jwt_revocation.allowed failed"),
        "{errors:?}"
    );
}

#[test]
fn route_override_uses_listener_metrics() {
    let stream = TestStream::new(CONFIG);
    let route = envoy_dynamic_module_on_http_filter_per_route_config_new(
        envoy_buffer("jwt_revocation"),
        envoy_buffer(r#"{"cluster": "outbound|8080||other.ns.svc"}"#),
    );
    with_host(|host| host.route_config = route);
    stream.request_headers(&[("authorization", &bearer())]);
    stream.callout_done(CalloutResult::SUCCESS, &[(":status", "401")]);

    assert_eq!(counter(Counter::DeniedInvalid.name()), 1);
    envoy_dynamic_module_on_http_filter_per_route_config_destroy(route);
}

const BREAKER_CONFIG: &str = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local",
    "circuitBreaker": {"consecutiveFailures": 1, "openInterval": 60000}}"#;

#[test]
fn breaker_shared_by_streams_of_config() {
    let first = TestStream::new(BREAKER_CONFIG);
    first.request_headers(&[("authorization", &bearer())]);
    first.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);
    assert_eq!(counter(Counter::BreakerOpened.name()), 1);

    let second = first.sibling();
    second.request_headers(&[("authorization", &bearer())]);
    assert_eq!(callouts().len(), 1, "the open breaker skips the callout");
    let responses = responses();
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[1].status, 503);
    assert_eq!(counter(Counter::BreakerSkipped.name()), 1);
}

#[test]
fn breaker_not_shared_across_configs() {
    let first = TestStream::new(BREAKER_CONFIG);
    first.request_headers(&[("authorization", &bearer())]);
    first.callout_done(CalloutResult::SUCCESS, &[(":status", "503")]);

    let other = TestStream::new(BREAKER_CONFIG);
    other.request_headers(&[("authorization", &bearer())]);
    assert_eq!(callouts().len(), 2);
}

#[test]
fn cached_decision_shared_by_streams() {
    let first = TestStream::new(
        r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "cache": {"ttl": 60000}}"#,
    );
    first.request_headers(&[("authorization", &bearer())]);
    first.callout_done(CalloutResult::SUCCESS, &[(":status", "200")]);

    let second = first.sibling();
    let status = second.request_headers(&[("authorization", &bearer())]);
    assert_eq!(status, RequestHeadersStatus::CONTINUE);
    assert_eq!(callouts().len(), 1, "the cached decision sends no callout");
    assert_eq!(counter(Counter::CacheHit.name()), 1);
    assert_eq!(counter(Counter::Allowed.name()), 2);
}
