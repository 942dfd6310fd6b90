//! A timer thread that fires events at deadlines, used to end retry backoffs.
//!
//! Envoy 1.40 gives an HTTP filter no timer. Its scheduler can post an event to the stream's
//! worker thread from any thread, so one thread per process waits for the earliest deadline and
//! then fires the event, which commits the stream's scheduler.
//!
//! The timer calls `fire` only while it holds its lock, and [`Timer::cancel`] removes a key's
//! events under the same lock. So once `cancel` returns, `fire` never runs for that key again,
//! and the key's owner may free what the key points to.
//!
//! The thread starts with the first event and stops when the last [`Timer::release`] balances
//! the [`Timer::retain`] calls. Envoy unloads a module with `dlclose` once its last configuration
//! is destroyed, and a thread still running the module's code would then crash the process.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// Events that wait for their deadline, and a thread that fires them.
pub struct Timer<K> {
    shared: Arc<Shared<K>>,
    control: Mutex<Control>,
}

/// The timer thread and the users that keep it allowed to run.
#[derive(Default)]
struct Control {
    thread: Option<JoinHandle<()>>,
    users: usize,
}

struct Shared<K> {
    state: Mutex<State<K>>,
    wakeup: Condvar,
    fire: Box<dyn Fn(K, u64) + Send + Sync>,
}

struct State<K> {
    pending: BinaryHeap<Event<K>>,
    /// Insertion counter, so events with equal deadlines fire in the order they were scheduled.
    sequence: u64,
    stopping: bool,
}

struct Event<K> {
    deadline: Instant,
    sequence: u64,
    key: K,
    event_id: u64,
}

// `BinaryHeap` is a max-heap, so the order is reversed and the earliest deadline is the greatest.
impl<K> Ord for Event<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.sequence).cmp(&(self.deadline, self.sequence))
    }
}

impl<K> PartialOrd for Event<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> PartialEq for Event<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Event<K> {}

/// Locks `mutex` even if a thread panicked while holding it. The state stays consistent
/// because every change under these locks is a single push, pop, retain or assignment.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Copy + PartialEq + Send + 'static> Timer<K> {
    /// Creates a timer that calls `fire(key, event_id)` on its thread for each event that is
    /// due. `fire` runs while the timer's lock is held, so it must not call into the timer.
    pub fn new(fire: impl Fn(K, u64) + Send + Sync + 'static) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    pending: BinaryHeap::new(),
                    sequence: 0,
                    stopping: false,
                }),
                wakeup: Condvar::new(),
                fire: Box::new(fire),
            }),
            control: Mutex::new(Control::default()),
        }
    }

    /// Registers a user, such as a filter configuration. The thread may run while any user is
    /// registered.
    pub fn retain(&self) {
        lock(&self.control).users += 1;
    }

    /// Unregisters a user. The last one stops the thread and waits for it to exit, so no code of
    /// this module runs on it afterwards. Events still pending stay queued and fire once the
    /// thread starts again.
    pub fn release(&self) {
        let mut control = lock(&self.control);
        control.users = control.users.saturating_sub(1);
        if control.users == 0 {
            self.stop(&mut control);
        }
    }

    /// Schedules `fire(key, event_id)` for `deadline`, starting the thread if needed.
    ///
    /// Returns an error when the thread cannot be started, and the event is then not scheduled.
    pub fn schedule(&self, deadline: Instant, key: K, event_id: u64) -> io::Result<()> {
        self.start()?;
        let mut state = lock(&self.shared.state);
        let sequence = state.sequence;
        state.sequence += 1;
        state.pending.push(Event {
            deadline,
            sequence,
            key,
            event_id,
        });
        drop(state);
        self.shared.wakeup.notify_all();
        Ok(())
    }

    /// Removes every pending event of `key`, then runs `then` while still holding the lock, so
    /// `fire` cannot run for `key` before or during `then`.
    pub fn cancel<R>(&self, key: K, then: impl FnOnce() -> R) -> R {
        let mut state = lock(&self.shared.state);
        state.pending.retain(|event| event.key != key);
        let result = then();
        drop(state);
        result
    }

    /// Returns how many events wait for their deadline.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        lock(&self.shared.state).pending.len()
    }

    fn start(&self) -> io::Result<()> {
        let mut control = lock(&self.control);
        // A thread that finished here has panicked, so a new one takes over its events.
        if control
            .thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
        {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let thread = thread::Builder::new()
            .name("jwt-revocation-timer".to_owned())
            .spawn(move || shared.run())?;
        control.thread = Some(thread);
        Ok(())
    }
}

impl<K> Timer<K> {
    fn stop(&self, control: &mut Control) {
        let Some(thread) = control.thread.take() else {
            return;
        };
        lock(&self.shared.state).stopping = true;
        self.shared.wakeup.notify_all();
        // An error means that `fire` panicked, which the panic hook has already reported.
        let _ = thread.join();
        lock(&self.shared.state).stopping = false;
    }
}

impl<K> Drop for Timer<K> {
    fn drop(&mut self) {
        let mut control = lock(&self.control);
        self.stop(&mut control);
    }
}

