//! A mock proxy-wasm host (ABI 0.2.1) that runs the release `jwt_revocation.wasm` in wasmtime
//! with Cranelift.
//!
//! The host functions that the filter calls on its request path behave as Envoy's do. The host
//! serializes header maps into memory that it allocates in the module through
//! `proxy_on_memory_allocate`. It reads the callout and the local reply out of the module's
//! memory and copies them. Every other import of the module gets a stub that returns zeros and
//! records its name, so the benchmark detects a request path that reaches one.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{
    bail, format_err, Caller, Config, Engine, ExternType, Linker, Memory, Module, OptLevel, Result,
    Store, Strategy, TypedFunc,
};

/// Context id of the root context; HTTP contexts take ids from 2 up.
const ROOT_CONTEXT_ID: i32 = 1;

// Values of the proxy-wasm ABI 0.2.1.
const STATUS_OK: i32 = 0;
const STATUS_NOT_FOUND: i32 = 1;
const MAP_HTTP_REQUEST_HEADERS: i32 = 0;
const MAP_HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
const BUFFER_VM_CONFIGURATION: i32 = 6;
const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;
const LOG_LEVEL_INFO: i32 = 2;
/// `Action::Pause`, returned by `proxy_on_request_headers` to hold the request.
pub const ACTION_PAUSE: i32 = 1;

/// Calls that the mock host recorded during one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HostCalls {
    pub header_map_reads: u64,
    pub http_calls: u64,
    pub continues: u64,
    pub local_replies: u64,
    pub last_reply_status: u32,
    pub logs: u64,
    pub metric_updates: u64,
    /// Calls to imports that the mock only stubs.
    pub stub_calls: u64,
}

/// The host's state for the one module instance.
struct HostState {
    plugin_configuration: Vec<u8>,
    request_headers: Vec<(String, String)>,
    /// The callout's response headers, as Envoy's async client hands them over.
    call_response_headers: Vec<(String, String)>,
    /// The module's `proxy_on_memory_allocate`, set once the instance exists.
    allocate: Option<TypedFunc<i32, i32>>,
    memory: Option<Memory>,
    /// Reused buffer for serialized header maps.
    serialized: Vec<u8>,
    /// Buffer that receives a copy of everything the module passes in.
    copied: Vec<u8>,
    next_token: i32,
    /// Values of the metrics the module defined, indexed by metric id.
    metrics: Vec<i64>,
    calls: HostCalls,
    /// Names of stubbed imports that were called.
    stubs_called: Vec<String>,
}

/// One import of the module and whether the mock implements it.
#[derive(Debug, Clone)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub implemented: bool,
}

/// The result of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub request_headers_action: i32,
    pub calls: HostCalls,
}

/// The instantiated module with a configured root context.
pub struct WasmFilter {
    store: Store<HostState>,
    on_context_create: TypedFunc<(i32, i32), ()>,
    on_request_headers: TypedFunc<(i32, i32, i32), i32>,
    on_http_call_response: TypedFunc<(i32, i32, i32, i32, i32), ()>,
    on_done: TypedFunc<i32, i32>,
    on_log: TypedFunc<i32, ()>,
    on_delete: TypedFunc<i32, ()>,
    next_context_id: i32,
    imports: Vec<Import>,
}

impl WasmFilter {
    /// Compiles the module at `path` with Cranelift, instantiates it, and runs `_initialize`,
    /// `proxy_on_context_create` for the root context, `proxy_on_vm_start` and
    /// `proxy_on_configure` with `configuration`.
    pub fn load(path: &Path, configuration: &str) -> Result<Self> {
        let mut config = Config::new();
        config
            .strategy(Strategy::Cranelift)
            .cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config)?;
        let module = Module::from_file(&engine, path)?;

        let mut linker = Linker::new(&engine);
        define_proxy_wasm(&mut linker)?;
        define_wasi(&mut linker)?;
        let mut store = Store::new(
            &engine,
            HostState {
                plugin_configuration: configuration.as_bytes().to_vec(),
                request_headers: Vec::new(),
                call_response_headers: [
                    (":status", "200"),
                    ("content-length", "0"),
                    ("date", "Fri, 04 Dec 2026 12:00:00 GMT"),
                    ("server", "envoy"),
                ]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
                allocate: None,
                memory: None,
                serialized: Vec::with_capacity(8192),
                copied: Vec::with_capacity(8192),
                next_token: 1,
                metrics: Vec::new(),
                calls: HostCalls::default(),
                stubs_called: Vec::new(),
            },
        );
        let imports = stub_remaining_imports(&mut linker, &mut store, &module)?;

