//! The end-to-end load test: one Envoy under test with one listener per variant, loaded by wrk in
//! interleaved rounds (A B C D, A B C D, ...), so that drift of the machine affects every variant
//! alike.
//!
//! 1. A stand-in Envoy serves the upstream (200, short body) and responds to the callouts (200,
//!    no body), unless the reference `authz-service` handles the callouts.
//! 2. The Envoy under test routes every listener to that upstream. The listeners differ only in
//!    their HTTP filters: none, `ext_authz`, the proxy-wasm build, or the dynamic module.
//! 3. A check request per variant proves that each listener returns 200 with a token and that
//!    the jwt-revocation listeners return 401 without one.
//! 4. wrk warms every listener up, then runs the rounds. The authorization cluster's counters give
//!    the number of callouts of each run.
//!
//! Every process listens on 127.0.0.1 on a port the kernel picks, and every process is stopped by
//! its PID when the test ends or fails.

pub mod bootstrap;
pub mod cpu;
pub mod http;
pub mod process;
pub mod wrk;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::fixtures;
use crate::provenance::{tool_version, utc_timestamp, Provenance};
use crate::results::{LoadResults, LoadSettings, RunResult, SkippedVariant};
use process::Server;

/// One listener of the Envoy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// No filter: the router only.
    Passthrough,
    /// Envoy's `envoy.filters.http.ext_authz` in HTTP service mode.
    ExtAuthz,
    /// The proxy-wasm build of jwt-revocation in Envoy's V8 runtime.
    Wasm,
    /// The native dynamic-module build of jwt-revocation.
    DynamicModule,
    /// The proxy-wasm build with `cache.ttl` [`CACHED_TTL_MS`].
    WasmCached,
    /// The dynamic-module build with `cache.ttl` [`CACHED_TTL_MS`].
    DynamicModuleCached,
}

/// `cache.ttl` of the cached variants, in milliseconds.
pub const CACHED_TTL_MS: u32 = 1000;

impl Variant {
    pub const ALL: [Variant; 6] = [
        Variant::Passthrough,
        Variant::ExtAuthz,
        Variant::Wasm,
        Variant::DynamicModule,
        Variant::WasmCached,
        Variant::DynamicModuleCached,
    ];

    /// Returns the variant named `name`, as [`Variant::name`] spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Listener and result name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Passthrough => "passthrough",
            Variant::ExtAuthz => "ext_authz",
            Variant::Wasm => "wasm",
            Variant::DynamicModule => "dynamic_module",
            Variant::WasmCached => "wasm_cached",
            Variant::DynamicModuleCached => "dynamic_module_cached",
        }
    }

    /// Returns true for the variants that load the dynamic module.
    pub fn uses_module(self) -> bool {
        matches!(self, Variant::DynamicModule | Variant::DynamicModuleCached)
    }

    /// Returns true for the jwt-revocation variants that reuse decisions.
    pub fn is_cached(self) -> bool {
        matches!(self, Variant::WasmCached | Variant::DynamicModuleCached)
    }

    /// Returns true when the variant sends callouts to the authorization service: one per
    /// request, or one per token and `cache.ttl` for the cached variants.
    pub fn makes_callouts(self) -> bool {
        self != Variant::Passthrough
    }

    /// Returns true for the jwt-revocation builds, which respond 401 to a request without a
    /// token.
    fn is_jwt_revocation(self) -> bool {
        self != Variant::Passthrough && self != Variant::ExtAuthz
    }
}

/// The service that handles the callouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authz {
    /// A listener of the stand-in Envoy that returns 200 for every request.
    StandIn,
    /// The reference `authz-service` binary, started with the demo JWKS.
    AuthzService { binary: PathBuf, jwks: PathBuf },
}

/// Settings of one load test.
#[derive(Debug, Clone)]
pub struct Options {
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    /// The dynamic module, `lib<name>.so`; its directory becomes
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    pub module: PathBuf,
    pub authz: Authz,
    /// The variants to measure, in the order each round runs them.
    pub variants: Vec<Variant>,
    /// Sends the callouts over HTTP/2 instead of HTTP/1.1.
    pub authz_http2: bool,
    pub rounds: u32,
    pub round_seconds: u32,
    pub warmup_seconds: u32,
    pub wrk_threads: u32,
    pub wrk_connections: u32,
    /// Directory for the generated bootstraps, process logs and wrk outputs.
    pub work_dir: PathBuf,
}

