//! The filter's metrics: names, and the recorder that targets implement with host counters.
//!
//! Both targets define every metric in [`Counter::ALL`] and [`CALLOUT_LATENCY`] once, when the
//! configuration loads, and [`Stream`](crate::Stream) increments them through [`Recorder`]. No
//! name contains a token, `jti` or user id.

/// Prefix of every metric name.
pub const PREFIX: &str = "jwt_revocation";

/// Histogram of callout latency in milliseconds, one sample per callout that completed.
pub const CALLOUT_LATENCY: &str = "jwt_revocation.callout_latency_ms";

/// A counter the filter increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// The authorization service responded with 200 and the request passed.
    Allowed,
    /// The authorization service responded with 401.
    DeniedInvalid,
    /// The authorization service responded with 403: the token is revoked.
    DeniedRevoked,
    /// Denied before any callout: no token, a malformed `Authorization` header, or a token
    /// without a usable `jti`.
    Rejected,
    /// A CORS preflight passed without a callout.
    CorsPreflight,
    /// No decision arrived and the request got `statusOnError`.
    DeniedUnavailable,
    /// No decision arrived and `failOpen` let the request through.
    FailureModeAllowed,
    /// A callout timed out.
    ErrorTimeout,
    /// A callout could not connect, or its connection was reset.
    ErrorConnect,
    /// A callout got a status other than 200, 401 and 403, or no valid status.
    ErrorStatus,
    /// Envoy refused to send a callout, for example because its cluster does not exist.
    ErrorDispatch,
    /// A callout was sent again after one without a decision.
    Retries,
    /// A circuit breaker opened.
    BreakerOpened,
    /// A request skipped a cluster because its circuit breaker was open.
    BreakerSkipped,
    /// A request got a cached decision instead of a callout. It is also counted under its
    /// decision (`allowed`, `denied_invalid` or `denied_revoked`).
    CacheHit,
}

impl Counter {
    pub const ALL: [Counter; 15] = [
        Counter::Allowed,
        Counter::DeniedInvalid,
        Counter::DeniedRevoked,
        Counter::Rejected,
        Counter::CorsPreflight,
        Counter::DeniedUnavailable,
        Counter::FailureModeAllowed,
        Counter::ErrorTimeout,
        Counter::ErrorConnect,
        Counter::ErrorStatus,
        Counter::ErrorDispatch,
        Counter::Retries,
        Counter::BreakerOpened,
        Counter::BreakerSkipped,
        Counter::CacheHit,
    ];

    /// Returns the full metric name, such as `jwt_revocation.denied_revoked`.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Allowed => "jwt_revocation.allowed",
            Counter::DeniedInvalid => "jwt_revocation.denied_invalid",
            Counter::DeniedRevoked => "jwt_revocation.denied_revoked",
            Counter::Rejected => "jwt_revocation.rejected",
            Counter::CorsPreflight => "jwt_revocation.cors_preflight",
            Counter::DeniedUnavailable => "jwt_revocation.denied_unavailable",
            Counter::FailureModeAllowed => "jwt_revocation.failure_mode_allowed",
            Counter::ErrorTimeout => "jwt_revocation.error_timeout",
            Counter::ErrorConnect => "jwt_revocation.error_connect",
            Counter::ErrorStatus => "jwt_revocation.error_status",
            Counter::ErrorDispatch => "jwt_revocation.error_dispatch",
            Counter::Retries => "jwt_revocation.retries",
            Counter::BreakerOpened => "jwt_revocation.breaker_opened",
            Counter::BreakerSkipped => "jwt_revocation.breaker_skipped",
            Counter::CacheHit => "jwt_revocation.cache_hit",
        }
    }

    /// Returns the position of this counter in [`Counter::ALL`], for indexing metric handles.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The sink for what [`Stream`](crate::Stream) counts; targets forward it to host metrics.
pub trait Recorder {
    fn increment(&mut self, counter: Counter);
    fn record_callout_latency(&mut self, milliseconds: u64);
}

/// A recorder that drops everything, for callers without metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetrics;

impl Recorder for NoMetrics {
    fn increment(&mut self, _counter: Counter) {}
    fn record_callout_latency(&mut self, _milliseconds: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position() {
        for (position, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.index(), position, "{counter:?}");
        }
    }

    #[test]
    fn names_unique_and_prefixed() {
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.push(CALLOUT_LATENCY);
        for name in &names {
            assert!(name.starts_with(&format!("{PREFIX}.")), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'),
                "{name}"
            );
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "metric names repeat");
    }
}