impl<K: Copy> Shared<K> {
    /// Fires events as they fall due until the timer stops.
    fn run(&self) {
        let mut state = lock(&self.state);
        loop {
            if state.stopping {
                return;
            }
            let now = Instant::now();
            let next_deadline = state.pending.peek().map(|event| event.deadline);
            state = match next_deadline {
                Some(deadline) if deadline <= now => {
                    if let Some(event) = state.pending.pop() {
                        (self.fire)(event.key, event.event_id);
                    }
                    state
                }
                Some(deadline) => {
                    self.wakeup
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .wakeup
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    type Fired = Arc<Mutex<Vec<(u32, u64)>>>;

    fn recording_timer() -> (Timer<u32>, Fired) {
        let fired: Fired = Arc::default();
        let sink = Arc::clone(&fired);
        let timer = Timer::new(move |key, event_id| lock(&sink).push((key, event_id)));
        timer.retain();
        (timer, fired)
    }

    /// Waits up to one second for `count` events to fire.
    fn wait_for(fired: &Fired, count: usize) -> Vec<(u32, u64)> {
        let give_up = Instant::now() + Duration::from_secs(1);
        while lock(fired).len() < count && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(1));
        }
        lock(fired).clone()
    }

    #[test]
    fn timer_fires_after_deadline() {
        let (timer, fired) = recording_timer();
        let start = Instant::now();
        timer
            .schedule(start + Duration::from_millis(30), 7, 1)
            .unwrap();
        assert_eq!(wait_for(&fired, 1), [(7, 1)]);
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(timer.pending(), 0);
    }

    #[test]
    fn timer_fires_in_deadline_order() {
        let (timer, fired) = recording_timer();
        let start = Instant::now();
        timer
            .schedule(start + Duration::from_millis(60), 1, 10)
            .unwrap();
        timer
            .schedule(start + Duration::from_millis(20), 2, 20)
            .unwrap();
        timer
            .schedule(start + Duration::from_millis(20), 3, 30)
            .unwrap();
        assert_eq!(wait_for(&fired, 3), [(2, 20), (3, 30), (1, 10)]);
    }

    #[test]
    fn timer_fires_past_deadline_at_once() {
        let (timer, fired) = recording_timer();
        timer.schedule(Instant::now(), 4, 2).unwrap();
        assert_eq!(wait_for(&fired, 1), [(4, 2)]);
    }

    #[test]
    fn timer_cancel_removes_only_key() {
        let (timer, fired) = recording_timer();
        let deadline = Instant::now() + Duration::from_millis(40);
        timer.schedule(deadline, 1, 1).unwrap();
        timer.schedule(deadline, 2, 2).unwrap();
        timer.schedule(deadline, 1, 3).unwrap();

        let ran = timer.cancel(1, || "then ran");
        assert_eq!(ran, "then ran");
        assert_eq!(timer.pending(), 1);
        assert_eq!(wait_for(&fired, 1), [(2, 2)]);
        thread::sleep(Duration::from_millis(60));
        assert_eq!(lock(&fired).len(), 1, "a cancelled event fired");
    }

    #[test]
    fn timer_release_stops_thread() {
        let (timer, fired) = recording_timer();
        timer.schedule(Instant::now(), 1, 1).unwrap();
        assert_eq!(wait_for(&fired, 1).len(), 1);

        timer.release();
        assert!(lock(&timer.control).thread.is_none());

        timer.retain();
        timer.schedule(Instant::now(), 2, 2).unwrap();
        assert_eq!(wait_for(&fired, 2), [(1, 1), (2, 2)]);
    }

    #[test]
    fn timer_release_keeps_pending_events() {
        let (timer, fired) = recording_timer();
        timer
            .schedule(Instant::now() + Duration::from_millis(100), 1, 1)
            .unwrap();
        timer.release();
        assert_eq!(timer.pending(), 1);

        timer.retain();
        timer.schedule(Instant::now(), 2, 2).unwrap();
        assert_eq!(wait_for(&fired, 2), [(2, 2), (1, 1)]);
    }

    #[test]
    fn timer_release_waits_for_all_users() {
        let (timer, fired) = recording_timer();
        timer.retain();
        timer.schedule(Instant::now(), 1, 1).unwrap();
        wait_for(&fired, 1);
        timer.release();
        assert!(lock(&timer.control).thread.is_some());
        timer.release();
        assert!(lock(&timer.control).thread.is_none());
    }

    #[test]
    fn timer_restarts_after_panic_in_fire() {
        let fired: Fired = Arc::default();
        let sink = Arc::clone(&fired);
        let timer = Timer::new(move |key: u32, event_id| {
            assert_ne!(key, 0, "key 0 makes fire panic");
            lock(&sink).push((key, event_id));
        });
        timer.retain();
        timer.schedule(Instant::now(), 0, 1).unwrap();
        let give_up = Instant::now() + Duration::from_secs(1);
        while !lock(&timer.control).thread.as_ref().unwrap().is_finished() {
            assert!(Instant::now() < give_up, "the timer thread did not panic");
            thread::sleep(Duration::from_millis(1));
        }

        timer.schedule(Instant::now(), 2, 2).unwrap();
        assert_eq!(wait_for(&fired, 1), [(2, 2)]);
    }
}
