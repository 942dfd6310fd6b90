//! The event hooks that Envoy calls, exported under the names its dynamic-modules ABI fixes.
//!
//! Every hook runs its body inside [`guard`], so a panic never unwinds into Envoy, and a panic on
//! the request path rejects the request with a 503 instead of letting it through. The hooks of
//! features this filter does not use are in `unused_hooks.rs`.

use std::any::Any;
use std::ffi::c_char;
use std::panic::{self, AssertUnwindSafe};

use jwt_revocation_core::{Config, LocalReply};

use super::abi::{
    self, CalloutResult, EnvoyBuffer, EnvoyHttpHeader, FilterConfigEnvoyPtr, FilterConfigHandle,
    FilterConfigModulePtr, FilterEnvoyPtr, FilterModulePtr, HttpFilterHandle,
    PerRouteConfigModulePtr, RequestBodyStatus, RequestHeadersStatus, RequestTrailersStatus,
    ResponseBodyStatus, ResponseHeadersStatus, ResponseTrailersStatus,
};
use super::config::{self, FilterConfig, RouteConfig};
use super::filter::{internal_error_reply, Filter, Next, Phase};
use super::log;
use super::metrics::MetricIds;

/// Runs `body` and catches a panic that it raises. Returns `None` after a panic, which it logs.
///
/// Unwinding is safe here because `body` panics only in its own Rust code. Every Envoy call inside
/// `body` has returned before that code resumes, so no C++ frame is unwound and no Envoy state is
/// left half-written. The only module state a panic can leave inconsistent is the stream's
/// [`Filter`], which the caller marks failed so that it is never used again, the per-thread log
/// limiter, which contains counters only, and the circuit breakers of the configuration. A panic
/// during a core call poisons their lock, and they stay in use because they also contain only
/// counts and times. The panic stops here and never crosses the `extern "C"` boundary.
pub(super) fn guard<R>(hook: &str, body: impl FnOnce() -> R) -> Option<R> {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => Some(value),
        Err(payload) => {
            log::error(format_args!(
                "caught a panic in {hook}: {}. The hook fails closed.",
                panic_message(payload.as_ref())
            ));
            None
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "a panic without a message"
    }
}

/// Views the filter of a stream. Returns `None` when `on_http_filter_new` failed and returned
/// null.
///
/// # Safety
///
/// `ptr` must be null or come from `on_http_filter_new` and not yet be destroyed, and `'a` must
/// end before any host call that can destroy the filter.
unsafe fn filter_ref<'a>(ptr: FilterModulePtr) -> Option<&'a Filter> {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr.cast::<Filter>().as_ref() }
}

/// Marks the filter failed after a panic and returns its previous phase, or `None` without a
/// filter.
///
/// # Safety
///
/// As for [`filter_ref`]. The caller has made no host call since the panic, so the filter is
/// still alive.
unsafe fn mark_failed(ptr: FilterModulePtr) -> Option<Phase> {
    // SAFETY: guaranteed by the caller.
    unsafe { filter_ref(ptr) }.map(Filter::mark_failed)
}

fn send_reply(host: &HttpFilterHandle, reply: &LocalReply) {
    host.send_response(reply.status, &reply.headers(), &reply.body, reply.details);
}

/// Returns the ABI version this module was written for.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard("on_program_init", || abi::ABI_VERSION.as_ptr()).unwrap_or(std::ptr::null())
}

// ---------------------------------------------------------------------------------------------
// Configuration hooks, called on the main thread.
// ---------------------------------------------------------------------------------------------

/// Parses the listener-level configuration and defines the filter's metrics. A null return
/// makes Envoy reject the configuration.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> FilterConfigModulePtr {
    guard("on_http_filter_config_new", || {
        // SAFETY: Envoy keeps both buffers valid until this hook returns, and they are not used
        // after it.
        let (name, bytes) = unsafe { (name.as_bytes(), config.as_bytes()) };
        let name = String::from_utf8_lossy(name);
        let config = match Config::from_json(bytes) {
            Ok(config) => config,
            Err(error) => {
                log::error(format_args!("filter {name:?} rejected: {error}"));
                return std::ptr::null();
            }
        };
        // SAFETY: Envoy passes the pointer of the configuration being created, and the handle
        // is dropped before this hook returns.
        let envoy_config = unsafe { FilterConfigHandle::new(filter_config_envoy_ptr) };
        let metrics = match MetricIds::define(&envoy_config) {
            Ok(metrics) => metrics,
            Err(error) => {
                log::error(format_args!("filter {name:?} rejected: {error}"));
                return std::ptr::null();
            }
        };
        log::info(format_args!(
            "filter {name:?} configured: {}",
            config::describe(&config)
        ));
        let filter_config = FilterConfig::new(config, metrics);
        Box::into_raw(Box::new(filter_config)).cast_const().cast()
    })
    .unwrap_or(std::ptr::null())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: FilterConfigModulePtr,
) {
    guard("on_http_filter_config_destroy", || {
        if !filter_config_ptr.is_null() {
            // SAFETY: the pointer came from `Box::into_raw` in `on_http_filter_config_new`, and
            // Envoy destroys it once.
            drop(unsafe { Box::from_raw(filter_config_ptr.cast::<FilterConfig>().cast_mut()) });
        }
    });
}