/// Worker threads of the Envoy under test and of the stand-in.
const ENVOY_CONCURRENCY: u32 = 1;

/// Time Envoy gets to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the load test and returns its results.
pub fn run(options: &Options) -> Result<LoadResults, String> {
    let provenance = Provenance::now(tool_versions(&options.envoy));
    fs::create_dir_all(&options.work_dir)
        .map_err(|e| format!("cannot create {}: {e}", options.work_dir.display()))?;
    println!("working directory: {}", options.work_dir.display());

    let standin = Envoy::start(
        "stand-in Envoy",
        &options.envoy,
        &bootstrap::standin(),
        &options.work_dir.join("standin"),
        None,
    )?;
    let upstream_port = standin.listener_port(bootstrap::STANDIN_UPSTREAM_LISTENER)?;
    let (authz_port, token, authz_description, authz_service) = match &options.authz {
        Authz::StandIn => (
            standin.listener_port(bootstrap::STANDIN_AUTHZ_LISTENER)?,
            fixtures::typical_token(),
            "a second Envoy 1.40.0 (`--concurrency 1`) whose `direct_response` listeners respond to \
             the callouts (200, no body) and serve the upstream (200, 24-byte body)"
                .to_owned(),
            None,
        ),
        Authz::AuthzService { binary, jwks } => {
            let (server, port) = startauthz_service(binary, jwks, &options.work_dir)?;
            let token = issue_token(port)?;
            let description = format!(
                "the reference `{}` (default workers) handles the callouts; a second Envoy \
                 1.40.0 (`--concurrency 1`) with a `direct_response` listener serves the \
                 upstream (200, 24-byte body)",
                binary.display()
            );
            (port, token, description, Some(server))
        }
    };
    println!("upstream on 127.0.0.1:{upstream_port}, authorization on 127.0.0.1:{authz_port}");

    let (variants, mut skipped) = available_variants(options);
    let module_name = module_name(&options.module)?;
    let wasm = options
        .wasm
        .canonicalize()
        .unwrap_or_else(|_| options.wasm.clone());
    let targets = bootstrap::Targets {
        upstream_port,
        authz_port,
        wasm: &wasm,
        module_name: &module_name,
        authz_http2: options.authz_http2,
    };
    let module_dir = options
        .module
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let (mut envoy, variants) =
        start_under_test(options, &targets, &module_dir, variants, &mut skipped)?;

    let authorization = vec![("Authorization".to_owned(), format!("Bearer {token}"))];
    let mut ports = BTreeMap::new();
    for &variant in &variants {
        let port = envoy.listener_port(variant.name())?;
        check_variant(variant, port, &authorization)?;
        ports.insert(variant, port);
    }

    let settings = LoadSettings {
        authz: match options.authz {
            Authz::StandIn => "standin".to_owned(),
            Authz::AuthzService { .. } => "authz-service".to_owned(),
        },
        authz_description,
        authz_protocol: if options.authz_http2 {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        }
        .to_owned(),
        envoy_concurrency: ENVOY_CONCURRENCY,
        wrk_threads: options.wrk_threads,
        wrk_connections: options.wrk_connections,
        round_seconds: options.round_seconds,
        warmup_seconds: options.warmup_seconds,
        rounds: options.rounds,
        token_bytes: token.len(),
    };
    let mut helpers = vec![standin.server.pid()];
    helpers.extend(authz_service.as_ref().map(Server::pid));
    let runs = measure(
        options,
        &mut envoy,
        &helpers,
        &variants,
        &ports,
        &authorization,
    )?;

    Ok(LoadResults {
        provenance,
        settings,
        variants: variants.iter().map(|v| v.name().to_owned()).collect(),
        skipped,
        runs,
    })
}

fn tool_versions(envoy: &Path) -> Vec<(String, String)> {
    let envoy = envoy.to_string_lossy();
    [
        ("envoy", tool_version(&envoy, &["--version"])),
        ("wrk", tool_version("wrk", &["-v"])),
    ]
    .into_iter()
    .map(|(tool, version)| {
        (
            tool.to_owned(),
            version.unwrap_or_else(|| "not found".to_owned()),
        )
    })
    .collect()
}

