//! The state of one HTTP stream and the glue between Envoy's stream events and
//! [`jwt_revocation_core::Stream`].
//!
//! Each method handles one event and returns [`Next`], which the hook in `hooks.rs` carries out
//! with a host call. Envoy may end the stream and destroy this filter inside that host call, so
//! every method finishes its work on the filter before returning, and the hook does not touch the
//! filter after it has made the call.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use jwt_revocation_core::{Action, Config, LocalReply, NoDecision, RequestInfo, Stream, Verdict};

use super::abi::{
    CalloutResult, HttpFilterHandle, PerRouteConfigModulePtr, RequestBodyStatus,
    RequestTrailersStatus,
};
use super::config::{FilterConfig, RouteConfig};
use super::log;

/// The request headers the decision reads.
const DECISION_HEADERS: [&str; 4] = [
    ":method",
    "authorization",
    "origin",
    "access-control-request-method",
];

/// A request or callout response carrying this header with value `1` makes the filter panic, to
/// prove that a panic fails closed. Compiled only into unit tests and builds with the `panic-test`
/// feature.
#[cfg(any(test, feature = "panic-test"))]
pub const TEST_PANIC_HEADER: &str = "x-jwt-revocation-test-panic";

/// The stage of a stream's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The request headers have not been seen.
    New,
    /// `http_callout` is running. A callout response that arrives now is recorded, and the
    /// request-headers hook acts on it once `http_callout` returns.
    Dispatching,
    /// A callout is in flight and the request is paused.
    AwaitingCallout,
    /// The request continues to the upstream.
    Allowed,
    /// A local reply denied the request.
    Denied,
    /// A hook panicked or a callback failed. The filter has sent, or is sending, a 503.
    Failed,
}

/// The step a hook takes after the filter has handled an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Let the request go on to the upstream.
    Pass,
    /// Pause the request: a callout is in flight.
    Wait,
    /// Send this local reply in place of the upstream's response.
    Reply(LocalReply),
    /// Do nothing: the event does not change the decision.
    Ignore,
}

/// A callout verdict that arrived while `http_callout` was running, with a detail for the log.
type InlineVerdict = (Verdict, Option<String>);

/// The module's state for one HTTP stream.
#[derive(Debug)]
pub struct Filter {
    listener_config: Arc<Config>,
    /// The configuration in force for this request: the listener's or the route's.
    active_config: RefCell<Option<Arc<Config>>>,
    stream: RefCell<Stream>,
    phase: Cell<Phase>,
    inline_verdict: RefCell<Option<InlineVerdict>>,
}

impl Filter {
    pub fn new(config: &FilterConfig) -> Self {
        Self {
            listener_config: Arc::clone(&config.config),
            active_config: RefCell::new(None),
            stream: RefCell::new(Stream::new()),
            phase: Cell::new(Phase::New),
            inline_verdict: RefCell::new(None),
        }
    }

    /// Marks the filter failed after a panic and returns the phase it was in. A failed filter
    /// never lets the request continue and never uses its `Stream` again.
    pub fn mark_failed(&self) -> Phase {
        self.phase.replace(Phase::Failed)
    }

