//! Log lines written to Envoy's `dynamic_modules` logger, each prefixed with `jwt-revocation: `.
//!
//! Every function checks the level first, so a disabled line costs no formatting. Warnings about
//! the authorization service are rate-limited per worker thread, because one outage would
//! otherwise write a line for every request.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use jwt_revocation_core::log_limit::LogLimiter;

use super::abi::{self, LogLevel};

/// Minimum time between two rate-limited warnings of one worker thread.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    /// The limiter of this worker thread and the instant its clock counts from.
    static WARNING_LIMITER: RefCell<(Instant, LogLimiter)> =
        RefCell::new((Instant::now(), LogLimiter::new(WARNING_INTERVAL)));
}

fn write(level: LogLevel, args: fmt::Arguments<'_>) {
    if !abi::log_enabled(level) {
        return;
    }
    let mut line = String::from("jwt-revocation: ");
    let _ = line.write_fmt(args);
    abi::log(level, &line);
}

/// Writes a debug line, such as the decision on one request.
pub fn debug(args: fmt::Arguments<'_>) {
    write(LogLevel::DEBUG, args);
}

/// Writes an info line, such as a configuration that was loaded.
pub fn info(args: fmt::Arguments<'_>) {
    write(LogLevel::INFO, args);
}

/// Writes an error line, such as a rejected configuration or a caught panic.
pub fn error(args: fmt::Arguments<'_>) {
    write(LogLevel::ERROR, args);
}

/// Writes a warning unless this worker thread wrote one less than [`WARNING_INTERVAL`] ago. The
/// next warning written reports how many were dropped since the previous one.
pub fn warn_limited(args: fmt::Arguments<'_>) {
    if !abi::log_enabled(LogLevel::WARN) {
        return;
    }
    let suppressed = WARNING_LIMITER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut state) => {
            let (start, limiter) = &mut *state;
            limiter.allow(start.elapsed())
        }
        // Only a warning written while another is being written lands here, so it is written.
        Err(_) => Some(0),
    });
    let Some(suppressed) = suppressed else {
        return;
    };

    let mut line = String::from("jwt-revocation: ");
    let _ = line.write_fmt(args);
    if suppressed > 0 {
        let _ = write!(
            line,
            " ({suppressed} similar warnings on this worker suppressed since the previous one)"
        );
    }
    abi::log(LogLevel::WARN, &line);
}

/// Writes `jti="..."`, or `jti=-` before the token has been read, without allocating.
pub struct Jti<'a>(pub Option<&'a str>);

impl fmt::Display for Jti<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(jti) => write!(f, "jti={jti:?}"),
            None => f.write_str("jti=-"),
        }
    }
}
