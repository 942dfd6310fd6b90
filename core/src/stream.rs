//! The per-request state machine that both targets drive.
//!
//! A target turns host events into calls on [`Stream`] and carries out the [`Action`] it returns:
//!
//! 1. Request headers arrive: [`Stream::on_request_headers`] returns [`Action::Dispatch`] with the
//!    callout to send (the target pauses the request until the response), or [`Action::Finish`].
//! 2. The callout completes: [`Stream::on_callout_response`] or [`Stream::on_callout_failure`]
//!    returns [`Action::Finish`], another [`Action::Dispatch`] (to a fallback cluster, or a retry
//!    without backoff), or [`Action::Wait`].
//! 3. On [`Action::Wait`] the target calls [`Stream::on_timer`] once the time has passed.
//! 4. On [`Action::Finish`] the target continues the request when the verdict allows it (adding
//!    [`Verdict::request_header`] if there is one) and sends [`Verdict::local_reply`] otherwise.
//!
//! Every event carries an [`Env`]: the time, the worker's circuit breakers and decision cache, a
//! jitter sample and the metrics recorder. The stream never calls the host, so every path is unit-tested without
//! Envoy.

use std::time::Duration;

use crate::breaker::{Admission, BreakerConfig, CircuitBreaker, Transition};
use crate::cache::{CacheKey, DecisionCache};
use crate::config::Config;
use crate::metrics::{Counter, Recorder};
use crate::token::{bearer_token, claims, Claims, Expiry, TokenError};
use crate::verdict::{NoDecision, Verdict, FAILURE_MODE_HEADER};

/// The request headers that the decision depends on, collected from the host's header map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestInfo<'a> {
    method: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
    authorization_count: usize,
    has_origin: bool,
    has_preflight_method: bool,
    has_failure_mode_header: bool,
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
        } else if name.eq_ignore_ascii_case(FAILURE_MODE_HEADER.0.as_bytes()) {
            self.has_failure_mode_header = true;
        }
    }

    /// Returns true when the client sent [`FAILURE_MODE_HEADER`] itself. Targets remove it from
    /// every request they check, so that only the filter can tell the upstream a request passed
    /// without a decision.
    pub fn has_failure_mode_header(&self) -> bool {
        self.has_failure_mode_header
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
    /// Hold the request, and call [`Stream::on_timer`] after this long.
    Wait(Duration),
    /// The request is decided: continue it or send the verdict's local reply.
    Finish(Verdict),
}

/// The circuit breakers of one worker: one per cluster, in the order of
/// [`Config::upstream`], or none when the configuration has no `circuitBreaker`.
#[derive(Debug, Clone, Default)]
pub struct Breakers(Vec<CircuitBreaker>);

impl Breakers {
    pub fn new(config: &Config) -> Self {
        match config.breaker {
            None => Self(Vec::new()),
            Some(breaker) => Self::with(breaker, config.upstream_count()),
        }
    }

    fn with(config: BreakerConfig, count: usize) -> Self {
        Self((0..count).map(|_| CircuitBreaker::new(config)).collect())
    }

    fn admit(&mut self, index: usize, now: Duration, probe_timeout: Duration) -> Admission {
        self.0
            .get_mut(index)
            .map_or(Admission::Allowed, |b| b.admit(now, probe_timeout))
    }

    fn record(&mut self, index: usize, decided: bool, now: Duration) -> Transition {
        match self.0.get_mut(index) {
            None => Transition::None,
            Some(breaker) if decided => breaker.record_decision(),
            Some(breaker) => breaker.record_no_decision(now),
        }
    }
}

/// The host-side inputs of one event, besides the configuration.
pub struct Env<'a> {
    /// The current time, from any clock that does not jump, as a [`Duration`] since a fixed
    /// instant.
    pub now: Duration,
    /// The wall-clock time as a [`Duration`] since the Unix epoch, which a token's `exp` is
    /// compared with.
    pub unix_time: Duration,
    /// A random number in `[0, 1)` for the retry backoff.
    pub jitter: f64,
    pub breakers: &'a mut Breakers,
    pub cache: &'a mut DecisionCache,
    pub metrics: &'a mut dyn Recorder,
}

/// The scheme prefix of the callout's `authorization` header.
const BEARER_PREFIX: &str = "Bearer ";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    New,
    AwaitingCallout,
    BackingOff,
    Finished,
}

/// The decision state of one request.
#[derive(Debug, Default)]
pub struct Stream {
    state: State,
    jti: Option<String>,
    /// The token's cache key and `exp`, set when the configuration has a cache.
    cache_entry: Option<(CacheKey, Expiry)>,
    /// `Bearer <token>`, sent with every callout of this request.
    authorization: String,
    /// Time after which no further callout starts.
    deadline: Duration,
    /// Index of the cluster being tried, as in [`Config::upstream`].
    upstream: usize,
    retries: u32,
    callout_started: Duration,
}

