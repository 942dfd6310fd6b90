//! A consecutive-failures circuit breaker for one authorization cluster.
//!
//! 1. **Closed**: callouts go out. Each callout without a decision adds one to a count that any
//!    decision (200, 401 or 403) resets. When the count reaches the threshold, the breaker opens.
//! 2. **Open**: callouts are skipped and requests get the failure policy at once, until the open
//!    interval has passed.
//! 3. **Half-open**: one request is let through as a probe. A decision closes the breaker; no
//!    decision opens it again. Other requests are rejected while the probe is in flight. A probe
//!    that never reports (its client went away) stops counting after the probe timeout, and the
//!    next request becomes the probe.
//!
//! Time is passed in as a [`Duration`] since any fixed instant, such as the Unix epoch.

use std::time::Duration;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive callouts without a decision that open the breaker.
    pub consecutive_failures: u32,
    /// Time the breaker stays open before it lets a probe through.
    pub open_interval: Duration,
}

/// Whether a request may send its callout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed.
    Allowed,
    /// The breaker is half-open and this request is the probe.
    Probe,
    /// The breaker is open, or half-open with a probe in flight.
    Rejected,
}

/// A change of state that the caller may count or log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Duration,
    },
    /// `probe_deadline` is `None` until a probe is admitted.
    HalfOpen {
        probe_deadline: Option<Duration>,
    },
}

/// The breaker of one cluster on one worker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: State,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::Closed { failures: 0 },
        }
    }

    /// Returns true while requests skip the callout.
    pub fn is_open(&self, now: Duration) -> bool {
        match self.state {
            State::Closed { .. } => false,
            State::Open { until } => now < until,
            State::HalfOpen { probe_deadline } => probe_deadline.is_some_and(|d| now < d),
        }
    }

    /// Decides whether a request at `now` may send its callout. A probe that is admitted counts
    /// as in flight for `probe_timeout`.
    pub fn admit(&mut self, now: Duration, probe_timeout: Duration) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } if now < until => Admission::Rejected,
            State::HalfOpen {
                probe_deadline: Some(deadline),
            } if now < deadline => Admission::Rejected,
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen {
                    probe_deadline: Some(now + probe_timeout),
                };
                Admission::Probe
            }
        }
    }

    /// Records a callout that got a decision.
    pub fn record_decision(&mut self) -> Transition {
        let was_closed = matches!(self.state, State::Closed { .. });
        self.state = State::Closed { failures: 0 };
        if was_closed {
            Transition::None
        } else {
            Transition::Closed
        }
    }

    /// Records a callout that got no decision.
    pub fn record_no_decision(&mut self, now: Duration) -> Transition {
        match self.state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.consecutive_failures {
                    self.open(now)
                } else {
                    self.state = State::Closed { failures };
                    Transition::None
                }
            }
            State::HalfOpen { .. } => self.open(now),
            // A callout admitted before the breaker opened changes nothing.
            State::Open { .. } => Transition::None,
        }
    }

    fn open(&mut self, now: Duration) -> Transition {
        self.state = State::Open {
            until: now + self.config.open_interval,
        };
        Transition::Opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 3,
            open_interval: Duration::from_secs(10),
        })
    }

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn opened_at(secs: u64) -> CircuitBreaker {
        let mut breaker = breaker();
        breaker.record_no_decision(at(secs));
        breaker.record_no_decision(at(secs));
        assert_eq!(breaker.record_no_decision(at(secs)), Transition::Opened);
        breaker
    }

    #[test]
    fn closed_admits() {
        let mut breaker = breaker();
        assert_eq!(breaker.admit(at(0), PROBE_TIMEOUT), Admission::Allowed);
        assert!(!breaker.is_open(at(0)));
    }

    #[test]
    fn failures_below_threshold_stay_closed() {
        let mut breaker = breaker();
        assert_eq!(breaker.record_no_decision(at(0)), Transition::None);
        assert_eq!(breaker.record_no_decision(at(0)), Transition::None);
        assert_eq!(breaker.admit(at(0), PROBE_TIMEOUT), Admission::Allowed);
    }

    #[test]
    fn decision_resets_failure_count() {
        let mut breaker = breaker();
        breaker.record_no_decision(at(0));
        breaker.record_no_decision(at(0));
        assert_eq!(breaker.record_decision(), Transition::None);
        assert_eq!(breaker.record_no_decision(at(0)), Transition::None);
        assert_eq!(breaker.record_no_decision(at(0)), Transition::None);
        assert_eq!(breaker.admit(at(0), PROBE_TIMEOUT), Admission::Allowed);
    }

    #[test]
    fn threshold_opens() {
        let mut breaker = opened_at(100);
        assert!(breaker.is_open(at(100)));
        assert_eq!(breaker.admit(at(100), PROBE_TIMEOUT), Admission::Rejected);
        assert_eq!(breaker.admit(at(109), PROBE_TIMEOUT), Admission::Rejected);
    }

    #[test]
    fn open_interval_then_one_probe() {
        let mut breaker = opened_at(100);
        assert_eq!(breaker.admit(at(110), PROBE_TIMEOUT), Admission::Probe);
        assert_eq!(breaker.admit(at(110), PROBE_TIMEOUT), Admission::Rejected);
        assert!(breaker.is_open(at(111)));
    }

    #[test]
    fn probe_decision_closes() {
        let mut breaker = opened_at(100);
        assert_eq!(breaker.admit(at(110), PROBE_TIMEOUT), Admission::Probe);
        assert_eq!(breaker.record_decision(), Transition::Closed);
        assert_eq!(breaker.admit(at(110), PROBE_TIMEOUT), Admission::Allowed);
        assert!(!breaker.is_open(at(110)));
    }

    #[test]
    fn probe_failure_reopens() {
        let mut breaker = opened_at(100);
        assert_eq!(breaker.admit(at(110), PROBE_TIMEOUT), Admission::Probe);
        assert_eq!(breaker.record_no_decision(at(111)), Transition::Opened);
        assert_eq!(breaker.admit(at(120), PROBE_TIMEOUT), Admission::Rejected);
        assert_eq!(breaker.admit(at(121), PROBE_TIMEOUT), Admission::Probe);
    }

    #[test]
    fn lost_probe_replaced_after_timeout() {
        let mut breaker = opened_at(100);
        assert_eq!(breaker.admit(at(110), PROBE_TIMEOUT), Admission::Probe);
        assert_eq!(breaker.admit(at(111), PROBE_TIMEOUT), Admission::Rejected);
        assert_eq!(breaker.admit(at(112), PROBE_TIMEOUT), Admission::Probe);
    }

    #[test]
    fn late_failure_while_open_ignored() {
        let mut breaker = opened_at(100);
        assert_eq!(breaker.record_no_decision(at(105)), Transition::None);
        assert_eq!(breaker.admit(at(110), PROBE_TIMEOUT), Admission::Probe);
    }

    #[test]
    fn threshold_of_one_opens_at_once() {
        let mut breaker = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 1,
            open_interval: Duration::from_secs(1),
        });
        assert_eq!(breaker.record_no_decision(at(0)), Transition::Opened);
    }
}
