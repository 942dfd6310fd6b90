//! Helpers shared by the integration tests of the `packaging` crate.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::env;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Environment variable that names the release `.wasm` to package in tests.
pub const WASM_ENV: &str = "JWT_REVOCATION_WASM";

/// Release build output of the filter, relative to a cargo target directory.
const RELEASE_WASM: &str = "wasm32-wasip1/release/jwt_revocation.wasm";

/// The smallest valid core module plus a custom section named `jwt-revocation-test`, used when
/// no release build exists.
pub const GENERATED_WASM: &[u8] = b"\0asm\x01\0\0\0\0\x14\x13jwt-revocation-test";

/// A Wasm module to package, and where it came from.
pub struct TestWasm {
    pub bytes: Vec<u8>,
    pub path: PathBuf,
    pub source: String,
}

/// Returns the workspace root, the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the packaging crate is inside the workspace")
        .to_path_buf()
}

/// Returns the module named by `JWT_REVOCATION_WASM`, else the release build in the cargo
/// target directory, else [`GENERATED_WASM`] written into `scratch`.
///
/// Panics when `JWT_REVOCATION_WASM` is set but the file cannot be read, because a test run
/// that asked for the real module must not quietly package another one.
pub fn plugin_wasm(scratch: &Path) -> TestWasm {
    if let Some(path) = env::var_os(WASM_ENV) {
        let path = PathBuf::from(path);
        let bytes = fs::read(&path)
            .unwrap_or_else(|e| panic!("{WASM_ENV}={}: failed to read: {e}", path.display()));
        let source = format!("{} (from {WASM_ENV})", path.display());
        return TestWasm {
            bytes,
            path,
            source,
        };
    }

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let release = target_dir.join(RELEASE_WASM);
    if let Ok(bytes) = fs::read(&release) {
        let source = format!("{} (release build)", release.display());
        return TestWasm {
            bytes,
            path: release,
            source,
        };
    }

    let path = scratch.join("generated.wasm");
    fs::write(&path, GENERATED_WASM).expect("scratch directory is writable");
    TestWasm {
        bytes: GENERATED_WASM.to_vec(),
        path,
        source: format!(
            "a generated {}-byte module, because {WASM_ENV} is unset and {} does not exist",
            GENERATED_WASM.len(),
            release.display()
        ),
    }
}

/// Returns the path of `program` in `PATH`, if it is installed.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Reports a skipped test on the process's stderr.
///
/// It writes to `std::io::stderr()` directly because the test harness captures `eprintln!`
/// output of passing tests, and a skip must stay visible.
pub fn report_skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// Exit status and output of one run of the `oci-image` binary.
pub struct CliRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `oci-image` binary of this crate with `args`.
pub fn run_oci_image<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> CliRun {
    let output = Command::new(env!("CARGO_BIN_EXE_oci-image"))
        .args(args)
        .output()
        .expect("run oci-image");
    CliRun {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Builds the OCI image layout of `wasm` at `out` with the `oci-image` binary, as `make oci`
/// does, and returns the manifest digest it prints (`sha256:...`).
pub fn build_layout(wasm: &Path, out: &Path, tag: &str) -> String {
    let run = run_oci_image(&[
        "--wasm".as_ref(),
        wasm.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--tag".as_ref(),
        tag.as_ref(),
    ]);
    assert!(
        run.status.success(),
        "oci-image failed with {}:\n{}",
        run.status,
        run.stderr
    );
    run.stdout.trim_end().to_owned()
}
