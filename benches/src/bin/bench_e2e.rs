//! Runs the end-to-end load test and writes its result file; see `jwt_revocation_benches::load`.
//!
//! Exits with 1 when the test could not run, and with 3 when it ran but a request failed (a
//! status outside 2xx and 3xx, or a socket error), after writing the results.

use std::path::PathBuf;
use std::process::ExitCode;

use jwt_revocation_benches::load::{self, Authz, Options, Variant};
use jwt_revocation_benches::results::write_json;
use jwt_revocation_benches::{benches_dir, repository_root};

const USAGE: &str = "\
usage: bench-e2e [options]

Loads one Envoy 1.40.0 with wrk, one listener per variant (passthrough, ext_authz, wasm,
dynamic_module), in interleaved rounds. Everything listens on 127.0.0.1.

options:
  --envoy PATH              Envoy binary (default: $ENVOY, else `envoy` on PATH)
  --wasm PATH               proxy-wasm build (default: target/wasm32-wasip1/release/jwt_revocation.wasm)
  --module PATH             dynamic module, lib<name>.so (default: target/release/libjwt_revocation.so)
  --authz standin|authz-service
                            what handles the callouts (default: standin, a second Envoy)
  --authz-service-bin PATH  reference service binary (default: target/debug/authz-service)
  --jwks PATH               its key file (default: envoy-configs/demo-jwks.json)
  --variants LIST           comma-separated variants to measure, in round order
                            (default: passthrough,ext_authz,wasm,dynamic_module,
                            wasm_cached,dynamic_module_cached)
  --authz-protocol http1|http2
                            protocol of the callouts (default: http1, as in envoy-configs/)
  --rounds N                interleaved rounds, 1 to 20 (default: 3)
  --seconds N               wrk duration per variant and round, 1 to 120 (default: 10)
  --warmup N                wrk warm-up per variant before the rounds, 0 to 60 s (default: 2)
  --threads N               wrk threads, 1 to 16 (default: 1)
  --connections N           wrk connections, 1 to 1000 (default: 8)
  --out PATH                result file (default: benches/results/e2e-<authz>.json)
  --work-dir PATH           bootstraps, logs, wrk output (default: benches/target/load/<UTC time>)
Relative default paths are relative to the repository root.";

fn main() -> ExitCode {
    let (options, out) = match parse_args(std::env::args().skip(1).collect()) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("bench-e2e: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let results = match load::run(&options) {
        Ok(results) => results,
        Err(error) => {
            eprintln!("bench-e2e: the load test failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = write_json(&out, &results) {
        eprintln!("bench-e2e: {error}");
        return ExitCode::FAILURE;
    }
    println!("results written to {}", out.display());

    let failed: Vec<String> = results
        .runs
        .iter()
        .filter(|run| run.has_failures())
        .map(|run| format!("round {} {}", run.round, run.variant))
        .collect();
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench-e2e: FLAGGED: requests failed in {}; see the wrk output in {}",
            failed.join(", "),
            options.work_dir.join("wrk").display()
        );
        ExitCode::from(3)
    }
}

/// Parses the command line; `Ok(None)` stands for `--help`.
fn parse_args(args: Vec<String>) -> Result<Option<(Options, PathBuf)>, String> {
    let root = repository_root();
    let mut options = Options {
        envoy: std::env::var_os("ENVOY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("envoy")),
        wasm: root.join("target/wasm32-wasip1/release/jwt_revocation.wasm"),
        module: root.join("target/release/libjwt_revocation.so"),
        authz: Authz::StandIn,
        variants: Variant::ALL.to_vec(),
        authz_http2: false,
        rounds: 3,
        round_seconds: 10,
        warmup_seconds: 2,
        wrk_threads: 1,
        wrk_connections: 8,
        work_dir: load::new_work_dir(&benches_dir().join("target/load")),
    };
    let mut authz_name = "standin".to_owned();
    let mut authz_service = root.join("target/debug/authz-service");
    let mut jwks = root.join("envoy-configs/demo-jwks.json");
    let mut out = None;

    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--envoy" => options.envoy = PathBuf::from(value),
            "--wasm" => options.wasm = PathBuf::from(value),
            "--module" => options.module = PathBuf::from(value),
            "--authz" => authz_name = value,
            "--authz-service-bin" => authz_service = PathBuf::from(value),
            "--jwks" => jwks = PathBuf::from(value),
            "--variants" => options.variants = parse_variants(&value)?,
            "--authz-protocol" => {
                options.authz_http2 = match value.as_str() {
                    "http1" => false,
                    "http2" => true,
                    other => {
                        return Err(format!(
                            "invalid value for --authz-protocol: {other:?}; expected http1 or \
                             http2"
                        ))
                    }
                }
            }
            "--rounds" => options.rounds = parse_bounded(&flag, &value, 1, 20)?,
            "--seconds" => options.round_seconds = parse_bounded(&flag, &value, 1, 120)?,
            "--warmup" => options.warmup_seconds = parse_bounded(&flag, &value, 0, 60)?,
            "--threads" => options.wrk_threads = parse_bounded(&flag, &value, 1, 16)?,
            "--connections" => options.wrk_connections = parse_bounded(&flag, &value, 1, 1000)?,
            "--out" => out = Some(PathBuf::from(value)),
            "--work-dir" => options.work_dir = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }

    options.authz = match authz_name.as_str() {
        "standin" => Authz::StandIn,
        "authz-service" => Authz::AuthzService {
            binary: authz_service,
            jwks,
        },
        other => {
            return Err(format!(
                "invalid value for --authz: {other:?}; expected standin or authz-service"
            ))
        }
    };
    if options.wrk_connections < options.wrk_threads {
        return Err(format!(
            "--connections {} is less than --threads {}; wrk needs at least one connection per \
             thread",
            options.wrk_connections, options.wrk_threads
        ));
    }
    let out = out.unwrap_or_else(|| benches_dir().join(format!("results/e2e-{authz_name}.json")));
    Ok(Some((options, out)))
}

fn parse_variants(list: &str) -> Result<Vec<Variant>, String> {
    let mut variants = Vec::new();
    for name in list.split(',').map(str::trim) {
        let variant = Variant::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
            format!(
                "invalid variant {name:?} in --variants; expected one of {}",
                names.join(", ")
            )
        })?;
        if variants.contains(&variant) {
            return Err(format!("--variants lists {name} twice"));
        }
        variants.push(variant);
    }
    Ok(variants)
}

fn parse_bounded(flag: &str, value: &str, min: u32, max: u32) -> Result<u32, String> {
    value
        .parse()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("invalid value for {flag}: {value:?}; expected {min} to {max}"))
}
