//! End-to-end behaviour of both builds of the filter in a real Envoy 1.40.
//!
//! Every scenario runs once per target with the same cases and the same expected statuses. The
//! artifacts must be built first (`make test` does it): the release `.wasm` and the release `.so`.

use std::sync::Arc;
use std::thread;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e::check::{assert_status, authz_requests, send};
use e2e::envoy::{validate, Target, AUTHZ_CLUSTER};
use e2e::http::{Request, Response};
use e2e::process::workspace_root;
use e2e::stack::{unix_now, Authz, Stack};
use serde_json::json;

fn start(target: Target, authz: Authz) -> Stack {
    Stack::for_target(target, authz).unwrap_or_else(|e| panic!("{}: {e}", target.name()))
}

/// Asserts a local reply's challenge and JSON body, and that it does not contain `token`.
fn assert_denial(
    response: &Response,
    status: u16,
    challenge_prefix: &str,
    token: &str,
    case: &str,
) {
    assert_status(response, status, case);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(challenge_prefix),
        "{case}: WWW-Authenticate {challenge:?} should start with {challenge_prefix:?}"
    );
    let body = response.json().unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(
        body["error"].is_string(),
        "{case}: body {body} has no error"
    );
    assert!(
        body["error_description"].is_string(),
        "{case}: body {body} has no error_description"
    );
    if !token.is_empty() {
        let whole = format!("{:?}{}", response.headers, response.body_text());
        assert!(!whole.contains(token), "{case}: the reply echoes the token");
    }
}

/// Builds a token with the given payload and a fake signature, for cases where nothing checks
/// the signature: the filter alone, or a stand-in authorization service.
fn token_with_payload(payload: &str) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

fn tamper(token: &str) -> String {
    // Change the signature's first character, so the token parses but does not verify.
    let (rest, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{rest}.{first}{}", &signature[1..])
}

fn main_job(target: Target) {
    let mut stack = start(target, Authz::Reference);
    let (token, jti) = stack.issue_token("alice");

    let response = send(&stack, Request::get("/hello").bearer(&token));
    assert_status(&response, 200, "valid token");
    assert_eq!(
        response.json().unwrap()["upstream"],
        true,
        "valid token reaches the upstream"
    );

    stack.revoke(&jti).unwrap();
    let response = send(&stack, Request::get("/hello").bearer(&token));
    assert_denial(
        &response,
        403,
        "Bearer error=\"invalid_token\"",
        &token,
        "revoked token",
    );
    assert_eq!(response.json().unwrap()["error"], "revoked");

    let tampered = tamper(&stack.issue_token("bob").0);
    let response = send(&stack, Request::get("/hello").bearer(&tampered));
    assert_denial(
        &response,
        401,
        "Bearer error=\"invalid_token\"",
        &tampered,
        "tampered token",
    );

    let response = send(&stack, Request::get("/hello"));
    assert_denial(&response, 401, "Bearer", "", "no token");
    assert_eq!(
        response.header("www-authenticate").as_deref(),
        Some("Bearer"),
        "bare challenge"
    );

    let (fresh, _) = stack.issue_token("carol");
    stack.stop_authz();
    let response = send(&stack, Request::get("/hello").bearer(&fresh));
    assert_status(&response, 503, "authorization service stopped");
    assert_eq!(
        stack.upstream_requests().unwrap(),
        1,
        "only the valid request reached the upstream"
    );
}

fn header_forms(target: Target) {
    let stack = start(target, Authz::Reference);
    let (token, _) = stack.issue_token("alice");

    for (case, value) in [
        ("lowercase scheme", format!("bearer {token}")),
        ("uppercase scheme", format!("BEARER {token}")),
        ("several spaces", format!("Bearer    {token}")),
    ] {
        let response = send(&stack, Request::get("/").header("authorization", value));
        assert_status(&response, 200, case);
    }

    let invalid_requests: Vec<(&str, Vec<u8>)> = vec![
        (
            "text after token",
            format!("Bearer {token} extra").into_bytes(),
        ),
        (
            "tab in token",
            format!("Bearer {}\t{}", &token[..10], &token[10..]).into_bytes(),
        ),
        (
            "non-ASCII byte",
            [format!("Bearer {token}").as_bytes(), "\u{e9}".as_bytes()].concat(),
        ),
        ("scheme without token", b"Bearer".to_vec()),
    ];
    for (case, value) in invalid_requests {
        let response = send(&stack, Request::get("/").header("authorization", value));
        assert_denial(
            &response,
            400,
            "Bearer error=\"invalid_request\"",
            &token,
            case,
        );
    }

    let response = send(
        &stack,
        Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}")),
    );
    assert_denial(
        &response,
        400,
        "Bearer error=\"invalid_request\"",
        &token,
        "two headers",
    );
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("more than one Authorization header"),
        "two headers: {challenge}"
    );

    let response = send(
        &stack,
        Request::get("/").header("authorization", "Basic dXNlcjpwdw=="),
    );
    assert_denial(&response, 401, "Bearer", "", "Basic scheme");
}