/// Returns the variants whose artifacts exist, and the others with the reason.
fn available_variants(options: &Options) -> (Vec<Variant>, Vec<SkippedVariant>) {
    let mut variants = Vec::new();
    let mut skipped = Vec::new();
    for &variant in &options.variants {
        if variant == Variant::ExtAuthz && matches!(options.authz, Authz::AuthzService { .. }) {
            skipped.push(SkippedVariant {
                variant: variant.name().to_owned(),
                reason: "ext_authz's HTTP service sends the client's method and `path_prefix` \
                         followed by the client's path (GET /authorize/ here), and authz-service \
                         routes only POST /authorize"
                    .to_owned(),
            });
            continue;
        }
        let artifact = match variant {
            Variant::Wasm | Variant::WasmCached => Some(&options.wasm),
            Variant::DynamicModule | Variant::DynamicModuleCached => Some(&options.module),
            Variant::Passthrough | Variant::ExtAuthz => None,
        };
        match artifact {
            Some(path) if !path.is_file() => {
                let reason = format!("{} does not exist", path.display());
                eprintln!("skipping {}: {reason}", variant.name());
                skipped.push(SkippedVariant {
                    variant: variant.name().to_owned(),
                    reason,
                });
            }
            _ => variants.push(variant),
        }
    }
    (variants, skipped)
}

/// Returns `name` of a module file `lib<name>.so`.
fn module_name(module: &Path) -> Result<String, String> {
    module
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("lib"))
        .and_then(|n| n.strip_suffix(".so"))
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "the dynamic module must be named lib<name>.so, got {}",
                module.display()
            )
        })
}

/// Starts the Envoy under test. When Envoy rejects the dynamic module, it is left out with the
/// reason and Envoy starts with the other variants.
fn start_under_test(
    options: &Options,
    targets: &bootstrap::Targets,
    module_dir: &Path,
    mut variants: Vec<Variant>,
    skipped: &mut Vec<SkippedVariant>,
) -> Result<(Envoy, Vec<Variant>), String> {
    let work_dir = options.work_dir.join("under-test");
    let config = bootstrap::under_test(&variants, targets);
    let first = Envoy::start(
        "Envoy under test",
        &options.envoy,
        &config,
        &work_dir,
        Some(module_dir),
    );
    match first {
        Ok(envoy) => Ok((envoy, variants)),
        Err(error) if variants.iter().any(|v| v.uses_module()) => {
            eprintln!(
                "Envoy failed to start with the dynamic module; retrying without it:\n{error}"
            );
            for variant in variants.iter().filter(|v| v.uses_module()) {
                skipped.push(SkippedVariant {
                    variant: variant.name().to_owned(),
                    reason: format!(
                        "Envoy did not start with {}: {}",
                        options.module.display(),
                        first_envoy_error(&error)
                    ),
                });
            }
            variants.retain(|v| !v.uses_module());
            let config = bootstrap::under_test(&variants, targets);
            let envoy = Envoy::start(
                "Envoy under test",
                &options.envoy,
                &config,
                &options.work_dir.join("under-test-without-module"),
                Some(module_dir),
            )?;
            Ok((envoy, variants))
        }
        Err(error) => Err(error),
    }
}

/// Returns the first line of an Envoy failure that names an error, for the report.
fn first_envoy_error(error: &str) -> String {
    error
        .lines()
        .find(|line| line.contains("error") || line.contains("critical"))
        .unwrap_or_else(|| error.lines().next().unwrap_or(""))
        .trim()
        .to_owned()
}

/// Sends one request with the token to each variant, expecting 200 with the upstream's body,
/// and one without a token to the jwt-revocation variants, expecting 401.
fn check_variant(
    variant: Variant,
    port: u16,
    authorization: &[(String, String)],
) -> Result<(), String> {
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let with_token = http::get(port, "/", &headers)?;
    if with_token.status != 200 || with_token.body != bootstrap::UPSTREAM_BODY {
        return Err(format!(
            "{} returned {} {:?} for a request with a token; expected 200 {:?}",
            variant.name(),
            with_token.status,
            with_token.body,
            bootstrap::UPSTREAM_BODY
        ));
    }
    if variant.is_jwt_revocation() {
        let without_token = http::get(port, "/", &[])?;
        if without_token.status != 401 {
            return Err(format!(
                "{} returned {} for a request without a token; expected 401, so the filter is \
                 not in the request path",
                variant.name(),
                without_token.status
            ));
        }
    }
    println!("check passed: {} on 127.0.0.1:{port}", variant.name());
    Ok(())
}

