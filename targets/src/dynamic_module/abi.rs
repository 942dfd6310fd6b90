//! Declarations of the Envoy callbacks this module calls, the raw types they exchange, and safe
//! wrappers that turn each host status into a `Result` or a plain Rust value.
//!
//! The layouts and signatures follow `source/extensions/dynamic_modules/abi.h` of Envoy's
//! dynamic-modules ABI and were checked against the symbols that the Envoy 1.40.0 release binary
//! exports. C enums cross the boundary as `u32` newtypes, so a value this module does not know
//! cannot become an invalid Rust enum.

use std::ffi::c_void;
use std::fmt;

/// ABI version string returned by `envoy_dynamic_module_on_program_init`. Envoy 1.40.0 logs a
/// warning for any other string.
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// Envoy's `DynamicModuleHttpFilterConfig`, passed to `on_http_filter_config_new`.
pub type FilterConfigEnvoyPtr = *mut c_void;
/// Envoy's `DynamicModuleHttpFilter` of one HTTP stream.
pub type FilterEnvoyPtr = *mut c_void;
/// This module's listener-level configuration, owned by the module.
pub type FilterConfigModulePtr = *const c_void;
/// This module's per-route configuration, owned by the module.
pub type PerRouteConfigModulePtr = *const c_void;
/// This module's state for one HTTP stream, owned by the module.
pub type FilterModulePtr = *const c_void;
/// Envoy's `DynamicModuleHttpFilterScheduler` of one HTTP stream, owned by the module once
/// created.
pub type SchedulerModulePtr = *mut c_void;

/// Bytes owned by Envoy, valid only for as long as the contract of the hook or callback that
/// produced them states.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    const EMPTY: Self = Self {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// Views the bytes. A null pointer is an empty slice.
    ///
    /// # Safety
    ///
    /// `ptr` must be null or point to `length` readable bytes that stay valid and unchanged for
    /// `'a`.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees the pointer and length.
            unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// Bytes owned by this module, lent to Envoy for the duration of one callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl From<&[u8]> for ModuleBuffer {
    fn from(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

impl From<&str> for ModuleBuffer {
    fn from(text: &str) -> Self {
        Self::from(text.as_bytes())
    }
}

/// A header owned by this module, lent to Envoy for the duration of one callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl From<(&str, &str)> for ModuleHttpHeader {
    fn from((key, value): (&str, &str)) -> Self {
        Self {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }
}

/// A header owned by Envoy, such as one of a callout response.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    /// Views the name and the value.
    ///
    /// # Safety
    ///
    /// Both pointers must be valid for `'a`, as for [`EnvoyBuffer::as_bytes`].
    pub unsafe fn as_pair<'a>(&self) -> (&'a [u8], &'a [u8]) {
        let key = EnvoyBuffer {
            ptr: self.key_ptr,
            length: self.key_length,
        };
        let value = EnvoyBuffer {
            ptr: self.value_ptr,
            length: self.value_length,
        };
        // SAFETY: the caller guarantees both buffers.
        unsafe { (key.as_bytes(), value.as_bytes()) }
    }
}

/// Defines a C enum as a `u32` newtype with one constant per known value.
macro_rules! c_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub u32);

        #[allow(dead_code)]
        impl $name {
            $($(#[$vmeta])* pub const $variant: Self = Self($value);)*
        }
    };
}

