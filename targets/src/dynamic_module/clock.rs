//! The times and the jitter that every core call receives in its `Env`.

#[cfg(test)]
use std::cell::Cell;
use std::cell::RefCell;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jwt_revocation_core::Jitter;

/// The instant that [`now`] counts from. It is shared by every worker thread, because the circuit
/// breakers are shared and compare times recorded on different threads.
static START: OnceLock<Instant> = OnceLock::new();

thread_local! {
    static JITTER: RefCell<Jitter> = RefCell::new(Jitter::new(seed()));
}

#[cfg(test)]
thread_local! {
    static FIXED_JITTER: Cell<Option<f64>> = const { Cell::new(None) };
}

/// Returns the time on a monotonic clock, as the time since the first call in this process.
pub fn now() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

/// Returns the wall-clock time as the time since the Unix epoch, or zero when the clock is set
/// before it.
pub fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Returns the next jitter sample in `[0, 1)` from this thread's generator.
pub fn jitter() -> f64 {
    #[cfg(test)]
    if let Some(fixed) = FIXED_JITTER.get() {
        return fixed;
    }
    JITTER.with(|jitter| jitter.borrow_mut().next_unit())
}

/// Makes [`jitter`] return `value` on this thread, so tests know each backoff in advance.
#[cfg(test)]
pub fn fix_jitter(value: f64) {
    FIXED_JITTER.set(Some(value));
}

/// Seeds a thread's generator from the wall clock and the thread, so workers that start at the
/// same moment still draw different backoffs.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since_epoch| since_epoch.as_nanos() as u64);
    RandomState::new().hash_one((nanos, thread::current().id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_never_goes_back() {
        let first = now();
        let second = now();
        assert!(second >= first);
    }

    #[test]
    fn jitter_in_unit_interval() {
        for _ in 0..100 {
            let sample = jitter();
            assert!((0.0..1.0).contains(&sample), "{sample}");
        }
    }

    #[test]
    fn threads_get_different_seeds() {
        let other = thread::spawn(seed).join().unwrap();
        assert_ne!(seed(), other);
    }
}
