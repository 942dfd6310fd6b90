//! Collects criterion's estimates into `results/micro.json`, and renders `RESULTS.md` and
//! `results.svg` from the result files.
//!
//! ```text
//! bench-report micro --criterion-dir DIR --since-file FILE [--command TEXT] [--out FILE]
//! bench-report render [--results DIR] [--markdown FILE] [--svg FILE]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use jwt_revocation_benches::benches_dir;
use jwt_revocation_benches::provenance::{tool_version, Provenance};
use jwt_revocation_benches::report::{self, criterion};
use jwt_revocation_benches::results::{write_json, MicroResults};

const USAGE: &str = "\
usage:
  bench-report micro --criterion-dir DIR --since-file FILE [--command TEXT] [--out FILE]
      Collects the criterion estimates under DIR written after FILE was last modified into
      FILE (default: benches/results/micro.json). TEXT is the command that ran the benchmarks,
      recorded with them; FILE's time is recorded as their date.
  bench-report render [--results DIR] [--markdown FILE] [--svg FILE]
      Writes RESULTS.md and results.svg (defaults: benches/results, benches/RESULTS.md,
      benches/results.svg).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("micro") => micro(&args[1..]),
        Some("render") => render(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err("expected the subcommand micro or render".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-report: {error}\n\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the value of each `--flag VALUE` pair in `args`, rejecting flags not in `known`.
fn flags(args: &[String], known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown option {flag}"));
        }
        let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
        pairs.push((flag.clone(), value.clone()));
    }
    Ok(pairs)
}

fn flag(pairs: &[(String, String)], name: &str) -> Option<PathBuf> {
    pairs
        .iter()
        .find(|(flag, _)| flag == name)
        .map(|(_, value)| PathBuf::from(value))
}

fn micro(args: &[String]) -> Result<(), String> {
    let pairs = flags(
        args,
        &["--criterion-dir", "--since-file", "--command", "--out"],
    )?;
    let criterion_dir = flag(&pairs, "--criterion-dir").ok_or("--criterion-dir is required")?;
    let since_file = flag(&pairs, "--since-file").ok_or("--since-file is required")?;
    let out = flag(&pairs, "--out").unwrap_or_else(|| benches_dir().join("results/micro.json"));

    let since = std::fs::metadata(&since_file)
        .and_then(|m| m.modified())
        .map_err(|e| format!("cannot read the time of {}: {e}", since_file.display()))?;
    let estimates = criterion::collect(&criterion_dir, since)?;
    if estimates.is_empty() {
        return Err(format!(
            "no criterion estimates in {} are newer than {}",
            criterion_dir.display(),
            since_file.display()
        ));
    }
    let tools = [("rustc", "rustc"), ("cargo", "cargo")]
        .iter()
        .map(|(name, program)| {
            let version =
                tool_version(program, &["--version"]).unwrap_or_else(|| "not found".into());
            (name.to_string(), version)
        })
        .chain(locked_versions(&["criterion", "wasmtime"]))
        .collect();
    let mut provenance = Provenance::now(tools);
    provenance.command = pairs
        .iter()
        .find(|(flag, _)| flag == "--command")
        .map_or_else(
            || "cargo bench --bench core --bench native --bench wasm".to_owned(),
            |(_, command)| command.clone(),
        );
    provenance.date = jwt_revocation_benches::provenance::utc_timestamp(since);
    write_json(
        &out,
        &MicroResults {
            provenance,
            estimates,
        },
    )?;
    println!("criterion estimates written to {}", out.display());
    Ok(())
}

/// Returns `(crate, version)` of each crate in `names` from `benches/Cargo.lock`.
fn locked_versions(names: &[&str]) -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(benches_dir().join("Cargo.lock")).unwrap_or_default();
    names
        .iter()
        .filter_map(|name| {
            let entry = lock.split("[[package]]").find(|entry| {
                entry
                    .lines()
                    .any(|line| line.trim() == format!("name = \"{name}\""))
            })?;
            let version = entry
                .lines()
                .find_map(|line| line.trim().strip_prefix("version = "))?
                .trim_matches('"');
            Some((name.to_string(), version.to_owned()))
        })
        .collect()
}

fn render(args: &[String]) -> Result<(), String> {
    let pairs = flags(args, &["--results", "--markdown", "--svg"])?;
    let results_dir = flag(&pairs, "--results").unwrap_or_else(|| benches_dir().join("results"));
    let markdown = flag(&pairs, "--markdown").unwrap_or_else(|| benches_dir().join("RESULTS.md"));
    let svg = flag(&pairs, "--svg").unwrap_or_else(|| benches_dir().join("results.svg"));
    let results = report::read_results(&results_dir)?;
    report::write_pages(&results, &markdown, &svg)?;
    println!("wrote {} and {}", markdown.display(), svg.display());
    Ok(())
}
