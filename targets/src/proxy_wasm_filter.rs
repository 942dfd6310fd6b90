//! The proxy-wasm host: a root context that loads the configuration and one HTTP context per
//! request that drives [`Stream`].
//!
//! Envoy runs one VM per worker thread, so the `Rc` and `RefCell` state here is never shared
//! across threads.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use jwt_revocation_core::{Action, Config, LogLimiter, NoDecision, RequestInfo, Stream, Verdict};
use log::{debug, error, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as HostAction, ContextType, LogLevel};

/// Interval between two warnings about the authorization service, per worker.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

proxy_wasm::main! {{
    // Until Envoy's own level is read in `on_vm_start`, let warnings through.
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

struct Root {
    config: Option<Rc<Config>>,
    warnings: Rc<RefCell<LogLimiter>>,
}

impl Default for Root {
    fn default() -> Self {
        Self {
            config: None,
            warnings: Rc::new(RefCell::new(LogLimiter::new(WARNING_INTERVAL))),
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        sync_log_level();
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        sync_log_level();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                debug!(
                    "configured: cluster {:?}, authority {:?}, path {:?}, timeout {} ms",
                    config.cluster,
                    config.authority,
                    config.authorize_url,
                    config.timeout.as_millis()
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                // Returning false makes Envoy reject the plugin configuration.
                error!("{e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates HTTP contexts only after `on_configure` returned true.
        let config = Rc::clone(self.config.as_ref()?);
        Some(Box::new(Filter {
            config,
            stream: Stream::new(),
            warnings: Rc::clone(&self.warnings),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Makes the `log` facade drop records below Envoy's level for Wasm, so that disabled debug lines
/// cost no host call.
fn sync_log_level() {
    if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

struct Filter {
    config: Rc<Config>,
    stream: Stream,
    warnings: Rc<RefCell<LogLimiter>>,
}

impl Filter {
    /// Carries out a core action and returns what Envoy does with the request meanwhile.
    fn run(&mut self, action: Action) -> HostAction {
        match action {
            Action::Finish(verdict) => self.finish(&verdict),
            Action::Dispatch(callout) => {
                let dispatched = self.dispatch_http_call(
                    callout.cluster,
                    callout.headers().to_vec(),
                    None,
                    Vec::new(),
                    callout.timeout,
                );
                match dispatched {
                    Ok(_) => HostAction::Pause,
                    Err(status) => {
                        debug!("dispatch to {:?} failed: {status:?}", callout.cluster);
                        let next = self.stream.on_callout_failure(NoDecision::DispatchFailed);
                        self.run(next)
                    }
                }
            }
        }
    }

    /// Continues the request or sends the verdict's local reply, and logs the outcome.
    fn finish(&mut self, verdict: &Verdict) -> HostAction {
        let jti = self.stream.jti().unwrap_or("-");
        debug!("jti {jti:?}: {}: {verdict}", verdict.label());
        if let Verdict::NoDecision(reason) = verdict {
            self.warn_no_decision(reason);
        }

        match verdict.local_reply() {
            None => HostAction::Continue,
            Some(reply) => {
                self.send_http_response(
                    u32::from(reply.status),
                    reply.headers(),
                    Some(reply.body.as_bytes()),
                );
                HostAction::Pause
            }
        }
    }

    fn warn_no_decision(&self, reason: &NoDecision) {
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if let Some(suppressed) = self.warnings.borrow_mut().allow(now) {
            warn!(
                "{reason} (cluster {:?}); request denied with 503; \
                 {suppressed} similar warnings suppressed",
                self.config.cluster
            );
        }
    }

    fn hold_while_awaiting(&self) -> HostAction {
        if self.stream.is_awaiting_callout() {
            HostAction::Pause
        } else {
            HostAction::Continue
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        // A failed callout arrives with no headers at all, so no `:status`.
        let status = self.get_http_call_response_header_bytes(":status");
        let action = self.stream.on_callout_response(status.as_deref());
        if let HostAction::Continue = self.run(action) {
            self.resume_http_request();
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> HostAction {
        let headers = self.get_http_request_headers_bytes();
        let request = RequestInfo::from_headers(
            headers
                .iter()
                .map(|(name, value)| (name.as_bytes(), value.as_slice())),
        );

        let config = Rc::clone(&self.config);
        let action = self.stream.on_request_headers(&config, &request);
        self.run(action)
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> HostAction {
        // Pausing here buffers the body, so none of it reaches the upstream before the decision.
        self.hold_while_awaiting()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> HostAction {
        self.hold_while_awaiting()
    }
}