/// Parses a per-route configuration. A null return makes Envoy reject it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> PerRouteConfigModulePtr {
    guard("on_http_filter_per_route_config_new", || {
        // SAFETY: as in `on_http_filter_config_new`.
        let (name, bytes) = unsafe { (name.as_bytes(), config.as_bytes()) };
        let name = String::from_utf8_lossy(name);
        match RouteConfig::from_json(bytes) {
            Ok(route_config) => {
                let effect = match &route_config {
                    RouteConfig::Disabled => "disables the filter".to_owned(),
                    RouteConfig::Inherit => "applies the listener-level configuration".to_owned(),
                    RouteConfig::Override(state) => format!(
                        "replaces the listener-level configuration: {}",
                        config::describe(&state.config)
                    ),
                };
                log::info(format_args!(
                    "per-route configuration {name:?} loaded: it {effect}"
                ));
                Box::into_raw(Box::new(route_config)).cast_const().cast()
            }
            Err(error) => {
                log::error(format_args!(
                    "per-route configuration {name:?} rejected: {error}"
                ));
                std::ptr::null()
            }
        }
    })
    .unwrap_or(std::ptr::null())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    filter_config_ptr: PerRouteConfigModulePtr,
) {
    guard("on_http_filter_per_route_config_destroy", || {
        if !filter_config_ptr.is_null() {
            // SAFETY: the pointer came from `Box::into_raw` in
            // `on_http_filter_per_route_config_new`, and Envoy destroys it once.
            drop(unsafe { Box::from_raw(filter_config_ptr.cast::<RouteConfig>().cast_mut()) });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Stream hooks, called on the stream's worker thread.
// ---------------------------------------------------------------------------------------------

/// Creates the state of one stream. A null return, after a panic, leaves the stream without
/// state, and the request hooks then reject the request with a 503.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: FilterConfigModulePtr,
    _filter_envoy_ptr: FilterEnvoyPtr,
) -> FilterModulePtr {
    guard("on_http_filter_new", || {
        // SAFETY: the pointer came from `on_http_filter_config_new`, and Envoy keeps the
        // configuration alive while it creates filters from it.
        let config = unsafe { &*filter_config_ptr.cast::<FilterConfig>() };
        Box::into_raw(Box::new(Filter::new(config)))
            .cast_const()
            .cast()
    })
    .unwrap_or(std::ptr::null())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> RequestHeadersStatus {
    // SAFETY: Envoy passes the pointer of the stream whose hook is running.
    let host = unsafe { HttpFilterHandle::new(filter_envoy_ptr) };
    let next = guard("on_http_filter_request_headers", || {
        // SAFETY: the reference ends with this closure, before any host call that can destroy
        // the filter. The host calls inside (`http_callout`, metrics, the scheduler and
        // `set_header`) never destroy it.
        let filter = unsafe { filter_ref(filter_module_ptr) }?;
        Some(filter.on_request_headers(&host))
    });

    let reply = match next {
        Some(Some(Next::Pass)) => return RequestHeadersStatus::CONTINUE,
        Some(Some(Next::Wait | Next::Ignore)) => return RequestHeadersStatus::STOP_ITERATION,
        Some(Some(Next::Reply(reply))) => reply,
        Some(None) => internal_error_reply(),
        None => {
            // SAFETY: no host call was made since the panic.
            unsafe { mark_failed(filter_module_ptr) };
            internal_error_reply()
        }
    };
    send_reply(&host, &reply);
    RequestHeadersStatus::STOP_ITERATION
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> RequestBodyStatus {
    let status = guard("on_http_filter_request_body", || {
        // SAFETY: the reference ends with this closure, and the closure makes no host call.
        unsafe { filter_ref(filter_module_ptr) }.map(Filter::on_request_body)
    });
    match status {
        Some(Some(status)) => status,
        // The request-headers hook has already rejected a stream without state.
        Some(None) => RequestBodyStatus::STOP_ITERATION_NO_BUFFER,
        None => {
            // SAFETY: no host call was made since the panic.
            if unsafe { mark_failed(filter_module_ptr) }.is_some_and(needs_reply_after_panic) {
                // SAFETY: Envoy passes the pointer of the stream whose hook is running.
                let host = unsafe { HttpFilterHandle::new(filter_envoy_ptr) };
                send_reply(&host, &internal_error_reply());
            }
            RequestBodyStatus::STOP_ITERATION_NO_BUFFER
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
) -> RequestTrailersStatus {
    let status = guard("on_http_filter_request_trailers", || {
        // SAFETY: the reference ends with this closure, and the closure makes no host call.
        unsafe { filter_ref(filter_module_ptr) }.map(Filter::on_request_trailers)
    });
    match status {
        Some(Some(status)) => status,
        Some(None) => RequestTrailersStatus::STOP_ITERATION,
        None => {
            // SAFETY: no host call was made since the panic.
            if unsafe { mark_failed(filter_module_ptr) }.is_some_and(needs_reply_after_panic) {
                // SAFETY: Envoy passes the pointer of the stream whose hook is running.
                let host = unsafe { HttpFilterHandle::new(filter_envoy_ptr) };
                send_reply(&host, &internal_error_reply());
            }
            RequestTrailersStatus::STOP_ITERATION
        }
    }
}

/// Acts on the callout's response: continues the request, sends the local reply, or retries.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    _callout_id: u64,
    result: CalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
    // SAFETY: Envoy passes the pointer of the stream whose hook is running.
    let host = unsafe { HttpFilterHandle::new(filter_envoy_ptr) };
    let next = guard("on_http_filter_http_callout_done", || {
        // SAFETY: the reference ends with this closure, and no host call inside it destroys the
        // filter.
        let filter = unsafe { filter_ref(filter_module_ptr) }?;
        // SAFETY: Envoy keeps the headers valid until this hook returns, and the views end
        // with this closure.
        let headers = unsafe { callout_headers(headers, headers_size) };
        Some(filter.on_callout_done(&host, result, &headers))
    });
    carry_out_paused(&host, filter_module_ptr, next);
}

/// Sends the retry whose backoff has ended. Envoy runs this on the stream's worker thread after
/// the timer thread committed the stream's scheduler, and only while the stream exists.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    event_id: u64,
) {
    // SAFETY: Envoy passes the pointer of the stream whose hook is running.
    let host = unsafe { HttpFilterHandle::new(filter_envoy_ptr) };
    let next = guard("on_http_filter_scheduled", || {
        // SAFETY: as in the callout-done hook.
        let filter = unsafe { filter_ref(filter_module_ptr) }?;
        Some(filter.on_scheduled(&host, event_id))
    });
    carry_out_paused(&host, filter_module_ptr, next);
}

/// Carries out the outcome of a hook that ran while the request was paused: resumes it, sends
/// the local reply, or after a panic sends the 503.
fn carry_out_paused(
    host: &HttpFilterHandle,
    filter_module_ptr: FilterModulePtr,
    next: Option<Option<Next>>,
) {
    match next {
        Some(Some(Next::Pass)) => host.continue_decoding(),
        Some(Some(Next::Reply(reply))) => send_reply(host, &reply),
        Some(Some(Next::Wait | Next::Ignore)) | Some(None) => {}
        None => {
            // SAFETY: no host call was made since the panic. While `Dispatching`, the hook that
            // called `http_callout` is still running and sends the 503 once it returns.
            if unsafe { mark_failed(filter_module_ptr) }.is_some_and(Phase::awaits_decision) {
                send_reply(host, &internal_error_reply());
            }
        }
    }
}

/// Returns true when a panic in the body or trailers hook, with the filter in `phase`, must
/// send the 503, because the hook then stops the request and nothing else would end it.
fn needs_reply_after_panic(phase: Phase) -> bool {
    matches!(phase, Phase::New | Phase::Allowed) || phase.awaits_decision()
}

/// Views the callout response headers as name and value pairs.
///
/// # Safety
///
/// `headers` must be null or point to `size` headers whose buffers stay valid for `'a`.
unsafe fn callout_headers<'a>(
    headers: *const EnvoyHttpHeader,
    size: usize,
) -> Vec<(&'a [u8], &'a [u8])> {
    if headers.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let headers = unsafe { std::slice::from_raw_parts(headers, size) };
    headers
        .iter()
        // SAFETY: guaranteed by the caller.
        .map(|header| unsafe { header.as_pair() })
        .collect()
}

// The response passes unchanged: the decision was made on the request. A panic in these hooks
// therefore continues the response, which Envoy would otherwise hold forever.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> ResponseHeadersStatus {
    guard("on_http_filter_response_headers", || {
        ResponseHeadersStatus::CONTINUE
    })
    .unwrap_or(ResponseHeadersStatus::CONTINUE)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> ResponseBodyStatus {
    guard("on_http_filter_response_body", || {
        ResponseBodyStatus::CONTINUE
    })
    .unwrap_or(ResponseBodyStatus::CONTINUE)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) -> ResponseTrailersStatus {
    guard("on_http_filter_response_trailers", || {
        ResponseTrailersStatus::CONTINUE
    })
    .unwrap_or(ResponseTrailersStatus::CONTINUE)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) {
    guard("on_http_filter_stream_complete", || {});
}

/// Frees the stream's state. Envoy cancels a callout still in flight, so its done hook never
/// runs after this. Dropping the filter removes its pending backoff from the timer and deletes
/// its scheduler.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module_ptr: FilterModulePtr) {
    guard("on_http_filter_destroy", || {
        if !filter_module_ptr.is_null() {
            // SAFETY: the pointer came from `Box::into_raw` in `on_http_filter_new`, Envoy
            // destroys it once, and no reference to the filter is alive: hooks drop theirs before
            // any host call that can lead here.
            drop(unsafe { Box::from_raw(filter_module_ptr.cast::<Filter>().cast_mut()) });
        }
    });
}