/// Runs the warm-up and the interleaved rounds.
fn measure(
    options: &Options,
    envoy: &mut Envoy,
    helpers: &[u32],
    variants: &[Variant],
    ports: &BTreeMap<Variant, u16>,
    authorization: &[(String, String)],
) -> Result<Vec<RunResult>, String> {
    let wrk_dir = options.work_dir.join("wrk");
    fs::create_dir_all(&wrk_dir)
        .map_err(|e| format!("cannot create {}: {e}", wrk_dir.display()))?;
    let load = |variant: Variant, seconds: u32| wrk::Load {
        port: ports[&variant],
        threads: options.wrk_threads,
        connections: options.wrk_connections,
        seconds,
        headers: authorization,
    };

    if options.warmup_seconds > 0 {
        for &variant in variants {
            println!(
                "warm-up: {} for {} s",
                variant.name(),
                options.warmup_seconds
            );
            let output = wrk_dir.join(format!("warmup-{}.txt", variant.name()));
            wrk::run(&load(variant, options.warmup_seconds), &output)?;
        }
    }

    let mut runs = Vec::new();
    for round in 1..=options.rounds {
        for &variant in variants {
            let cluster = bootstrap::authz_cluster(variant);
            let before = envoy.completed_requests(&cluster)?;
            let output = wrk_dir.join(format!("round{round}-{}.txt", variant.name()));
            let started = Instant::now();
            let cpu_before = cpu::snapshot(envoy.server.pid(), helpers);
            let report = wrk::run(&load(variant, options.round_seconds), &output)?;
            let cpu_after = cpu::snapshot(envoy.server.pid(), helpers);
            let cpu = cpu::usage(&cpu_before, &cpu_after, started.elapsed().as_secs_f64());
            envoy.server.check_running()?;
            if cpu.under_test < 1.0 {
                eprintln!(
                    "warning: the Envoy under test (PID {}) used {:.1}% of a CPU; if the envoy \
                     command starts Envoy as a child process instead of replacing itself with \
                     it, the CPU columns are wrong",
                    envoy.server.pid(),
                    cpu.under_test
                );
            }
            let after = envoy.completed_requests(&cluster)?;
            let result = RunResult {
                round,
                variant: variant.name().to_owned(),
                requests: report.requests,
                seconds: report.seconds,
                requests_per_second: report.requests_per_second,
                p50_us: report.p50_us,
                p75_us: report.p75_us,
                p90_us: report.p90_us,
                p99_us: report.p99_us,
                non_2xx_3xx: report.non_2xx_3xx,
                socket_errors: report.socket_errors,
                callouts: variant.makes_callouts().then(|| after - before),
                cpu_under_test_percent: cpu.under_test,
                cpu_helpers_percent: cpu.helpers,
                cpu_wrk_percent: cpu.wrk,
                cpu_other_percent: cpu.other,
            };
            println!(
                "round {round} {:<15} {:>9.0} req/s  p50 {:>7.0} us  p99 {:>7.0} us  \
                 non-2xx {}  socket errors {}{}  CPU % under test {:.0}, helpers {:.0}, wrk \
                 {:.0}, other {:.0}{}",
                variant.name(),
                result.requests_per_second,
                result.p50_us,
                result.p99_us,
                result.non_2xx_3xx,
                result.socket_errors,
                result
                    .callouts
                    .map_or_else(String::new, |c| format!("  callouts {c}")),
                cpu.under_test,
                cpu.helpers,
                cpu.wrk,
                cpu.other,
                if result.is_disturbed() {
                    "  DISTURBED by other processes"
                } else {
                    ""
                }
            );
            runs.push(result);
        }
    }
    Ok(runs)
}

/// Starts the reference authorization service on a free port and returns it with its port.
fn startauthz_service(
    binary: &Path,
    jwks: &Path,
    work_dir: &Path,
) -> Result<(Server, u16), String> {
    let mut command = Command::new(binary);
    command
        .arg("--jwks")
        .arg(jwks)
        .arg("--listen")
        .arg("127.0.0.1:0");
    let mut server = Server::spawn(
        "authz-service",
        &mut command,
        &work_dir.join("authz-service.log"),
    )?;
    let line = server.wait_for_log_line("listening on", STARTUP_TIMEOUT)?;
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("authz-service printed no port: {line:?}"))?;
    Ok((server, port))
}

