//! Routes and handlers of the HTTP API, kept apart from the HTTP server so that they can be
//! unit-tested with plain values.

use jwt_revocation_core::config::duplicate_key;
use serde_json::{json, Map, Value};

use crate::jwt;
use crate::key::Key;
use crate::revocation::RevocationList;

/// Lifetime of a token from `POST /tokens` when the request gives no `ttl`.
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// Maximum `ttl` that `POST /tokens` accepts. It is also how long a revocation is kept when
/// `POST /revoke` gives no `exp`, which covers every token that this service issued.
pub const MAX_TTL_SECS: u64 = 86_400;

/// Subject of a token from `POST /tokens` when the request gives no `sub`.
pub const DEFAULT_SUBJECT: &str = "anonymous";

/// The parts of an HTTP request that the handlers read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApiRequest<'a> {
    pub method: &'a str,
    /// Request target, with or without a query string.
    pub target: &'a str,
    /// Values of every `Authorization` header in the request.
    pub authorization: &'a [&'a str],
    pub body: &'a [u8],
}

/// A complete HTTP response. The server sends `body` with a `Content-Length` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers other than `Content-Type` and `Content-Length`.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The signing key and the revocation list behind the HTTP API.
///
/// NOTE: `POST /tokens` and `POST /revoke` require no credentials, so any client that can
/// reach the listening address can issue tokens and revoke them.
#[derive(Debug)]
pub(crate) struct Service {
    key: Key,
    revocations: RevocationList,
}

impl Service {
    pub fn new(key: Key) -> Self {
        Service {
            key,
            revocations: RevocationList::new(),
        }
    }

