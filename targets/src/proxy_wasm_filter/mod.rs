//! The proxy-wasm host: a root context per VM that loads the configuration and owns the worker's
//! shared state, and one HTTP context per request that drives an [`Exchange`].
//!
//! Envoy runs one VM per worker thread, so the `Rc` and `RefCell` state here is never shared
//! across threads, and circuit breakers are per worker.

mod exchange;
mod metrics;

use std::cell::RefCell;
use std::rc::Rc;

use jwt_revocation_core::Config;
use log::{debug, error};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as HostAction, ContextType, LogLevel};

use exchange::{Event, Exchange, Worker};
use metrics::WasmMetrics;

proxy_wasm::main! {{
    // Until Envoy's own level is read in `on_vm_start`, let warnings through.
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    worker: Option<Rc<Worker>>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(worker) = &self.worker {
            worker.on_root_callout_response(token_id);
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        sync_log_level();
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        sync_log_level();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match Config::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                // Returning false makes Envoy reject the plugin configuration.
                error!("{e}");
                return false;
            }
        };
        let metrics = match WasmMetrics::define() {
            Ok(metrics) => metrics,
            Err(e) => {
                error!("{e}");
                return false;
            }
        };
        debug!(
            "configured: cluster {:?}, authority {:?}, path {:?}, timeout {} ms, {} fallback clusters",
            config.cluster,
            config.authority,
            config.authorize_url,
            config.timeout.as_millis(),
            config.fallbacks.len()
        );
        self.worker = Some(Rc::new(Worker::new(config, metrics)));
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            worker.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates HTTP contexts only after `on_configure` returned true.
        let worker = Rc::clone(self.worker.as_ref()?);
        Some(Box::new(Filter {
            exchange: Exchange::new(context_id, worker),
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
    exchange: Rc<RefCell<Exchange>>,
}

impl Filter {
    fn hold_while_pending(&self) -> HostAction {
        if self.exchange.borrow().is_pending() {
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
        Exchange::on_event(&self.exchange, Event::CalloutResponse(status), false);
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> HostAction {
        let headers = self.get_http_request_headers_bytes();
        Exchange::on_request_headers(&self.exchange, &headers)
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> HostAction {
        // Pausing here buffers the body, so none of it reaches the upstream before the decision.
        self.hold_while_pending()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> HostAction {
        self.hold_while_pending()
    }
}
