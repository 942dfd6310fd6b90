//! One request's exchange with the authorization service: the core [`Stream`] and the host calls
//! that carry out its actions.
//!
//! proxy-wasm gives an HTTP context no timer of its own, so a retry backoff is realised with the
//! root context's tick: [`Worker::schedule`] records the retry and turns the tick on, and
//! [`Worker::on_tick`] sends each retry that is due. A callout sent from the tick delivers its
//! response to the root context, which hands the response to the exchange it belongs to. Every call here
//! uses the host functions directly, after making the request's context the effective one, so
//! the same code runs from the HTTP context and from the root context.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, UNIX_EPOCH};

use jwt_revocation_core::{
    Action, Breakers, Config, DecisionCache, Env, Jitter, LogLimiter, NoDecision, Stream, Verdict,
    FAILURE_MODE_HEADER,
};
use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action as HostAction, MapType};

use super::metrics::WasmMetrics;

/// Interval between two warnings about the authorization service, per worker.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);
/// Tick period while a retry waits; it bounds how late a backoff can end.
const RETRY_TICK: Duration = Duration::from_millis(5);

/// State shared by every request of one Wasm VM, which is one Envoy worker thread.
pub struct Worker {
    pub config: Rc<Config>,
    metrics: WasmMetrics,
    breakers: RefCell<Breakers>,
    cache: RefCell<DecisionCache>,
    jitter: RefCell<Jitter>,
    warnings: RefCell<LogLimiter>,
    /// Retries waiting for their backoff to end: due time and exchange.
    timers: RefCell<Vec<(Duration, Weak<RefCell<Exchange>>)>>,
    /// Callouts sent from the root context, by token.
    root_callouts: RefCell<HashMap<u32, Weak<RefCell<Exchange>>>>,
}

impl Worker {
    pub fn new(config: Config, metrics: WasmMetrics) -> Self {
        let seed = now().as_nanos() as u64;
        Self {
            breakers: RefCell::new(Breakers::new(&config)),
            cache: RefCell::new(DecisionCache::new(config.cache)),
            config: Rc::new(config),
            metrics,
            jitter: RefCell::new(Jitter::new(seed)),
            warnings: RefCell::new(LogLimiter::new(WARNING_INTERVAL)),
            timers: RefCell::new(Vec::new()),
            root_callouts: RefCell::new(HashMap::new()),
        }
    }

    /// Sends the retries whose backoff has ended. Runs in the root context's tick.
    pub fn on_tick(&self) {
        let now = now();
        let due: Vec<Weak<RefCell<Exchange>>> = {
            let mut timers = self.timers.borrow_mut();
            let (due, waiting): (Vec<_>, Vec<_>) = timers.drain(..).partition(|(at, _)| *at <= now);
            *timers = waiting;
            due.into_iter().map(|(_, exchange)| exchange).collect()
        };
        for exchange in due.iter().filter_map(Weak::upgrade) {
            let context_id = exchange.borrow().context_id;
            if hostcalls::set_effective_context(context_id).is_ok() {
                Exchange::on_event(&exchange, Event::Timer, true);
            }
        }
        if self.timers.borrow().is_empty() {
            let _ = hostcalls::set_tick_period(Duration::ZERO);
        }
        // Envoy cancels the callouts of a request whose client went away, so their entries would
        // otherwise stay forever.
        self.root_callouts
            .borrow_mut()
            .retain(|_, exchange| exchange.strong_count() > 0);
    }

    /// Hands the response to a callout sent from the root context to its exchange.
    pub fn on_root_callout_response(&self, token: u32) {
        let exchange = self.root_callouts.borrow_mut().remove(&token);
        let Some(exchange) = exchange.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        // Envoy keeps the response on the context that sent the callout, so that context must be
        // the effective one before the headers are read.
        let context_id = exchange.borrow().context_id;
        if hostcalls::set_effective_context(context_id).is_err() {
            return;
        }
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        Exchange::on_event(&exchange, Event::CalloutResponse(status), true);
    }

    /// Runs one core call with this worker's breakers, cache, metrics, jitter and the time
    /// `now`. The breakers and the cache are borrowed only until the call returns, before any
    /// host call.
    fn with_env<T>(&self, now: Duration, call: impl FnOnce(Env) -> T) -> T {
        let mut metrics = self.metrics;
        let mut breakers = self.breakers.borrow_mut();
        let mut cache = self.cache.borrow_mut();
        call(Env {
            now,
            // The proxy-wasm clock is the wall clock.
            unix_time: now,
            jitter: self.jitter.borrow_mut().next_unit(),
            breakers: &mut breakers,
            cache: &mut cache,
            metrics: &mut metrics,
        })
    }

    fn schedule(&self, due: Duration, exchange: Weak<RefCell<Exchange>>) {
        let was_idle = self.timers.borrow().is_empty();
        self.timers.borrow_mut().push((due, exchange));
        if was_idle {
            let _ = hostcalls::set_tick_period(RETRY_TICK);
        }
    }

