//! Rate limiting for repeated log lines, such as one warning per failed callout.

use std::time::Duration;

/// Lets one line through per interval and counts the lines it holds back.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    interval: Duration,
    next_allowed: Option<Duration>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_allowed: None,
            suppressed: 0,
        }
    }

    /// Returns `Some(n)` when a line may be written at `now`, where `n` lines were held back since
    /// the last one written, and `None` when this line is to be dropped.
    ///
    /// `now` is any monotonic-enough clock reading, such as the time since the Unix epoch; a clock
    /// that steps back only delays the next line.
    pub fn allow(&mut self, now: Duration) -> Option<u64> {
        match self.next_allowed {
            Some(next) if now < next => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.next_allowed = Some(now + self.interval);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn first_line_passes() {
        let mut limiter = LogLimiter::new(SECOND);
        assert_eq!(limiter.allow(Duration::from_secs(100)), Some(0));
    }

    #[test]
    fn lines_within_interval_counted() {
        let mut limiter = LogLimiter::new(SECOND);
        let start = Duration::from_secs(100);
        assert_eq!(limiter.allow(start), Some(0));
        assert_eq!(limiter.allow(start + Duration::from_millis(10)), None);
        assert_eq!(limiter.allow(start + Duration::from_millis(999)), None);
        assert_eq!(limiter.allow(start + SECOND), Some(2));
        assert_eq!(limiter.allow(start + SECOND), None);
        assert_eq!(limiter.allow(start + 3 * SECOND), Some(1));
    }

    #[test]
    fn clock_stepping_back_holds_lines() {
        let mut limiter = LogLimiter::new(SECOND);
        assert_eq!(limiter.allow(Duration::from_secs(100)), Some(0));
        assert_eq!(limiter.allow(Duration::from_secs(50)), None);
        assert_eq!(limiter.allow(Duration::from_secs(101)), Some(1));
    }
}
