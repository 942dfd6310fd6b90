//! One client connection: the server reads one request at a time, passes it to the API handlers
//! and writes the response, until the client closes the connection or sends `Connection: close`,
//! or a request is rejected.

use std::borrow::Cow;
use std::io::{self, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::api::{self, ApiRequest, ApiResponse, Service};
use crate::http::{self, ConnectionHeader, ReadError, RequestHead, Version};
use crate::server::{unix_now_secs, MAX_BODY_BYTES};

/// Maximum time that a read from the client may block, both between requests and inside one.
/// An idle connection is closed without a response when it passes, and a request that stops
/// arriving gets a 408 response.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Maximum time that writing a response may block on a client that does not read it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits on reading and discarding what a client still sends after the server has decided to
/// close the connection. Closing a socket that has unread received data makes the kernel send a
/// reset, which can destroy the response before the client reads it.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 1024 * 1024;

const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Next step for a connection after a request.
enum Next {
    /// Reads the next request.
    KeepOpen,
    /// Stops sending and closes once the client has stopped sending, within the linger limits.
    Close,
    /// Closes at once: the client has left, or the connection is idle.
    CloseNow,
}

/// Serves requests on `stream` until it closes. Every error ends only this connection, and is
/// logged with `peer`.
pub(crate) fn serve_connection(stream: TcpStream, peer: SocketAddr, service: &Service) {
    if let Err(error) = configure(&stream) {
        log::warn!("failed to set up connection from {peer}: {error}");
        return;
    }
    // Responses are written to the stream inside the reader, so a connection uses one socket
    // handle.
    let mut connection = BufReader::with_capacity(READ_BUFFER_BYTES, stream);

    loop {
        match serve_request(&mut connection, peer, service) {
            Ok(Next::KeepOpen) => {}
            Ok(Next::Close) => {
                close_gracefully(connection.get_ref());
                return;
            }
            Ok(Next::CloseNow) => return,
            Err(error) => {
                log::debug!("connection from {peer} failed: {error}");
                return;
            }
        }
    }
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    // Each response is written with one call, so Nagle's algorithm would only add delay.
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))
}

fn serve_request(
    connection: &mut BufReader<TcpStream>,
    peer: SocketAddr,
    service: &Service,
) -> io::Result<Next> {
    let head = match http::read_head(connection, MAX_BODY_BYTES) {
        Ok(head) => head,
        Err(error) => return reject(connection.get_mut(), peer, error),
    };
    if head.expects_continue {
        http::write_continue(connection.get_mut())?;
    }
    let body = match http::read_body(connection, head.framing, MAX_BODY_BYTES) {
        Ok(body) => body,
        Err(error) => return reject(connection.get_mut(), peer, error),
    };

    let response = handle(service, &head, &body);
    let connection_header = match (head.keep_alive, head.version) {
        (false, _) => ConnectionHeader::Close,
        (true, Version::Http10) => ConnectionHeader::KeepAlive,
        (true, Version::Http11) => ConnectionHeader::Omitted,
    };
    let head_only = head.method == "HEAD";
    http::write_response(
        connection.get_mut(),
        &response,
        connection_header,
        head_only,
    )?;

    Ok(if head.keep_alive {
        Next::KeepOpen
    } else {
        Next::Close
    })
}

/// Sends the error response for an invalid request, and decides how the connection ends.
fn reject(writer: &mut TcpStream, peer: SocketAddr, error: ReadError) -> io::Result<Next> {
    match error {
        ReadError::Idle => Ok(Next::CloseNow),
        ReadError::Io(error) => Err(error),
        ReadError::Invalid(error) => {
            log::warn!(
                "rejected request from {peer}: status={} {}",
                error.status,
                error.description
            );
            let response = api::rejected_request(error.status, &error.description);
            http::write_response(writer, &response, ConnectionHeader::Close, false)?;
            Ok(Next::Close)
        }
    }
}

fn handle(service: &Service, head: &RequestHead, body: &[u8]) -> ApiResponse {
    // A value that is not UTF-8 keeps its length with replacement characters, so the handler
    // rejects it as an invalid token.
    let authorization: Vec<Cow<str>> = head
        .header_values("Authorization")
        .map(String::from_utf8_lossy)
        .collect();
    let authorization: Vec<&str> = authorization.iter().map(AsRef::as_ref).collect();
    let request = ApiRequest {
        method: &head.method,
        target: &head.target,
        authorization: &authorization,
        body,
    };
    // Log lines carry the path only, because a client may put a token in the query string.
    let method = &head.method;
    let path = head.target.split('?').next().unwrap_or_default();

    // Catching a panic keeps the connection open for the next request, which is safe because
    // the whole request was read before the handler ran. The service state is safe to reuse
    // because its only lock recovers from poisoning and no handler leaves shared state
    // half-updated.
    let handled = panic::catch_unwind(AssertUnwindSafe(|| {
        service.handle(&request, unix_now_secs())
    }));
    let response = handled.unwrap_or_else(|_| {
        log::error!("request handler panicked: method={method} path={path}");
        api::internal_error()
    });

    log::debug!("{method} {path} -> {}", response.status);
    response
}

/// Closes the connection after the last response. The server shuts down its sending side, so
/// the client reads end of file after the response, then discards what the client still sends
/// within the linger limits.
fn close_gracefully(stream: &TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }

    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut discarded = 0;
    let mut buffer = [0u8; 8 * 1024];
    let mut reader = stream;
    while discarded < LINGER_MAX_BYTES {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || reader.set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        match reader.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => discarded += read,
        }
    }
}