/// Asks the reference authorization service for a token, valid for one hour.
fn issue_token(port: u16) -> Result<String, String> {
    let response = http::request(
        port,
        "POST",
        "/tokens",
        &[("content-type", "application/json")],
        r#"{"sub": "bench", "ttl": 3600}"#,
    )?;
    if response.status != 200 {
        return Err(format!(
            "POST /tokens returned {}: {}",
            response.status, response.body
        ));
    }
    let body: serde_json::Value = serde_json::from_str(&response.body).map_err(|e| {
        format!(
            "POST /tokens returned invalid JSON ({e}): {}",
            response.body
        )
    })?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("POST /tokens returned no token: {}", response.body))
}

/// A running Envoy and its admin port.
struct Envoy {
    server: Server,
    admin_port: u16,
}

impl Envoy {
    /// Writes `config` to `dir`, starts Envoy on it with `--concurrency 1`, and waits until its
    /// admin endpoint reports it ready.
    fn start(
        name: &str,
        envoy: &Path,
        config: &serde_json::Value,
        dir: &Path,
        module_dir: Option<&Path>,
    ) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let config_path = dir.join("envoy.json");
        let admin_path = dir.join("admin-address");
        let text = serde_json::to_string_pretty(config)
            .map_err(|e| format!("cannot serialize the bootstrap: {e}"))?;
        fs::write(&config_path, text)
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        let _ = fs::remove_file(&admin_path);

        let mut command = Command::new(envoy);
        command
            .arg("--config-path")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(ENVOY_CONCURRENCY.to_string())
            // Without hot restart, Envoy 1.40.0 opens no shared memory or domain socket, so it
            // cannot collide with another Envoy's base id and leaves no file in /dev/shm.
            .arg("--disable-hot-restart")
            .arg("--use-dynamic-base-id")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-level")
            .arg("warn");
        if let Some(module_dir) = module_dir {
            command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir);
        }
        let mut server = Server::spawn(name, &mut command, &dir.join("envoy.log"))?;
        println!(
            "started {name} (PID {}), log in {}",
            server.pid(),
            dir.display()
        );

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            server.check_running()?;
            let admin_port = fs::read_to_string(&admin_path)
                .ok()
                .and_then(|a| a.trim().rsplit(':').next()?.parse::<u16>().ok());
            if let Some(admin_port) = admin_port {
                if http::get(admin_port, "/ready", &[]).is_ok_and(|r| r.status == 200) {
                    return Ok(Self { server, admin_port });
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} was not ready within {} s\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    server.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns the port that the listener `name` is bound to.
    fn listener_port(&self, name: &str) -> Result<u16, String> {
        let response = http::get(self.admin_port, "/listeners?format=json", &[])?;
        let listeners: serde_json::Value = serde_json::from_str(&response.body)
            .map_err(|e| format!("invalid /listeners JSON ({e}): {}", response.body))?;
        listeners["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == name)
            .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("Envoy has no listener {name:?}: {}", response.body))
    }

    /// Returns `cluster.<cluster>.upstream_rq_completed`, or 0 when the cluster is unknown.
    fn completed_requests(&self, cluster: &str) -> Result<u64, String> {
        let stat = format!("cluster.{cluster}.upstream_rq_completed");
        let response = http::get(self.admin_port, "/stats?filter=upstream_rq_completed", &[])?;
        Ok(response
            .body
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(": ")?;
                (name == stat).then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0))
    }
}

/// Returns a fresh working directory under `base`, named after the current UTC time.
pub fn new_work_dir(base: &Path) -> PathBuf {
    let stamp = utc_timestamp(std::time::SystemTime::now()).replace(':', "");
    base.join(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_name_from_file() {
        let name = module_name(Path::new("/x/target/release/libjwt_revocation.so"));
        assert_eq!(name, Ok("jwt_revocation".to_owned()));
    }

    #[test]
    fn module_name_needs_lib_prefix() {
        assert!(module_name(Path::new("/x/jwt_revocation.so")).is_err());
    }
}