    /// Routes `request` to its handler. `now_secs` is the current time in seconds since the Unix
    /// epoch.
    pub fn handle(&self, request: &ApiRequest<'_>, now_secs: u64) -> ApiResponse {
        let path = request.target.split('?').next().unwrap_or_default();

        let (allowed_methods, handler): (&'static str, fn(&Self, &ApiRequest, u64) -> _) =
            match path {
                "/authorize" => ("POST", Self::authorize),
                "/tokens" => ("POST", Self::issue),
                "/revoke" => ("POST", Self::revoke),
                "/healthz" => ("GET, HEAD", Self::health),
                _ => {
                    return error_response(404, "not_found", &format!("no route for {path}"));
                }
            };

        let method_allowed = allowed_methods
            .split(", ")
            .any(|allowed| allowed == request.method);
        if !method_allowed {
            let description = format!("{path} accepts {allowed_methods} only");
            let mut response = error_response(405, "method_not_allowed", &description);
            response
                .headers
                .push(("Allow", allowed_methods.to_string()));
            return response;
        }

        handler(self, request, now_secs)
    }

    /// `POST /authorize`: 200 for a valid token whose `jti` is not revoked, 401 for a missing or
    /// invalid token, 403 for a revoked one.
    fn authorize(&self, request: &ApiRequest<'_>, now_secs: u64) -> ApiResponse {
        let token = match bearer_token(request.authorization) {
            Ok(token) => token,
            Err(description) => {
                log::debug!("rejected request: {description}");
                return invalid_token(description);
            }
        };

        let claims = match jwt::verify(&self.key, token, now_secs) {
            Ok(claims) => claims,
            Err(error) => {
                log::debug!("rejected token: {error}");
                return invalid_token(&error.to_string());
            }
        };

        if self.revocations.is_revoked(&claims.jti, now_secs) {
            log::debug!("rejected revoked token: jti={}", claims.jti);
            return error_response(403, "revoked", "token has been revoked");
        }

        json_response(200, &json!({"active": true}))
    }

    /// `POST /tokens`: issues a token from an optional `{"sub": string, "ttl": seconds}` body.
    fn issue(&self, request: &ApiRequest<'_>, now_secs: u64) -> ApiResponse {
        let (subject, ttl_secs) = match parse_token_request(request.body) {
            Ok(parsed) => parsed,
            Err(description) => return error_response(400, "invalid_request", &description),
        };

        let (token, jti, exp) = jwt::issue_token(&self.key, &subject, ttl_secs, now_secs);
        log::debug!("issued token: jti={jti} exp={exp}");

        json_response(200, &json!({"token": token, "jti": jti, "exp": exp}))
    }

    /// `POST /revoke`: revokes the `jti` from a `{"jti": string, "exp": seconds}` body, where
    /// `exp` is optional.
    fn revoke(&self, request: &ApiRequest<'_>, now_secs: u64) -> ApiResponse {
        let (jti, exp) = match parse_revoke_request(request.body) {
            Ok(parsed) => parsed,
            Err(description) => return error_response(400, "invalid_request", &description),
        };
        if let Some(exp) = exp.filter(|&exp| exp <= now_secs) {
            return error_response(
                400,
                "invalid_request",
                &format!(
                    "field \"exp\" is {exp}, not after the current time {now_secs}, so the \
                     revocation would end at once; give the token's exp or leave \"exp\" out"
                ),
            );
        }

        // A revocation only needs to outlive the token. Without its `exp`, keep the entry for the
        // maximum lifetime of a token that this service issues.
        // NOTE: a token signed elsewhere with the same key and a later `exp` is accepted again
        // once this retention time passes, unless the request gives that `exp`.
        let keep_until_secs = exp.unwrap_or_else(|| now_secs.saturating_add(MAX_TTL_SECS));
        self.revocations.revoke(&jti, keep_until_secs, now_secs);
        log::debug!("revoked jti={jti} until={keep_until_secs}");

        json_response(200, &json!({"revoked": jti}))
    }

    /// `GET /healthz`: 200 with the body `ok`.
    fn health(&self, _request: &ApiRequest<'_>, _now_secs: u64) -> ApiResponse {
        ApiResponse {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: "ok".to_string(),
        }
    }
}

/// Returns the response for a request that the HTTP server rejected before routing it, such as
/// a malformed request line or a body longer than the limit.
pub(crate) fn rejected_request(status: u16, description: &str) -> ApiResponse {
    error_response(status, "invalid_request", description)
}

/// Returns the 503 response for a connection that the server does not serve.
pub(crate) fn unavailable(description: &str) -> ApiResponse {
    error_response(503, "temporarily_unavailable", description)
}

/// Returns the 500 response for a request whose handler panicked.
pub(crate) fn internal_error() -> ApiResponse {
    error_response(500, "server_error", "request handler failed")
}

/// Extracts the token from the only `Authorization` header, whose scheme must be `Bearer` in any
/// letter case (RFC 6750, section 2.1).
fn bearer_token<'a>(authorization: &[&'a str]) -> Result<&'a str, &'static str> {
    let value = match authorization {
        [] => return Err("request has no Authorization header"),
        [value] => value.trim(),
        _ => return Err("request has more than one Authorization header"),
    };

    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Authorization header does not use the Bearer scheme");
    }

    let token = token.trim_start();
    if token.is_empty() {
        return Err("Authorization header has an empty Bearer token");
    }

    Ok(token)
}

/// Parses the optional `POST /tokens` body into a subject and a lifetime in seconds.
fn parse_token_request(body: &[u8]) -> Result<(String, u64), String> {
    let mut subject = DEFAULT_SUBJECT.to_string();
    let mut ttl_secs = DEFAULT_TTL_SECS;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((subject, ttl_secs));
    }

    for (name, value) in parse_json_object(body)? {
        match name.as_str() {
            "sub" => {
                subject = value
                    .as_str()
                    .ok_or("field \"sub\" must be a string")?
                    .to_string();
            }
            "ttl" => {
                ttl_secs = value
                    .as_u64()
                    .filter(|ttl| (1..=MAX_TTL_SECS).contains(ttl))
                    .ok_or_else(|| {
                        format!("field \"ttl\" must be an integer from 1 to {MAX_TTL_SECS} seconds")
                    })?;
            }
            _ => {
                return Err(format!(
                    "unknown field {name:?}, expected \"sub\" or \"ttl\""
                ))
            }
        }
    }

    Ok((subject, ttl_secs))
}