        let instance = linker.instantiate(&mut store, &module)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| format_err!("the module exports no memory"))?;
        let allocate = instance.get_typed_func(&mut store, "proxy_on_memory_allocate")?;
        store.data_mut().memory = Some(memory);
        store.data_mut().allocate = Some(allocate);

        if let Ok(initialize) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            initialize.call(&mut store, ())?;
        }
        let on_context_create: TypedFunc<(i32, i32), ()> =
            instance.get_typed_func(&mut store, "proxy_on_context_create")?;
        let on_vm_start: TypedFunc<(i32, i32), i32> =
            instance.get_typed_func(&mut store, "proxy_on_vm_start")?;
        let on_configure: TypedFunc<(i32, i32), i32> =
            instance.get_typed_func(&mut store, "proxy_on_configure")?;
        on_context_create.call(&mut store, (ROOT_CONTEXT_ID, 0))?;
        if on_vm_start.call(&mut store, (ROOT_CONTEXT_ID, 0))? == 0 {
            bail!("proxy_on_vm_start returned false");
        }
        let configuration_size = i32::try_from(configuration.len())?;
        if on_configure.call(&mut store, (ROOT_CONTEXT_ID, configuration_size))? == 0 {
            bail!("proxy_on_configure rejected the configuration {configuration}");
        }

        Ok(Self {
            on_context_create,
            on_request_headers: instance.get_typed_func(&mut store, "proxy_on_request_headers")?,
            on_http_call_response: instance
                .get_typed_func(&mut store, "proxy_on_http_call_response")?,
            on_done: instance.get_typed_func(&mut store, "proxy_on_done")?,
            on_log: instance.get_typed_func(&mut store, "proxy_on_log")?,
            on_delete: instance.get_typed_func(&mut store, "proxy_on_delete")?,
            store,
            next_context_id: ROOT_CONTEXT_ID + 1,
            imports,
        })
    }

    /// Returns every import of the module, and whether the mock implements it or stubs it.
    pub fn imports(&self) -> &[Import] {
        &self.imports
    }

    /// Names of stubbed imports that the module called since it was loaded.
    pub fn stubs_called(&self) -> &[String] {
        &self.store.data().stubs_called
    }

    /// Sets the request headers of the following requests.
    pub fn set_request_headers(&mut self, headers: Vec<(String, String)>) {
        self.store.data_mut().request_headers = headers;
    }

    /// Runs one request the way Envoy drives an HTTP context. It creates the context, delivers
    /// the request headers, completes the callout (if the module dispatched one) with a 200, then
    /// calls `proxy_on_done`, `proxy_on_log` and `proxy_on_delete`.
    pub fn run_request(&mut self) -> Result<Outcome> {
        let context_id = self.next_context_id;
        self.next_context_id = if context_id == i32::MAX {
            ROOT_CONTEXT_ID + 1
        } else {
            context_id + 1
        };
        self.store.data_mut().calls = HostCalls::default();
        self.store.data_mut().copied.clear();
        let header_count = i32::try_from(self.store.data().request_headers.len())?;

        let store = &mut self.store;
        self.on_context_create
            .call(&mut *store, (context_id, ROOT_CONTEXT_ID))?;
        let action = self
            .on_request_headers
            .call(&mut *store, (context_id, header_count, 1))?;
        if store.data().calls.http_calls > 0 {
            let token = store.data().next_token - 1;
            let response_headers = i32::try_from(store.data().call_response_headers.len())?;
            self.on_http_call_response.call(
                &mut *store,
                (ROOT_CONTEXT_ID, token, response_headers, 0, 0),
            )?;
        }
        self.on_done.call(&mut *store, context_id)?;
        self.on_log.call(&mut *store, context_id)?;
        self.on_delete.call(&mut *store, context_id)?;
        Ok(Outcome {
            request_headers_action: action,
            calls: store.data().calls,
        })
    }
}

/// Returns `len` bytes of the module's memory at `ptr`.
fn guest_bytes(data: &[u8], ptr: i32, len: i32) -> Result<&[u8]> {
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(len as u32 as usize)
        .ok_or_else(|| format_err!("guest range {start}+{len} overflows"))?;
    data.get(start..end)
        .ok_or_else(|| format_err!("guest range {start}..{end} is outside the memory"))
}

