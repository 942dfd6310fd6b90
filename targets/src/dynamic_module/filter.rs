//! The state of one HTTP stream and the glue between Envoy's stream events and
//! [`jwt_revocation_core::Stream`].
//!
//! Each event method makes one core call, then carries out the actions that follow: it sends
//! callouts, starts backoffs and adds the fail-open header, until the request waits or is
//! decided. It returns [`Next`], which the hook in `hooks.rs` carries out with a last host call.
//! Envoy may end the stream and destroy this filter inside that call, so every method finishes
//! its work on the filter before returning, and the hook does not touch the filter afterwards.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use jwt_revocation_core::{
    Action, Callout, Config, Env, LocalReply, NoDecision, RequestInfo, Stream, Verdict,
    FAILURE_MODE_HEADER,
};

use super::abi::{
    CalloutResult, HttpFilterHandle, PerRouteConfigModulePtr, RequestBodyStatus,
    RequestTrailersStatus,
};
use super::backoff::Backoff;
use super::callout::{CalloutOutcome, Dispatched};
use super::clock;
use super::config::{ConfigState, FilterConfig, RouteConfig};
use super::log;
use super::metrics::{HostMetrics, MetricBuffer, MetricIds};

/// The request headers the decision reads.
const DECISION_HEADERS: [&str; 4] = [
    ":method",
    "authorization",
    "origin",
    "access-control-request-method",
];

/// A header that makes the filter panic, to prove that a panic fails closed. Value `1` on the
/// request or on a callout response panics in the request-headers or callout-done hook. Value
/// `scheduled` on the request panics in the scheduled hook. Compiled only into unit tests and
/// builds with the `panic-test` feature.
#[cfg(any(test, feature = "panic-test"))]
pub const TEST_PANIC_HEADER: &str = "x-jwt-revocation-test-panic";

/// The stage of a stream's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The request headers have not been seen.
    New,
    /// A hook is running the core or carrying out its actions. A panic now leaves the request
    /// paused, so the hook that panicked sends the 503.
    Deciding,
    /// `http_callout` is running. A callout response that arrives now is recorded, and the hook
    /// that called `http_callout` acts on it once `http_callout` returns.
    Dispatching,
    /// A callout is in flight and the request is paused.
    AwaitingCallout,
    /// A retry waits for its backoff to end and the request is paused.
    BackingOff,
    /// The request continues to the upstream.
    Allowed,
    /// A local reply denied the request.
    Denied,
    /// A hook panicked or a callback failed. The filter has sent, or is sending, a 503.
    Failed,
}

impl Phase {
    /// Returns true while the request is paused and only this filter can resume or end it.
    pub fn awaits_decision(self) -> bool {
        matches!(
            self,
            Self::Deciding | Self::AwaitingCallout | Self::BackingOff
        )
    }
}

/// The step a hook takes after the filter has handled an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Let the request go on to the upstream.
    Pass,
    /// Keep the request paused: a callout is in flight or a backoff is running.
    Wait,
    /// Send this local reply in place of the upstream's response.
    Reply(LocalReply),
    /// Do nothing: the event does not change the decision.
    Ignore,
}

/// The module's state for one HTTP stream.
#[derive(Debug)]
pub struct Filter {
    listener: Arc<ConfigState>,
    metrics: MetricIds,
    /// The configuration in force for this request: the listener's or the route's.
    active: RefCell<Option<Arc<ConfigState>>>,
    stream: RefCell<Stream>,
    phase: Cell<Phase>,
    /// A callout outcome that arrived while `http_callout` was running.
    inline_outcome: RefCell<Option<CalloutOutcome>>,
    backoff: Backoff,
}

impl Filter {
    pub fn new(config: &FilterConfig) -> Self {
        Self {
            listener: Arc::clone(&config.state),
            metrics: config.metrics,
            active: RefCell::new(None),
            stream: RefCell::new(Stream::new()),
            phase: Cell::new(Phase::New),
            inline_outcome: RefCell::new(None),
            backoff: Backoff::default(),
        }
    }

    /// Marks the filter failed after a panic and returns the phase it was in. A failed filter
    /// never lets the request continue and never uses its `Stream` again.
    pub fn mark_failed(&self) -> Phase {
        self.phase.replace(Phase::Failed)
    }

