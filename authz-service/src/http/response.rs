//! Response serialization. Every response carries `Content-Length`, so a client can always find
//! its end without the server closing the connection.

use std::io::{self, Write};
use std::time::SystemTime;

use crate::api::ApiResponse;

/// The `Connection` header of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionHeader {
    /// No header: the HTTP/1.1 default, under which the connection stays open.
    Omitted,
    /// `Connection: keep-alive`, for an HTTP/1.0 client whose connection stays open.
    KeepAlive,
    /// `Connection: close`, sent when the server closes the connection after the response.
    Close,
}

/// Writes `response` as one HTTP/1.1 message with `Date`, `Content-Type` and `Content-Length`
/// headers, and flushes `writer`.
///
/// With `head_only`, as for a `HEAD` request, the body is left out, but `Content-Length` still
/// gives the length of the body that a `GET` would return (RFC 9110, section 9.3.2).
pub(crate) fn write_response(
    writer: &mut impl Write,
    response: &ApiResponse,
    connection: ConnectionHeader,
    head_only: bool,
) -> io::Result<()> {
    let status = response.status;
    let mut message = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    push_header(
        &mut message,
        "Date",
        &httpdate::fmt_http_date(SystemTime::now()),
    );
    push_header(&mut message, "Content-Type", response.content_type);
    push_header(
        &mut message,
        "Content-Length",
        &response.body.len().to_string(),
    );
    for (name, value) in &response.headers {
        push_header(&mut message, name, value);
    }
    match connection {
        ConnectionHeader::Omitted => {}
        ConnectionHeader::KeepAlive => push_header(&mut message, "Connection", "keep-alive"),
        ConnectionHeader::Close => push_header(&mut message, "Connection", "close"),
    }
    message.push_str("\r\n");

    let mut bytes = message.into_bytes();
    if !head_only {
        bytes.extend_from_slice(response.body.as_bytes());
    }
    writer.write_all(&bytes)?;
    writer.flush()
}

/// Writes the interim `100 Continue` response, and flushes `writer`.
pub(crate) fn write_continue(writer: &mut impl Write) -> io::Result<()> {
    writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    writer.flush()
}

fn push_header(message: &mut String, name: &str, value: &str) {
    // Values come from the handlers and this module, never from a request. A line break in one
    // would split the response.
    debug_assert!(
        !value.contains(['\r', '\n']),
        "header {name} value contains a line break"
    );
    message.push_str(name);
    message.push_str(": ");
    message.push_str(value);
    message.push_str("\r\n");
}

/// Returns the reason phrase of RFC 9110, section 15, for the statuses that this server sends,
/// and an empty phrase, which RFC 9112 allows, for any other.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> ApiResponse {
        ApiResponse {
            status: 401,
            content_type: "application/json",
            headers: vec![("WWW-Authenticate", "Bearer".to_string())],
            body: "{}".to_string(),
        }
    }

    fn written(response: &ApiResponse, connection: ConnectionHeader, head_only: bool) -> String {
        let mut bytes = Vec::new();
        write_response(&mut bytes, response, connection, head_only).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    /// Returns the message without its `Date` header, whose value changes every second.
    fn without_date(message: &str) -> String {
        message
            .split_inclusive("\r\n")
            .filter(|line| !line.starts_with("Date: "))
            .collect()
    }

    #[test]
    fn response_has_length_and_headers() {
        let message = written(&response(), ConnectionHeader::Omitted, false);

        assert_eq!(
            without_date(&message),
            "HTTP/1.1 401 Unauthorized\r\n\
             Content-Type: application/json\r\n\
             Content-Length: 2\r\n\
             WWW-Authenticate: Bearer\r\n\
             \r\n\
             {}"
        );
        assert!(message.contains("\r\nDate: "), "{message}");
        assert!(message.contains(" GMT\r\n"), "{message}");
    }

    #[test]
    fn response_connection_header_variants() {
        let close = written(&response(), ConnectionHeader::Close, false);
        let keep_alive = written(&response(), ConnectionHeader::KeepAlive, false);

        assert!(close.contains("\r\nConnection: close\r\n\r\n"), "{close}");
        assert!(
            keep_alive.contains("\r\nConnection: keep-alive\r\n\r\n"),
            "{keep_alive}"
        );
    }

    #[test]
    fn response_head_only_omits_body() {
        let message = written(&response(), ConnectionHeader::Omitted, true);

        assert!(message.ends_with("\r\n\r\n"), "{message}");
        assert!(message.contains("\r\nContent-Length: 2\r\n"), "{message}");
    }

    #[test]
    fn response_unknown_status_has_empty_reason() {
        let mut teapot = response();
        teapot.status = 418;

        let message = written(&teapot, ConnectionHeader::Omitted, false);

        assert!(message.starts_with("HTTP/1.1 418 \r\n"), "{message}");
    }

    #[test]
    fn continue_response_is_complete() {
        let mut bytes = Vec::new();

        write_continue(&mut bytes).unwrap();

        assert_eq!(bytes, b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}