/// Writes a little-endian u32 into the module's memory at `ptr`.
fn write_u32(data: &mut [u8], ptr: i32, value: u32) -> Result<()> {
    let start = ptr as u32 as usize;
    data.get_mut(start..start + 4)
        .ok_or_else(|| format_err!("guest pointer {start} is outside the memory"))?
        .copy_from_slice(&value.to_le_bytes());
    Ok(())
}

fn memory(caller: &Caller<'_, HostState>) -> Result<Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| format_err!("a host call arrived before the memory was known"))
}

/// Copies `bytes` into memory that the module allocates, and writes the pointer and size to
/// `return_data` and `return_size`, as Envoy returns buffers to a module.
fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    return_data: i32,
    return_size: i32,
) -> Result<()> {
    let allocate = caller
        .data()
        .allocate
        .clone()
        .ok_or_else(|| format_err!("a host call arrived before proxy_on_memory_allocate"))?;
    let size = i32::try_from(bytes.len())?;
    let ptr = allocate.call(&mut *caller, size)?;
    let memory = memory(caller)?;
    let data = memory.data_mut(&mut *caller);
    let start = ptr as u32 as usize;
    data.get_mut(start..start + bytes.len())
        .ok_or_else(|| format_err!("the module allocated {size} bytes outside its memory"))?
        .copy_from_slice(bytes);
    write_u32(data, return_data, ptr as u32)?;
    write_u32(data, return_size, size as u32)
}

/// Serializes header pairs in the proxy-wasm map format: the pair count, each name and value
/// length, then each name and value followed by a NUL byte, all integers u32 little-endian.
fn serialize_map(pairs: &[(String, String)], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
}

/// Returns the map that `map_type` names, or `None` for a map the mock does not hold.
fn header_map(state: &HostState, map_type: i32) -> Option<&[(String, String)]> {
    match map_type {
        MAP_HTTP_REQUEST_HEADERS => Some(&state.request_headers),
        MAP_HTTP_CALL_RESPONSE_HEADERS => Some(&state.call_response_headers),
        _ => None,
    }
}

/// Defines the proxy-wasm host functions that the filter uses.
fn define_proxy_wasm(linker: &mut Linker<HostState>) -> Result<()> {
    define_log_and_clock(linker)?;
    define_buffers_and_headers(linker)?;
    define_stream_calls(linker)?;
    define_metrics(linker)?;

    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |_caller: Caller<'_, HostState>, _context_id: i32| -> i32 { STATUS_OK },
    )?;
    Ok(())
}