    /// Decides on the request headers: pass, deny, or start the callout and wait.
    pub fn on_request_headers(&self, host: &HttpFilterHandle) -> Next {
        // Only this filter may tell the upstream that a request passed without a decision, on
        // routes that disable the check too.
        let forged = host
            .request_header_values(FAILURE_MODE_HEADER.0)
            .map_or(true, |values| !values.is_empty());
        if forged {
            if let Err(error) = host.remove_request_header(FAILURE_MODE_HEADER.0) {
                return self.fail(&error.to_string());
            }
        }

        let Some(state) = self.route_config(host) else {
            self.phase.set(Phase::Allowed);
            log::debug(format_args!(
                "disabled on this route; the request passes unchecked"
            ));
            return Next::Pass;
        };

        let mut headers = Vec::new();
        for name in DECISION_HEADERS {
            match host.request_header_values(name) {
                Ok(values) => headers.extend(values.into_iter().map(|v| (name.as_bytes(), v))),
                Err(error) => {
                    return self.fail(&format!("reading the request headers failed: {error}"));
                }
            }
        }

        #[cfg(any(test, feature = "panic-test"))]
        if host
            .request_header_values(TEST_PANIC_HEADER)
            .is_ok_and(|values| values.contains(&&b"1"[..]))
        {
            panic!("{TEST_PANIC_HEADER} requested a panic in the request-headers hook");
        }

        let info = RequestInfo::from_headers(headers);
        *self.active.borrow_mut() = Some(Arc::clone(&state));
        self.phase.set(Phase::Deciding);
        let action = self.step(host, &state, |stream, config, env| {
            stream.on_request_headers(config, &info, env)
        });
        self.carry_out(host, &state, action, None)
    }

