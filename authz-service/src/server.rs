//! The HTTP/1.1 server: a `tiny_http` listener and a fixed pool of worker threads.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{SystemTime, UNIX_EPOCH};

use tiny_http::{Header, Request, Response};

use crate::api::{self, ApiRequest, ApiResponse, Service};
use crate::key::Key;

/// Maximum request body length in bytes. Longer bodies get a 413 response.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A running authorization service.
///
/// Dropping the server stops its worker threads and closes the listening socket. Connections
/// that are already open stay open until their clients close them, but requests sent on them
/// get no response.
pub struct Server {
    http: Arc<tiny_http::Server>,
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    failures: mpsc::Receiver<io::Error>,
}

/// Binds `listen` and starts `workers` threads that serve the HTTP API with `key`.
///
/// Port 0 binds a free port, and [`Server::local_addr`] returns the bound address. A `workers` value
/// of 0 starts one thread. Each open connection also gets a reader thread from `tiny_http`,
/// and HTTP/1.1 keep-alive is supported.
///
/// # Errors
///
/// Returns the error from binding the socket or from spawning a thread.
pub fn serve(listen: impl ToSocketAddrs, key: Key, workers: usize) -> io::Result<Server> {
    let listener = TcpListener::bind(listen)?;
    let local_addr = listener.local_addr()?;
    let http = tiny_http::Server::from_listener(listener, None)
        .map(Arc::new)
        .map_err(io::Error::other)?;

    let service = Arc::new(Service::new(key));
    let stopping = Arc::new(AtomicBool::new(false));
    let (failure_sender, failures) = mpsc::channel();

    let mut server = Server {
        http,
        local_addr,
        stopping,
        workers: Vec::new(),
        failures,
    };
    for index in 0..workers.max(1) {
        let http = Arc::clone(&server.http);
        let service = Arc::clone(&service);
        let stopping = Arc::clone(&server.stopping);
        let failure_sender = failure_sender.clone();
        let worker = thread::Builder::new()
            .name(format!("authz-worker-{index}"))
            .spawn(move || {
                if let Err(error) = run_worker(&http, &service, &stopping) {
                    log::error!("worker {index} stopped: {error}");
                    // The receiver is gone only while the server is being dropped.
                    let _ = failure_sender.send(error);
                }
            })?;
        server.workers.push(worker);
    }

    Ok(server)
}

impl Server {
    /// Returns the address the server listens on, with the bound port when port 0 was given.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Blocks until the server can no longer accept connections, and returns the cause.
    ///
    /// `tiny_http` 0.12 stops accepting after the first error from `accept` (for example, when the
    /// process runs out of file descriptors). This is the only way the workers stop on their
    /// own, so a process that runs the server can exit and be restarted.
    pub fn wait(&self) -> io::Error {
        match self.failures.recv() {
            Ok(error) => error,
            Err(mpsc::RecvError) => io::Error::other("all worker threads exited"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);

        // Each `unblock` call makes exactly one `recv` call return an error, whether a worker is
        // blocked in `recv` now or calls it after finishing its current request.
        for _ in &self.workers {
            self.http.unblock();
        }
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                log::error!("worker thread panicked while stopping");
            }
        }
    }
}

/// Serves requests until the server stops. Returns an error only when `tiny_http` reports that
/// it can no longer accept connections.
fn run_worker(
    http: &tiny_http::Server,
    service: &Service,
    stopping: &AtomicBool,
) -> io::Result<()> {
    loop {
        let request = match http.recv() {
            Ok(request) => request,
            Err(_) if stopping.load(Ordering::SeqCst) => return Ok(()),
            Err(error) => return Err(error),
        };

        // `tiny_http` sends a 500 response for a request dropped without a response, as happens
        // on a panic. Catching the panic keeps this worker in the pool. The service state is safe
        // to reuse because its only lock recovers from poisoning and no handler leaves shared
        // state half-updated.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| handle_request(service, request)));
        if outcome.is_err() {
            log::error!("request handler panicked, the client received a 500 response");
        }
    }
}

fn handle_request(service: &Service, mut request: Request) {
    let method = request.method().as_str().to_string();
    let target = request.url().to_string();
    // Log lines carry the path only, because a client may put a token in the query string.
    let path = target.split('?').next().unwrap_or_default();

    let response = match read_body(&mut request) {
        Ok(Some(body)) => {
            let authorization: Vec<&str> = request
                .headers()
                .iter()
                .filter(|header| header.field.equiv("Authorization"))
                .map(|header| header.value.as_str())
                .collect();
            let api_request = ApiRequest {
                method: &method,
                target: &target,
                authorization: &authorization,
                body: &body,
            };
            service.handle(&api_request, unix_now_secs())
        }
        Ok(None) => api::payload_too_large(MAX_BODY_BYTES),
        Err(error) => {
            log::warn!("failed to read request body: method={method} path={path}: {error}");
            api::unreadable_body(&error)
        }
    };

    log::debug!("{method} {path} -> {}", response.status);
    if let Err(error) = request.respond(into_tiny_http(response)) {
        log::warn!("failed to send response: method={method} path={path}: {error}");
    }
}

/// Reads the whole request body, or returns `None` when it is longer than [`MAX_BODY_BYTES`].
fn read_body(request: &mut Request) -> io::Result<Option<Vec<u8>>> {
    if request
        .body_length()
        .is_some_and(|len| len > MAX_BODY_BYTES)
    {
        return Ok(None);
    }

    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)?;
    if body.len() > MAX_BODY_BYTES {
        return Ok(None);
    }

    Ok(Some(body))
}

fn into_tiny_http(response: ApiResponse) -> Response<io::Cursor<Vec<u8>>> {
    // `from_string` sets `Content-Length`, so clients can reuse the connection.
    let mut tiny_response = Response::from_string(response.body)
        .with_status_code(response.status)
        .with_header(header("Content-Type", response.content_type));
    for (name, value) in &response.headers {
        tiny_response.add_header(header(name, value));
    }
    tiny_response
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("response header names and values are ASCII without line breaks")
}

/// Returns the current time in seconds since the Unix epoch, or 0 if the clock is before it.
pub fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
