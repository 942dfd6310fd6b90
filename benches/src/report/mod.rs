//! The report pages: `RESULTS.md` and `results.svg`, from the result files.

pub mod criterion;
pub mod markdown;
pub mod summary;
pub mod svg;

use std::fs;
use std::path::Path;

use crate::results::{read_json, LoadResults, MicroResults};

/// The result files found in one directory.
pub struct ResultSet {
    pub micro: Option<MicroResults>,
    /// Load tests, the stand-in one first.
    pub loads: Vec<LoadResults>,
}

/// Reads `micro.json` and every `e2e-*.json` in `dir`.
pub fn read_results(dir: &Path) -> Result<ResultSet, String> {
    let micro_path = dir.join("micro.json");
    let micro = if micro_path.is_file() {
        Some(read_json(&micro_path)?)
    } else {
        None
    };
    let mut load_paths: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("e2e-") && n.ends_with(".json"))
        })
        .collect();
    load_paths.sort();
    let mut loads = load_paths
        .iter()
        .map(|path| read_json::<LoadResults>(path))
        .collect::<Result<Vec<_>, _>>()?;
    loads.sort_by_key(|load| load.settings.authz != "standin");
    Ok(ResultSet { micro, loads })
}

/// Writes `RESULTS.md` and `results.svg`.
pub fn write_pages(results: &ResultSet, markdown: &Path, svg: &Path) -> Result<(), String> {
    let page = markdown::render(results.micro.as_ref(), &results.loads);
    fs::write(markdown, page).map_err(|e| format!("cannot write {}: {e}", markdown.display()))?;
    let chart = svg::render(results.micro.as_ref(), results.loads.first());
    fs::write(svg, chart).map_err(|e| format!("cannot write {}: {e}", svg.display()))
}
