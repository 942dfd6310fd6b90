//! Starting a real Envoy from one of the shipped bootstraps in `envoy-configs/`.
//!
//! The shipped files use fixed loopback ports. Before a test starts Envoy, it rewrites every
//! `port_value` in the file. The authorization service's 9001 and the upstream's 9002 become the
//! ports of the servers the test started. Every other port (listeners, admin) becomes 0, so the
//! kernel picks a free one and two runs cannot collide. The bound ports are read back from the
//! admin endpoint.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::http::Request;
use crate::process::{workspace_root, Process};

/// Port of the authorization service in the shipped bootstraps.
pub const SHIPPED_AUTHZ_PORT: u16 = 9001;
/// Port of the upstream in the shipped bootstraps.
pub const SHIPPED_UPSTREAM_PORT: u16 = 9002;
/// Authorization cluster name in the shipped bootstraps.
pub const AUTHZ_CLUSTER: &str = "outbound|9001||authz.jwt-revocation.local";
/// The filter configuration in every shipped bootstrap.
pub const SHIPPED_FILTER_CONFIG: &str = r#"{"cluster": "outbound|9001||authz.jwt-revocation.local", "authorizeUrl": "/authorize", "timeout": 2000}"#;

/// Which build of the filter a bootstrap loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Wasm,
    DynamicModule,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Wasm, Target::DynamicModule];

    pub fn name(self) -> &'static str {
        match self {
            Target::Wasm => "wasm",
            Target::DynamicModule => "dynamic-module",
        }
    }

    /// Returns the bootstrap with only this filter in front of the upstream.
    pub fn bootstrap(self) -> PathBuf {
        workspace_root().join(match self {
            Target::Wasm => "envoy-configs/wasm.yaml",
            Target::DynamicModule => "envoy-configs/dynamic-module.yaml",
        })
    }

    /// Returns the bootstrap with Envoy's jwt_authn checking signatures before this filter.
    pub fn bootstrap_with_jwt_authn(self) -> PathBuf {
        workspace_root().join(match self {
            Target::Wasm => "envoy-configs/wasm-jwt-authn.yaml",
            Target::DynamicModule => "envoy-configs/dynamic-module-jwt-authn.yaml",
        })
    }

    /// The built filter that the bootstrap loads, which must exist before Envoy starts.
    pub fn artifact(self) -> PathBuf {
        workspace_root().join(match self {
            Target::Wasm => "target/wasm32-wasip1/release/jwt_revocation.wasm",
            Target::DynamicModule => "target/release/libjwt_revocation.so",
        })
    }
}

/// Returns the `envoy` command: `$ENVOY`, then the project's virtualenv, then `envoy` on PATH.
pub fn envoy_command() -> PathBuf {
    if let Some(path) = std::env::var_os("ENVOY") {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("envoy")
}

/// A bootstrap read from disk with its ports and settings rewritten for one run.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    source: PathBuf,
    text: String,
    /// Directory Envoy searches for `libjwt_revocation.so`; `target/release` unless set.
    module_dir: Option<PathBuf>,
}

