//! Retry backoffs: the process-wide [`Timer`] and the scheduler that each stream needs for it.
//!
//! A stream that backs off creates its Envoy scheduler once and schedules a commit of it on the
//! timer for the end of the backoff. Envoy then runs `on_http_filter_scheduled` on the stream's worker thread.

use std::cell::Cell;
use std::io;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use super::abi::{HostError, HttpFilterHandle, Scheduler};
use super::timer::Timer;

static TIMER: LazyLock<Timer<Scheduler>> = LazyLock::new(|| {
    Timer::new(|scheduler: Scheduler, event_id| {
        // SAFETY: the timer fires only under its lock, and `Backoff::drop` removes the
        // scheduler's events and deletes it under the same lock, so the scheduler is alive.
        unsafe { scheduler.commit(event_id) }
    })
});

/// A registration that keeps the timer thread allowed to run. Each listener-level configuration
/// keeps one, so the thread has stopped before Envoy can unload the module.
#[derive(Debug)]
pub struct TimerLease(());

impl TimerLease {
    pub fn new() -> Self {
        TIMER.retain();
        Self(())
    }
}

impl Drop for TimerLease {
    fn drop(&mut self) {
        TIMER.release();
    }
}

/// An error that kept a backoff from starting.
#[derive(Debug)]
pub enum BackoffError {
    Scheduler(HostError),
    Timer(io::Error),
}

impl std::fmt::Display for BackoffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Scheduler(error) => error.fmt(f),
            Self::Timer(error) => write!(f, "starting the timer thread failed: {error}"),
        }
    }
}

/// The backoff state of one stream: its scheduler, created on the first backoff, and the id of
/// the event that ends the current backoff.
#[derive(Debug, Default)]
pub struct Backoff {
    scheduler: Cell<Option<Scheduler>>,
    event_id: Cell<u64>,
}

impl Backoff {
    /// Arranges for `on_http_filter_scheduled` to run with a new event id once `delay` has
    /// passed.
    pub fn start(&self, host: &HttpFilterHandle, delay: Duration) -> Result<(), BackoffError> {
        let scheduler = match self.scheduler.get() {
            Some(scheduler) => scheduler,
            None => {
                let scheduler = host.new_scheduler().map_err(BackoffError::Scheduler)?;
                self.scheduler.set(Some(scheduler));
                scheduler
            }
        };
        let event_id = self.event_id.get() + 1;
        self.event_id.set(event_id);
        TIMER
            .schedule(Instant::now() + delay, scheduler, event_id)
            .map_err(BackoffError::Timer)
    }

    /// Returns true when `event_id` ends the most recent backoff.
    pub fn is_current(&self, event_id: u64) -> bool {
        event_id != 0 && event_id == self.event_id.get()
    }
}

impl Drop for Backoff {
    fn drop(&mut self) {
        if let Some(scheduler) = self.scheduler.get() {
            TIMER.cancel(scheduler, || {
                // SAFETY: the stream created the scheduler and deletes it once, here. `cancel`
                // has removed its events and holds the lock under which the timer commits, so no
                // thread commits it during or after the deletion.
                unsafe { scheduler.delete() }
            });
        }
    }
}