impl Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the `jti` of the request's token, once it has been read.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// Returns true while the request is held for a callout or a backoff.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, State::AwaitingCallout | State::BackingOff)
    }

    /// Returns the cluster of the callout in flight or the last one sent.
    pub fn cluster<'c>(&self, config: &'c Config) -> &'c str {
        config
            .upstream(self.upstream)
            .map_or("", |(cluster, _)| cluster)
    }

    /// Decides what to do with a request whose headers have all arrived.
    pub fn on_request_headers<'c>(
        &mut self,
        config: &'c Config,
        request: &RequestInfo,
        env: Env,
    ) -> Action<'c> {
        if self.state != State::New {
            return self.finish(
                Verdict::InvalidRequest("the request headers arrived twice"),
                env.metrics,
            );
        }
        match parse_request(request) {
            Err(verdict) => self.finish(verdict, env.metrics),
            Ok((token, claims)) => {
                self.jti = Some(claims.jti);
                if config.cache.is_some() {
                    let key = CacheKey::of(token);
                    if let Some(verdict) = env.cache.get(&key, env.now) {
                        env.metrics.increment(Counter::CacheHit);
                        return self.finish(verdict, env.metrics);
                    }
                    self.cache_entry = Some((key, claims.exp));
                }
                self.authorization
                    .reserve_exact(BEARER_PREFIX.len() + token.len());
                self.authorization.push_str(BEARER_PREFIX);
                self.authorization.push_str(token);
                self.deadline = env.now + config.timeout;
                self.try_upstreams(config, env)
            }
        }
    }

    /// Decides on the authorization service's response, given its `:status` header value.
    pub fn on_callout_response<'c>(
        &mut self,
        config: &'c Config,
        status: Option<&[u8]>,
        env: Env,
    ) -> Action<'c> {
        if self.state != State::AwaitingCallout {
            let verdict = self.unavailable(config, NoDecision::MissingStatus);
            return self.finish(verdict, env.metrics);
        }
        let latency = env.now.saturating_sub(self.callout_started);
        env.metrics
            .record_callout_latency(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX));

        let decision = match parse_status(status) {
            Some(200) => Ok(Verdict::Allowed),
            Some(401) => Ok(Verdict::Rejected),
            Some(403) => Ok(Verdict::Revoked),
            Some(504) => Err(NoDecision::Timeout),
            Some(503) => Err(NoDecision::ConnectFailure),
            Some(other) => Err(NoDecision::UnexpectedStatus(other)),
            None => Err(NoDecision::MissingStatus),
        };
        match decision {
            Ok(verdict) => {
                env.breakers.record(self.upstream, true, env.now);
                if let Some((key, exp)) = self.cache_entry {
                    env.cache.insert(
                        key,
                        &verdict,
                        exp,
                        self.callout_started,
                        env.now,
                        env.unix_time,
                    );
                }
                self.finish(verdict, env.metrics)
            }
            Err(reason) => self.after_no_decision(config, reason, env),
        }
    }

    /// Records that the callout could not be sent or ended without a response.
    pub fn on_callout_failure<'c>(
        &mut self,
        config: &'c Config,
        reason: NoDecision,
        env: Env,
    ) -> Action<'c> {
        if self.state != State::AwaitingCallout {
            let verdict = self.unavailable(config, reason);
            return self.finish(verdict, env.metrics);
        }
        self.after_no_decision(config, reason, env)
    }

    /// Sends the retry that an [`Action::Wait`] postponed.
    pub fn on_timer<'c>(&mut self, config: &'c Config, env: Env) -> Action<'c> {
        if self.state != State::BackingOff {
            let verdict = self.unavailable(config, NoDecision::MissingStatus);
            return self.finish(verdict, env.metrics);
        }
        self.try_upstreams(config, env)
    }

    /// Counts the failed callout, then retries, moves on to the next cluster, or gives up.
    fn after_no_decision<'c>(
        &mut self,
        config: &'c Config,
        reason: NoDecision,
        env: Env,
    ) -> Action<'c> {
        env.metrics.increment(match reason {
            NoDecision::Timeout => Counter::ErrorTimeout,
            NoDecision::ConnectFailure => Counter::ErrorConnect,
            NoDecision::UnexpectedStatus(_) | NoDecision::MissingStatus => Counter::ErrorStatus,
            NoDecision::DispatchFailed => Counter::ErrorDispatch,
            NoDecision::BreakerOpen => Counter::BreakerSkipped,
        });
        if env.breakers.record(self.upstream, false, env.now) == Transition::Opened {
            env.metrics.increment(Counter::BreakerOpened);
        }

        if self.retries < config.retry.max_retries {
            let backoff = config.retry.backoff(self.retries, env.jitter);
            // A retry must leave time for its callout; otherwise the next cluster gets the time.
            if env.now + backoff < self.deadline {
                self.retries += 1;
                env.metrics.increment(Counter::Retries);
                if backoff.is_zero() {
                    return self.try_upstreams(config, env);
                }
                self.state = State::BackingOff;
                return Action::Wait(backoff);
            }
        }
        self.upstream += 1;
        if self.upstream < config.upstream_count() {
            return self.try_upstreams(config, env);
        }
        self.upstream -= 1;
        let verdict = self.give_up(config, reason, env.metrics);
        self.finish(verdict, env.metrics)
    }

    /// Sends the callout to the current cluster or the first later one whose breaker admits it.
    fn try_upstreams<'c>(&mut self, config: &'c Config, env: Env) -> Action<'c> {
        let remaining = self.deadline.saturating_sub(env.now);
        if remaining.is_zero() {
            let verdict = self.give_up(config, NoDecision::Timeout, env.metrics);
            return self.finish(verdict, env.metrics);
        }
        let timeout = remaining.min(config.per_try_timeout);

        for index in self.upstream..config.upstream_count() {
            if env.breakers.admit(index, env.now, timeout) == Admission::Rejected {
                env.metrics.increment(Counter::BreakerSkipped);
                continue;
            }
            let Some((cluster, authority)) = config.upstream(index) else {
                break;
            };
            self.upstream = index;
            self.state = State::AwaitingCallout;
            self.callout_started = env.now;
            return Action::Dispatch(Callout {
                cluster,
                timeout,
                path: &config.authorize_url,
                authority,
                authorization: self.authorization.clone(),
            });
        }
        let verdict = self.give_up(config, NoDecision::BreakerOpen, env.metrics);
        self.finish(verdict, env.metrics)
    }

    /// Applies the failure policy once no cluster gave a decision.
    fn give_up(&self, config: &Config, reason: NoDecision, metrics: &mut dyn Recorder) -> Verdict {
        if config.fail_open {
            metrics.increment(Counter::FailureModeAllowed);
            Verdict::FailedOpen(reason)
        } else {
            metrics.increment(Counter::DeniedUnavailable);
            self.unavailable(config, reason)
        }
    }

    fn unavailable(&self, config: &Config, reason: NoDecision) -> Verdict {
        Verdict::Unavailable {
            reason,
            status: config.status_on_error,
        }
    }

    fn finish(&mut self, verdict: Verdict, metrics: &mut dyn Recorder) -> Action<'static> {
        let counter = match verdict {
            Verdict::Allowed => Some(Counter::Allowed),
            Verdict::Preflight => Some(Counter::CorsPreflight),
            Verdict::Rejected => Some(Counter::DeniedInvalid),
            Verdict::Revoked => Some(Counter::DeniedRevoked),
            Verdict::MissingToken | Verdict::InvalidRequest(_) | Verdict::MalformedToken(_) => {
                Some(Counter::Rejected)
            }
            // Counted where the failure policy was applied.
            Verdict::Unavailable { .. } | Verdict::FailedOpen(_) => None,
        };
        if let Some(counter) = counter {
            metrics.increment(counter);
        }
        self.state = State::Finished;
        Action::Finish(verdict)
    }
}

