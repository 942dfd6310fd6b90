//! The HTTP/1.1 server: an accept thread that starts one thread per connection, up to a maximum
//! number of open connections.
//!
//! A thread per connection means that a connection waits for nothing but its own requests: no
//! request queue or thread pool is shared between connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::api::{self, Service};
use crate::connection::serve_connection;
use crate::http::{self, ConnectionHeader};
use crate::key::Key;

/// Maximum request body length in bytes. Longer bodies get a 413 response.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// First and maximum delay before the accept thread retries after a failed `accept` call. The
/// delay doubles after each failure in a row.
const ACCEPT_RETRY_MIN: Duration = Duration::from_millis(5);
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

/// Minimum time between two log lines about connections rejected at the limit.
const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Maximum time that dropping the server waits to connect to its own listener.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// A running authorization service.
///
/// Dropping the server closes the listening socket and every open connection, and returns after
/// all of its threads have exited. A request that is being handled at that moment runs to the
/// end, but its response may not reach the client.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    /// Disconnects when the accept thread exits. Nothing is ever sent on it.
    accept_exit: mpsc::Receiver<Infallible>,
}

/// State shared by the accept thread and the connection threads.
struct Shared {
    service: Service,
    max_connections: usize,
    stopping: AtomicBool,
    connections: Mutex<Connections>,
}

/// Open connections by id, so that dropping the server can close them and wait for their
/// threads.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: HashMap<u64, OpenConnection>,
}

struct OpenConnection {
    /// A second handle to the connection's socket, used to shut it down when the server stops.
    stream: TcpStream,
    /// The connection's thread, `None` until the accept thread stores it after spawning.
    thread: Option<JoinHandle<()>>,
}

/// Binds `listen` and serves the HTTP API with `key`, with one thread per open connection.
///
/// Port 0 binds a free port, and [`Server::local_addr`] returns the bound address.
/// `max_connections` is the maximum number of connections open at once, and 0 counts as 1. A
/// connection beyond it gets a 503 response and is closed. Connections use HTTP/1.1 keep-alive,
/// and the server closes one after 60 s without a request.
///
/// # Errors
///
/// Returns the error from binding the socket or from spawning the accept thread.
pub fn serve(listen: impl ToSocketAddrs, key: Key, max_connections: usize) -> io::Result<Server> {
    let listener = TcpListener::bind(listen)?;
    let local_addr = listener.local_addr()?;

    let shared = Arc::new(Shared {
        service: Service::new(key),
        max_connections: max_connections.max(1),
        stopping: AtomicBool::new(false),
        connections: Mutex::default(),
    });
    let (exit_sender, accept_exit) = mpsc::channel::<Infallible>();

    let accept_shared = Arc::clone(&shared);
    let accept_thread = thread::Builder::new()
        .name("authz-accept".to_string())
        .spawn(move || {
            // Dropped when this thread exits, by a panic too, which disconnects `accept_exit`.
            let _exit_sender = exit_sender;
            accept_loop(&listener, local_addr, &accept_shared);
        })?;

    Ok(Server {
        local_addr,
        shared,
        accept_thread: Some(accept_thread),
        accept_exit,
    })
}

impl Server {
    /// Returns the address the server listens on, with the bound port when port 0 was given.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Blocks until the server can no longer accept connections, and returns the cause.
    ///
    /// The accept thread retries a failed `accept` call (for example, when the process has run
    /// out of file descriptors) after a delay of up to 1 s, so this returns only if that thread
    /// panics. The panic message goes to standard error.
    pub fn wait(&self) -> io::Error {
        match self.accept_exit.recv() {
            Ok(never) => match never {},
            Err(mpsc::RecvError) => io::Error::other("the accept thread exited unexpectedly"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);

        if let Some(accept_thread) = self.accept_thread.take() {
            match wake_accept_thread(self.local_addr) {
                Ok(()) => {
                    if accept_thread.join().is_err() {
                        log::error!("accept thread panicked");
                    }
                }
                // NOTE: the listening socket then stays open until the next connection attempt
                // wakes the accept thread, which closes it.
                Err(error) => log::warn!(
                    "failed to wake the accept thread on {}: {error}",
                    self.local_addr
                ),
            }
        }

        let open = std::mem::take(&mut self.shared.lock_connections().open);
        for connection in open.values() {
            // A connection that its client has already closed returns an error here.
            let _ = connection.stream.shutdown(Shutdown::Both);
        }
        for (id, connection) in open {
            let panicked = connection
                .thread
                .is_some_and(|thread| thread.join().is_err());
            if panicked {
                log::error!("thread of connection {id} panicked");
            }
        }
    }
}

impl Shared {
    fn lock_connections(&self) -> MutexGuard<'_, Connections> {
        // Holders of the lock only insert, update and remove single map entries, so a lock that a
        // panic poisoned still guards a consistent map.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts connections until the server stops.
fn accept_loop(listener: &TcpListener, local_addr: SocketAddr, shared: &Arc<Shared>) {
    let mut retry_delay = ACCEPT_RETRY_MIN;
    let mut rejections = RejectionLog::default();

    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }

        match accepted {
            Ok((stream, peer)) => {
                retry_delay = ACCEPT_RETRY_MIN;
                start_connection(shared, stream, peer, &mut rejections);
            }
            // These errors concern one connection attempt, not the listener.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(error) => {
                log::error!(
                    "failed to accept a connection on {local_addr}: {error}, \
                     retrying in {retry_delay:?}"
                );
                thread::sleep(retry_delay);
                retry_delay = (retry_delay * 2).min(ACCEPT_RETRY_MAX);
            }
        }
    }
}

/// Registers `stream` and starts its thread, or rejects it when the maximum number of
/// connections is open.
fn start_connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    rejections: &mut RejectionLog,
) {
    let id = {
        let mut connections = shared.lock_connections();
        // Checked under the lock, because `Drop` sets the flag before it takes the map.
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        if connections.open.len() >= shared.max_connections {
            drop(connections);
            rejections.record(peer, shared.max_connections);
            reject_connection(stream);
            return;
        }
        let handle = match stream.try_clone() {
            Ok(handle) => handle,
            Err(error) => {
                log::warn!("failed to set up connection from {peer}: {error}");
                return;
            }
        };

        let id = connections.next_id;
        connections.next_id += 1;
        let connection = OpenConnection {
            stream: handle,
            thread: None,
        };
        connections.open.insert(id, connection);
        id
    };

    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("authz-conn-{id}"))
        .spawn(move || {
            let _registration = Registration {
                shared: &thread_shared,
                id,
            };
            serve_connection(stream, peer, &thread_shared.service);
        });

    match spawned {
        Ok(thread) => {
            // The entry is already gone if the connection has ended, and the handle is dropped.
            if let Some(connection) = shared.lock_connections().open.get_mut(&id) {
                connection.thread = Some(thread);
            }
        }
        Err(error) => {
            log::error!("failed to start a thread for the connection from {peer}: {error}");
            if let Some(connection) = shared.lock_connections().open.remove(&id) {
                reject_connection(connection.stream);
            }
        }
    }
}

/// Removes a connection from the open connections when its thread ends, by a panic too.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.lock_connections().open.remove(&self.id);
    }
}

/// Sends a 503 response on a connection that the server will not serve, and closes it.
///
/// The request is never read, so a client that has already sent one may see a reset in place of
/// the response.
fn reject_connection(mut stream: TcpStream) {
    let mut response = api::unavailable("server has reached its maximum number of connections");
    response.headers.push(("Retry-After", "1".to_string()));

    // A non-blocking write keeps a slow client from stalling the accept thread. The response is
    // small enough for the empty send buffer of a new connection, and a failure only means that
    // the client gets no response, after the rejection has been logged.
    let _ = stream.set_nonblocking(true);
    let _ = http::write_response(&mut stream, &response, ConnectionHeader::Close, false);
}

/// Counts connections rejected at the limit, and logs them at most once per
/// [`REJECTION_LOG_INTERVAL`].
#[derive(Default)]
struct RejectionLog {
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl RejectionLog {
    fn record(&mut self, peer: SocketAddr, max_connections: usize) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < REJECTION_LOG_INTERVAL)
        {
            return;
        }

        log::warn!(
            "rejected {} connection(s) with 503, the last from {peer}, because \
             {max_connections} connections are open, the maximum",
            self.unlogged
        );
        self.unlogged = 0;
        self.last_logged = Some(now);
    }
}

/// Connects to the server's own listening address, so that the blocked `accept` call returns
/// and the accept thread checks the stopping flag.
fn wake_accept_thread(local_addr: SocketAddr) -> io::Result<()> {
    let mut addr = local_addr;
    // A wildcard address is no destination, but loopback of the same family reaches the listener.
    if addr.ip().is_unspecified() {
        let loopback = match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
    }
    TcpStream::connect_timeout(&addr, WAKE_TIMEOUT).map(drop)
}

/// Returns the current time in seconds since the Unix epoch, or 0 if the clock is before it.
pub fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