    /// Decides on the callout's response. `headers` are the response headers, empty when the
    /// callout failed without a response.
    pub fn on_callout_done(
        &self,
        host: &HttpFilterHandle,
        result: CalloutResult,
        headers: &[(&[u8], &[u8])],
    ) -> Next {
        let phase = self.phase.get();
        if phase != Phase::Dispatching && phase != Phase::AwaitingCallout {
            return Next::Ignore;
        }

        #[cfg(any(test, feature = "panic-test"))]
        if headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case(TEST_PANIC_HEADER.as_bytes()) && *value == b"1"
        }) {
            panic!("{TEST_PANIC_HEADER} requested a panic in the callout-done hook");
        }

        let outcome = CalloutOutcome::new(result, headers);
        if phase == Phase::Dispatching {
            *self.inline_outcome.borrow_mut() = Some(outcome);
            return Next::Ignore;
        }
        let Some(state) = self.active_state() else {
            return self.fail("a callout completed before the request headers were handled");
        };
        self.phase.set(Phase::Deciding);
        let action = self.step(host, &state, |stream, config, env| {
            outcome.report(stream, config, env)
        });
        self.carry_out(host, &state, action, outcome.detail())
    }

    /// Sends the retry whose backoff has ended. `event_id` identifies the backoff.
    pub fn on_scheduled(&self, host: &HttpFilterHandle, event_id: u64) -> Next {
        if self.phase.get() != Phase::BackingOff || !self.backoff.is_current(event_id) {
            return Next::Ignore;
        }
        #[cfg(any(test, feature = "panic-test"))]
        if host
            .request_header_values(TEST_PANIC_HEADER)
            .is_ok_and(|values| values.contains(&&b"scheduled"[..]))
        {
            panic!("{TEST_PANIC_HEADER} requested a panic in the scheduled hook");
        }

        let Some(state) = self.active_state() else {
            return self.fail("a backoff ended before the request headers were handled");
        };
        self.phase.set(Phase::Deciding);
        let action = self.step(host, &state, |stream, config, env| {
            stream.on_timer(config, env)
        });
        self.carry_out(host, &state, action, None)
    }

    /// Holds the body while the decision is pending, and lets it through only once the request is
    /// allowed. Envoy buffers it with flow control, so a body larger than the buffer limit waits
    /// for the decision instead of failing with 413.
    pub fn on_request_body(&self) -> RequestBodyStatus {
        match self.phase.get() {
            Phase::Allowed => RequestBodyStatus::CONTINUE,
            Phase::Deciding | Phase::Dispatching | Phase::AwaitingCallout | Phase::BackingOff => {
                RequestBodyStatus::STOP_ITERATION_AND_WATERMARK
            }
            Phase::New | Phase::Denied | Phase::Failed => {
                RequestBodyStatus::STOP_ITERATION_NO_BUFFER
            }
        }
    }

    /// Stops the trailers unless the request was allowed.
    pub fn on_request_trailers(&self) -> RequestTrailersStatus {
        match self.phase.get() {
            Phase::Allowed => RequestTrailersStatus::CONTINUE,
            _ => RequestTrailersStatus::STOP_ITERATION,
        }
    }

    /// Returns the configuration for this request, or `None` when the route disables the filter.
    fn route_config(&self, host: &HttpFilterHandle) -> Option<Arc<ConfigState>> {
        let Some(ptr) = host.most_specific_route_config() else {
            return Some(Arc::clone(&self.listener));
        };
        // SAFETY: Envoy returns the pointer that `on_http_filter_per_route_config_new` made from a
        // `Box<RouteConfig>`. The stream keeps a reference to its route, which owns that
        // configuration, for as long as the stream lives.
        let route = unsafe { route_config_from_ptr(ptr) };
        match route {
            RouteConfig::Disabled => None,
            RouteConfig::Inherit => Some(Arc::clone(&self.listener)),
            RouteConfig::Override(state) => Some(Arc::clone(state)),
        }
    }

    fn active_state(&self) -> Option<Arc<ConfigState>> {
        self.active.borrow().clone()
    }

    /// Makes one core call with the time, a jitter sample, the configuration's breakers and
    /// cache, and a metric buffer, then records the buffered metrics once they are unlocked.
    fn step<'c>(
        &self,
        host: &HttpFilterHandle,
        state: &'c ConfigState,
        event: impl FnOnce(&mut Stream, &'c Config, Env) -> Action<'c>,
    ) -> Action<'c> {
        let now = clock::now();
        let unix_time = clock::unix_time();
        let jitter = clock::jitter();
        let mut metrics = MetricBuffer::default();
        let action = {
            let mut shared = state.lock();
            let shared = &mut *shared;
            let env = Env {
                now,
                unix_time,
                jitter,
                breakers: &mut shared.breakers,
                cache: &mut shared.cache,
                metrics: &mut metrics,
            };
            event(&mut self.stream.borrow_mut(), &state.config, env)
        };
        metrics.replay(&mut HostMetrics {
            host,
            ids: &self.metrics,
        });
        action
    }

    /// Carries out `action` and the actions that follow from it, until the request waits for a
    /// callout or a backoff, or is decided. `detail` is what Envoy reported about the last
    /// callout, for the log.
    fn carry_out<'c>(
        &self,
        host: &HttpFilterHandle,
        state: &'c ConfigState,
        mut action: Action<'c>,
        mut detail: Option<String>,
    ) -> Next {
        loop {
            action = match action {
                Action::Finish(verdict) => return self.finish(host, state, &verdict, detail),
                Action::Wait(delay) => match self.backoff.start(host, delay) {
                    Ok(()) => {
                        let stream = self.stream.borrow();
                        log::debug(format_args!(
                            "{}: no decision from cluster {:?}; retrying in {} ms",
                            log::Jti(stream.jti()),
                            stream.cluster(&state.config),
                            delay.as_millis()
                        ));
                        drop(stream);
                        self.phase.set(Phase::BackingOff);
                        return Next::Wait;
                    }
                    Err(error) => {
                        log::error(format_args!(
                            "starting a {} ms retry backoff failed: {error}. The retry is sent \
                             at once.",
                            delay.as_millis()
                        ));
                        self.step(host, state, |stream, config, env| {
                            stream.on_timer(config, env)
                        })
                    }
                },
                Action::Dispatch(callout) => match self.dispatch(host, &callout) {
                    Dispatched::Started => return Next::Wait,
                    Dispatched::Failed => return Next::Reply(internal_error_reply()),
                    Dispatched::Completed(outcome) => {
                        detail = outcome.detail();
                        self.step(host, state, |stream, config, env| {
                            outcome.report(stream, config, env)
                        })
                    }
                    Dispatched::Rejected(error) => {
                        log::debug(format_args!(
                            "{}: Envoy did not send the callout to cluster {:?}: {error}",
                            log::Jti(self.stream.borrow().jti()),
                            callout.cluster
                        ));
                        detail = Some(error.to_string());
                        self.step(host, state, |stream, config, env| {
                            stream.on_callout_failure(config, NoDecision::DispatchFailed, env)
                        })
                    }
                },
            };
        }
    }

    /// Asks Envoy to send the callout, and collects a response that Envoy delivered at once.
    fn dispatch(&self, host: &HttpFilterHandle, callout: &Callout<'_>) -> Dispatched {
        let timeout_ms = u64::try_from(callout.timeout.as_millis()).unwrap_or(u64::MAX);
        self.phase.set(Phase::Dispatching);
        let started = host.http_callout(callout.cluster, &callout.headers(), timeout_ms);

        // Envoy may have run `on_http_filter_http_callout_done` inside `http_callout`, in which
        // case its outcome counts even if `http_callout` returned an error.
        if self.phase.get() == Phase::Failed {
            return Dispatched::Failed;
        }
        self.phase.set(Phase::Deciding);
        if let Some(outcome) = self.inline_outcome.borrow_mut().take() {
            return Dispatched::Completed(outcome);
        }
        match started {
            Ok(_callout_id) => {
                self.phase.set(Phase::AwaitingCallout);
                Dispatched::Started
            }
            Err(error) => Dispatched::Rejected(error),
        }
    }

    /// Applies the verdict: adds its request header or picks its local reply, logs it, and
    /// records the final phase last, so that a panic before then still fails closed.
    fn finish(
        &self,
        host: &HttpFilterHandle,
        state: &ConfigState,
        verdict: &Verdict,
        detail: Option<String>,
    ) -> Next {
        let (next, phase) = match (verdict.local_reply(), verdict.request_header()) {
            (Some(reply), _) => (Next::Reply(reply), Phase::Denied),
            (None, None) => (Next::Pass, Phase::Allowed),
            (None, Some((name, value))) => match host.set_request_header(name, value) {
                Ok(()) => (Next::Pass, Phase::Allowed),
                Err(error) => {
                    log::error(format_args!(
                        "adding the header {name} to a request that failOpen lets through \
                         failed: {error}. The request is rejected with 503."
                    ));
                    (Next::Reply(internal_error_reply()), Phase::Failed)
                }
            },
        };

        let stream = self.stream.borrow();
        log::debug(format_args!(
            "{} verdict={}: {verdict}",
            log::Jti(stream.jti()),
            verdict.label()
        ));
        if let Some(reason) = verdict.no_decision() {
            let cluster = stream.cluster(&state.config);
            let outcome = match &next {
                Next::Reply(reply) => format!("The request was rejected with {}.", reply.status),
                _ => "failOpen lets the request continue.".to_owned(),
            };
            log::warn_limited(format_args!(
                "no decision from the authorization service on cluster {cluster:?}: {reason}{}. \
                 {outcome}",
                detail.map_or_else(String::new, |detail| format!(" ({detail})"))
            ));
        }
        drop(stream);

        self.phase.set(phase);
        next
    }

    /// Ends a request in a state the hooks do not produce, with a 503.
    fn fail(&self, problem: &str) -> Next {
        log::error(format_args!("{problem}. The request is rejected with 503."));
        self.phase.set(Phase::Failed);
        Next::Reply(internal_error_reply())
    }
}

/// Views a per-route configuration pointer.
///
/// # Safety
///
/// `ptr` must come from `Box::<RouteConfig>::into_raw` and stay alive for `'a`.
unsafe fn route_config_from_ptr<'a>(ptr: PerRouteConfigModulePtr) -> &'a RouteConfig {
    // SAFETY: guaranteed by the caller.
    unsafe { &*ptr.cast::<RouteConfig>() }
}

/// Builds the 503 sent when the filter itself failed, such as after a panic.
// TODO: move to the core as a verdict once the proxy-wasm target needs the same reply.
pub fn internal_error_reply() -> LocalReply {
    LocalReply {
        status: 503,
        www_authenticate: None,
        body: "{\"error\":\"temporarily_unavailable\",\"error_description\":\"the jwt-revocation \
               filter failed on this request; retry later\"}\n"
            .to_owned(),
        details: "jwt_revocation_filter_failed",
    }
}
