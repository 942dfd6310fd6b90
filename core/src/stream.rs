//! The per-request state machine that both targets drive.
//!
//! A target turns host events into calls on [`Stream`] and carries out the [`Action`] it returns:
//!
//! 1. Request headers arrive: [`Stream::on_request_headers`] returns [`Action::Dispatch`] with the
//!    callout to send (the target pauses the request until the response), or [`Action::Finish`].
//! 2. The callout completes: [`Stream::on_callout_response`] or [`Stream::on_callout_failure`]
//!    returns [`Action::Finish`].
//! 3. On [`Action::Finish`] the target continues the request when the verdict allows it, and sends
//!    [`Verdict::local_reply`] otherwise.
//!
//! The stream never calls the host, so every path is unit-tested without Envoy.

use std::time::Duration;

use crate::config::Config;
use crate::token::{bearer_token, jti, TokenError};
use crate::verdict::{NoDecision, Verdict};

/// The request headers that the decision depends on, collected from the host's header map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestInfo<'a> {
    method: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
    authorization_count: usize,
    has_origin: bool,
    has_preflight_method: bool,
}

impl<'a> RequestInfo<'a> {
    /// Collects the relevant headers from `(name, value)` pairs; names match in any case.
    pub fn from_headers<I>(headers: I) -> Self
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut info = Self::default();
        for (name, value) in headers {
            info.add_header(name, value);
        }
        info
    }

    /// Records one header. Each value of a repeated header is added separately.
    pub fn add_header(&mut self, name: &'a [u8], value: &'a [u8]) {
        if name.eq_ignore_ascii_case(b"authorization") {
            self.authorization_count += 1;
            self.authorization.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b":method") {
            self.method = Some(value);
        } else if name.eq_ignore_ascii_case(b"origin") {
            self.has_origin = true;
        } else if name.eq_ignore_ascii_case(b"access-control-request-method") {
            self.has_preflight_method = true;
        }
    }

    /// Returns true for a CORS preflight: `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`.
    fn is_cors_preflight(&self) -> bool {
        self.method == Some(b"OPTIONS") && self.has_origin && self.has_preflight_method
    }
}

/// A callout to the authorization service: `POST {authorizeUrl}` with the client's bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout<'c> {
    pub cluster: &'c str,
    pub timeout: Duration,
    path: &'c str,
    authority: &'c str,
    authorization: String,
}

impl Callout<'_> {
    /// Returns the callout's request headers.
    ///
    /// `content-length: 0` is explicit because a bodiless request without it made Envoy open a
    /// new upstream connection for every callout.
    pub fn headers(&self) -> [(&str, &str); 5] {
        [
            (":method", "POST"),
            (":path", self.path),
            (":authority", self.authority),
            ("authorization", &self.authorization),
            ("content-length", "0"),
        ]
    }
}

/// The next step for the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'c> {
    /// Send this callout and hold the request until it completes.
    Dispatch(Callout<'c>),
    /// The request is decided: continue it or send the verdict's local reply.
    Finish(Verdict),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum State {
    #[default]
    New,
    AwaitingCallout,
    Finished,
}

/// The decision state of one request.
#[derive(Debug, Default)]
pub struct Stream {
    state: State,
    jti: Option<String>,
}

impl Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the `jti` of the request's token, once it has been read.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// Returns true while a callout is in flight.
    pub fn is_awaiting_callout(&self) -> bool {
        self.state == State::AwaitingCallout
    }

    /// Decides what to do with a request whose headers have all arrived.
    pub fn on_request_headers<'c>(
        &mut self,
        config: &'c Config,
        request: &RequestInfo,
    ) -> Action<'c> {
        if self.state != State::New {
            return self.finish(Verdict::InvalidRequest("the request headers arrived twice"));
        }
        if request.authorization_count > 1 {
            return self.finish(Verdict::InvalidRequest(
                "the request has more than one Authorization header",
            ));
        }
        let Some(value) = request.authorization else {
            if request.is_cors_preflight() {
                return self.finish(Verdict::Preflight);
            }
            return self.finish(Verdict::MissingToken);
        };
        let token = match bearer_token(value) {
            Ok(token) => token,
            Err(TokenError::NotBearer) => return self.finish(Verdict::MissingToken),
            Err(TokenError::InvalidRequest(reason)) => {
                return self.finish(Verdict::InvalidRequest(reason))
            }
            Err(TokenError::InvalidToken(reason)) => {
                return self.finish(Verdict::MalformedToken(reason))
            }
        };
        match jti(token) {
            Ok(jti) => self.jti = Some(jti),
            Err(TokenError::InvalidRequest(reason) | TokenError::InvalidToken(reason)) => {
                return self.finish(Verdict::MalformedToken(reason))
            }
            Err(TokenError::NotBearer) => return self.finish(Verdict::MissingToken),
        }

        self.state = State::AwaitingCallout;
        let mut authorization = String::with_capacity("Bearer ".len() + token.len());
        authorization.push_str("Bearer ");
        authorization.push_str(token);
        Action::Dispatch(Callout {
            cluster: &config.cluster,
            timeout: config.timeout,
            path: &config.authorize_url,
            authority: &config.authority,
            authorization,
        })
    }

    /// Decides on the authorization service's response, given its `:status` header value.
    pub fn on_callout_response(&mut self, status: Option<&[u8]>) -> Action<'static> {
        if self.state != State::AwaitingCallout {
            return self.finish(Verdict::NoDecision(NoDecision::MissingStatus));
        }
        let verdict = match parse_status(status) {
            Some(200) => Verdict::Allowed,
            Some(401) => Verdict::Rejected,
            Some(403) => Verdict::Revoked,
            Some(504) => Verdict::NoDecision(NoDecision::Timeout),
            Some(503) => Verdict::NoDecision(NoDecision::ConnectFailure),
            Some(other) => Verdict::NoDecision(NoDecision::UnexpectedStatus(other)),
            None => Verdict::NoDecision(NoDecision::MissingStatus),
        };
        self.finish(verdict)
    }

    /// Records that the callout could not be sent or ended without a response.
    pub fn on_callout_failure(&mut self, reason: NoDecision) -> Action<'static> {
        self.finish(Verdict::NoDecision(reason))
    }

    fn finish(&mut self, verdict: Verdict) -> Action<'static> {
        self.state = State::Finished;
        Action::Finish(verdict)
    }
}

