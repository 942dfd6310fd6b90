//! A mock Envoy for the dynamic module. It loads the built `libjwt_revocation.so` with `dlopen`
//! and defines the `envoy_dynamic_module_callback_*` functions that the module imports.
//!
//! The build script exports these functions from the benchmark executable through a linker
//! dynamic list, so the loader binds the module's imports to them. Each stream passes a
//! [`MockStream`] as its `filter_envoy_ptr`, and the callbacks cast it back, the way Envoy passes
//! its own filter object. The layouts follow `src/dynamic_module/abi.rs` of the targets crate,
//! which implements Envoy 1.40.0's dynamic-modules ABI.

use std::ffi::{c_char, c_void, CStr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use libloading::os::unix::{Library, Symbol, RTLD_LOCAL, RTLD_NOW};

/// `envoy_dynamic_module_type_buffer_*`: bytes lent across the boundary.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl Buffer {
    fn of(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// Views the bytes.
    ///
    /// # Safety
    ///
    /// The pointer must be null or valid for `length` bytes during `'a`.
    unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// `envoy_dynamic_module_type_*_http_header`: one header lent across the boundary.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl Header {
    fn of(key: &'static str, value: &'static str) -> Self {
        Self {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }
}

/// `RequestHeadersStatus::STOP_ITERATION`: the request is held.
pub const STOP_ITERATION: u32 = 1;
const CALLOUT_INIT_SUCCESS: u32 = 0;
const CALLOUT_RESULT_SUCCESS: u32 = 0;
const LOG_LEVEL_INFO: u32 = 2;
const HEADER_TYPE_REQUEST: u32 = 0;
const METRICS_SUCCESS: u32 = 0;
const METRICS_NOT_FOUND: u32 = 1;

/// Log lines the module wrote, from any stream.
static LOG_LINES: AtomicU64 = AtomicU64::new(0);

/// Calls that the mock recorded for one stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamCalls {
    pub header_reads: u64,
    pub header_writes: u64,
    pub callouts: u64,
    pub continues: u64,
    pub metric_updates: u64,
    pub replies: u64,
    pub last_reply_status: u32,
}

/// Envoy's side of one HTTP stream.
#[derive(Debug, Default)]
pub struct MockStream {
    /// Request headers with lowercase names, as Envoy's header map stores them.
    request_headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Buffer that receives a copy of everything the module passes in (callout and reply headers
    /// and bodies), as Envoy copies them into its own buffers.
    copied: Vec<u8>,
    pub calls: StreamCalls,
}

impl MockStream {
    pub fn new(request_headers: &[(String, String)]) -> Self {
        Self {
            request_headers: request_headers
                .iter()
                .map(|(name, value)| (name.clone().into_bytes(), value.clone().into_bytes()))
                .collect(),
            copied: Vec::with_capacity(8192),
            calls: StreamCalls::default(),
        }
    }

    fn copy_headers(&mut self, headers: *const Header, count: usize) {
        if headers.is_null() || count == 0 {
            return;
        }
        // SAFETY: the module lends `count` valid headers for the duration of the callback.
        let headers = unsafe { std::slice::from_raw_parts(headers, count) };
        for header in headers {
            // SAFETY: as above, for each header's buffers.
            let (key, value) = unsafe {
                (
                    Buffer {
                        ptr: header.key_ptr,
                        length: header.key_length,
                    }
                    .as_bytes(),
                    Buffer {
                        ptr: header.value_ptr,
                        length: header.value_length,
                    }
                    .as_bytes(),
                )
            };
            self.copied.extend_from_slice(key);
            self.copied.extend_from_slice(value);
        }
    }
}

/// Casts the `filter_envoy_ptr` that the module passes back to the stream it stands for.
///
/// # Safety
///
/// `ptr` must be the pointer to a live `MockStream` that the benchmark passed to the running
/// hook, and no other reference to that stream may be in use during the callback.
unsafe fn stream<'a>(ptr: *mut c_void) -> &'a mut MockStream {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *ptr.cast::<MockStream>() }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool {
    // Envoy's default level: info and above.
    level >= LOG_LEVEL_INFO
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log(_level: u32, _message: Buffer) {
    LOG_LINES.fetch_add(1, Ordering::Relaxed);
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_header(
    filter_envoy_ptr: *mut c_void,
    header_type: u32,
    key: Buffer,
    result_buffer: *mut Buffer,
    index: usize,
    optional_size: *mut usize,
) -> bool {
    // SAFETY: the module passes back the pointer of the running hook.
    let stream = unsafe { stream(filter_envoy_ptr) };
    stream.calls.header_reads += 1;
    // SAFETY: the module lends the key for the duration of the call.
    let key = unsafe { key.as_bytes() };
    let mut count = 0;
    let mut found = None;
    if header_type == HEADER_TYPE_REQUEST {
        for (name, value) in &stream.request_headers {
            if name.as_slice() == key {
                if count == index {
                    found = Some(Buffer::of(value));
                }
                count += 1;
            }
        }
    }
    if !optional_size.is_null() {
        // SAFETY: the module passes a valid pointer or null.
        unsafe { *optional_size = count };
    }
    // SAFETY: the module passes a valid pointer.
    unsafe {
        *result_buffer = found.unwrap_or(Buffer {
            ptr: std::ptr::null(),
            length: 0,
        })
    };
    found.is_some()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_send_response(
    filter_envoy_ptr: *mut c_void,
    status_code: u32,
    headers: *mut Header,
    headers_size: usize,
    body: Buffer,
    details: Buffer,
) {
    // SAFETY: the module passes back the pointer of the running hook.
    let stream = unsafe { stream(filter_envoy_ptr) };
    stream.copy_headers(headers, headers_size);
    // SAFETY: the module lends both buffers for the duration of the call.
    let (body, details) = unsafe { (body.as_bytes(), details.as_bytes()) };
    stream.copied.extend_from_slice(body);
    stream.copied.extend_from_slice(details);
    stream.calls.replies += 1;
    stream.calls.last_reply_status = status_code;
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_continue_decoding(
    filter_envoy_ptr: *mut c_void,
) {
    // SAFETY: the module passes back the pointer of the running hook.
    unsafe { stream(filter_envoy_ptr) }.calls.continues += 1;
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_http_callout(
    filter_envoy_ptr: *mut c_void,
    callout_id_out: *mut u64,
    cluster_name: Buffer,
    headers: *mut Header,
    headers_size: usize,
    body: Buffer,
    _timeout_milliseconds: u64,
) -> u32 {
    // SAFETY: the module passes back the pointer of the running hook.
    let stream = unsafe { stream(filter_envoy_ptr) };
    // SAFETY: the module lends both buffers for the duration of the call.
    let (cluster, body) = unsafe { (cluster_name.as_bytes(), body.as_bytes()) };
    stream.copied.extend_from_slice(cluster);
    stream.copy_headers(headers, headers_size);
    stream.copied.extend_from_slice(body);
    stream.calls.callouts += 1;
    // SAFETY: the module passes a valid pointer.
    unsafe { *callout_id_out = stream.calls.callouts };
    CALLOUT_INIT_SUCCESS
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_set_header(
    filter_envoy_ptr: *mut c_void,
    _header_type: u32,
    key: Buffer,
    value: Buffer,
) -> bool {
    // SAFETY: the module passes back the pointer of the running hook.
    let stream = unsafe { stream(filter_envoy_ptr) };
    // SAFETY: the module lends both buffers for the duration of the call.
    let (key, value) = unsafe { (key.as_bytes(), value.as_bytes()) };
    stream.copied.extend_from_slice(key);
    stream.copied.extend_from_slice(value);
    stream.calls.header_writes += 1;
    true
}

/// Counters and histograms the module defined; a metric id is an index into this list. Each
/// metric is one integer, as an Envoy counter is. Envoy records a histogram value into a
/// histogram instead, which costs more than this.
static METRICS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn define_metric(id_out: *mut usize) -> u32 {
    let mut metrics = METRICS.lock().unwrap_or_else(PoisonError::into_inner);
    metrics.push(0);
    // SAFETY: the module passes a valid pointer.
    unsafe { *id_out = metrics.len() - 1 };
    METRICS_SUCCESS
}

fn update_metric(stream: *mut c_void, id: usize, update: impl FnOnce(&mut u64)) -> u32 {
    let mut metrics = METRICS.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(metric) = metrics.get_mut(id) else {
        return METRICS_NOT_FOUND;
    };
    update(metric);
    // SAFETY: the module passes back the pointer of the running hook.
    unsafe { self::stream(stream) }.calls.metric_updates += 1;
    METRICS_SUCCESS
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
    _filter_config_envoy_ptr: *mut c_void,
    _name: Buffer,
    _label_names: *const Buffer,
    _label_names_length: usize,
    counter_id_out: *mut usize,
) -> u32 {
    define_metric(counter_id_out)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
    _filter_config_envoy_ptr: *mut c_void,
    _name: Buffer,
    _label_names: *const Buffer,
    _label_names_length: usize,
    histogram_id_out: *mut usize,
) -> u32 {
    define_metric(histogram_id_out)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_increment_counter(
    filter_envoy_ptr: *mut c_void,
    id: usize,
    _label_values: *const Buffer,
    _label_values_length: usize,
    value: u64,
) -> u32 {
    update_metric(filter_envoy_ptr, id, |metric| *metric += value)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
    filter_envoy_ptr: *mut c_void,
    id: usize,
    _label_values: *const Buffer,
    _label_values_length: usize,
    value: u64,
) -> u32 {
    update_metric(filter_envoy_ptr, id, |metric| *metric = value)
}

/// The scheduler the mock hands out. A posted event is only counted and never delivered, and the
/// benchmark checks that its cases post none.
static SCHEDULER: u8 = 0;
static SCHEDULED_EVENTS: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_new(
    _filter_envoy_ptr: *mut c_void,
) -> *const c_void {
    (&raw const SCHEDULER).cast()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
    _scheduler_module_ptr: *const c_void,
    _event_id: u64,
) {
    SCHEDULED_EVENTS.fetch_add(1, Ordering::Relaxed);
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
    _scheduler_module_ptr: *const c_void,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_get_most_specific_route_config(
    _filter_envoy_ptr: *mut c_void,
) -> *const c_void {
    std::ptr::null()
}

type ProgramInit = unsafe extern "C" fn() -> *const c_char;
type ConfigNew = unsafe extern "C" fn(*mut c_void, Buffer, Buffer) -> *const c_void;
type ConfigDestroy = unsafe extern "C" fn(*const c_void);
type FilterNew = unsafe extern "C" fn(*const c_void, *mut c_void) -> *const c_void;
type RequestHeaders = unsafe extern "C" fn(*mut c_void, *const c_void, bool) -> u32;
type CalloutDone = unsafe extern "C" fn(
    *mut c_void,
    *const c_void,
    u64,
    u32,
    *mut Header,
    usize,
    *mut Buffer,
    usize,
);
type StreamComplete = unsafe extern "C" fn(*mut c_void, *const c_void);
type FilterDestroy = unsafe extern "C" fn(*const c_void);

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub request_headers_status: u32,
    pub calls: StreamCalls,
}

/// The loaded module with one listener-level filter configuration.
pub struct NativeFilter {
    config: *const c_void,
    filter_new: FilterNew,
    request_headers: RequestHeaders,
    callout_done: CalloutDone,
    stream_complete: StreamComplete,
    filter_destroy: FilterDestroy,
    config_destroy: ConfigDestroy,
    /// The callout's response headers, as Envoy's async client hands them over.
    response_headers: Vec<Header>,
    abi_version: String,
    /// Keeps the module loaded while the function pointers above are in use.
    _library: Library,
}

/// Looks up the hook `name` in `library`.
///
/// # Safety
///
/// `T` must be the hook's exact function type.
unsafe fn hook<T: Copy>(library: &Library, name: &str) -> Result<T, String> {
    // SAFETY: guaranteed by the caller.
    let symbol: Symbol<T> = unsafe { library.get(name.as_bytes()) }
        .map_err(|e| format!("the module does not export {name}: {e}"))?;
    Ok(*symbol)
}

impl NativeFilter {
    /// Loads the module at `path`, runs its program-init hook and creates a filter
    /// configuration from `config`.
    pub fn load(path: &Path, config: &str) -> Result<Self, String> {
        // SAFETY: loading runs the module's initializers; the module is this project's
        // `libjwt_revocation.so`, whose only initializers are the Rust runtime's. RTLD_NOW makes
        // a missing callback fail here instead of in the middle of a benchmark.
        let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
            let cause = std::error::Error::source(&e).map_or_else(String::new, |c| c.to_string());
            format!(
                "cannot load {}: {e}: {cause}; an undefined envoy_dynamic_module_callback_* \
                 symbol is a callback that benches/native/host.rs does not define yet",
                path.display()
            )
        })?;

        // SAFETY: each type matches the hook's signature in Envoy 1.40.0's ABI, which the module
        // implements in `src/dynamic_module/hooks.rs`.
        let (program_init, config_new) = unsafe {
            (
                hook::<ProgramInit>(&library, "envoy_dynamic_module_on_program_init")?,
                hook::<ConfigNew>(&library, "envoy_dynamic_module_on_http_filter_config_new")?,
            )
        };
        // SAFETY: the hook takes no arguments and returns a static C string or null.
        let version = unsafe { program_init() };
        if version.is_null() {
            return Err("envoy_dynamic_module_on_program_init returned null".to_owned());
        }
        // SAFETY: a non-null return is a NUL-terminated static string.
        let abi_version = unsafe { CStr::from_ptr(version) }
            .to_string_lossy()
            .into_owned();

        let name = "jwt_revocation";
        // SAFETY: both buffers outlive the call, and the mock has no Envoy-side config object.
        let config_ptr = unsafe {
            config_new(
                std::ptr::null_mut(),
                Buffer::of(name.as_bytes()),
                Buffer::of(config.as_bytes()),
            )
        };
        if config_ptr.is_null() {
            return Err(format!("the module rejected the configuration {config}"));
        }

        // SAFETY: as for the hooks above.
        unsafe {
            Ok(Self {
                config: config_ptr,
                filter_new: hook(&library, "envoy_dynamic_module_on_http_filter_new")?,
                request_headers: hook(
                    &library,
                    "envoy_dynamic_module_on_http_filter_request_headers",
                )?,
                callout_done: hook(
                    &library,
                    "envoy_dynamic_module_on_http_filter_http_callout_done",
                )?,
                stream_complete: hook(
                    &library,
                    "envoy_dynamic_module_on_http_filter_stream_complete",
                )?,
                filter_destroy: hook(&library, "envoy_dynamic_module_on_http_filter_destroy")?,
                config_destroy: hook(
                    &library,
                    "envoy_dynamic_module_on_http_filter_config_destroy",
                )?,
                response_headers: vec![
                    Header::of(":status", "200"),
                    Header::of("content-length", "0"),
                    Header::of("date", "Fri, 04 Dec 2026 12:00:00 GMT"),
                    Header::of("server", "envoy"),
                ],
                abi_version,
                _library: library,
            })
        }
    }

    /// The ABI version string that the module's program-init hook returned.
    pub fn abi_version(&self) -> &str {
        &self.abi_version
    }

    /// Runs one request the way Envoy drives a stream. It creates the filter, delivers the request
    /// headers, completes the callout (if the module started one) with a 200, completes the
    /// stream and destroys the filter.
    pub fn run_request(&mut self, stream: &mut MockStream) -> Outcome {
        stream.calls = StreamCalls::default();
        stream.copied.clear();
        let envoy_ptr: *mut c_void = (stream as *mut MockStream).cast();

        // SAFETY: every pointer is either the module's own (config, filter) or the stream, which
        // is alive for this whole call and reached only through `envoy_ptr` meanwhile. The
        // response headers outlive the done hook.
        unsafe {
            let filter = (self.filter_new)(self.config, envoy_ptr);
            let status = (self.request_headers)(envoy_ptr, filter, true);
            let callouts = (*envoy_ptr.cast::<MockStream>()).calls.callouts;
            if callouts > 0 {
                (self.callout_done)(
                    envoy_ptr,
                    filter,
                    callouts,
                    CALLOUT_RESULT_SUCCESS,
                    self.response_headers.as_mut_ptr(),
                    self.response_headers.len(),
                    std::ptr::null_mut(),
                    0,
                );
            }
            (self.stream_complete)(envoy_ptr, filter);
            (self.filter_destroy)(filter);
            Outcome {
                request_headers_status: status,
                calls: (*envoy_ptr.cast::<MockStream>()).calls,
            }
        }
    }
}

impl Drop for NativeFilter {
    fn drop(&mut self) {
        // SAFETY: the configuration came from the module's config-new hook and is destroyed
        // once, after every filter made from it.
        unsafe { (self.config_destroy)(self.config) };
    }
}

/// Returns the number of log lines the module wrote.
pub fn log_lines() -> u64 {
    LOG_LINES.load(Ordering::Relaxed)
}

/// Returns the number of events the module posted to a scheduler.
pub fn scheduled_events() -> u64 {
    SCHEDULED_EVENTS.load(Ordering::Relaxed)
}
