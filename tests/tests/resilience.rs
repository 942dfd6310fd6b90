//! End-to-end behaviour of the failure policy, retries, circuit breaker, fallback clusters and
//! metrics, once per target with the same cases and expected statuses, in a real Envoy 1.40.
//!
//! Envoy runs with `--concurrency 1`, so the wasm build's per-worker breaker counts every request.

use std::thread;
use std::time::Duration;

use e2e::check::{assert_status, authz_requests, send};
use e2e::envoy::{Bootstrap, Target};
use e2e::http::Request;
use e2e::stack::{revoke_at, start_authz, Authz, Stack};

const FALLBACK_CLUSTER: &str = "outbound|9101||authz-fallback.jwt-revocation.local";
const FAILURE_MODE_HEADER: &str = "x-jwt-revocation-failure-mode-allowed";

fn start_with(
    target: Target,
    authz: Authz,
    filter_config: &str,
    edit: impl FnOnce(Bootstrap) -> Result<Bootstrap, String>,
) -> Stack {
    Stack::start(&target.bootstrap(), authz, |bootstrap| {
        edit(bootstrap.with_filter_config(filter_config)?)
    })
    .unwrap_or_else(|e| panic!("{}: {e}", target.name()))
}

fn counter(stack: &Stack, name: &str) -> u64 {
    stack.envoy.filter_counter(name).unwrap()
}

fn breaker_opens_and_recovers(target: Target) {
    let config = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "timeout": 1000, "circuitBreaker": {"consecutiveFailures": 3, "openInterval": 1500}}"#;
    let mut stack = start_with(target, Authz::Reference, config, Ok);
    let (token, _) = stack.issue_token("alice");
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        200,
        "service up",
    );

    stack.stop_authz();
    for i in 0..3 {
        let response = send(&stack, Request::get("/").bearer(&token));
        assert_status(&response, 503, &format!("service down, request {i}"));
    }
    assert_eq!(
        counter(&stack, "jwt_revocation.breaker_opened"),
        1,
        "breaker opened"
    );

    let callouts_before = authz_requests(&stack);
    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 503, "breaker open");
    assert_eq!(
        authz_requests(&stack),
        callouts_before,
        "an open breaker sends no callout"
    );
    assert_eq!(counter(&stack, "jwt_revocation.breaker_skipped"), 1);

    stack.restart_authz().unwrap();
    // Waiting out the open interval is the scenario itself, not a timing assertion.
    thread::sleep(Duration::from_millis(1600));
    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 200, "probe after the open interval");
    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 200, "breaker closed again");
    assert_eq!(
        authz_requests(&stack),
        callouts_before + 2,
        "both requests made a callout"
    );
    assert_eq!(
        counter(&stack, "jwt_revocation.breaker_opened"),
        1,
        "no second opening"
    );
}

fn fallback_cluster_answers(target: Target) {
    let (fallback, fallback_port) = start_authz(Authz::Reference).unwrap();
    let config = format!(
        r#"{{"cluster": "outbound|9001||authz.jwt-revocation.local", "fallbackClusters": ["{FALLBACK_CLUSTER}"]}}"#
    );
    let stack = start_with(target, Authz::Refused, &config, |b| {
        b.with_cluster(FALLBACK_CLUSTER, fallback_port)
    });

    let (token, jti) = stack.issue_token("alice");
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        200,
        "primary down, fallback up",
    );
    revoke_at(fallback_port, &jti).unwrap();
    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 403, "revoked at the fallback");
    assert_eq!(
        counter(&stack, "jwt_revocation.error_connect"),
        2,
        "primary failed twice"
    );
    drop(fallback);
}

