//! Shared code of the jwt-revocation benchmarks.
//!
//! - [`fixtures`]: the tokens and request headers every micro-benchmark sends.
//! - [`provenance`]: the machine, tool versions and date recorded with each result.
//! - [`results`]: the JSON result files under `benches/results/`.
//! - [`load`]: the end-to-end load test that `bench-e2e` runs.
//! - [`report`]: `RESULTS.md` and `results.svg`, written by `bench-report`.

pub mod fixtures;
pub mod load;
pub mod provenance;
pub mod report;
pub mod results;

use std::path::PathBuf;

/// Returns the repository root, the parent of this crate's directory.
pub fn repository_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Returns the directory of this crate, `benches/` in the repository.
pub fn benches_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