/// Parses a `:status` value: exactly three ASCII digits.
fn parse_status(status: Option<&[u8]>) -> Option<u16> {
    match status? {
        &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_digit) => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;

    fn config() -> Config {
        Config::from_json(br#"{"cluster": "outbound|8080||authz.ns.svc.cluster.local"}"#).unwrap()
    }

    fn token(payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn bearer(payload: &str) -> String {
        format!("Bearer {}", token(payload))
    }

    fn decide(headers: &[(&str, &str)]) -> (Stream, Action<'static>) {
        let config = Box::leak(Box::new(config()));
        let info =
            RequestInfo::from_headers(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        let mut stream = Stream::new();
        let action = stream.on_request_headers(config, &info);
        (stream, action)
    }

    fn verdict(headers: &[(&str, &str)]) -> Verdict {
        match decide(headers).1 {
            Action::Finish(verdict) => verdict,
            Action::Dispatch(callout) => panic!("expected a verdict, got {callout:?}"),
        }
    }

    fn dispatched() -> Stream {
        let auth = bearer(r#"{"jti":"id-1"}"#);
        let (stream, action) = decide(&[(":method", "GET"), ("authorization", &auth)]);
        assert!(matches!(action, Action::Dispatch(_)));
        stream
    }

    #[test]
    fn valid_token_dispatches_callout() {
        let auth = bearer(r#"{"jti":"id-1"}"#);
        let (stream, action) = decide(&[(":method", "GET"), ("authorization", &auth)]);
        let Action::Dispatch(callout) = action else {
            panic!("expected a callout, got {action:?}");
        };
        assert_eq!(callout.cluster, "outbound|8080||authz.ns.svc.cluster.local");
        assert_eq!(callout.timeout, Duration::from_millis(2000));
        assert_eq!(
            callout.headers(),
            [
                (":method", "POST"),
                (":path", "/authorize"),
                (":authority", "authz.ns.svc.cluster.local"),
                ("authorization", auth.as_str()),
                ("content-length", "0"),
            ]
        );
        assert_eq!(stream.jti(), Some("id-1"));
        assert!(stream.is_awaiting_callout());
    }

    #[test]
    fn lowercase_scheme_normalised_in_callout() {
        let raw = token(r#"{"jti":"id-1"}"#);
        let (_, action) = decide(&[("authorization", &format!("bearer   {raw}"))]);
        let Action::Dispatch(callout) = action else {
            panic!("expected a callout, got {action:?}");
        };
        assert_eq!(callout.headers()[3].1, format!("Bearer {raw}"));
    }

    #[test]
    fn missing_header_is_missing_token() {
        assert_eq!(verdict(&[(":method", "GET")]), Verdict::MissingToken);
    }

    #[test]
    fn other_scheme_is_missing_token() {
        assert_eq!(
            verdict(&[("authorization", "Basic dXNlcjpwdw==")]),
            Verdict::MissingToken
        );
    }

    #[test]
    fn cors_preflight_passes() {
        let preflight = [
            (":method", "OPTIONS"),
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ];
        assert_eq!(verdict(&preflight), Verdict::Preflight);
    }

    #[test]
    fn incomplete_preflight_needs_token() {
        assert_eq!(
            verdict(&[(":method", "OPTIONS"), ("origin", "https://app.example")]),
            Verdict::MissingToken
        );
        assert_eq!(
            verdict(&[
                (":method", "GET"),
                ("origin", "o"),
                ("access-control-request-method", "GET")
            ]),
            Verdict::MissingToken
        );
    }

    #[test]
    fn preflight_with_token_still_checked() {
        let auth = bearer(r#"{"jti":"id-1"}"#);
        let (_, action) = decide(&[
            (":method", "OPTIONS"),
            ("origin", "o"),
            ("access-control-request-method", "GET"),
            ("authorization", &auth),
        ]);
        assert!(matches!(action, Action::Dispatch(_)));
    }

    #[test]
    fn two_authorization_headers_rejected() {
        let auth = bearer(r#"{"jti":"id-1"}"#);
        assert_eq!(
            verdict(&[("authorization", &auth), ("Authorization", &auth)]),
            Verdict::InvalidRequest("the request has more than one Authorization header")
        );
    }

    #[test]
    fn malformed_header_is_invalid_request() {
        let auth = format!("{} extra", bearer(r#"{"jti":"id-1"}"#));
        assert!(matches!(
            verdict(&[("authorization", &auth)]),
            Verdict::InvalidRequest(_)
        ));
        assert!(matches!(
            verdict(&[("authorization", "Bearer")]),
            Verdict::InvalidRequest(_)
        ));
    }

    #[test]
    fn malformed_tokens_skip_callout() {
        let cases = [
            bearer(r#"{"jti":5}"#),
            bearer(r#"{"sub":"a"}"#),
            bearer("not json"),
            "Bearer a.b.c.d.e".to_owned(),
            "Bearer abc.def".to_owned(),
        ];
        for auth in cases {
            assert!(
                matches!(
                    verdict(&[("authorization", &auth)]),
                    Verdict::MalformedToken(_)
                ),
                "{auth}"
            );
        }
    }

    #[test]
    fn status_200_allows() {
        let mut stream = dispatched();
        assert_eq!(
            stream.on_callout_response(Some(b"200")),
            Action::Finish(Verdict::Allowed)
        );
        assert!(!stream.is_awaiting_callout());
    }

    #[test]
    fn status_401_rejects() {
        let mut stream = dispatched();
        assert_eq!(
            stream.on_callout_response(Some(b"401")),
            Action::Finish(Verdict::Rejected)
        );
    }

    #[test]
    fn status_403_revokes() {
        let mut stream = dispatched();
        assert_eq!(
            stream.on_callout_response(Some(b"403")),
            Action::Finish(Verdict::Revoked)
        );
    }

    #[test]
    fn other_statuses_fail_closed() {
        let cases: [(&[u8], NoDecision); 6] = [
            (b"204", NoDecision::UnexpectedStatus(204)),
            (b"302", NoDecision::UnexpectedStatus(302)),
            (b"500", NoDecision::UnexpectedStatus(500)),
            (b"504", NoDecision::Timeout),
            (b"503", NoDecision::ConnectFailure),
            (b"2000", NoDecision::MissingStatus),
        ];
        for (status, expected) in cases {
            let mut stream = dispatched();
            let action = stream.on_callout_response(Some(status));
            assert_eq!(
                action,
                Action::Finish(Verdict::NoDecision(expected)),
                "{status:?}"
            );
        }
    }

    #[test]
    fn missing_or_garbled_status_fails_closed() {
        for status in [
            None,
            Some(&b""[..]),
            Some(b"20x"),
            Some(b" 200"),
            Some(b"-20"),
        ] {
            let mut stream = dispatched();
            assert_eq!(
                stream.on_callout_response(status),
                Action::Finish(Verdict::NoDecision(NoDecision::MissingStatus)),
                "{status:?}"
            );
        }
    }

    #[test]
    fn callout_failure_fails_closed() {
        let mut stream = dispatched();
        assert_eq!(
            stream.on_callout_failure(NoDecision::DispatchFailed),
            Action::Finish(Verdict::NoDecision(NoDecision::DispatchFailed))
        );
    }

    #[test]
    fn response_without_callout_fails_closed() {
        let mut stream = Stream::new();
        let action = stream.on_callout_response(Some(b"200"));
        assert!(matches!(action, Action::Finish(Verdict::NoDecision(_))));
    }

    #[test]
    fn second_response_cannot_allow() {
        let mut stream = dispatched();
        assert_eq!(
            stream.on_callout_response(Some(b"403")),
            Action::Finish(Verdict::Revoked)
        );
        let action = stream.on_callout_response(Some(b"200"));
        assert!(matches!(action, Action::Finish(Verdict::NoDecision(_))));
    }

    #[test]
    fn headers_twice_rejected() {
        let config = config();
        let auth = bearer(r#"{"jti":"id-1"}"#);
        let info = RequestInfo::from_headers([(&b"authorization"[..], auth.as_bytes())]);
        let mut stream = Stream::new();
        assert!(matches!(
            stream.on_request_headers(&config, &info),
            Action::Dispatch(_)
        ));
        assert!(matches!(
            stream.on_request_headers(&config, &info),
            Action::Finish(Verdict::InvalidRequest(_))
        ));
    }
}
