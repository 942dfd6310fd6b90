//! The outcome of one request and the local reply that carries a denial to the client.
//!
//! Denials follow RFC 6750 section 3: a `WWW-Authenticate: Bearer` challenge, bare when the request
//! sent no bearer token, with `error="invalid_request"` or `error="invalid_token"` otherwise. The
//! body is a short JSON object with `error` and `error_description`. No reply contains the token.

use std::fmt;

/// Reasons the authorization service gave no decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDecision {
    /// The callout timed out, which Envoy reports as a synthetic 504 response.
    Timeout,
    /// Envoy could not connect to the service or the connection was reset. Envoy reports this as a
    /// synthetic 503 response, or as a failure without a response.
    ConnectFailure,
    /// The service responded with a status other than 200, 401 or 403.
    UnexpectedStatus(u16),
    /// The response had no valid `:status`.
    MissingStatus,
    /// Envoy refused to send the callout, for example because the cluster does not exist.
    DispatchFailed,
    /// Every cluster's circuit breaker was open, so no callout was sent.
    BreakerOpen,
}

impl fmt::Display for NoDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("the authorization callout timed out"),
            Self::ConnectFailure => f.write_str("the authorization service could not be reached"),
            Self::UnexpectedStatus(status) => {
                write!(f, "the authorization service answered with status {status}")
            }
            Self::MissingStatus => {
                f.write_str("the authorization service response has no valid :status")
            }
            Self::DispatchFailed => f.write_str("the authorization callout could not be sent"),
            Self::BreakerOpen => f.write_str(
                "the circuit breaker of every authorization cluster is open, so no callout was sent",
            ),
        }
    }
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The authorization service responded with 200.
    Allowed,
    /// A CORS preflight, which carries no credentials and passes without a callout.
    Preflight,
    /// The request has no bearer token.
    MissingToken,
    /// The `Authorization` header is malformed (400 `invalid_request`).
    InvalidRequest(&'static str),
    /// The token is not a JWT with a usable `jti` (401 `invalid_token`), found before any callout.
    MalformedToken(&'static str),
    /// The authorization service responded with 401.
    Rejected,
    /// The authorization service responded with 403: the token is revoked.
    Revoked,
    /// No decision arrived, and the request is denied with `status` (`statusOnError`).
    Unavailable { reason: NoDecision, status: u16 },
    /// No decision arrived, and `failOpen` lets the request through, marked with
    /// [`FAILURE_MODE_HEADER`].
    FailedOpen(NoDecision),
}

/// Request header added when `failOpen` lets a request through without a decision, so the
/// upstream can tell.
pub const FAILURE_MODE_HEADER: (&str, &str) = ("x-jwt-revocation-failure-mode-allowed", "true");

impl Verdict {
    /// Returns true when the request continues to the upstream.
    pub fn allows(&self) -> bool {
        matches!(self, Self::Allowed | Self::Preflight | Self::FailedOpen(_))
    }

    /// Returns the request header to add when the request continues, if any.
    pub fn request_header(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::FailedOpen(_) => Some(FAILURE_MODE_HEADER),
            _ => None,
        }
    }

    /// Returns why no decision arrived, for a request that got none.
    pub fn no_decision(&self) -> Option<NoDecision> {
        match self {
            Self::Unavailable { reason, .. } | Self::FailedOpen(reason) => Some(*reason),
            _ => None,
        }
    }

    /// Returns a short fixed label for logs, such as `revoked`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Preflight => "preflight",
            Self::MissingToken => "missing_token",
            Self::InvalidRequest(_) => "invalid_request",
            Self::MalformedToken(_) => "malformed_token",
            Self::Rejected => "rejected",
            Self::Revoked => "revoked",
            Self::Unavailable { .. } => "unavailable",
            Self::FailedOpen(_) => "failed_open",
        }
    }

    /// Returns the local reply that denies the request, or `None` when it continues.
    pub fn local_reply(&self) -> Option<LocalReply> {
        let reply = match self {
            Self::Allowed | Self::Preflight | Self::FailedOpen(_) => return None,
            Self::MissingToken => {
                LocalReply::challenge(401, None, "unauthorized", "the request has no bearer token")
            }
            Self::InvalidRequest(reason) => {
                LocalReply::challenge(400, Some("invalid_request"), "invalid_request", reason)
            }
            Self::MalformedToken(reason) => {
                LocalReply::challenge(401, Some("invalid_token"), "invalid_token", reason)
            }
            Self::Rejected => LocalReply::challenge(
                401,
                Some("invalid_token"),
                "invalid_token",
                "the authorization service rejected the token",
            ),
            Self::Revoked => LocalReply::challenge(
                403,
                Some("invalid_token"),
                "revoked",
                "the token has been revoked",
            ),
            Self::Unavailable { status, .. } => LocalReply {
                status: *status,
                www_authenticate: None,
                body: json_body(
                    "temporarily_unavailable",
                    "the authorization service gave no decision; retry later",
                ),
                details: "jwt_revocation_no_decision",
            },
        };
        Some(reply)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(reason) | Self::MalformedToken(reason) => f.write_str(reason),
            Self::Unavailable { reason, .. } => reason.fmt(f),
            Self::FailedOpen(reason) => write!(f, "{reason}; failOpen lets the request through"),
            Self::Allowed => f.write_str("the authorization service allowed the token"),
            Self::Preflight => f.write_str("CORS preflight passed without a callout"),
            Self::MissingToken => f.write_str("the request has no bearer token"),
            Self::Rejected => f.write_str("the authorization service rejected the token"),
            Self::Revoked => f.write_str("the token has been revoked"),
        }
    }
}