    fn warn_no_decision(&self, cluster: &str, verdict: &Verdict, reason: NoDecision) {
        if let Some(suppressed) = self.warnings.borrow_mut().allow(now()) {
            let outcome = match verdict.local_reply() {
                Some(reply) => format!("request denied with {}", reply.status),
                None => "failOpen lets the request through".to_owned(),
            };
            warn!(
                "no decision from the authorization service (cluster {cluster:?}): {reason}; \
                 {outcome}; {suppressed} similar warnings suppressed"
            );
        }
    }
}

/// Returns the host's wall-clock time as a duration since the Unix epoch.
// NOTE: proxy-wasm offers only the wall clock, so a clock step changes backoffs and breaker
// intervals that are running at that moment.
fn now() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// A host event for an exchange that was paused.
pub enum Event {
    CalloutResponse(Option<Vec<u8>>),
    Timer,
}

/// One request: its HTTP context id and its decision state.
pub struct Exchange {
    context_id: u32,
    stream: Stream,
    worker: Rc<Worker>,
}

impl Exchange {
    pub fn new(context_id: u32, worker: Rc<Worker>) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            context_id,
            stream: Stream::new(),
            worker,
        }))
    }

    pub fn is_pending(&self) -> bool {
        self.stream.is_pending()
    }

    /// Decides on the request headers. Runs in the HTTP context.
    pub fn on_request_headers(
        this: &Rc<RefCell<Self>>,
        headers: &[(String, Vec<u8>)],
    ) -> HostAction {
        let request = jwt_revocation_core::RequestInfo::from_headers(
            headers
                .iter()
                .map(|(name, value)| (name.as_bytes(), value.as_slice())),
        );
        if request.has_failure_mode_header() {
            let _ =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, FAILURE_MODE_HEADER.0, None);
        }
        Self::step(this, false, |stream, config, env| {
            stream.on_request_headers(config, &request, env)
        })
    }

    /// Carries an event that arrived while the request was paused, then resumes the request when
    /// the verdict allows it. `from_root` is true when the root context delivered the event.
    pub fn on_event(this: &Rc<RefCell<Self>>, event: Event, from_root: bool) {
        let next = Self::step(this, from_root, |stream, config, env| match &event {
            Event::CalloutResponse(status) => {
                stream.on_callout_response(config, status.as_deref(), env)
            }
            Event::Timer => stream.on_timer(config, env),
        });
        if let HostAction::Continue = next {
            let _ = hostcalls::resume_http_request();
        }
    }

    /// Runs one core call and carries out the actions that follow from it.
    fn step(
        this: &Rc<RefCell<Self>>,
        from_root: bool,
        event: impl for<'c> FnOnce(&mut Stream, &'c Config, Env) -> Action<'c>,
    ) -> HostAction {
        let mut exchange = this.borrow_mut();
        let worker = Rc::clone(&exchange.worker);
        let config = Rc::clone(&worker.config);
        let started = now();
        let stream = &mut exchange.stream;
        let mut action = worker.with_env(started, |env| event(stream, &config, env));
        loop {
            match action {
                Action::Finish(verdict) => return exchange.finish(&config, &verdict),
                Action::Wait(backoff) => {
                    worker.schedule(started + backoff, Rc::downgrade(this));
                    return HostAction::Pause;
                }
                Action::Dispatch(callout) => {
                    let dispatched = hostcalls::dispatch_http_call(
                        callout.cluster,
                        callout.headers().to_vec(),
                        None,
                        Vec::new(),
                        callout.timeout,
                    );
                    match dispatched {
                        Ok(token) => {
                            if from_root {
                                worker
                                    .root_callouts
                                    .borrow_mut()
                                    .insert(token, Rc::downgrade(this));
                            }
                            return HostAction::Pause;
                        }
                        Err(status) => {
                            debug!("dispatch to {:?} failed: {status:?}", callout.cluster);
                            let stream = &mut exchange.stream;
                            action = worker.with_env(now(), |env| {
                                stream.on_callout_failure(&config, NoDecision::DispatchFailed, env)
                            });
                        }
                    }
                }
            }
        }
    }

    /// Continues the request or sends the verdict's local reply, and logs the outcome.
    fn finish(&self, config: &Config, verdict: &Verdict) -> HostAction {
        let jti = self.stream.jti().unwrap_or("-");
        debug!("jti {jti:?}: {}: {verdict}", verdict.label());
        if let Some(reason) = verdict.no_decision() {
            self.worker
                .warn_no_decision(self.stream.cluster(config), verdict, reason);
        }

        if let Some(reply) = verdict.local_reply() {
            let _ = hostcalls::send_http_response(
                u32::from(reply.status),
                reply.headers(),
                Some(reply.body.as_bytes()),
            );
            return HostAction::Pause;
        }
        if let Some((name, value)) = verdict.request_header() {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
        }
        HostAction::Continue
    }
}