/// Checks the request's credentials. Returns the token and its claims, or the verdict that ends
/// the request without a callout.
fn parse_request<'r>(request: &RequestInfo<'r>) -> Result<(&'r str, Claims), Verdict> {
    if request.authorization_count > 1 {
        return Err(Verdict::InvalidRequest(
            "the request has more than one Authorization header",
        ));
    }
    let Some(value) = request.authorization else {
        if request.is_cors_preflight() {
            return Err(Verdict::Preflight);
        }
        return Err(Verdict::MissingToken);
    };
    let token = match bearer_token(value) {
        Ok(token) => token,
        Err(TokenError::NotBearer) => return Err(Verdict::MissingToken),
        Err(TokenError::InvalidRequest(reason)) => return Err(Verdict::InvalidRequest(reason)),
        Err(TokenError::InvalidToken(reason)) => return Err(Verdict::MalformedToken(reason)),
    };
    match claims(token) {
        Ok(claims) => Ok((token, claims)),
        Err(TokenError::InvalidRequest(reason) | TokenError::InvalidToken(reason)) => {
            Err(Verdict::MalformedToken(reason))
        }
        Err(TokenError::NotBearer) => Err(Verdict::MissingToken),
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
    use std::collections::HashMap;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// Wall-clock time of the tests when the monotonic clock reads zero.
    const UNIX_TIME: Duration = Duration::from_secs(1_800_000_000);

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

    #[derive(Default)]
    struct Counts {
        counters: HashMap<Counter, u64>,
        latencies: Vec<u64>,
    }

    impl Recorder for Counts {
        fn increment(&mut self, counter: Counter) {
            *self.counters.entry(counter).or_default() += 1;
        }

        fn record_callout_latency(&mut self, milliseconds: u64) {
            self.latencies.push(milliseconds);
        }
    }

    impl Counts {
        fn get(&self, counter: Counter) -> u64 {
            self.counters.get(&counter).copied().unwrap_or(0)
        }
    }

    /// A worker: configuration, breakers, metrics and a clock that tests move by hand.
    struct Worker {
        config: Config,
        breakers: Breakers,
        cache: DecisionCache,
        counts: Counts,
        now: Duration,
        jitter: f64,
    }

    impl Worker {
        fn new(json: &str) -> Self {
            let config = Config::from_json(json.as_bytes()).unwrap();
            Self {
                breakers: Breakers::new(&config),
                cache: DecisionCache::new(config.cache),
                config,
                counts: Counts::default(),
                now: Duration::from_secs(1000),
                jitter: 1.0,
            }
        }

        fn plain() -> Self {
            Self::new(r#"{"cluster": "outbound|8080||authz.ns.svc.cluster.local"}"#)
        }

        fn env(&mut self) -> (&Config, Env<'_>) {
            (
                &self.config,
                Env {
                    now: self.now,
                    unix_time: UNIX_TIME + self.now,
                    jitter: self.jitter,
                    breakers: &mut self.breakers,
                    cache: &mut self.cache,
                    metrics: &mut self.counts,
                },
            )
        }

        fn headers(&mut self, stream: &mut Stream, headers: &[(&str, &str)]) -> Outcome {
            let info = RequestInfo::from_headers(
                headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            );
            let (config, env) = self.env();
            Outcome::from(stream.on_request_headers(config, &info, env))
        }

        fn start(&mut self, stream: &mut Stream) -> Outcome {
            let auth = bearer(r#"{"jti":"id-1"}"#);
            self.headers(stream, &[(":method", "GET"), ("authorization", &auth)])
        }

        fn respond(&mut self, stream: &mut Stream, status: &str) -> Outcome {
            let (config, env) = self.env();
            Outcome::from(stream.on_callout_response(config, Some(status.as_bytes()), env))
        }

        fn fail(&mut self, stream: &mut Stream, reason: NoDecision) -> Outcome {
            let (config, env) = self.env();
            Outcome::from(stream.on_callout_failure(config, reason, env))
        }

        fn timer(&mut self, stream: &mut Stream) -> Outcome {
            let (config, env) = self.env();
            Outcome::from(stream.on_timer(config, env))
        }

        /// Runs one request whose every callout gets `status`; returns its verdict.
        fn request_with_status(&mut self, status: &str) -> Verdict {
            let mut stream = Stream::new();
            let mut outcome = self.start(&mut stream);
            loop {
                outcome = match outcome {
                    Outcome::Dispatch { .. } => self.respond(&mut stream, status),
                    Outcome::Wait(wait) => {
                        self.now += wait;
                        self.timer(&mut stream)
                    }
                    Outcome::Finish(verdict) => return verdict,
                }
            }
        }
    }

    /// An [`Action`] without the borrow of the configuration, so tests can hold it.
    #[derive(Debug, Clone, PartialEq)]
    enum Outcome {
        Dispatch {
            cluster: String,
            timeout: Duration,
            headers: Vec<(String, String)>,
        },
        Wait(Duration),
        Finish(Verdict),
    }

    impl From<Action<'_>> for Outcome {
        fn from(action: Action<'_>) -> Self {
            match action {
                Action::Dispatch(callout) => Outcome::Dispatch {
                    cluster: callout.cluster.to_owned(),
                    timeout: callout.timeout,
                    headers: callout
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                },
                Action::Wait(wait) => Outcome::Wait(wait),
                Action::Finish(verdict) => Outcome::Finish(verdict),
            }
        }
    }

    fn cluster_of(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::Dispatch { cluster, .. } => cluster,
            other => panic!("expected a callout, got {other:?}"),
        }
    }

    fn unavailable(reason: NoDecision) -> Verdict {
        Verdict::Unavailable {
            reason,
            status: 503,
        }
    }

    #[test]
    fn valid_token_dispatches_callout() {
        let mut worker = Worker::plain();
        let mut stream = Stream::new();
        let auth = bearer(r#"{"jti":"id-1"}"#);
        let outcome = worker.headers(&mut stream, &[(":method", "GET"), ("authorization", &auth)]);
        let expected_headers: Vec<(String, String)> = [
            (":method", "POST"),
            (":path", "/authorize"),
            (":authority", "authz.ns.svc.cluster.local"),
            ("authorization", auth.as_str()),
            ("content-length", "0"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            outcome,
            Outcome::Dispatch {
                cluster: "outbound|8080||authz.ns.svc.cluster.local".into(),
                timeout: Duration::from_millis(2000),
                headers: expected_headers,
            }
        );
        assert_eq!(stream.jti(), Some("id-1"));
        assert!(stream.is_pending());
    }

    #[test]
    fn lowercase_scheme_normalised_in_callout() {
        let mut worker = Worker::plain();
        let raw = token(r#"{"jti":"id-1"}"#);
        let outcome = worker.headers(
            &mut Stream::new(),
            &[("authorization", &format!("bearer   {raw}"))],
        );
        let Outcome::Dispatch { headers, .. } = outcome else {
            panic!("expected a callout, got {outcome:?}");
        };
        assert_eq!(headers[3].1, format!("Bearer {raw}"));
    }

    #[test]
    fn forged_failure_mode_header_noticed() {
        let headers = [("X-JWT-Revocation-Failure-Mode-Allowed", "true")];
        let info =
            RequestInfo::from_headers(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        assert!(info.has_failure_mode_header());
        assert!(!RequestInfo::default().has_failure_mode_header());
    }

    #[test]
    fn missing_header_is_missing_token() {
        let mut worker = Worker::plain();
        let outcome = worker.headers(&mut Stream::new(), &[(":method", "GET")]);
        assert_eq!(outcome, Outcome::Finish(Verdict::MissingToken));
        assert_eq!(worker.counts.get(Counter::Rejected), 1);
    }

    #[test]
    fn other_scheme_is_missing_token() {
        let mut worker = Worker::plain();
        let outcome = worker.headers(
            &mut Stream::new(),
            &[("authorization", "Basic dXNlcjpwdw==")],
        );
        assert_eq!(outcome, Outcome::Finish(Verdict::MissingToken));
    }

    #[test]
    fn cors_preflight_passes() {
        let mut worker = Worker::plain();
        let preflight = [
            (":method", "OPTIONS"),
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ];
        let outcome = worker.headers(&mut Stream::new(), &preflight);
        assert_eq!(outcome, Outcome::Finish(Verdict::Preflight));
        assert_eq!(worker.counts.get(Counter::CorsPreflight), 1);
    }

    #[test]
    fn incomplete_preflight_needs_token() {
        let mut worker = Worker::plain();
        let options = [(":method", "OPTIONS"), ("origin", "https://app.example")];
        assert_eq!(
            worker.headers(&mut Stream::new(), &options),
            Outcome::Finish(Verdict::MissingToken)
        );
        let get = [
            (":method", "GET"),
            ("origin", "o"),
            ("access-control-request-method", "GET"),
        ];
        assert_eq!(
            worker.headers(&mut Stream::new(), &get),
            Outcome::Finish(Verdict::MissingToken)
        );
    }

    #[test]
    fn preflight_with_token_still_checked() {
        let mut worker = Worker::plain();
        let auth = bearer(r#"{"jti":"id-1"}"#);
        let outcome = worker.headers(
            &mut Stream::new(),
            &[
                (":method", "OPTIONS"),
                ("origin", "o"),
                ("access-control-request-method", "GET"),
                ("authorization", &auth),
            ],
        );
        assert!(matches!(outcome, Outcome::Dispatch { .. }), "{outcome:?}");
    }

    #[test]
    fn two_authorization_headers_rejected() {
        let mut worker = Worker::plain();
        let auth = bearer(r#"{"jti":"id-1"}"#);
        let outcome = worker.headers(
            &mut Stream::new(),
            &[("authorization", &auth), ("Authorization", &auth)],
        );
        assert_eq!(
            outcome,
            Outcome::Finish(Verdict::InvalidRequest(
                "the request has more than one Authorization header"
            ))
        );
    }

    #[test]
    fn malformed_header_is_invalid_request() {
        let mut worker = Worker::plain();
        let auth = format!("{} extra", bearer(r#"{"jti":"id-1"}"#));
        for value in [auth.as_str(), "Bearer"] {
            let outcome = worker.headers(&mut Stream::new(), &[("authorization", value)]);
            assert!(
                matches!(outcome, Outcome::Finish(Verdict::InvalidRequest(_))),
                "{value}: {outcome:?}"
            );
        }
        assert_eq!(worker.counts.get(Counter::Rejected), 2);
    }

    #[test]
    fn malformed_tokens_skip_callout() {
        let mut worker = Worker::plain();
        let cases = [
            bearer(r#"{"jti":5}"#),
            bearer(r#"{"sub":"a"}"#),
            bearer("not json"),
            "Bearer a.b.c.d.e".to_owned(),
            "Bearer abc.def".to_owned(),
        ];
        for auth in &cases {
            let outcome = worker.headers(&mut Stream::new(), &[("authorization", auth)]);
            assert!(
                matches!(outcome, Outcome::Finish(Verdict::MalformedToken(_))),
                "{auth}: {outcome:?}"
            );
        }
        assert_eq!(worker.counts.get(Counter::Rejected), cases.len() as u64);
    }

    #[test]
    fn decisions_mapped_and_counted() {
        let cases = [
            ("200", Verdict::Allowed, Counter::Allowed),
            ("401", Verdict::Rejected, Counter::DeniedInvalid),
            ("403", Verdict::Revoked, Counter::DeniedRevoked),
        ];
        for (status, verdict, counter) in cases {
            let mut worker = Worker::plain();
            let mut stream = Stream::new();
            worker.start(&mut stream);
            worker.now += 7 * MS;
            assert_eq!(
                worker.respond(&mut stream, status),
                Outcome::Finish(verdict)
            );
            assert_eq!(worker.counts.get(counter), 1, "{status}");
            assert_eq!(worker.counts.latencies, [7], "{status}");
            assert!(!stream.is_pending());
        }
    }

    #[test]
    fn other_statuses_fail_closed() {
        let cases = [
            (
                "204",
                NoDecision::UnexpectedStatus(204),
                Counter::ErrorStatus,
            ),
            (
                "302",
                NoDecision::UnexpectedStatus(302),
                Counter::ErrorStatus,
            ),
            (
                "500",
                NoDecision::UnexpectedStatus(500),
                Counter::ErrorStatus,
            ),
            ("504", NoDecision::Timeout, Counter::ErrorTimeout),
            ("503", NoDecision::ConnectFailure, Counter::ErrorConnect),
            ("2000", NoDecision::MissingStatus, Counter::ErrorStatus),
            ("20x", NoDecision::MissingStatus, Counter::ErrorStatus),
            ("", NoDecision::MissingStatus, Counter::ErrorStatus),
        ];
        for (status, reason, counter) in cases {
            let mut worker = Worker::plain();
            let verdict = worker.request_with_status(status);
            assert_eq!(verdict, unavailable(reason), "{status:?}");
            assert_eq!(worker.counts.get(counter), 1, "{status:?}");
            assert_eq!(
                worker.counts.get(Counter::DeniedUnavailable),
                1,
                "{status:?}"
            );
        }
    }

    #[test]
    fn missing_status_fails_closed() {
        let mut worker = Worker::plain();
        let mut stream = Stream::new();
        worker.start(&mut stream);
        let (config, env) = worker.env();
        let outcome = Outcome::from(stream.on_callout_response(config, None, env));
        assert_eq!(
            outcome,
            Outcome::Finish(unavailable(NoDecision::MissingStatus))
        );
    }

    #[test]
    fn dispatch_failure_fails_closed() {
        let mut worker = Worker::plain();
        let mut stream = Stream::new();
        worker.start(&mut stream);
        let outcome = worker.fail(&mut stream, NoDecision::DispatchFailed);
        assert_eq!(
            outcome,
            Outcome::Finish(unavailable(NoDecision::DispatchFailed))
        );
        assert_eq!(worker.counts.get(Counter::ErrorDispatch), 1);
    }

    #[test]
    fn status_on_error_used() {
        let mut worker = Worker::new(r#"{"cluster": "authz", "statusOnError": 429}"#);
        let verdict = worker.request_with_status("500");
        assert_eq!(
            verdict,
            Verdict::Unavailable {
                reason: NoDecision::UnexpectedStatus(500),
                status: 429
            }
        );
        assert_eq!(verdict.local_reply().unwrap().status, 429);
    }

    #[test]
    fn response_without_callout_fails_closed() {
        let mut worker = Worker::plain();
        let outcome = worker.respond(&mut Stream::new(), "200");
        assert_eq!(
            outcome,
            Outcome::Finish(unavailable(NoDecision::MissingStatus))
        );
    }

    #[test]
    fn second_response_cannot_allow() {
        let mut worker = Worker::plain();
        let mut stream = Stream::new();
        worker.start(&mut stream);
        assert_eq!(
            worker.respond(&mut stream, "403"),
            Outcome::Finish(Verdict::Revoked)
        );
        let outcome = worker.respond(&mut stream, "200");
        assert_eq!(
            outcome,
            Outcome::Finish(unavailable(NoDecision::MissingStatus))
        );
    }

    #[test]
    fn timer_without_backoff_fails_closed() {
        let mut worker = Worker::plain();
        let mut stream = Stream::new();
        worker.start(&mut stream);
        let outcome = worker.timer(&mut stream);
        assert!(
            matches!(outcome, Outcome::Finish(Verdict::Unavailable { .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn headers_twice_rejected() {
        let mut worker = Worker::plain();
        let mut stream = Stream::new();
        assert!(matches!(
            worker.start(&mut stream),
            Outcome::Dispatch { .. }
        ));
        assert!(matches!(
            worker.start(&mut stream),
            Outcome::Finish(Verdict::InvalidRequest(_))
        ));
    }

    #[test]
    fn fail_open_lets_request_through() {
        let mut worker = Worker::new(r#"{"cluster": "authz", "failOpen": true}"#);
        let verdict = worker.request_with_status("500");
        assert_eq!(
            verdict,
            Verdict::FailedOpen(NoDecision::UnexpectedStatus(500))
        );
        assert!(verdict.allows());
        assert_eq!(worker.counts.get(Counter::FailureModeAllowed), 1);
        assert_eq!(worker.counts.get(Counter::DeniedUnavailable), 0);
    }

    #[test]
    fn fail_open_never_overrides_decisions() {
        let mut worker = Worker::new(r#"{"cluster": "authz", "failOpen": true}"#);
        assert_eq!(worker.request_with_status("403"), Verdict::Revoked);
        assert_eq!(worker.request_with_status("401"), Verdict::Rejected);
        assert_eq!(worker.counts.get(Counter::FailureModeAllowed), 0);
    }

    #[test]
    fn retry_waits_with_backoff() {
        let mut worker = Worker::new(
            r#"{"cluster": "authz", "retry": {"maxRetries": 2, "baseInterval": 20, "maxInterval": 100}}"#,
        );
        worker.jitter = 0.5;
        let mut stream = Stream::new();
        worker.start(&mut stream);

        assert_eq!(worker.respond(&mut stream, "503"), Outcome::Wait(10 * MS));
        assert!(stream.is_pending());
        worker.now += 10 * MS;
        assert_eq!(cluster_of(&worker.timer(&mut stream)), "authz");

        assert_eq!(worker.respond(&mut stream, "503"), Outcome::Wait(20 * MS));
        worker.now += 20 * MS;
        assert_eq!(cluster_of(&worker.timer(&mut stream)), "authz");

        assert_eq!(
            worker.respond(&mut stream, "503"),
            Outcome::Finish(unavailable(NoDecision::ConnectFailure))
        );
        assert_eq!(worker.counts.get(Counter::Retries), 2);
        assert_eq!(worker.counts.get(Counter::ErrorConnect), 3);
    }

    #[test]
    fn retry_then_decision() {
        let mut worker = Worker::new(r#"{"cluster": "authz", "retry": {"maxRetries": 1}}"#);
        let mut stream = Stream::new();
        worker.start(&mut stream);
        let Outcome::Wait(wait) = worker.respond(&mut stream, "503") else {
            panic!("expected a backoff");
        };
        worker.now += wait;
        worker.timer(&mut stream);
        assert_eq!(
            worker.respond(&mut stream, "200"),
            Outcome::Finish(Verdict::Allowed)
        );
        assert_eq!(worker.counts.get(Counter::Retries), 1);
    }

    #[test]
    fn zero_jitter_retries_at_once() {
        let mut worker = Worker::new(r#"{"cluster": "authz", "retry": {"maxRetries": 1}}"#);
        worker.jitter = 0.0;
        let mut stream = Stream::new();
        worker.start(&mut stream);
        assert_eq!(cluster_of(&worker.respond(&mut stream, "503")), "authz");
    }

    #[test]
    fn decisions_never_retried() {
        let mut worker = Worker::new(r#"{"cluster": "authz", "retry": {"maxRetries": 3}}"#);
        assert_eq!(worker.request_with_status("401"), Verdict::Rejected);
        assert_eq!(worker.request_with_status("403"), Verdict::Revoked);
        assert_eq!(worker.counts.get(Counter::Retries), 0);
    }

    #[test]
    fn retries_stay_within_timeout() {
        // 300 ms in all, 100 ms per try, backoff up to 250 ms: the retry after the second
        // failure would start after the deadline, so the request gives up at 200 ms + backoff.
        let mut worker = Worker::new(
            r#"{"cluster": "authz", "timeout": 300,
                "retry": {"maxRetries": 5, "baseInterval": 90, "maxInterval": 250, "perTryTimeout": 100}}"#,
        );
        let mut stream = Stream::new();
        let started = worker.now;
        let mut outcome = worker.start(&mut stream);
        loop {
            outcome = match outcome {
                Outcome::Dispatch { timeout, .. } => {
                    assert!(timeout <= 100 * MS, "per-try timeout {timeout:?}");
                    assert!(
                        worker.now + timeout <= started + 300 * MS,
                        "callout past the deadline"
                    );
                    worker.now += timeout;
                    worker.respond(&mut stream, "504")
                }
                Outcome::Wait(wait) => {
                    worker.now += wait;
                    worker.timer(&mut stream)
                }
                Outcome::Finish(verdict) => {
                    assert_eq!(verdict, unavailable(NoDecision::Timeout));
                    break;
                }
            };
        }
        assert!(
            worker.now <= started + 300 * MS,
            "finished after {:?}",
            worker.now - started
        );
    }

    #[test]
    fn fallback_tried_after_primary() {
        let mut worker = Worker::new(
            r#"{"cluster": "outbound|8080||authz.a.svc",
                "fallbackClusters": [{"cluster": "authz_b", "authority": "authz.b"}]}"#,
        );
        let mut stream = Stream::new();
        assert_eq!(
            cluster_of(&worker.start(&mut stream)),
            "outbound|8080||authz.a.svc"
        );
        let outcome = worker.respond(&mut stream, "503");
        assert_eq!(cluster_of(&outcome), "authz_b");
        let Outcome::Dispatch { headers, .. } = &outcome else {
            unreachable!();
        };
        assert_eq!(headers[2], (":authority".to_owned(), "authz.b".to_owned()));
        assert_eq!(
            worker.respond(&mut stream, "403"),
            Outcome::Finish(Verdict::Revoked)
        );
    }

    #[test]
    fn fallback_exhausted_fails_closed() {
        let mut worker = Worker::new(r#"{"cluster": "a", "fallbackClusters": ["b", "c"]}"#);
        let verdict = worker.request_with_status("500");
        assert_eq!(verdict, unavailable(NoDecision::UnexpectedStatus(500)));
        assert_eq!(worker.counts.get(Counter::ErrorStatus), 3);
    }

    #[test]
    fn retries_before_fallback() {
        let mut worker = Worker::new(
            r#"{"cluster": "a", "fallbackClusters": ["b"], "retry": {"maxRetries": 1}}"#,
        );
        worker.jitter = 0.0;
        let mut stream = Stream::new();
        assert_eq!(cluster_of(&worker.start(&mut stream)), "a");
        assert_eq!(cluster_of(&worker.respond(&mut stream, "503")), "a");
        assert_eq!(cluster_of(&worker.respond(&mut stream, "503")), "b");
    }

    const BREAKER: &str =
        r#"{"cluster": "a", "circuitBreaker": {"consecutiveFailures": 2, "openInterval": 1000}}"#;

    #[test]
    fn breaker_opens_and_skips_callouts() {
        let mut worker = Worker::new(BREAKER);
        worker.request_with_status("503");
        assert_eq!(worker.counts.get(Counter::BreakerOpened), 0);
        worker.request_with_status("503");
        assert_eq!(worker.counts.get(Counter::BreakerOpened), 1);

        let outcome = worker.start(&mut Stream::new());
        assert_eq!(
            outcome,
            Outcome::Finish(unavailable(NoDecision::BreakerOpen))
        );
        assert_eq!(worker.counts.get(Counter::BreakerSkipped), 1);
    }

    #[test]
    fn breaker_probe_closes_on_decision() {
        let mut worker = Worker::new(BREAKER);
        worker.request_with_status("503");
        worker.request_with_status("503");
        worker.now += 1000 * MS;

        let mut probe = Stream::new();
        assert_eq!(cluster_of(&worker.start(&mut probe)), "a");
        let other = worker.start(&mut Stream::new());
        assert_eq!(other, Outcome::Finish(unavailable(NoDecision::BreakerOpen)));

        assert_eq!(
            worker.respond(&mut probe, "403"),
            Outcome::Finish(Verdict::Revoked)
        );
        assert_eq!(cluster_of(&worker.start(&mut Stream::new())), "a");
    }

    #[test]
    fn breaker_probe_failure_reopens() {
        let mut worker = Worker::new(BREAKER);
        worker.request_with_status("503");
        worker.request_with_status("503");
        worker.now += 1000 * MS;
        worker.request_with_status("503");
        assert_eq!(worker.counts.get(Counter::BreakerOpened), 2);
        let outcome = worker.start(&mut Stream::new());
        assert_eq!(
            outcome,
            Outcome::Finish(unavailable(NoDecision::BreakerOpen))
        );
    }

    #[test]
    fn open_breaker_goes_to_fallback() {
        let mut worker = Worker::new(
            r#"{"cluster": "a", "fallbackClusters": ["b"],
                "circuitBreaker": {"consecutiveFailures": 1, "openInterval": 1000}}"#,
        );
        let mut stream = Stream::new();
        worker.start(&mut stream);
        assert_eq!(cluster_of(&worker.respond(&mut stream, "503")), "b");
        assert_eq!(
            worker.respond(&mut stream, "200"),
            Outcome::Finish(Verdict::Allowed)
        );

        assert_eq!(cluster_of(&worker.start(&mut Stream::new())), "b");
        assert_eq!(worker.counts.get(Counter::BreakerSkipped), 1);
    }

    #[test]
    fn open_breaker_with_fail_open_passes() {
        let mut worker = Worker::new(
            r#"{"cluster": "a", "failOpen": true,
                "circuitBreaker": {"consecutiveFailures": 1, "openInterval": 1000}}"#,
        );
        worker.request_with_status("503");
        let outcome = worker.start(&mut Stream::new());
        assert_eq!(
            outcome,
            Outcome::Finish(Verdict::FailedOpen(NoDecision::BreakerOpen))
        );
    }

    #[test]
    fn no_breaker_never_skips() {
        let mut worker = Worker::plain();
        for _ in 0..20 {
            worker.request_with_status("503");
        }
        assert!(matches!(
            worker.start(&mut Stream::new()),
            Outcome::Dispatch { .. }
        ));
        assert_eq!(worker.counts.get(Counter::BreakerOpened), 0);
    }

    #[test]
    fn cached_decision_skips_callout() {
        let mut worker = Worker::new(r#"{"cluster": "a", "cache": {"ttl": 1000}}"#);
        let mut first = Stream::new();
        assert!(matches!(worker.start(&mut first), Outcome::Dispatch { .. }));
        assert_eq!(
            worker.respond(&mut first, "403"),
            Outcome::Finish(Verdict::Revoked)
        );

        worker.now += 999 * MS;
        let mut second = Stream::new();
        assert_eq!(worker.start(&mut second), Outcome::Finish(Verdict::Revoked));
        assert_eq!(second.jti(), Some("id-1"));
        assert_eq!(worker.counts.get(Counter::CacheHit), 1);
        assert_eq!(worker.counts.get(Counter::DeniedRevoked), 2);

        worker.now += MS;
        assert!(matches!(
            worker.start(&mut Stream::new()),
            Outcome::Dispatch { .. }
        ));
    }

    #[test]
    fn cache_off_by_default() {
        let mut worker = Worker::plain();
        worker.request_with_status("200");
        assert!(matches!(
            worker.start(&mut Stream::new()),
            Outcome::Dispatch { .. }
        ));
        assert_eq!(worker.counts.get(Counter::CacheHit), 0);
    }

    #[test]
    fn cache_keyed_by_whole_token() {
        let mut worker = Worker::new(r#"{"cluster": "a", "cache": {"ttl": 1000}}"#);
        worker.request_with_status("200");
        // Same jti, other claims: a different token, so it gets its own callout.
        let other = bearer(r#"{"jti":"id-1","sub":"someone-else"}"#);
        let outcome = worker.headers(&mut Stream::new(), &[("authorization", &other)]);
        assert!(matches!(outcome, Outcome::Dispatch { .. }), "{outcome:?}");
    }

    #[test]
    fn no_decision_not_cached() {
        let mut worker = Worker::new(r#"{"cluster": "a", "cache": {"ttl": 1000}}"#);
        worker.request_with_status("500");
        let mut stream = Stream::new();
        worker.start(&mut stream);
        assert_eq!(
            worker.fail(&mut stream, NoDecision::Timeout),
            Outcome::Finish(unavailable(NoDecision::Timeout))
        );
        assert!(matches!(
            worker.start(&mut Stream::new()),
            Outcome::Dispatch { .. }
        ));
    }

    #[test]
    fn expired_token_not_cached() {
        let mut worker = Worker::new(r#"{"cluster": "a", "cache": {"ttl": 60000}}"#);
        let exp = (UNIX_TIME + worker.now).as_secs() + 2;
        let auth = bearer(&format!(r#"{{"jti":"id-1","exp":{exp}}}"#));
        let send = |worker: &mut Worker| {
            let mut stream = Stream::new();
            let outcome = worker.headers(&mut stream, &[("authorization", &auth)]);
            (stream, outcome)
        };
        let (mut stream, outcome) = send(&mut worker);
        assert!(matches!(outcome, Outcome::Dispatch { .. }));
        worker.respond(&mut stream, "200");
        worker.now += 1999 * MS;
        assert_eq!(send(&mut worker).1, Outcome::Finish(Verdict::Allowed));
        worker.now += MS;
        assert!(matches!(send(&mut worker).1, Outcome::Dispatch { .. }));
    }

    #[test]
    fn late_allow_keeps_cached_revocation() {
        let mut worker =
            Worker::new(r#"{"cluster": "a", "timeout": 10000, "cache": {"ttl": 1000}}"#);
        let mut early = Stream::new();
        worker.start(&mut early);
        worker.now += 100 * MS;
        let mut late = Stream::new();
        worker.start(&mut late);
        assert_eq!(
            worker.respond(&mut late, "403"),
            Outcome::Finish(Verdict::Revoked)
        );
        worker.now += 400 * MS;
        // The earlier callout's 200 arrives after the later callout's 403.
        assert_eq!(
            worker.respond(&mut early, "200"),
            Outcome::Finish(Verdict::Allowed)
        );
        assert_eq!(
            worker.start(&mut Stream::new()),
            Outcome::Finish(Verdict::Revoked)
        );
    }
}