/// Parses the `POST /revoke` body into a `jti` and an optional expiry time.
fn parse_revoke_request(body: &[u8]) -> Result<(String, Option<u64>), String> {
    let mut jti = None;
    let mut exp = None;

    for (name, value) in parse_json_object(body)? {
        match name.as_str() {
            "jti" => {
                jti = value
                    .as_str()
                    .filter(|jti| !jti.is_empty())
                    .map(str::to_string);
                if jti.is_none() {
                    return Err("field \"jti\" must be a non-empty string".to_string());
                }
            }
            "exp" => {
                let seconds = value.as_u64().ok_or(
                    "field \"exp\" must be an integer number of seconds since the Unix epoch",
                )?;
                exp = Some(seconds);
            }
            _ => {
                return Err(format!(
                    "unknown field {name:?}, expected \"jti\" or \"exp\""
                ))
            }
        }
    }

    let jti = jti.ok_or("field \"jti\" is missing")?;
    Ok((jti, exp))
}

fn parse_json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err("request body must be a JSON object".to_string()),
        Err(error) => return Err(format!("request body is not valid JSON: {error}")),
    };
    // serde_json keeps the last of two equal keys, so a repeated field is rejected instead.
    if let Some(key) = duplicate_key(body) {
        return Err(format!("field {key:?} appears more than once"));
    }
    Ok(object)
}

/// Returns a 401 response with the `WWW-Authenticate` challenge of RFC 6750, section 3.
fn invalid_token(description: &str) -> ApiResponse {
    let mut response = error_response(401, "invalid_token", description);
    response.headers.push((
        "WWW-Authenticate",
        r#"Bearer error="invalid_token""#.to_string(),
    ));
    response
}