impl Bootstrap {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = fs::read_to_string(path)
            .map_err(|e| format!("cannot read bootstrap {}: {e}", path.display()))?;
        Ok(Self {
            source: path.to_owned(),
            text,
            module_dir: None,
        })
    }

    /// Makes Envoy load the dynamic module from `dir` instead of `target/release`.
    pub fn with_module_dir(mut self, dir: PathBuf) -> Self {
        self.module_dir = Some(dir);
        self
    }

    /// Points the authorization cluster and the upstream cluster at the given ports and lets
    /// the kernel pick every other port.
    pub fn with_ports(mut self, authz: u16, upstream: u16) -> Self {
        let mut out = String::with_capacity(self.text.len());
        let mut rest = self.text.as_str();
        const KEY: &str = "port_value: ";
        while let Some(at) = rest.find(KEY) {
            let (before, after) = rest.split_at(at + KEY.len());
            out.push_str(before);
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let port: u16 = after[..digits].parse().unwrap_or(0);
            let new_port = match port {
                SHIPPED_AUTHZ_PORT => authz,
                SHIPPED_UPSTREAM_PORT => upstream,
                _ => 0,
            };
            out.push_str(&new_port.to_string());
            rest = &after[digits..];
        }
        out.push_str(rest);
        self.text = out;
        self
    }

    /// Replaces `from` with `to` everywhere; `from` must occur, so a stale test fails loudly.
    pub fn replace(mut self, from: &str, to: &str) -> Result<Self, String> {
        if !self.text.contains(from) {
            return Err(format!(
                "{} does not contain {from:?}",
                self.source.display()
            ));
        }
        self.text = self.text.replace(from, to);
        Ok(self)
    }

    /// Replaces the filter configuration JSON.
    pub fn with_filter_config(self, json: &str) -> Result<Self, String> {
        self.replace(
            &format!("value: '{SHIPPED_FILTER_CONFIG}'"),
            &format!("value: '{json}'"),
        )
    }

    /// Adds a static cluster `name` with one endpoint at 127.0.0.1:`port`.
    pub fn with_cluster(self, name: &str, port: u16) -> Result<Self, String> {
        let cluster = format!(
            "  clusters:\n  - name: \"{name}\"\n    type: STATIC\n    connect_timeout: 0.5s\n    \
             load_assignment:\n      cluster_name: \"{name}\"\n      endpoints:\n      - lb_endpoints:\n        \
             - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, \
             port_value: {port} }}\n"
        );
        self.replace("  clusters:\n", &cluster)
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A running Envoy, stopped when dropped.
pub struct Envoy {
    process: Process,
    /// Port of the first listener.
    pub port: u16,
    pub admin_port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Writes the bootstrap to a temporary directory, starts Envoy on it and waits until it is
    /// ready and its listener is bound.
    pub fn start(bootstrap: &Bootstrap) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("jwt-revocation-envoy-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let config_path = dir.path().join("envoy.yaml");
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        fs::write(&config_path, bootstrap.text())
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;

        let root = workspace_root();
        let module_dir = bootstrap
            .module_dir
            .clone()
            .unwrap_or_else(|| root.join("target/release"));
        let mut command = Command::new(envoy_command());
        command
            .current_dir(root)
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir)
            .arg("-c")
            .arg(&config_path)
            .arg("--use-dynamic-base-id")
            .arg("--concurrency")
            .arg("1")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-level")
            .arg(std::env::var("JWT_REVOCATION_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
            .arg("--log-path")
            .arg(&log_path);
        let process = Process::spawn("envoy", &mut command)?;

        let mut envoy = Self {
            process,
            port: 0,
            admin_port: 0,
            log_path,
            _dir: dir,
        };
        envoy.wait_ready(&admin_path)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let exited = self.process.exit_status_note();
            if !exited.is_empty() {
                return Err(format!(
                    "Envoy failed to start{exited}\n{}",
                    self.log_tail()
                ));
            }
            if let Some(port) = fs::read_to_string(admin_path)
                .ok()
                .and_then(|a| a.trim().rsplit(':').next()?.parse::<u16>().ok())
            {
                self.admin_port = port;
                if let Some(listener) = self.ready_listener_port() {
                    self.port = listener;
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "Envoy was not ready within 60 s\n{}",
            self.log_tail()
        ))
    }

    fn ready_listener_port(&self) -> Option<u16> {
        let ready = Request::get("/ready").send(self.admin_port).ok()?;
        if ready.status != 200 {
            return None;
        }
        let listeners = Request::get("/listeners?format=json")
            .send(self.admin_port)
            .ok()?
            .json()
            .ok()?;
        let port = listeners["listener_statuses"][0]["local_address"]["socket_address"]
            ["port_value"]
            .as_u64()?;
        u16::try_from(port).ok().filter(|&p| p != 0)
    }

    /// Returns every counter and gauge from the admin `/stats` endpoint.
    pub fn stats(&self) -> Result<BTreeMap<String, u64>, String> {
        let response = Request::get("/stats").send(self.admin_port)?;
        let mut stats = BTreeMap::new();
        for line in response.body_text().lines() {
            if let Some((name, value)) = line.rsplit_once(": ") {
                if let Ok(value) = value.parse() {
                    stats.insert(name.to_owned(), value);
                }
            }
        }
        Ok(stats)
    }

    /// Returns the value of one of the filter's own counters, such as `jwt_revocation.allowed`,
    /// whatever prefix the host gives it (`wasmcustom.` for Wasm), or 0 when it is missing.
    pub fn filter_counter(&self, name: &str) -> Result<u64, String> {
        let suffix = format!(".{name}");
        Ok(self
            .stats()?
            .iter()
            .find(|(stat, _)| *stat == name || stat.ends_with(&suffix))
            .map_or(0, |(_, value)| *value))
    }

    /// Returns one stat, or 0 when Envoy has not created it yet.
    pub fn stat(&self, name: &str) -> Result<u64, String> {
        Ok(self.stats()?.get(name).copied().unwrap_or(0))
    }

    /// Returns the last lines of Envoy's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!(
            "--- last lines of the Envoy log ---\n{}",
            lines[start..].join("\n")
        )
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Runs `envoy --mode validate` on a shipped bootstrap, from the workspace root.
pub fn validate(path: &Path) -> Result<(), String> {
    let root = workspace_root();
    let output = Command::new(envoy_command())
        .current_dir(root)
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            root.join("target/release"),
        )
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("failed to run {}: {e}", envoy_command().display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && stdout.contains(" OK") {
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate -c {} failed ({}):\n{stdout}{}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_rewritten() {
        let bootstrap = Bootstrap {
            source: PathBuf::from("x.yaml"),
            text: "a: { port_value: 10000 }\nb: { port_value: 9001 }\nc:\n  port_value: 9002\n"
                .into(),
            module_dir: None,
        }
        .with_ports(4001, 4002);
        assert_eq!(
            bootstrap.text(),
            "a: { port_value: 0 }\nb: { port_value: 4001 }\nc:\n  port_value: 4002\n"
        );
    }

    #[test]
    fn shipped_bootstraps_carry_filter_config() {
        for target in Target::ALL {
            for path in [target.bootstrap(), target.bootstrap_with_jwt_authn()] {
                let bootstrap = Bootstrap::load(&path).unwrap();
                let changed = bootstrap.with_filter_config(r#"{"cluster": "x"}"#);
                assert!(changed.is_ok(), "{}", path.display());
            }
        }
    }

    #[test]
    fn missing_replacement_fails() {
        let bootstrap = Bootstrap {
            source: PathBuf::from("x.yaml"),
            text: "timeout: 2000".into(),
            module_dir: None,
        };
        assert!(bootstrap.replace("\"timeout\": 5", "x").is_err());
    }
}