/// A response the filter sends in place of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Value of the `WWW-Authenticate` header, if the reply carries one.
    pub www_authenticate: Option<String>,
    /// JSON body, sent with `content-type: application/json`.
    pub body: String,
    /// Envoy's response code details, shown in access logs as `%RESPONSE_CODE_DETAILS%`.
    pub details: &'static str,
}

impl LocalReply {
    fn challenge(
        status: u16,
        error: Option<&'static str>,
        body_error: &'static str,
        description: &'static str,
    ) -> Self {
        let www_authenticate = match error {
            None => "Bearer".to_owned(),
            Some(error) => format!("Bearer error=\"{error}\", error_description=\"{description}\""),
        };
        Self {
            status,
            www_authenticate: Some(www_authenticate),
            body: json_body(body_error, description),
            details: match status {
                400 => "jwt_revocation_invalid_request",
                403 => "jwt_revocation_revoked",
                _ => "jwt_revocation_unauthorized",
            },
        }
    }

    /// Returns the response headers other than `:status`.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(challenge) = &self.www_authenticate {
            headers.push(("www-authenticate", challenge));
        }
        headers
    }
}

/// Builds the reply body. Both strings are fixed texts of this crate without quotes or
/// backslashes, which a test checks, so no escaping is needed.
fn json_body(error: &str, description: &str) -> String {
    format!("{{\"error\":\"{error}\",\"error_description\":\"{description}\"}}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_denials() -> Vec<Verdict> {
        vec![
            Verdict::MissingToken,
            Verdict::InvalidRequest("the Bearer scheme has no token"),
            Verdict::MalformedToken("the JWT has no jti claim"),
            Verdict::Rejected,
            Verdict::Revoked,
            Verdict::Unavailable {
                reason: NoDecision::Timeout,
                status: 503,
            },
            Verdict::Unavailable {
                reason: NoDecision::UnexpectedStatus(500),
                status: 500,
            },
        ]
    }

    #[test]
    fn failed_open_allows_with_header() {
        let verdict = Verdict::FailedOpen(NoDecision::Timeout);
        assert!(verdict.allows());
        assert_eq!(verdict.local_reply(), None);
        assert_eq!(
            verdict.request_header(),
            Some(("x-jwt-revocation-failure-mode-allowed", "true"))
        );
        assert_eq!(verdict.no_decision(), Some(NoDecision::Timeout));
    }

    #[test]
    fn decisions_add_no_header() {
        assert_eq!(Verdict::Allowed.request_header(), None);
        assert_eq!(Verdict::Revoked.no_decision(), None);
    }

    #[test]
    fn allowing_verdicts_have_no_reply() {
        assert_eq!(Verdict::Allowed.local_reply(), None);
        assert_eq!(Verdict::Preflight.local_reply(), None);
        assert!(Verdict::Allowed.allows());
        assert!(Verdict::Preflight.allows());
    }

    #[test]
    fn denial_statuses() {
        let statuses: Vec<u16> = all_denials()
            .iter()
            .map(|v| v.local_reply().unwrap().status)
            .collect();
        assert_eq!(statuses, [401, 400, 401, 401, 403, 503, 500]);
        assert!(all_denials().iter().all(|v| !v.allows()));
    }

    #[test]
    fn missing_token_bare_challenge() {
        let reply = Verdict::MissingToken.local_reply().unwrap();
        assert_eq!(reply.www_authenticate.as_deref(), Some("Bearer"));
    }

    #[test]
    fn invalid_request_challenge() {
        let reply = Verdict::InvalidRequest("the Bearer scheme has no token")
            .local_reply()
            .unwrap();
        assert_eq!(
            reply.www_authenticate.as_deref(),
            Some("Bearer error=\"invalid_request\", error_description=\"the Bearer scheme has no token\"")
        );
    }

    #[test]
    fn revoked_challenge_is_invalid_token() {
        let reply = Verdict::Revoked.local_reply().unwrap();
        let challenge = reply.www_authenticate.unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
    }

    #[test]
    fn no_decision_has_no_challenge() {
        let reply = Verdict::Unavailable {
            reason: NoDecision::ConnectFailure,
            status: 503,
        }
        .local_reply()
        .unwrap();
        assert_eq!(reply.www_authenticate, None);
    }

    #[test]
    fn bodies_are_json_with_error_fields() {
        for verdict in all_denials() {
            let reply = verdict.local_reply().unwrap();
            let body: serde_json::Value = serde_json::from_str(&reply.body).expect(&reply.body);
            assert!(body["error"].is_string(), "{}", reply.body);
            assert!(body["error_description"].is_string(), "{}", reply.body);
        }
    }

    #[test]
    fn headers_include_content_type() {
        let reply = Verdict::Rejected.local_reply().unwrap();
        let headers = reply.headers();
        assert_eq!(headers[0], ("content-type", "application/json"));
        assert_eq!(headers[1].0, "www-authenticate");
    }
}