fn error_response(status: u16, error: &str, description: &str) -> ApiResponse {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

fn json_response(status: u16, body: &Value) -> ApiResponse {
    ApiResponse {
        status,
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn service() -> Service {
        let secret = URL_SAFE_NO_PAD.encode([9u8; 32]);
        let jwks = format!(r#"{{"keys":[{{"kty":"oct","kid":"test","k":"{secret}"}}]}}"#);
        Service::new(Key::from_jwks_json(&jwks).unwrap())
    }

    fn post(service: &Service, target: &str, body: &str) -> ApiResponse {
        let request = ApiRequest {
            method: "POST",
            target,
            authorization: &[],
            body: body.as_bytes(),
        };
        service.handle(&request, NOW)
    }

    fn authorize(service: &Service, authorization: &[&str]) -> ApiResponse {
        let request = ApiRequest {
            method: "POST",
            target: "/authorize",
            authorization,
            body: b"",
        };
        service.handle(&request, NOW)
    }

    fn body_json(response: &ApiResponse) -> Value {
        serde_json::from_str(&response.body).expect("response body is JSON")
    }

    fn issue_via_api(service: &Service) -> (String, String) {
        let response = post(service, "/tokens", r#"{"sub":"alice","ttl":600}"#);
        assert_eq!(response.status, 200);
        let body = body_json(&response);
        let token = body["token"].as_str().unwrap().to_string();
        let jti = body["jti"].as_str().unwrap().to_string();
        (token, jti)
    }

    #[test]
    fn tokens_returns_verifiable_token() {
        let service = service();

        let response = post(&service, "/tokens", r#"{"sub":"alice","ttl":600}"#);

        assert_eq!(response.status, 200);
        assert_eq!(response.content_type, "application/json");
        let body = body_json(&response);
        let claims = jwt::verify(&service.key, body["token"].as_str().unwrap(), NOW).unwrap();
        assert_eq!(body["jti"], claims.jti.as_str());
        assert_eq!(body["exp"], NOW + 600);
        assert_eq!(claims.sub.as_deref(), Some("alice"));
    }

    #[test]
    fn tokens_empty_body_uses_defaults() {
        let service = service();

        let response = post(&service, "/tokens", "");

        assert_eq!(response.status, 200);
        let body = body_json(&response);
        let claims = jwt::verify(&service.key, body["token"].as_str().unwrap(), NOW).unwrap();
        assert_eq!(claims.exp, NOW + DEFAULT_TTL_SECS);
        assert_eq!(claims.sub.as_deref(), Some(DEFAULT_SUBJECT));
    }

    #[test]
    fn tokens_invalid_body_rejected() {
        let service = service();
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"sub":5}"#, "field \"sub\""),
            (r#"{"ttl":0}"#, "field \"ttl\""),
            (r#"{"ttl":86401}"#, "field \"ttl\""),
            (r#"{"ttl":-5}"#, "field \"ttl\""),
            (r#"{"ttl":"600"}"#, "field \"ttl\""),
            (r#"{"ttl":1.5}"#, "field \"ttl\""),
            (r#"{"ttl_secs":600}"#, "unknown field \"ttl_secs\""),
        ];

        for (body, expected) in cases {
            let response = post(&service, "/tokens", body);
            assert_eq!(response.status, 400, "body {body}");
            let description = body_json(&response)["error_description"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                description.contains(expected),
                "body {body}: {description} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn tokens_ttl_bounds_accepted() {
        let service = service();

        for ttl in [1, MAX_TTL_SECS] {
            let response = post(&service, "/tokens", &format!(r#"{{"ttl":{ttl}}}"#));
            assert_eq!(response.status, 200, "ttl {ttl}");
            assert_eq!(body_json(&response)["exp"], NOW + ttl, "ttl {ttl}");
        }
    }

    #[test]
    fn authorize_valid_token_allowed() {
        let service = service();
        let (token, _) = issue_via_api(&service);

        let response = authorize(&service, &[&format!("Bearer {token}")]);

        assert_eq!(response.status, 200);
        assert_eq!(body_json(&response), json!({"active": true}));
    }

    #[test]
    fn authorize_scheme_is_case_insensitive() {
        let service = service();
        let (token, _) = issue_via_api(&service);

        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let response = authorize(&service, &[&format!("{scheme} {token}")]);
            assert_eq!(response.status, 200, "scheme {scheme}");
        }
    }

    #[test]
    fn authorize_revoked_token_forbidden() {
        let service = service();
        let (token, jti) = issue_via_api(&service);

        let revoked = post(&service, "/revoke", &format!(r#"{{"jti":"{jti}"}}"#));
        let response = authorize(&service, &[&format!("Bearer {token}")]);

        assert_eq!(revoked.status, 200);
        assert_eq!(body_json(&revoked), json!({"revoked": jti}));
        assert_eq!(response.status, 403);
        assert_eq!(
            body_json(&response),
            json!({"error": "revoked", "error_description": "token has been revoked"})
        );
    }

    #[test]
    fn revoke_without_exp_keeps_max_ttl() {
        let service = service();

        post(&service, "/revoke", r#"{"jti":"a"}"#);

        assert!(service.revocations.is_revoked("a", NOW + MAX_TTL_SECS - 1));
        assert!(!service.revocations.is_revoked("a", NOW + MAX_TTL_SECS));
    }

    #[test]
    fn revoke_with_exp_keeps_until_exp() {
        let service = service();

        post(
            &service,
            "/revoke",
            &format!(r#"{{"jti":"a","exp":{}}}"#, NOW + 10),
        );

        assert!(service.revocations.is_revoked("a", NOW + 9));
        assert!(!service.revocations.is_revoked("a", NOW + 10));
    }

    #[test]
    fn repeated_field_rejected() {
        let service = service();
        for (path, body) in [
            ("/tokens", r#"{"sub":"a","sub":"b"}"#),
            ("/revoke", r#"{"jti":"a","jti":"b"}"#),
        ] {
            let response = post(&service, path, body);
            assert_eq!(response.status, 400, "{path} {body}");
        }
        assert_eq!(service.revocations.len(), 0);
    }

    #[test]
    fn revoke_with_past_exp_rejected() {
        let service = service();
        for exp in [NOW - 1, NOW] {
            let response = post(
                &service,
                "/revoke",
                &format!(r#"{{"jti":"a","exp":{exp}}}"#),
            );
            assert_eq!(response.status, 400, "exp {exp}");
            assert!(!service.revocations.is_revoked("a", NOW));
        }
    }

    #[test]
    fn revoke_twice_succeeds() {
        let service = service();

        let first = post(&service, "/revoke", r#"{"jti":"a"}"#);
        let second = post(&service, "/revoke", r#"{"jti":"a"}"#);

        assert_eq!(first, second);
        assert_eq!(second.status, 200);
        assert_eq!(service.revocations.len(), 1);
    }

    #[test]
    fn revoke_invalid_body_rejected() {
        let service = service();
        let cases = [
            ("", "not valid JSON"),
            ("{}", "field \"jti\" is missing"),
            (r#"{"jti":""}"#, "field \"jti\" must be a non-empty string"),
            (r#"{"jti":42}"#, "field \"jti\" must be a non-empty string"),
            (r#"{"jti":"a","exp":"soon"}"#, "field \"exp\""),
            (r#"{"jti":"a","sub":"b"}"#, "unknown field \"sub\""),
        ];

        for (body, expected) in cases {
            let response = post(&service, "/revoke", body);
            assert_eq!(response.status, 400, "body {body:?}");
            let description = body_json(&response)["error_description"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                description.contains(expected),
                "body {body:?}: {description} does not contain {expected:?}"
            );
        }
        assert!(service.revocations.is_empty());
    }

    #[test]
    fn authorize_invalid_header_rejected() {
        let service = service();
        let (token, _) = issue_via_api(&service);
        let bearer = format!("Bearer {token}");
        let basic = "Basic dXNlcjpwYXNz";
        let cases: [(&[&str], &str); 5] = [
            (&[], "request has no Authorization header"),
            (&[basic], "does not use the Bearer scheme"),
            (&["Bearer"], "empty Bearer token"),
            (&["Bearer   "], "empty Bearer token"),
            (&[&bearer, &bearer], "more than one Authorization header"),
        ];

        for (authorization, expected) in cases {
            let response = authorize(&service, authorization);
            assert_eq!(response.status, 401, "header {authorization:?}");
            let body = body_json(&response);
            assert_eq!(body["error"], "invalid_token");
            let description = body["error_description"].as_str().unwrap();
            assert!(
                description.contains(expected),
                "header {authorization:?}: {description} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn authorize_invalid_token_rejected() {
        let service = service();
        let (token, _) = issue_via_api(&service);
        let tampered = format!("{token}x");

        let response = authorize(&service, &[&format!("Bearer {tampered}")]);

        assert_eq!(response.status, 401);
        assert_eq!(
            response.headers,
            vec![(
                "WWW-Authenticate",
                r#"Bearer error="invalid_token""#.to_string()
            )]
        );
        let body = body_json(&response);
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["error_description"], "token signature is invalid");
        assert!(!response.body.contains(&token));
    }

    #[test]
    fn healthz_returns_ok() {
        let service = service();
        let request = ApiRequest {
            method: "GET",
            target: "/healthz",
            authorization: &[],
            body: b"",
        };

        let response = service.handle(&request, NOW);

        assert_eq!(response.status, 200);
        assert_eq!(response.body, "ok");
    }

    #[test]
    fn unknown_path_not_found() {
        let response = post(&service(), "/nope?x=1", "");

        assert_eq!(response.status, 404);
        assert_eq!(body_json(&response)["error"], "not_found");
        assert_eq!(
            body_json(&response)["error_description"],
            "no route for /nope"
        );
    }

    #[test]
    fn wrong_method_not_allowed() {
        let service = service();
        let request = ApiRequest {
            method: "GET",
            target: "/authorize",
            authorization: &[],
            body: b"",
        };

        let response = service.handle(&request, NOW);

        assert_eq!(response.status, 405);
        assert_eq!(body_json(&response)["error"], "method_not_allowed");
        assert_eq!(response.headers, vec![("Allow", "POST".to_string())]);
    }

    #[test]
    fn query_string_ignored_for_routing() {
        let service = service();
        let request = ApiRequest {
            method: "GET",
            target: "/healthz?probe=1",
            authorization: &[],
            body: b"",
        };

        assert_eq!(service.handle(&request, NOW).status, 200);
    }
}
