//! A complete test stack on loopback: an authorization service (the reference one or a faulty
//! stand-in), an upstream, and Envoy running one of the shipped bootstraps.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use authz_service::Key;

use crate::envoy::{Bootstrap, Envoy, Target};
use crate::http::Request;
use crate::process::{workspace_binary, workspace_root, Process};

/// The server behind the authorization cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authz {
    /// The reference authorization service with the demo key.
    Reference,
    /// A server that responds to every request with this status.
    Status(u16),
    /// A server that responds with `status` after `delay_ms`.
    Delayed { status: u16, delay_ms: u64 },
    /// A server that closes the connection of the first `count` requests without a response,
    /// then responds with `status`.
    DropFirst { status: u16, count: u64 },
    /// A server that never responds.
    Hang,
    /// A port where nothing listens, so connections are refused.
    Refused,
}

/// Returns the demo JWKS file shared by the reference service and Envoy's jwt_authn.
pub fn demo_jwks() -> PathBuf {
    workspace_root().join("envoy-configs/demo-jwks.json")
}

/// Loads the demo signing key.
pub fn demo_key() -> Result<Key, String> {
    let path = demo_jwks();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Key::from_jwks_json(&text)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Starts the reference authorization service on 127.0.0.1:`port` (0 for a free port).
fn start_reference_authz(port: u16) -> Result<(Process, u16), String> {
    let mut command = Command::new(workspace_binary("authz-service")?);
    // Startup and per-request lines would mix with the test output; warnings still show.
    command
        .env("RUST_LOG", "warn")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--jwks")
        .arg(demo_jwks());
    Process::spawn_server("authz-service", &mut command)
}

/// Starts the authorization side and returns its process (none for `Refused`) and port.
pub fn start_authz(authz: Authz) -> Result<(Option<Process>, u16), String> {
    let server = |args: &[&str]| -> Result<(Option<Process>, u16), String> {
        let mut command = Command::new(workspace_binary("e2e-server")?);
        command.args(args);
        let (process, port) = Process::spawn_server("e2e-server", &mut command)?;
        Ok((Some(process), port))
    };
    match authz {
        Authz::Reference => {
            let (process, port) = start_reference_authz(0)?;
            Ok((Some(process), port))
        }
        Authz::Status(status) => server(&["status", &status.to_string()]),
        Authz::Delayed { status, delay_ms } => server(&[
            "status",
            &status.to_string(),
            "--delay-ms",
            &delay_ms.to_string(),
        ]),
        Authz::DropFirst { status, count } => server(&[
            "status",
            &status.to_string(),
            "--drop-first",
            &count.to_string(),
        ]),
        Authz::Hang => server(&["hang"]),
        Authz::Refused => {
            // Bind a free port and close it again: nothing listens there afterwards.
            let listener = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("cannot bind a free port: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            drop(listener);
            Ok((None, port))
        }
    }
}

/// Revokes `jti` at the reference authorization service on 127.0.0.1:`port`.
pub fn revoke_at(port: u16, jti: &str) -> Result<(), String> {
    let body = serde_json::json!({ "jti": jti }).to_string();
    let response = Request::post("/revoke", body)
        .header("content-type", "application/json")
        .send(port)?;
    if response.status == 200 {
        Ok(())
    } else {
        Err(format!(
            "revoking {jti} failed with {}: {}",
            response.status,
            response.body_text()
        ))
    }
}

/// Everything one scenario runs; dropping it stops every process.
pub struct Stack {
    pub envoy: Envoy,
    pub authz: Option<Process>,
    pub authz_port: u16,
    pub upstream: Process,
    pub upstream_port: u16,
    pub key: Key,
}

impl Stack {
    /// Starts a stack on `bootstrap`, changed by `edit` before Envoy starts.
    pub fn start(
        bootstrap: &Path,
        authz: Authz,
        edit: impl FnOnce(Bootstrap) -> Result<Bootstrap, String>,
    ) -> Result<Self, String> {
        let key = demo_key()?;
        let (authz_process, authz_port) = start_authz(authz)?;
        let mut command = Command::new(workspace_binary("e2e-server")?);
        command.arg("echo");
        let (upstream, upstream_port) = Process::spawn_server("upstream", &mut command)?;

        let bootstrap = edit(Bootstrap::load(bootstrap)?.with_ports(authz_port, upstream_port))?;
        let envoy = Envoy::start(&bootstrap)?;
        Ok(Self {
            envoy,
            authz: authz_process,
            authz_port,
            upstream,
            upstream_port,
            key,
        })
    }

    /// Starts `target`'s plain bootstrap with the given authorization side.
    pub fn for_target(target: Target, authz: Authz) -> Result<Self, String> {
        Self::start(&target.bootstrap(), authz, Ok)
    }

    /// Issues a valid token from the reference service's key; returns the token and its jti.
    pub fn issue_token(&self, sub: &str) -> (String, String) {
        let (token, jti, _exp) = authz_service::issue_token(&self.key, sub, 600, unix_now());
        (token, jti)
    }

    /// Revokes `jti` at the stack's reference authorization service.
    pub fn revoke(&self, jti: &str) -> Result<(), String> {
        revoke_at(self.authz_port, jti)
    }

    /// Stops the authorization service, as an outage would.
    pub fn stop_authz(&mut self) {
        if let Some(mut process) = self.authz.take() {
            process.stop();
        }
    }

    /// Starts the reference authorization service again on its old port, as after an outage.
    pub fn restart_authz(&mut self) -> Result<(), String> {
        self.stop_authz();
        let (process, _) = start_reference_authz(self.authz_port)?;
        self.authz = Some(process);
        Ok(())
    }

    /// Returns how many requests reached the upstream.
    pub fn upstream_requests(&self) -> Result<u64, String> {
        let response = Request::get("/__requests").send(self.upstream_port)?;
        response.body_text().trim().parse().map_err(|_| {
            format!(
                "upstream request count is not a number: {}",
                response.body_text()
            )
        })
    }
}