fn fail_open_marks_request(target: Target) {
    let config = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "failOpen": true}"#;
    let stack = start_with(target, Authz::Refused, config, Ok);
    let (token, _) = stack.issue_token("alice");

    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 200, "fail-open with the service down");
    let echoed = response.json().unwrap();
    assert_eq!(
        echoed["headers"][FAILURE_MODE_HEADER], "true",
        "the upstream is told the request passed without a decision: {echoed}"
    );
    assert_eq!(counter(&stack, "jwt_revocation.failure_mode_allowed"), 1);

    let response = send(&stack, Request::get("/"));
    assert_status(
        &response,
        401,
        "fail-open never passes a request without a token",
    );
}

fn forged_failure_mode_header_removed(target: Target) {
    let stack = Stack::for_target(target, Authz::Reference).unwrap();
    let (token, _) = stack.issue_token("alice");
    let request = Request::get("/")
        .bearer(&token)
        .header(FAILURE_MODE_HEADER, "true");
    let response = send(&stack, request);
    assert_status(&response, 200, "allowed request with a forged header");
    let echoed = response.json().unwrap();
    assert!(
        echoed["headers"].get(FAILURE_MODE_HEADER).is_none(),
        "a client cannot claim a fail-open pass: {echoed}"
    );
}

fn fail_open_keeps_decisions(target: Target) {
    let (fallback, fallback_port) = start_authz(Authz::Reference).unwrap();
    let config = format!(
        r#"{{"cluster": "outbound|9001||authz.jwt-revocation.local", "failOpen": true, "fallbackClusters": ["{FALLBACK_CLUSTER}"]}}"#
    );
    let stack = start_with(target, Authz::Refused, &config, |b| {
        b.with_cluster(FALLBACK_CLUSTER, fallback_port)
    });
    let (token, jti) = stack.issue_token("alice");
    revoke_at(fallback_port, &jti).unwrap();

    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 403, "a revoked token from a healthy fallback");
    assert_eq!(counter(&stack, "jwt_revocation.failure_mode_allowed"), 0);
    assert_eq!(stack.upstream_requests().unwrap(), 0);
    drop(fallback);
}

fn retry_absorbs_dropped_connection(target: Target) {
    let config = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "retry": {"maxRetries": 2, "baseInterval": 20, "maxInterval": 50}}"#;
    let stack = start_with(
        target,
        Authz::DropFirst {
            status: 200,
            count: 1,
        },
        config,
        Ok,
    );
    let (token, _) = stack.issue_token("alice");

    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 200, "first callout dropped, retry answered");
    assert_eq!(counter(&stack, "jwt_revocation.retries"), 1);
    assert_eq!(authz_requests(&stack), 2, "one callout and one retry");
}

fn status_on_error_used(target: Target) {
    let config =
        r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "statusOnError": 403}"#;
    let stack = start_with(target, Authz::Status(500), config, Ok);
    let (token, _) = stack.issue_token("alice");
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        403,
        "statusOnError",
    );
}

/// Sends a known mix of requests and checks every counter against it.
fn metrics_count_known_mix(target: Target) {
    let stack = Stack::for_target(target, Authz::Reference).unwrap();
    let (valid, _) = stack.issue_token("alice");
    let (revoked, revoked_jti) = stack.issue_token("mallory");
    stack.revoke(&revoked_jti).unwrap();
    let (other, _) = stack.issue_token("bob");
    let tampered = format!("{}x", &other[..other.len() - 1]);

    for _ in 0..3 {
        assert_status(
            &send(&stack, Request::get("/").bearer(&valid)),
            200,
            "valid",
        );
    }
    for _ in 0..2 {
        assert_status(
            &send(&stack, Request::get("/").bearer(&revoked)),
            403,
            "revoked",
        );
    }
    assert_status(
        &send(&stack, Request::get("/").bearer(&tampered)),
        401,
        "tampered",
    );
    assert_status(&send(&stack, Request::get("/")), 401, "no token");
    assert_status(
        &send(&stack, Request::get("/").bearer("a.b")),
        401,
        "malformed",
    );
    let preflight = Request::get("/")
        .method("OPTIONS")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET");
    assert_status(&send(&stack, preflight), 200, "preflight");

    let expected = [
        ("jwt_revocation.allowed", 3),
        ("jwt_revocation.denied_revoked", 2),
        ("jwt_revocation.denied_invalid", 1),
        ("jwt_revocation.rejected", 2),
        ("jwt_revocation.cors_preflight", 1),
        ("jwt_revocation.denied_unavailable", 0),
        ("jwt_revocation.failure_mode_allowed", 0),
        ("jwt_revocation.error_timeout", 0),
        ("jwt_revocation.error_connect", 0),
        ("jwt_revocation.error_status", 0),
        ("jwt_revocation.retries", 0),
        ("jwt_revocation.breaker_opened", 0),
    ];
    for (name, count) in expected {
        assert_eq!(counter(&stack, name), count, "{name}");
    }

    let prometheus = Request::get("/stats/prometheus")
        .send(stack.envoy.admin_port)
        .unwrap()
        .body_text();
    assert!(
        prometheus.contains("jwt_revocation_callout_latency_ms_count"),
        "the latency histogram is exported"
    );
    assert!(
        prometheus.contains("jwt_revocation_allowed"),
        "counters are exported to Prometheus"
    );
}