    /// Decides on the request headers: pass, deny, or start the callout and wait.
    pub fn on_request_headers(&self, host: &HttpFilterHandle) -> Next {
        let Some(config) = self.route_config(host) else {
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
                    log::error(format_args!(
                        "reading the request headers failed: {error}. The request is rejected \
                         with 503."
                    ));
                    self.phase.set(Phase::Failed);
                    return Next::Reply(internal_error_reply());
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
        *self.active_config.borrow_mut() = Some(Arc::clone(&config));
        let action = self.stream.borrow_mut().on_request_headers(&config, &info);
        match action {
            Action::Finish(verdict) => self.finish(verdict, None),
            Action::Dispatch(callout) => {
                let timeout_ms = u64::try_from(callout.timeout.as_millis()).unwrap_or(u64::MAX);
                self.dispatch(host, callout.cluster, &callout.headers(), timeout_ms)
            }
        }
    }

    /// Returns the configuration for this request, or `None` when the route disables the filter.
    fn route_config(&self, host: &HttpFilterHandle) -> Option<Arc<Config>> {
        let Some(ptr) = host.most_specific_route_config() else {
            return Some(Arc::clone(&self.listener_config));
        };
        // SAFETY: Envoy returns the pointer that `on_http_filter_per_route_config_new` made from a
        // `Box<RouteConfig>`. The stream keeps a reference to its route, which owns that
        // configuration, for as long as the stream lives.
        let route = unsafe { route_config_from_ptr(ptr) };
        match route {
            RouteConfig::Disabled => None,
            RouteConfig::Inherit => Some(Arc::clone(&self.listener_config)),
            RouteConfig::Override(config) => Some(Arc::clone(config)),
        }
    }

    /// Starts the callout and pauses the request, or acts on a response that Envoy returned at
    /// once.
    fn dispatch(
        &self,
        host: &HttpFilterHandle,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Next {
        self.phase.set(Phase::Dispatching);
        let started = host.http_callout(cluster, headers, timeout_ms);

        // Envoy may have run `on_http_filter_http_callout_done` inside `http_callout`.
        if self.phase.get() == Phase::Failed {
            return Next::Reply(internal_error_reply());
        }
        let inline_verdict = self.inline_verdict.borrow_mut().take();
        if let Some((verdict, detail)) = inline_verdict {
            return self.finish(verdict, detail);
        }

        match started {
            Ok(_callout_id) => {
                self.phase.set(Phase::AwaitingCallout);
                Next::Wait
            }
            Err(error) => {
                let action = self
                    .stream
                    .borrow_mut()
                    .on_callout_failure(NoDecision::DispatchFailed);
                self.finish(verdict_of(action), Some(error.to_string()))
            }
        }
    }

    /// Decides on the callout's response. `headers` are the response headers, empty when the
    /// callout failed without a response.
    pub fn on_callout_done(&self, result: CalloutResult, headers: &[(&[u8], &[u8])]) -> Next {
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

        let (action, detail) = if result == CalloutResult::SUCCESS {
            let status = headers
                .iter()
                .find(|(name, _)| *name == b":status")
                .map(|(_, value)| *value);
            (self.stream.borrow_mut().on_callout_response(status), None)
        } else {
            // Reset and an oversized response both end the callout without a usable response.
            let detail = match result {
                CalloutResult::RESET => "the callout stream was reset".to_owned(),
                CalloutResult::EXCEED_RESPONSE_BUFFER_LIMIT => {
                    "the response exceeded Envoy's buffer limit".to_owned()
                }
                CalloutResult(other) => format!("Envoy reported unknown callout result {other}"),
            };
            let action = self
                .stream
                .borrow_mut()
                .on_callout_failure(NoDecision::ConnectFailure);
            (action, Some(detail))
        };
        let verdict = verdict_of(action);

        if phase == Phase::Dispatching {
            *self.inline_verdict.borrow_mut() = Some((verdict, detail));
            return Next::Ignore;
        }
        self.finish(verdict, detail)
    }

    /// Buffers the body while the decision is pending, and lets it through only once the request
    /// is allowed.
    pub fn on_request_body(&self) -> RequestBodyStatus {
        match self.phase.get() {
            Phase::Allowed => RequestBodyStatus::CONTINUE,
            Phase::Dispatching | Phase::AwaitingCallout => {
                RequestBodyStatus::STOP_ITERATION_AND_BUFFER
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

    /// Records the verdict, logs it, and returns what the hook does with the request.
    fn finish(&self, verdict: Verdict, detail: Option<String>) -> Next {
        let jti = self.stream.borrow().jti().map(str::to_owned);
        log::debug(format_args!(
            "jti={} verdict={}: {}",
            jti.as_deref()
                .map_or_else(|| "-".to_owned(), |jti| format!("{jti:?}")),
            verdict.label(),
            verdict
        ));

        let next = if verdict.allows() {
            self.phase.set(Phase::Allowed);
            Next::Pass
        } else {
            self.phase.set(Phase::Denied);
            Next::Reply(verdict.local_reply().unwrap_or_else(internal_error_reply))
        };

        if let Verdict::NoDecision(reason) = &verdict {
            let cluster = self
                .active_config
                .borrow()
                .as_ref()
                .map_or_else(String::new, |config| config.cluster.clone());
            let outcome = match &next {
                Next::Reply(reply) => format!("The request was rejected with {}.", reply.status),
                _ => "The request continues.".to_owned(),
            };
            log::warn_limited(format_args!(
                "no decision from the authorization service on cluster {cluster:?}: {reason}{}. \
                 {outcome}",
                detail.map_or_else(String::new, |detail| format!(" ({detail})"))
            ));
        }
        next
    }
}

/// Returns the verdict of a finished action. `Stream::on_callout_response` and
/// `Stream::on_callout_failure` return only `Finish`, and a `Dispatch` from them would fail closed.
fn verdict_of(action: Action<'_>) -> Verdict {
    match action {
        Action::Finish(verdict) => verdict,
        Action::Dispatch(_) => Verdict::NoDecision(NoDecision::DispatchFailed),
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