c_enum!(
    /// `envoy_dynamic_module_type_http_header_type`: which header map a callback reads.
    HeaderType {
        REQUEST_HEADER = 0,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_log_level`, in the order of Envoy's spdlog levels.
    LogLevel {
        TRACE = 0,
        DEBUG = 1,
        INFO = 2,
        WARN = 3,
        ERROR = 4,
        CRITICAL = 5,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_http_callout_init_result`: whether a callout was started.
    CalloutInitResult {
        SUCCESS = 0,
        MISSING_REQUIRED_HEADERS = 1,
        CLUSTER_NOT_FOUND = 2,
        DUPLICATE_CALLOUT_ID = 3,
        CANNOT_CREATE_REQUEST = 4,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_http_callout_result`: how a started callout ended.
    CalloutResult {
        SUCCESS = 0,
        RESET = 1,
        EXCEED_RESPONSE_BUFFER_LIMIT = 2,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_http_stream_reset_reason` of a streamed callout, which this
    /// module never starts.
    HttpStreamResetReason {}
);

c_enum!(
    /// `envoy_dynamic_module_type_metrics_result`: the result of a metrics callback.
    MetricsResult {
        SUCCESS = 0,
        METRIC_NOT_FOUND = 1,
        INVALID_LABELS = 2,
        FROZEN = 3,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (`FilterHeadersStatus`).
    RequestHeadersStatus {
        CONTINUE = 0,
        STOP_ITERATION = 1,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_on_http_filter_request_body_status` (`FilterDataStatus`).
    RequestBodyStatus {
        CONTINUE = 0,
        STOP_ITERATION_AND_BUFFER = 1,
        /// Buffers like `STOP_ITERATION_AND_BUFFER`, but past the connection's buffer limit it
        /// pauses reading from the client instead of failing the request with 413.
        STOP_ITERATION_AND_WATERMARK = 2,
        STOP_ITERATION_NO_BUFFER = 3,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_on_http_filter_request_trailers_status`.
    RequestTrailersStatus {
        CONTINUE = 0,
        STOP_ITERATION = 1,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_on_http_filter_response_headers_status`.
    ResponseHeadersStatus {
        CONTINUE = 0,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_on_http_filter_response_body_status`.
    ResponseBodyStatus {
        CONTINUE = 0,
    }
);

c_enum!(
    /// `envoy_dynamic_module_type_on_http_filter_response_trailers_status`.
    ResponseTrailersStatus {
        CONTINUE = 0,
    }
);

// ---------------------------------------------------------------------------------------------
// Logging. Messages go to Envoy's `dynamic_modules` logger, so `--component-log-level
// dynamic_modules:debug` enables this module's debug lines.
// ---------------------------------------------------------------------------------------------

extern "C" {
    fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool;
}

/// Returns true when Envoy writes lines of `level`. Checking first avoids formatting a line that
/// would be dropped.
pub fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: the callback only reads the logger's level and may be called from any thread.
    unsafe { envoy_dynamic_module_callback_log_enabled(level) }
}

extern "C" {
    fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);
}

/// Writes `message` to Envoy's log at `level`.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: Envoy copies the message before returning.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::from(message)) }
}

// ---------------------------------------------------------------------------------------------
// Per-stream callbacks. Each takes the `FilterEnvoyPtr` of the stream whose hook is running.
// ---------------------------------------------------------------------------------------------

/// The Envoy side of one HTTP stream, for use during the hook that received it.
///
/// Values borrowed from the handle point into Envoy's memory, which Envoy keeps valid only until
/// the hook returns. The handle is built inside each hook and dropped at its end, so the borrow
/// checker keeps those values from outliving the hook.
#[derive(Debug)]
pub struct HttpFilterHandle {
    ptr: FilterEnvoyPtr,
}

/// A callback result that the callback's contract rules out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl HttpFilterHandle {
    /// Wraps the pointer that Envoy passed to the running hook.
    ///
    /// # Safety
    ///
    /// `ptr` must be the `filter_envoy_ptr` of the hook that is running, and the handle must not
    /// outlive that hook.
    pub unsafe fn new(ptr: FilterEnvoyPtr) -> Self {
        Self { ptr }
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        result_buffer: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
}

impl HttpFilterHandle {
    /// Returns every value of the request header `name` (lowercase), one entry per header line,
    /// so a repeated header yields several values.
    ///
    /// Envoy returns `false` and a count of zero both when the header is absent and when no
    /// request header map exists, so both cases return an empty list. Returns an error when Envoy
    /// counts more values than it then returns.
    pub fn request_header_values(&self, name: &str) -> Result<Vec<&[u8]>, HostError> {
        let mut count = 0;
        let mut first = EnvoyBuffer::EMPTY;
        // SAFETY: `self.ptr` belongs to the running hook, and both out-pointers are valid.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.ptr,
                HeaderType::REQUEST_HEADER,
                ModuleBuffer::from(name),
                &mut first,
                0,
                &mut count,
            )
        };
        if !found {
            return Ok(Vec::new());
        }

        let mut values = Vec::with_capacity(count);
        // SAFETY: Envoy keeps header values valid until the hook returns, which the borrow of
        // `self` enforces.
        values.push(unsafe { first.as_bytes() });
        for index in 1..count {
            let mut value = EnvoyBuffer::EMPTY;
            // SAFETY: as above. The size pointer is optional and left null.
            let found = unsafe {
                envoy_dynamic_module_callback_http_get_header(
                    self.ptr,
                    HeaderType::REQUEST_HEADER,
                    ModuleBuffer::from(name),
                    &mut value,
                    index,
                    std::ptr::null_mut(),
                )
            };
            if !found {
                return Err(HostError(format!(
                    "Envoy counted {count} values of request header \"{name}\" but returned none \
                     at index {index}"
                )));
            }
            // SAFETY: as for the first value.
            values.push(unsafe { value.as_bytes() });
        }
        Ok(values)
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
}

impl HttpFilterHandle {
    /// Sends a local reply to the client in place of the upstream response.
    ///
    /// Envoy may end the stream and call `on_http_filter_destroy` for this filter before this
    /// returns, so the caller must not touch the filter's state afterwards.
    pub fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &str, details: &str) {
        let mut headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .copied()
            .map(ModuleHttpHeader::from)
            .collect();
        // SAFETY: every buffer outlives the call, and Envoy copies them before returning.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                u32::from(status),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::from(body),
                ModuleBuffer::from(details),
            )
        }
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter_envoy_ptr: FilterEnvoyPtr,
    );
}