/// Defines logging and the clock.
fn define_log_and_clock(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: Caller<'_, HostState>, _level: i32, _ptr: i32, _len: i32| -> i32 {
            caller.data_mut().calls.logs += 1;
            STATUS_OK
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, HostState>, return_level: i32| -> Result<i32> {
            let memory = memory(&caller)?;
            write_u32(
                memory.data_mut(&mut caller),
                return_level,
                LOG_LEVEL_INFO as u32,
            )?;
            Ok(STATUS_OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, HostState>, return_time: i32| -> Result<i32> {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let memory = memory(&caller)?;
            let start = return_time as u32 as usize;
            memory
                .data_mut(&mut caller)
                .get_mut(start..start + 8)
                .ok_or_else(|| format_err!("guest pointer {start} is outside the memory"))?
                .copy_from_slice(&nanos.to_le_bytes());
            Ok(STATUS_OK)
        },
    )?;
    Ok(())
}

/// Defines the configuration buffers and the header maps, which the host returns in memory that
/// the module allocates.
fn define_buffers_and_headers(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         buffer_type: i32,
         start: i32,
         max_size: i32,
         return_data: i32,
         return_size: i32|
         -> Result<i32> {
            let bytes = match buffer_type {
                BUFFER_PLUGIN_CONFIGURATION => caller.data().plugin_configuration.clone(),
                BUFFER_VM_CONFIGURATION => Vec::new(),
                _ => return Ok(STATUS_NOT_FOUND),
            };
            let start = (start as u32 as usize).min(bytes.len());
            let end = start
                .saturating_add(max_size as u32 as usize)
                .min(bytes.len());
            return_bytes(&mut caller, &bytes[start..end], return_data, return_size)?;
            Ok(STATUS_OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         return_data: i32,
         return_size: i32|
         -> Result<i32> {
            let mut serialized = std::mem::take(&mut caller.data_mut().serialized);
            let state = caller.data();
            let Some(map) = header_map(state, map_type) else {
                caller.data_mut().serialized = serialized;
                return Ok(STATUS_NOT_FOUND);
            };
            serialize_map(map, &mut serialized);
            let result = return_bytes(&mut caller, &serialized, return_data, return_size);
            let state = caller.data_mut();
            state.serialized = serialized;
            state.calls.header_map_reads += 1;
            result.map(|()| STATUS_OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_data: i32,
         key_size: i32,
         return_data: i32,
         return_size: i32|
         -> Result<i32> {
            let memory = memory(&caller)?;
            let key = guest_bytes(memory.data(&caller), key_data, key_size)?.to_vec();
            caller.data_mut().calls.header_map_reads += 1;
            let value = header_map(caller.data(), map_type).and_then(|map| {
                map.iter()
                    .find(|(name, _)| name.as_bytes() == key.as_slice())
                    .map(|(_, value)| value.clone())
            });
            match value {
                Some(value) => {
                    return_bytes(&mut caller, value.as_bytes(), return_data, return_size)?;
                    Ok(STATUS_OK)
                }
                None => Ok(STATUS_NOT_FOUND),
            }
        },
    )?;
    Ok(())
}

/// Defines the calls that act on the stream: the callout, the local reply and continuing.
fn define_stream_calls(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Caller<'_, HostState>,
         upstream_data: i32,
         upstream_size: i32,
         headers_data: i32,
         headers_size: i32,
         body_data: i32,
         body_size: i32,
         trailers_data: i32,
         trailers_size: i32,
         _timeout_ms: i32,
         return_token: i32|
         -> Result<i32> {
            let memory = memory(&caller)?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            for (ptr, len) in [
                (upstream_data, upstream_size),
                (headers_data, headers_size),
                (body_data, body_size),
                (trailers_data, trailers_size),
            ] {
                if len > 0 {
                    state.copied.extend_from_slice(guest_bytes(data, ptr, len)?);
                }
            }
            let token = state.next_token;
            state.next_token = state.next_token.wrapping_add(1).max(1);
            state.calls.http_calls += 1;
            write_u32(data, return_token, token as u32)?;
            Ok(STATUS_OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Caller<'_, HostState>,
         status_code: i32,
         details_data: i32,
         details_size: i32,
         body_data: i32,
         body_size: i32,
         headers_data: i32,
         headers_size: i32,
         _grpc_status: i32|
         -> Result<i32> {
            let memory = memory(&caller)?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            for (ptr, len) in [
                (details_data, details_size),
                (body_data, body_size),
                (headers_data, headers_size),
            ] {
                if len > 0 {
                    state.copied.extend_from_slice(guest_bytes(data, ptr, len)?);
                }
            }
            state.calls.local_replies += 1;
            state.calls.last_reply_status = status_code as u32;
            Ok(STATUS_OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: Caller<'_, HostState>, _stream_type: i32| -> i32 {
            caller.data_mut().calls.continues += 1;
            STATUS_OK
        },
    )?;
    Ok(())
}

/// Defines the metric host functions: each metric is one integer, as an Envoy counter or gauge
/// is. Envoy records a histogram value into a histogram instead, which costs more than this.
fn define_metrics(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, HostState>,
         _metric_type: i32,
         _name_data: i32,
         _name_size: i32,
         return_id: i32|
         -> Result<i32> {
            let id = u32::try_from(caller.data().metrics.len())?;
            caller.data_mut().metrics.push(0);
            let memory = memory(&caller)?;
            write_u32(memory.data_mut(&mut caller), return_id, id)?;
            Ok(STATUS_OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut caller: Caller<'_, HostState>, id: i32, offset: i64| -> i32 {
            let state = caller.data_mut();
            match state.metrics.get_mut(id as u32 as usize) {
                Some(value) => {
                    *value += offset;
                    state.calls.metric_updates += 1;
                    STATUS_OK
                }
                None => STATUS_NOT_FOUND,
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut caller: Caller<'_, HostState>, id: i32, value: i64| -> i32 {
            let state = caller.data_mut();
            match state.metrics.get_mut(id as u32 as usize) {
                Some(metric) => {
                    *metric = value;
                    state.calls.metric_updates += 1;
                    STATUS_OK
                }
                None => STATUS_NOT_FOUND,
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, HostState>, id: i32, return_value: i32| -> Result<i32> {
            let Some(&value) = caller.data().metrics.get(id as u32 as usize) else {
                return Ok(STATUS_NOT_FOUND);
            };
            let memory = memory(&caller)?;
            let start = return_value as u32 as usize;
            memory
                .data_mut(&mut caller)
                .get_mut(start..start + 8)
                .ok_or_else(|| format_err!("guest pointer {start} is outside the memory"))?
                .copy_from_slice(&value.to_le_bytes());
            Ok(STATUS_OK)
        },
    )?;
    Ok(())
}

/// Defines the WASI functions that Rust's standard library may call: no arguments, no
/// environment, output discarded, a zero-filled "random" source (enough for `HashMap` seeds).
fn define_wasi(linker: &mut Linker<HostState>) -> Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    const ERRNO_SUCCESS: i32 = 0;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            WASI,
            name,
            |mut caller: Caller<'_, HostState>, count: i32, size: i32| -> Result<i32> {
                let memory = memory(&caller)?;
                let data = memory.data_mut(&mut caller);
                write_u32(data, count, 0)?;
                write_u32(data, size, 0)?;
                Ok(ERRNO_SUCCESS)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(
            WASI,
            name,
            |_caller: Caller<'_, HostState>, _pointers: i32, _buffer: i32| -> i32 { ERRNO_SUCCESS },
        )?;
    }
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, HostState>,
         _fd: i32,
         iovs: i32,
         iovs_len: i32,
         nwritten: i32|
         -> Result<i32> {
            let memory = memory(&caller)?;
            let data = memory.data_mut(&mut caller);
            let mut total = 0u32;
            for index in 0..iovs_len {
                let iov = guest_bytes(data, iovs + index * 8, 8)?;
                total += u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
            }
            write_u32(data, nwritten, total)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;

    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Caller<'_, HostState>, buffer: i32, length: i32| -> Result<i32> {
            let memory = memory(&caller)?;
            let start = buffer as u32 as usize;
            memory
                .data_mut(&mut caller)
                .get_mut(start..start + length as u32 as usize)
                .ok_or_else(|| format_err!("guest range at {start} is outside the memory"))?
                .fill(0);
            Ok(ERRNO_SUCCESS)
        },
    )?;

    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>, _id: i32, _precision: i64, time: i32| -> Result<i32> {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let memory = memory(&caller)?;
            let start = time as u32 as usize;
            memory
                .data_mut(&mut caller)
                .get_mut(start..start + 8)
                .ok_or_else(|| format_err!("guest pointer {start} is outside the memory"))?
                .copy_from_slice(&nanos.to_le_bytes());
            Ok(ERRNO_SUCCESS)
        },
    )?;

    linker.func_wrap(
        WASI,
        "proc_exit",
        |_caller: Caller<'_, HostState>, code: i32| -> Result<()> {
            bail!("the module called proc_exit({code})")
        },
    )?;
    Ok(())
}

/// Lists the module's imports and gives each one the linker lacks a stub that returns zeros
/// and records its name when called.
fn stub_remaining_imports(
    linker: &mut Linker<HostState>,
    store: &mut Store<HostState>,
    module: &Module,
) -> Result<Vec<Import>> {
    let mut imports = Vec::new();
    for import in module.imports() {
        let implemented = linker
            .get(&mut *store, import.module(), import.name())
            .is_ok();
        imports.push(Import {
            module: import.module().to_owned(),
            name: import.name().to_owned(),
            implemented,
        });
        if implemented {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else {
            bail!(
                "the module imports {}::{}, which is not a function",
                import.module(),
                import.name()
            );
        };
        let name = format!("{}::{}", import.module(), import.name());
        linker.func_new(
            import.module(),
            import.name(),
            ty.clone(),
            move |mut caller, _params, results| {
                for (result, ty) in results.iter_mut().zip(ty.results()) {
                    *result = ty
                        .default_value()
                        .ok_or_else(|| format_err!("{name} returns a type without a zero"))?;
                }
                let state = caller.data_mut();
                state.calls.stub_calls += 1;
                if !state.stubs_called.contains(&name) {
                    state.stubs_called.push(name.clone());
                }
                Ok(())
            },
        )?;
    }
    Ok(imports)
}
