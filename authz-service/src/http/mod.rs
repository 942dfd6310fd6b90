//! A small, strict HTTP/1.1 codec for the server: it reads one request from a [`BufRead`] and
//! writes one response to a [`Write`], and does no other I/O.
//!
//! The request parser follows RFC 9112. It accepts `Content-Length` and `chunked` bodies up to a
//! caller-given limit, and rejects every message whose framing is ambiguous. The server closes
//! the connection after every rejected request, because it cannot tell where the next request
//! starts.
//!
//! [`BufRead`]: std::io::BufRead
//! [`Write`]: std::io::Write

mod body;
mod head;
mod response;
mod syntax;

pub(crate) use body::read_body;
pub(crate) use head::{read_head, RequestHead};
pub(crate) use response::{write_continue, write_response, ConnectionHeader};

/// Maximum length in bytes of the request line and the header section together, CRLFs
/// included. It is above the 60 KiB default of Envoy's `max_request_headers_kb`, so a token in a
/// request that Envoy accepted with default limits also fits in the callout. Longer request
/// lines get a 414 response and longer header sections a 431 response.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Maximum number of header fields in a request, the same as the default of Envoy's
/// `max_headers_count`. More get a 431 response.
pub(crate) const MAX_HEADERS: usize = 100;

/// HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http10,
    Http11,
}

/// Body framing of a request, from its `Content-Length` or `Transfer-Encoding` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// Neither header is present, so the request has no body.
    Empty,
    /// `Content-Length` with this number of bytes, at most the caller's limit.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request that the server rejects before it reaches the API handlers, with the status and
/// a description to send in the response. The server closes the connection after that response,
/// because the request's framing, and so the start of the next request, is unknown.
///
/// The description never contains a header value or the request target, because both can carry
/// a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestError {
    pub status: u16,
    pub description: String,
}

impl RequestError {
    fn new(status: u16, description: impl Into<String>) -> Self {
        RequestError {
            status,
            description: description.into(),
        }
    }

    fn bad_request(description: impl Into<String>) -> Self {
        RequestError::new(400, description)
    }
}

/// Failure to read a request from a connection.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection reached end of file, or stayed idle until the read timeout, before the
    /// first byte of a request. The server closes it without a response.
    Idle,
    /// The request is invalid, or timed out after its first byte. The server sends the error
    /// response and closes the connection.
    Invalid(RequestError),
    /// The connection failed or reached end of file in the middle of a request, so no response
    /// can be delivered.
    Io(std::io::Error),
}

impl From<RequestError> for ReadError {
    fn from(error: RequestError) -> Self {
        ReadError::Invalid(error)
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod request_tests;