fn malformed_tokens_skip_callout(target: Target) {
    let stack = start(target, Authz::Reference);
    let before = authz_requests(&stack);

    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
    let cases = [
        (
            "numeric jti",
            token_with_payload(r#"{"jti":12345,"exp":9999999999}"#),
        ),
        ("missing jti", token_with_payload(r#"{"sub":"alice"}"#)),
        ("payload not JSON", token_with_payload("not json")),
        (
            "standard alphabet",
            format!("{header}.eyJqdGkiOiJ+Pz8/In0.c2ln+/"),
        ),
        ("five-part JWE", format!("{header}.a.b.c.d")),
        ("two parts", format!("{header}.c2ln")),
    ];
    for (case, token) in &cases {
        let response = send(&stack, Request::get("/").bearer(token));
        assert_denial(
            &response,
            401,
            "Bearer error=\"invalid_token\"",
            token,
            case,
        );
    }
    assert_eq!(
        authz_requests(&stack),
        before,
        "malformed tokens must not reach the service"
    );
    assert_eq!(
        stack.upstream_requests().unwrap(),
        0,
        "malformed tokens must not reach the upstream"
    );
}

fn cors_preflight_passes(target: Target) {
    let stack = start(target, Authz::Reference);
    let preflight = Request::get("/")
        .method("OPTIONS")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST");
    assert_status(&send(&stack, preflight), 200, "CORS preflight");
    assert_eq!(authz_requests(&stack), 0, "a preflight needs no callout");

    let options_without_cors = Request::get("/").method("OPTIONS");
    assert_status(
        &send(&stack, options_without_cors),
        401,
        "OPTIONS without CORS headers",
    );
}

fn post_body_reaches_upstream(target: Target) {
    let stack = start(target, Authz::Reference);
    let (token, _) = stack.issue_token("alice");
    let body = vec![b'x'; 64 * 1024];
    let response = send(&stack, Request::post("/upload", body).bearer(&token));
    assert_status(&response, 200, "POST with body");
    assert_eq!(response.json().unwrap()["body_bytes"], 64 * 1024);
}

fn body_held_until_denied(target: Target) {
    let stack = start(
        target,
        Authz::Delayed {
            status: 403,
            delay_ms: 400,
        },
    );
    let token = token_with_payload(r#"{"jti":"held-1"}"#);
    let response = send(
        &stack,
        Request::post("/upload", vec![b'y'; 4096]).bearer(&token),
    );
    assert_status(&response, 403, "slow denial of a POST");
    assert_eq!(
        stack.upstream_requests().unwrap(),
        0,
        "nothing reaches the upstream before a denial"
    );
}

fn body_held_until_allowed(target: Target) {
    let stack = start(
        target,
        Authz::Delayed {
            status: 200,
            delay_ms: 400,
        },
    );
    let token = token_with_payload(r#"{"jti":"held-2"}"#);
    let response = send(
        &stack,
        Request::post("/upload", vec![b'z'; 4096]).bearer(&token),
    );
    assert_status(&response, 200, "slow approval of a POST");
    assert_eq!(
        response.json().unwrap()["body_bytes"],
        4096,
        "the whole body arrives"
    );
}

fn large_body_held_until_allowed(target: Target) {
    // Larger than Envoy's default 1 MiB buffer limit: the body must wait, not fail with 413.
    const SIZE: usize = 3 * 1024 * 1024;
    let stack = start(
        target,
        Authz::Delayed {
            status: 200,
            delay_ms: 300,
        },
    );
    let token = token_with_payload(r#"{"jti":"held-3"}"#);
    let response = send(
        &stack,
        Request::post("/upload", vec![b'l'; SIZE]).bearer(&token),
    );
    assert_status(&response, 200, "slow approval of a 3 MiB POST");
    assert_eq!(
        response.json().unwrap()["body_bytes"],
        SIZE,
        "the whole body arrives"
    );
}

fn hanging_service_times_out(target: Target) {
    let stack = Stack::start(&target.bootstrap(), Authz::Hang, |b| {
        b.replace("\"timeout\": 2000", "\"timeout\": 300")
    })
    .unwrap();
    let token = token_with_payload(r#"{"jti":"hang-1"}"#);
    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 503, "service hangs past the timeout");
    assert!(
        response.header("www-authenticate").is_none(),
        "a 503 carries no challenge"
    );
    assert_eq!(response.json().unwrap()["error"], "temporarily_unavailable");
}

fn refused_connection_fails_closed(target: Target) {
    let stack = start(target, Authz::Refused);
    let token = token_with_payload(r#"{"jti":"refused-1"}"#);
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        503,
        "connection refused",
    );
    assert_eq!(stack.upstream_requests().unwrap(), 0);
}

fn unexpected_statuses_fail_closed(target: Target) {
    for status in [204, 302, 500] {
        let stack = start(target, Authz::Status(status));
        let token = token_with_payload(r#"{"jti":"status-1"}"#);
        let response = send(&stack, Request::get("/").bearer(&token));
        assert_status(&response, 503, &format!("service answers {status}"));
        assert_eq!(
            stack.upstream_requests().unwrap(),
            0,
            "service answers {status}"
        );
    }
}

fn concurrent_mixed_tokens(target: Target) {
    let stack = Arc::new(start(target, Authz::Reference));
    let (revoked, revoked_jti) = stack.issue_token("mallory");
    stack.revoke(&revoked_jti).unwrap();
    let (valid, _) = stack.issue_token("alice");
    let tampered = tamper(&stack.issue_token("eve").0);
    let malformed = token_with_payload(r#"{"jti":7}"#);

    let kinds: [(Option<String>, u16); 5] = [
        (Some(valid), 200),
        (Some(revoked), 403),
        (Some(tampered), 401),
        (Some(malformed), 401),
        (None, 401),
    ];
    let kinds = Arc::new(kinds);
    let port = stack.envoy.port;
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let kinds = Arc::clone(&kinds);
            thread::spawn(move || {
                let (token, expected) = &kinds[i % kinds.len()];
                let mut request = Request::get("/concurrent");
                if let Some(token) = token {
                    request = request.bearer(token);
                }
                let response = request.send(port);
                (i, *expected, response)
            })
        })
        .collect();
    for handle in handles {
        let (i, expected, response) = handle.join().unwrap();
        let response = response.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        if response.status != expected {
            let stats = stack.envoy.stats().unwrap();
            let cluster: Vec<_> = stats
                .iter()
                .filter(|(name, value)| name.contains(AUTHZ_CLUSTER) && **value > 0)
                .collect();
            eprintln!(
                "authorization cluster stats: {cluster:#?}\n{}",
                stack.envoy.log_tail()
            );
        }
        assert_status(&response, expected, &format!("concurrent request {i}"));
    }
    assert_eq!(
        stack.upstream_requests().unwrap(),
        20,
        "only the 20 valid requests pass"
    );
}

fn callout_connections_reused(target: Target) {
    let stack = start(target, Authz::Reference);
    let (token, _) = stack.issue_token("alice");
    for i in 0..50 {
        assert_status(
            &send(&stack, Request::get("/").bearer(&token)),
            200,
            &format!("request {i}"),
        );
    }
    let prefix = format!("cluster.{AUTHZ_CLUSTER}");
    let connections = stack
        .envoy
        .stat(&format!("{prefix}.upstream_cx_total"))
        .unwrap();
    let requests = stack
        .envoy
        .stat(&format!("{prefix}.upstream_rq_total"))
        .unwrap();
    assert_eq!(requests, 50, "one callout per request");
    assert!(
        connections <= 2,
        "callouts should share connections: {connections} connections for {requests} requests"
    );
}

fn jwt_authn_chain(target: Target) {
    let stack = Stack::start(&target.bootstrap_with_jwt_authn(), Authz::Reference, Ok).unwrap();
    let (token, jti) = stack.issue_token("alice");
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        200,
        "signed token",
    );

    stack.revoke(&jti).unwrap();
    assert_status(
        &send(&stack, Request::get("/").bearer(&token)),
        403,
        "revoked signed token",
    );

    let tampered = tamper(&stack.issue_token("bob").0);
    assert_status(
        &send(&stack, Request::get("/").bearer(&tampered)),
        401,
        "tampered token",
    );

    let expired = authz_service::issue_token(&stack.key, "old", 1, unix_now() - 3600).0;
    assert_status(
        &send(&stack, Request::get("/").bearer(&expired)),
        401,
        "expired token",
    );

    assert_status(&send(&stack, Request::get("/")), 401, "no token");
    let query_only = format!("/?access_token={}", stack.issue_token("carol").0);
    let response = send(&stack, Request::get(&query_only));
    assert_status(&response, 401, "token in the query only");
    let before = authz_requests(&stack);
    let forged = token_with_payload(&json!({"jti": "forged"}).to_string());
    assert_status(
        &send(&stack, Request::get("/").bearer(&forged)),
        401,
        "unsigned token",
    );
    assert_eq!(
        authz_requests(&stack),
        before,
        "jwt_authn stops forged tokens first"
    );
}

e2e::per_target!(
    main_job,
    header_forms,
    malformed_tokens_skip_callout,
    cors_preflight_passes,
    post_body_reaches_upstream,
    body_held_until_denied,
    body_held_until_allowed,
    large_body_held_until_allowed,
    hanging_service_times_out,
    refused_connection_fails_closed,
    unexpected_statuses_fail_closed,
    concurrent_mixed_tokens,
    callout_connections_reused,
    jwt_authn_chain,
);

/// Directory of the module built with the `panic-test` feature (`make module-panic-test`).
fn panic_test_module_dir() -> std::path::PathBuf {
    workspace_root().join("target/panic-test/release")
}

#[test]
fn dynamic_module_panic_fails_closed() {
    let dir = panic_test_module_dir();
    assert!(
        dir.join("libjwt_revocation.so").is_file(),
        "{} is missing; build it with `make module-panic-test`",
        dir.display()
    );
    let stack = Stack::start(&Target::DynamicModule.bootstrap(), Authz::Reference, |b| {
        Ok(b.with_module_dir(dir))
    })
    .unwrap();
    let (token, _) = stack.issue_token("alice");

    let panicking = Request::get("/")
        .bearer(&token)
        .header("x-jwt-revocation-test-panic", "1");
    let response = send(&stack, panicking);
    assert_status(&response, 503, "request whose hook panics");
    assert_eq!(
        stack.upstream_requests().unwrap(),
        0,
        "a panic must not let the request through"
    );

    let response = send(&stack, Request::get("/").bearer(&token));
    assert_status(&response, 200, "next request after a panic");
    assert_eq!(stack.upstream_requests().unwrap(), 1);
}

#[test]
fn dynamic_module_route_disabled() {
    let stack = start(Target::DynamicModule, Authz::Reference);
    let forged = Request::get("/healthz").header("x-jwt-revocation-failure-mode-allowed", "true");
    let response = send(&stack, forged);
    assert_status(&response, 200, "route with {\"disabled\": true}");
    let echoed = response.json().unwrap();
    assert!(
        echoed["headers"]
            .get("x-jwt-revocation-failure-mode-allowed")
            .is_none(),
        "a disabled route still removes the failure-mode header: {echoed}"
    );
    assert_eq!(
        authz_requests(&stack),
        0,
        "a disabled route makes no callout"
    );
    assert_status(
        &send(&stack, Request::get("/other")),
        401,
        "other routes still checked",
    );
}

#[test]
fn shipped_bootstraps_validate() {
    let dir = workspace_root().join("envoy-configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            validate(&path).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "expected at least four bootstraps in {}",
        dir.display()
    );
}
