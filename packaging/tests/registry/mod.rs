//! A Docker distribution registry (`docker-registry serve`) on 127.0.0.1, and a registry API v2
//! client that pulls an image the way Istio's agent does.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use packaging::Digest;

/// Time allowed for the registry to return 200 for `GET /v2/` after it starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Time allowed for one HTTP request to the registry.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum response body read from the registry, above any Wasm filter size.
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

/// Manifest media types that go-containerregistry's `remote.Get`, which Istio's agent uses,
/// sends in its `Accept` header.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A running `docker-registry` process that stores blobs under a test directory and listens
/// on 127.0.0.1 only. Dropping it kills the process by its PID.
pub struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
    http: ureq::Agent,
}

impl Registry {
    /// Starts `binary serve CONFIG` with a config written under `dir`, and waits until the
    /// registry returns 200 for `GET /v2/`.
    pub fn start(binary: &Path, dir: &Path) -> Registry {
        let port = free_port();
        let storage = dir.join("storage");
        let config = dir.join("registry.yml");
        let log = dir.join("registry.log");
        fs::write(&config, config_yaml(&storage, port)).expect("write registry config");

        let log_file = File::create(&log).expect("create registry log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone registry log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", binary.display()));

        let mut registry = Registry {
            child,
            port,
            log,
            http: http_agent(),
        };
        registry.wait_ready();
        registry
    }

    /// Returns `127.0.0.1:PORT`, the registry host in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Returns the registry's log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(log unreadable: {e})"))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let url = format!("http://{}/v2/", self.host());
        loop {
            if let Some(status) = self.child.try_wait().expect("poll registry process") {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            if let Ok(response) = self.http.get(&url).call() {
                if response.status() == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not answer GET {url} within {STARTUP_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fetches the manifest `reference` (a tag or a digest) of `repository`.
    pub fn get_manifest(&self, repository: &str, reference: &str) -> Fetched {
        let url = format!(
            "http://{}/v2/{repository}/manifests/{reference}",
            self.host()
        );
        self.get(&url, Some(MANIFEST_ACCEPT))
    }

    /// Fetches the blob `digest` of `repository`.
    pub fn get_blob(&self, repository: &str, digest: &str) -> Fetched {
        let url = format!("http://{}/v2/{repository}/blobs/{digest}", self.host());
        self.get(&url, None)
    }

    fn get(&self, url: &str, accept: Option<&str>) -> Fetched {
        let mut request = self.http.get(url);
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let mut response = request
            .call()
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}\n{}", self.log()));

        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("Content-Type");
        let docker_content_digest = header("Docker-Content-Digest");
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("reading the body of GET {url} failed: {e}"));

        Fetched {
            status,
            content_type,
            docker_content_digest,
            body,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registry response.
pub struct Fetched {
    pub status: u16,
    pub content_type: Option<String>,
    pub docker_content_digest: Option<String>,
    pub body: Vec<u8>,
}

impl Fetched {
    /// Returns the digest of the body, the content address a client checks.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.body)
    }
}

/// Returns a port that was free on 127.0.0.1 a moment ago.
///
/// NOTE: another process can take the port between this call and the registry's bind. The
/// registry then exits with "address already in use", which `wait_ready` reports.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Registry configuration: file system storage under `storage`, plain HTTP on 127.0.0.1, no
/// authentication, no notifications and no upstream proxy.
fn config_yaml(storage: &Path, port: u16) -> String {
    format!(
        "version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
",
        storage.display()
    )
}

/// HTTP client for the registry on loopback: no proxy from the environment, no redirects, and
/// HTTP error statuses returned as responses so tests can assert on them.
fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .new_agent()
}
