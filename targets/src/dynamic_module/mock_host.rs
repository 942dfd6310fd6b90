//! A mock Envoy for unit tests: `#[no_mangle]` definitions of every callback that `abi.rs`
//! declares, so the test binary links without Envoy and the hooks run against recorded state.
//!
//! The state is per thread, and the test harness runs each test on its own thread. Schedulers
//! are the exception: the timer thread commits them, so each records its events itself.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::abi::{
    CalloutInitResult, CalloutResult, EnvoyBuffer, EnvoyHttpHeader, FilterConfigEnvoyPtr,
    FilterEnvoyPtr, FilterModulePtr, HeaderType, LogLevel, MetricsResult, ModuleBuffer,
    ModuleHttpHeader, PerRouteConfigModulePtr, SchedulerModulePtr,
};
use super::hooks;

/// A scheduler that the module created. The mock keeps it alive after the module deleted it, so
/// a commit after the deletion is recorded instead of being a use-after-free.
#[derive(Debug, Default)]
pub struct MockScheduler {
    /// Event ids committed before the deletion.
    pub commits: Mutex<Vec<u64>>,
    pub deleted: AtomicBool,
    pub deletions: AtomicUsize,
    pub commits_after_delete: AtomicUsize,
}

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
    /// Returned by `http_callout` once `callout_init_results` is empty.
    pub callout_init_result: CalloutInitResult,
    /// Returned by the next calls of `http_callout`, one each.
    pub callout_init_results: VecDeque<CalloutInitResult>,
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
    /// Returned by `set_header`.
    pub set_header_result: bool,
    /// Request headers that the module set, in order.
    pub set_headers: Vec<(String, String)>,
    /// Request headers that the module removed (set with a null value), in order.
    pub removed_headers: Vec<String>,
    /// Returned by `define_counter` and `define_histogram`.
    pub define_result: MetricsResult,
    /// Counter names by id.
    pub counter_names: Vec<String>,
    /// Histogram names by id.
    pub histogram_names: Vec<String>,
    /// Counter values by id.
    pub counter_values: HashMap<usize, u64>,
    /// Histogram samples by id.
    pub histogram_values: HashMap<usize, Vec<u64>>,
    /// Every scheduler that the module created, in order.
    pub schedulers: Vec<Arc<MockScheduler>>,
}

impl Default for MockHost {
    fn default() -> Self {
        Self {
            request_headers: Vec::new(),
            route_config: std::ptr::null(),
            callout_init_result: CalloutInitResult::SUCCESS,
            callout_init_results: VecDeque::new(),
            inline_response: None,
            filter_module_ptr: std::ptr::null(),
            log_level: LogLevel::TRACE.0,
            logs: Vec::new(),
            responses: Vec::new(),
            callouts: Vec::new(),
            continue_decoding_calls: 0,
            set_header_result: true,
            set_headers: Vec::new(),
            removed_headers: Vec::new(),
            define_result: MetricsResult::SUCCESS,
            counter_names: Vec::new(),
            histogram_names: Vec::new(),
            counter_values: HashMap::new(),
            histogram_values: HashMap::new(),
            schedulers: Vec::new(),
        }
    }
}

impl MockHost {
    /// Returns the value of the counter named `name`, 0 when it was never incremented.
    pub fn counter(&self, name: &str) -> u64 {
        let id = self
            .counter_names
            .iter()
            .position(|defined| defined == name)
            .unwrap_or_else(|| panic!("counter {name} was never defined"));
        self.counter_values.get(&id).copied().unwrap_or(0)
    }