fn unavailable_counted_by_kind(target: Target) {
    let stack = Stack::start(&target.bootstrap(), Authz::Hang, |b| {
        b.with_filter_config(
            r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "timeout": 200}"#,
        )
    })
    .unwrap();
    let (token, _) = stack.issue_token("alice");
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        503,
        "hanging service",
    );
    assert_eq!(counter(&stack, "jwt_revocation.error_timeout"), 1);
    assert_eq!(counter(&stack, "jwt_revocation.denied_unavailable"), 1);

    let stack = Stack::for_target(target, Authz::Status(500)).unwrap();
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        503,
        "service answers 500",
    );
    assert_eq!(counter(&stack, "jwt_revocation.error_status"), 1);

    let stack = Stack::for_target(target, Authz::Refused).unwrap();
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        503,
        "connection refused",
    );
    assert_eq!(counter(&stack, "jwt_revocation.error_connect"), 1);
}

fn cache_reuses_decisions_until_ttl(target: Target) {
    let config =
        r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "cache": {"ttl": 1500}}"#;
    let stack = start_with(target, Authz::Reference, config, Ok);
    let (token, jti) = stack.issue_token("alice");

    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        200,
        "first request",
    );
    let callouts = authz_requests(&stack);
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        200,
        "cached allow",
    );
    stack.revoke(&jti).unwrap();
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        200,
        "revoked while the allow is cached",
    );
    assert_eq!(
        authz_requests(&stack),
        callouts,
        "cache hits send no callout"
    );
    assert_eq!(counter(&stack, "jwt_revocation.cache_hit"), 2);

    let (other, _) = stack.issue_token("bob");
    assert_status(
        &send(&stack, Request::get("/").bearer(&other)),
        200,
        "another token",
    );
    assert_eq!(
        authz_requests(&stack),
        callouts + 1,
        "another token, its own callout"
    );

    // Waiting out the ttl is the scenario itself, not a timing assertion.
    thread::sleep(Duration::from_millis(1600));
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        403,
        "revocation seen once the ttl ends",
    );
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        403,
        "cached revocation",
    );
    assert_eq!(authz_requests(&stack), callouts + 2);
    assert_eq!(counter(&stack, "jwt_revocation.cache_hit"), 3);
    assert_eq!(counter(&stack, "jwt_revocation.denied_revoked"), 2);
}

e2e::per_target!(
    breaker_opens_and_recovers,
    fallback_cluster_answers,
    fail_open_marks_request,
    fail_open_keeps_decisions,
    forged_failure_mode_header_removed,
    retry_absorbs_dropped_connection,
    status_on_error_used,
    metrics_count_known_mix,
    unavailable_counted_by_kind,
    cache_reuses_decisions_until_ttl,
);
