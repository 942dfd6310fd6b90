//! A mock Envoy for unit tests: `#[no_mangle]` definitions of every callback that `abi.rs`
//! declares, so the test binary links without Envoy and the hooks run against recorded state.
//!
//! The state is per thread, and the test harness runs each test on its own thread.

use std::cell::RefCell;
use std::ffi::c_void;

use super::abi::{
    CalloutInitResult, CalloutResult, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr,
    FilterModulePtr, HeaderType, LogLevel, ModuleBuffer, ModuleHttpHeader, PerRouteConfigModulePtr,
};
use super::hooks;

/// A local reply that the module sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub details: String,
}

/// A callout that the module started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCallout {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// The values the mock Envoy returns and the calls it recorded.
#[derive(Debug)]
pub struct MockHost {
    /// Request headers in order. A name may repeat.
    pub request_headers: Vec<(String, String)>,
    /// Returned by `get_most_specific_route_config`.
    pub route_config: PerRouteConfigModulePtr,
    /// Returned by `http_callout`.
    pub callout_init_result: CalloutInitResult,
    /// When set, `http_callout` runs the done hook with this response before it returns, as
    /// Envoy does when it completes a callout at once.
    pub inline_response: Option<(CalloutResult, Vec<(String, String)>)>,
    /// The filter that receives the inline response.
    pub filter_module_ptr: FilterModulePtr,
    /// Lowest level that `log_enabled` reports as enabled.
    pub log_level: u32,
    pub logs: Vec<(LogLevel, String)>,
    pub responses: Vec<SentResponse>,
    pub callouts: Vec<SentCallout>,
    pub continue_decoding_calls: usize,
}

impl Default for MockHost {
    fn default() -> Self {
        Self {
            request_headers: Vec::new(),
            route_config: std::ptr::null(),
            callout_init_result: CalloutInitResult::SUCCESS,
            inline_response: None,
            filter_module_ptr: std::ptr::null(),
            log_level: LogLevel::TRACE.0,
            logs: Vec::new(),
            responses: Vec::new(),
            callouts: Vec::new(),
            continue_decoding_calls: 0,
        }
    }
}

thread_local! {
    static HOST: RefCell<MockHost> = RefCell::new(MockHost::default());
}

/// Runs `f` on this thread's mock host. `f` must not run a hook, which may call back in.
pub fn with_host<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    HOST.with(|host| f(&mut host.borrow_mut()))
}

/// Returns a pointer for Envoy's side of a stream, which the mock never dereferences.
pub fn fake_filter_envoy_ptr() -> FilterEnvoyPtr {
    std::ptr::NonNull::<c_void>::dangling().as_ptr()
}

fn module_bytes(buffer: ModuleBuffer) -> Vec<u8> {
    if buffer.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the module lends a valid buffer for the duration of the call.
    unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.length) }.to_vec()
}

fn module_string(buffer: ModuleBuffer) -> String {
    String::from_utf8(module_bytes(buffer)).expect("the module sent UTF-8")
}

fn module_headers(headers: *const ModuleHttpHeader, size: usize) -> Vec<(String, String)> {
    if size == 0 {
        return Vec::new();
    }
    // SAFETY: the module lends `size` valid headers for the duration of the call.
    let headers = unsafe { std::slice::from_raw_parts(headers, size) };
    headers
        .iter()
        .map(|header| {
            let key = ModuleBuffer {
                ptr: header.key_ptr,
                length: header.key_length,
            };
            let value = ModuleBuffer {
                ptr: header.value_ptr,
                length: header.value_length,
            };
            (module_string(key), module_string(value))
        })
        .collect()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool {
    with_host(|host| level.0 >= host.log_level)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer) {
    let message = module_string(message);
    with_host(|host| host.logs.push((level, message)));
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_header(
    _filter_envoy_ptr: FilterEnvoyPtr,
    header_type: HeaderType,
    key: ModuleBuffer,
    result_buffer: *mut EnvoyBuffer,
    index: usize,
    optional_size: *mut usize,
) -> bool {
    assert_eq!(header_type, HeaderType::REQUEST_HEADER);
    let key = module_string(key);
    with_host(|host| {
        let values: Vec<&String> = host
            .request_headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(&key))
            .map(|(_, value)| value)
            .collect();
        if !optional_size.is_null() {
            // SAFETY: the module passes a valid pointer or null.
            unsafe { *optional_size = values.len() };
        }
        let (buffer, found) = match values.get(index) {
            // The strings live in the thread-local host, which tests do not change during a hook.
            Some(value) => (
                EnvoyBuffer {
                    ptr: value.as_ptr(),
                    length: value.len(),
                },
                true,
            ),
            None => (
                EnvoyBuffer {
                    ptr: std::ptr::null(),
                    length: 0,
                },
                false,
            ),
        };
        // SAFETY: the module passes a valid pointer.
        unsafe { *result_buffer = buffer };
        found
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_send_response(
    _filter_envoy_ptr: FilterEnvoyPtr,
    status_code: u32,
    headers_vector: *mut ModuleHttpHeader,
    headers_vector_size: usize,
    body: ModuleBuffer,
    details: ModuleBuffer,
) {
    let response = SentResponse {
        status: status_code,
        headers: module_headers(headers_vector, headers_vector_size),
        body: module_string(body),
        details: module_string(details),
    };
    with_host(|host| host.responses.push(response));
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_continue_decoding(
    _filter_envoy_ptr: FilterEnvoyPtr,
) {
    with_host(|host| host.continue_decoding_calls += 1);
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_http_callout(
    filter_envoy_ptr: FilterEnvoyPtr,
    callout_id_out: *mut u64,
    cluster_name: ModuleBuffer,
    headers: *mut ModuleHttpHeader,
    headers_size: usize,
    body: ModuleBuffer,
    timeout_milliseconds: u64,
) -> CalloutInitResult {
    let callout = SentCallout {
        cluster: module_string(cluster_name),
        headers: module_headers(headers, headers_size),
        body: module_bytes(body),
        timeout_ms: timeout_milliseconds,
    };
    let (result, inline_response, filter_module_ptr) = with_host(|host| {
        host.callouts.push(callout);
        (
            host.callout_init_result,
            host.inline_response.take(),
            host.filter_module_ptr,
        )
    });

    if let Some((callout_result, response_headers)) = inline_response {
        let mut envoy_headers: Vec<EnvoyHttpHeader> = response_headers
            .iter()
            .map(|(key, value)| EnvoyHttpHeader {
                key_ptr: key.as_ptr(),
                key_length: key.len(),
                value_ptr: value.as_ptr(),
                value_length: value.len(),
            })
            .collect();
        hooks::envoy_dynamic_module_on_http_filter_http_callout_done(
            filter_envoy_ptr,
            filter_module_ptr,
            1,
            callout_result,
            envoy_headers.as_mut_ptr(),
            envoy_headers.len(),
            std::ptr::null_mut(),
            0,
        );
    }

    if result == CalloutInitResult::SUCCESS {
        // SAFETY: the module passes a valid pointer.
        unsafe { *callout_id_out = 1 };
    }
    result
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_get_most_specific_route_config(
    _filter_envoy_ptr: FilterEnvoyPtr,
) -> PerRouteConfigModulePtr {
    with_host(|host| host.route_config)
}