    /// Returns the samples of the histogram named `name`.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        let id = self
            .histogram_names
            .iter()
            .position(|defined| defined == name)
            .unwrap_or_else(|| panic!("histogram {name} was never defined"));
        self.histogram_values.get(&id).cloned().unwrap_or_default()
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
            host.callout_init_results
                .pop_front()
                .unwrap_or(host.callout_init_result),
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

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_set_header(
    _filter_envoy_ptr: FilterEnvoyPtr,
    header_type: HeaderType,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    assert_eq!(header_type, HeaderType::REQUEST_HEADER);
    let removal = value.ptr.is_null();
    let header = (module_string(key), module_string(value));
    with_host(|host| {
        if host.set_header_result && removal {
            host.removed_headers.push(header.0);
        } else if host.set_header_result {
            host.set_headers.push(header);
        }
        host.set_header_result
    })
}

/// Defines a metric in `names` unless the host is set to fail, as Envoy's `define_*` callbacks do.
fn define_metric(
    names: impl FnOnce(&mut MockHost) -> &mut Vec<String>,
    name: ModuleBuffer,
    label_names_length: usize,
    id_out: *mut usize,
) -> MetricsResult {
    assert_eq!(
        label_names_length, 0,
        "the module defines metrics without labels"
    );
    let name = module_string(name);
    with_host(|host| {
        let result = host.define_result;
        if result == MetricsResult::SUCCESS {
            let names = names(host);
            // SAFETY: the module passes a valid pointer.
            unsafe { *id_out = names.len() };
            names.push(name);
        }
        result
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
    _filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    name: ModuleBuffer,
    _label_names: *const ModuleBuffer,
    label_names_length: usize,
    counter_id_out: *mut usize,
) -> MetricsResult {
    define_metric(
        |host| &mut host.counter_names,
        name,
        label_names_length,
        counter_id_out,
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
    _filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    name: ModuleBuffer,
    _label_names: *const ModuleBuffer,
    label_names_length: usize,
    histogram_id_out: *mut usize,
) -> MetricsResult {
    define_metric(
        |host| &mut host.histogram_names,
        name,
        label_names_length,
        histogram_id_out,
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_increment_counter(
    _filter_envoy_ptr: FilterEnvoyPtr,
    id: usize,
    _label_values: *const ModuleBuffer,
    label_values_length: usize,
    value: u64,
) -> MetricsResult {
    assert_eq!(label_values_length, 0);
    with_host(|host| {
        if id >= host.counter_names.len() {
            return MetricsResult::METRIC_NOT_FOUND;
        }
        *host.counter_values.entry(id).or_default() += value;
        MetricsResult::SUCCESS
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
    _filter_envoy_ptr: FilterEnvoyPtr,
    id: usize,
    _label_values: *const ModuleBuffer,
    label_values_length: usize,
    value: u64,
) -> MetricsResult {
    assert_eq!(label_values_length, 0);
    with_host(|host| {
        if id >= host.histogram_names.len() {
            return MetricsResult::METRIC_NOT_FOUND;
        }
        host.histogram_values.entry(id).or_default().push(value);
        MetricsResult::SUCCESS
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_new(
    _filter_envoy_ptr: FilterEnvoyPtr,
) -> SchedulerModulePtr {
    let scheduler = Arc::new(MockScheduler::default());
    with_host(|host| host.schedulers.push(Arc::clone(&scheduler)));
    Arc::into_raw(scheduler).cast_mut().cast()
}

/// Views a scheduler that `scheduler_new` made.
///
/// # Safety
///
/// `ptr` must come from `scheduler_new` of a host that is still alive, which keeps the scheduler
/// alive after its deletion.
unsafe fn mock_scheduler<'a>(ptr: SchedulerModulePtr) -> &'a MockScheduler {
    // SAFETY: guaranteed by the caller.
    unsafe { &*ptr.cast::<MockScheduler>() }
}

// Called on the timer thread, so it touches only the scheduler and not the thread-local host.
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
    scheduler_module_ptr: SchedulerModulePtr,
    event_id: u64,
) {
    // SAFETY: the test that created the scheduler keeps its host alive while the timer runs.
    let scheduler = unsafe { mock_scheduler(scheduler_module_ptr) };
    if scheduler.deleted.load(Ordering::SeqCst) {
        scheduler
            .commits_after_delete
            .fetch_add(1, Ordering::SeqCst);
    } else {
        scheduler.commits.lock().unwrap().push(event_id);
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
    scheduler_module_ptr: SchedulerModulePtr,
) {
    // SAFETY: as in `scheduler_commit`.
    let scheduler = unsafe { mock_scheduler(scheduler_module_ptr) };
    scheduler.deletions.fetch_add(1, Ordering::SeqCst);
    if !scheduler.deleted.swap(true, Ordering::SeqCst) {
        // SAFETY: `scheduler_new` made the pointer with `Arc::into_raw`, and this is the first
        // deletion, so the reference it stands for is still counted.
        drop(unsafe { Arc::from_raw(scheduler_module_ptr.cast::<MockScheduler>()) });
    }
}