impl HttpFilterHandle {
    /// Resumes a request that a hook stopped, sending its headers and buffered body upstream.
    ///
    /// Later filters may send a response or end the stream before this returns, so the caller
    /// must not touch the filter's state afterwards.
    pub fn continue_decoding(&self) {
        // SAFETY: `self.ptr` belongs to the running hook.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr) }
    }
}

/// The reason Envoy did not start a callout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalloutInitError(pub CalloutInitResult);

impl fmt::Display for CalloutInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            CalloutInitResult::MISSING_REQUIRED_HEADERS => {
                f.write_str("the callout lacks :method, :path or :authority")
            }
            CalloutInitResult::CLUSTER_NOT_FOUND => f.write_str("the cluster does not exist"),
            CalloutInitResult::DUPLICATE_CALLOUT_ID => f.write_str("the callout id is in use"),
            CalloutInitResult::CANNOT_CREATE_REQUEST => {
                f.write_str("Envoy could not create the request, for example for lack of a host")
            }
            CalloutInitResult(other) => write!(f, "Envoy returned unknown result {other}"),
        }
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter_envoy_ptr: FilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> CalloutInitResult;
}

impl HttpFilterHandle {
    /// Starts an HTTP request to `cluster` and returns its callout id. Envoy delivers the response
    /// to `on_http_filter_http_callout_done`.
    ///
    /// Envoy may complete the callout at once, for example with a synthetic 503 when the cluster
    /// has no host. The done hook then runs before this returns, and this may return an error
    /// although the done hook already received the response.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitError> {
        let mut headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .copied()
            .map(ModuleHttpHeader::from)
            .collect();
        let mut callout_id = 0;
        // SAFETY: every buffer outlives the call, and Envoy copies them before returning.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.ptr,
                &mut callout_id,
                ModuleBuffer::from(cluster),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::from(&b""[..]),
                timeout_ms,
            )
        };
        match result {
            CalloutInitResult::SUCCESS => Ok(callout_id),
            other => Err(CalloutInitError(other)),
        }
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_get_most_specific_route_config(
        filter_envoy_ptr: FilterEnvoyPtr,
    ) -> PerRouteConfigModulePtr;
}

impl HttpFilterHandle {
    /// Returns the pointer that `on_http_filter_per_route_config_new` returned for the most
    /// specific per-route configuration of the stream's route, or `None` when there is none.
    pub fn most_specific_route_config(&self) -> Option<PerRouteConfigModulePtr> {
        // SAFETY: `self.ptr` belongs to the running hook.
        let ptr = unsafe { envoy_dynamic_module_callback_get_most_specific_route_config(self.ptr) };
        (!ptr.is_null()).then_some(ptr)
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
}

impl HttpFilterHandle {
    /// Sets the request header `name` to `value`, replacing any values it had.
    ///
    /// Returns an error when Envoy has no request header map for the stream.
    pub fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.replace_request_header(name, ModuleBuffer::from(value), "set")
    }

