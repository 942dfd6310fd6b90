//! Hooks of features this filter does not use: streamed callouts and downstream watermarks.
//! Envoy 1.40.0 rejects a module that lacks any HTTP filter hook, so each is exported as a no-op,
//! inside [`guard`] like every other hook.

use super::abi::{
    EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, FilterModulePtr, HttpStreamResetReason,
};
use super::hooks::guard;

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
    guard("on_http_filter_http_stream_headers", || {});
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
    guard("on_http_filter_http_stream_data", || {});
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
    guard("on_http_filter_http_stream_trailers", || {});
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
) {
    guard("on_http_filter_http_stream_complete", || {});
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _reason: HttpStreamResetReason,
) {
    guard("on_http_filter_http_stream_reset", || {});
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) {
    guard(
        "on_http_filter_downstream_above_write_buffer_high_watermark",
        || {},
    );
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) {
    guard(
        "on_http_filter_downstream_below_write_buffer_low_watermark",
        || {},
    );
}