    /// Removes every value of the request header `name`: Envoy removes a header whose new value
    /// has a null pointer.
    ///
    /// Returns an error when Envoy has no request header map for the stream.
    pub fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        let no_value = ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        self.replace_request_header(name, no_value, "remove")
    }

    fn replace_request_header(
        &self,
        name: &str,
        value: ModuleBuffer,
        verb: &str,
    ) -> Result<(), HostError> {
        // SAFETY: `self.ptr` belongs to the running hook, and Envoy copies both buffers.
        let done = unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                HeaderType::REQUEST_HEADER,
                ModuleBuffer::from(name),
                value,
            )
        };
        if done {
            Ok(())
        } else {
            Err(HostError(format!(
                "Envoy could not {verb} request header \"{name}\": the stream has no request \
                 headers"
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics. Metrics are defined on the filter configuration while `on_http_filter_config_new`
// runs, because Envoy freezes the definitions once the configuration is created, and are then
// updated through any stream of that configuration. This module passes no labels.
// ---------------------------------------------------------------------------------------------

/// A metrics callback result other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsError(pub MetricsResult);

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            MetricsResult::METRIC_NOT_FOUND => f.write_str("Envoy has no metric with that id"),
            MetricsResult::INVALID_LABELS => f.write_str("the labels do not match the metric"),
            MetricsResult::FROZEN => {
                f.write_str("Envoy no longer accepts metric definitions for this configuration")
            }
            MetricsResult(other) => write!(f, "Envoy returned unknown metrics result {other}"),
        }
    }
}

fn metrics_result(result: MetricsResult) -> Result<(), MetricsError> {
    match result {
        MetricsResult::SUCCESS => Ok(()),
        other => Err(MetricsError(other)),
    }
}

/// The Envoy side of a filter configuration, for use during `on_http_filter_config_new`.
#[derive(Debug)]
pub struct FilterConfigHandle {
    ptr: FilterConfigEnvoyPtr,
}

impl FilterConfigHandle {
    /// Wraps the pointer that Envoy passed to `on_http_filter_config_new`.
    ///
    /// # Safety
    ///
    /// `ptr` must be the `filter_config_envoy_ptr` of the running `on_http_filter_config_new`,
    /// and the handle must not outlive that hook.
    pub unsafe fn new(ptr: FilterConfigEnvoyPtr) -> Self {
        Self { ptr }
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id_out: *mut usize,
    ) -> MetricsResult;
}

impl FilterConfigHandle {
    /// Defines a counter without labels and returns its id. Envoy lists it under
    /// `dynamicmodulescustom.<name>`.
    pub fn define_counter(&self, name: &str) -> Result<usize, MetricsError> {
        let mut id = 0;
        // SAFETY: `self.ptr` belongs to the running hook, the name outlives the call, Envoy
        // reads no label when the count is 0, and the out-pointer is valid.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.ptr,
                ModuleBuffer::from(name),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        metrics_result(result).map(|()| id)
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        histogram_id_out: *mut usize,
    ) -> MetricsResult;
}

impl FilterConfigHandle {
    /// Defines a histogram without labels and returns its id.
    pub fn define_histogram(&self, name: &str) -> Result<usize, MetricsError> {
        let mut id = 0;
        // SAFETY: as in `define_counter`.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_histogram(
                self.ptr,
                ModuleBuffer::from(name),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        metrics_result(result).map(|()| id)
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;
}

impl HttpFilterHandle {
    /// Adds `value` to the counter `id`, which the stream's listener-level configuration
    /// defined.
    pub fn increment_counter(&self, id: usize, value: u64) -> Result<(), MetricsError> {
        // SAFETY: `self.ptr` belongs to the running hook, and Envoy reads no label when the count
        // is 0.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.ptr,
                id,
                std::ptr::null(),
                0,
                value,
            )
        };
        metrics_result(result)
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter_envoy_ptr: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;
}

impl HttpFilterHandle {
    /// Records `value` in the histogram `id`, which the stream's listener-level configuration
    /// defined.
    pub fn record_histogram_value(&self, id: usize, value: u64) -> Result<(), MetricsError> {
        // SAFETY: as in `increment_counter`.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.ptr,
                id,
                std::ptr::null(),
                0,
                value,
            )
        };
        metrics_result(result)
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduler. Envoy 1.40 gives an HTTP filter no timer. Its scheduler instead lets any thread post
// an event to the stream's worker thread, where Envoy runs `on_http_filter_scheduled` if the
// stream still exists.
// ---------------------------------------------------------------------------------------------

/// The scheduler of one HTTP stream. The module owns it and deletes it with [`Scheduler::delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduler(SchedulerModulePtr);

// SAFETY: Envoy's `scheduler_commit` only posts an event to the worker's dispatcher, which is
// thread-safe. The owner keeps the pointer valid while another thread may commit it.
unsafe impl Send for Scheduler {}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter_envoy_ptr: FilterEnvoyPtr,
    ) -> SchedulerModulePtr;
}

impl HttpFilterHandle {
    /// Creates a scheduler for the stream. The caller must delete it with
    /// [`Scheduler::delete`].
    pub fn new_scheduler(&self) -> Result<Scheduler, HostError> {
        // SAFETY: `self.ptr` belongs to the running hook.
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr) };
        if ptr.is_null() {
            return Err(HostError(
                "Envoy returned no scheduler for the stream".to_owned(),
            ));
        }
        Ok(Scheduler(ptr))
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler_module_ptr: SchedulerModulePtr,
        event_id: u64,
    );
}

impl Scheduler {
    /// Posts `event_id` to the stream's worker thread, which passes it to
    /// `on_http_filter_scheduled` unless the stream has ended by then. May be called from any
    /// thread.
    ///
    /// # Safety
    ///
    /// The scheduler must not have been deleted, and must not be deleted while this runs.
    pub unsafe fn commit(self, event_id: u64) {
        // SAFETY: guaranteed by the caller.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, event_id) }
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler_module_ptr: SchedulerModulePtr,
    );
}

impl Scheduler {
    /// Frees the scheduler. Events it posted before still reach the stream.
    ///
    /// # Safety
    ///
    /// The scheduler must not have been deleted, and no thread may commit it during or after
    /// this call.
    pub unsafe fn delete(self) {
        // SAFETY: guaranteed by the caller.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}
