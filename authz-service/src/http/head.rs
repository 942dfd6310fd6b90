//! Request head parsing: the request line and header section (RFC 9112, sections 2 to 5), and
//! the body framing, connection options and expectations that the headers select.

use std::io::BufRead;

use super::body::body_too_long;
use super::syntax::{ascii_lowercase, ascii_string, is_control, is_token, list_elements};
use super::syntax::{read_line, trim_whitespace};
use super::{BodyFraming, ReadError, RequestError, Version, MAX_HEADERS, MAX_HEAD_BYTES};

/// The request line and header section of a request, checked and interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub method: String,
    /// Request target in origin form (a path and an optional query), also when the request sent
    /// the absolute form.
    pub target: String,
    pub version: Version,
    /// Header fields in the order received: names as sent, values without leading and trailing
    /// whitespace.
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: BodyFraming,
    /// Whether the connection stays open after the response. HTTP/1.1 connections stay open
    /// unless the request sends `Connection: close`, HTTP/1.0 connections only with
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// Whether the client waits for a `100 Continue` response before it sends the body.
    pub expects_continue: bool,
}

impl RequestHead {
    /// Returns the values of every header field named `name`, compared in any letter case.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// Reads and checks the request line and header section of the next request on a connection.
///
/// Empty lines before the request line are skipped (RFC 9112, section 2.2). Every line must end
/// in CRLF. A `Content-Length` above `max_body_bytes` is rejected with 413 before the body is
/// read.
pub(crate) fn read_head(
    reader: &mut impl BufRead,
    max_body_bytes: usize,
) -> Result<RequestHead, ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    let mut line = Vec::new();

    loop {
        let started = budget < MAX_HEAD_BYTES;
        read_line(reader, &mut line, &mut budget, started, || {
            RequestError::new(
                414,
                format!("request line is longer than {MAX_HEAD_BYTES} bytes"),
            )
        })?;
        if !line.is_empty() {
            break;
        }
    }
    let (method, target, version) = parse_request_line(&line)?;

    let mut headers = Vec::new();
    loop {
        read_line(reader, &mut line, &mut budget, true, || {
            RequestError::new(
                431,
                format!("request line and headers are longer than {MAX_HEAD_BYTES} bytes"),
            )
        })?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            let description = format!("request has more than {MAX_HEADERS} header fields");
            return Err(RequestError::new(431, description).into());
        }
        headers.push(parse_header_line(&line)?);
    }

    let mut head = RequestHead {
        method,
        target,
        version,
        headers,
        framing: BodyFraming::Empty,
        keep_alive: false,
        expects_continue: false,
    };
    check_host(&head)?;
    head.framing = body_framing(&head, max_body_bytes)?;
    head.keep_alive = keep_alive(&head);
    head.expects_continue = expects_continue(&head)?;
    Ok(head)
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), RequestError> {
    let mut parts = line.split(|&byte| byte == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::bad_request(
            "request line must be METHOD SP TARGET SP HTTP-VERSION, separated by single spaces",
        ));
    };

    if !is_token(method) {
        return Err(RequestError::bad_request(
            "request method is not a valid token",
        ));
    }
    let version = parse_version(version)?;
    let target = parse_target(target)?;

    Ok((ascii_string(method), target, version))
}

fn parse_version(version: &[u8]) -> Result<Version, RequestError> {
    match version {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            let description = format!(
                "HTTP version {}.{} is not supported, use HTTP/1.1",
                char::from(*major),
                char::from(*minor)
            );
            Err(RequestError::new(505, description))
        }
        _ => Err(RequestError::bad_request(
            "request line does not end in a valid HTTP version such as HTTP/1.1",
        )),
    }
}

/// Returns the origin form of `target`. The absolute form (`http://host/path`) is accepted as
/// RFC 9112, section 3.2.2 requires, and its scheme and authority are dropped.
fn parse_target(target: &[u8]) -> Result<String, RequestError> {
    if !target.iter().all(|byte| (0x21..=0x7e).contains(byte)) {
        return Err(RequestError::bad_request(
            "request target contains a byte that is not visible ASCII",
        ));
    }
    let target = ascii_string(target);
    if target.starts_with('/') {
        return Ok(target);
    }

    for scheme in ["http://", "https://"] {
        let has_scheme = target
            .get(..scheme.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme));
        if !has_scheme {
            continue;
        }
        let rest = &target[scheme.len()..];
        let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
        if path_start == 0 {
            return Err(RequestError::bad_request(
                "absolute request target has no host",
            ));
        }
        let path = &rest[path_start..];
        return Ok(if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        });
    }

    Err(RequestError::bad_request(
        "request target must be a path such as /authorize",
    ))
}

pub(super) fn parse_header_line(line: &[u8]) -> Result<(String, Vec<u8>), RequestError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        return Err(RequestError::bad_request(
            "header line starts with whitespace, and obsolete line folding is not supported",
        ));
    }
    let Some(colon) = line.iter().position(|&byte| byte == b':') else {
        return Err(RequestError::bad_request("header line has no colon"));
    };

    // A name followed by whitespace before the colon is rejected too (RFC 9112, section 5.1).
    let name = &line[..colon];
    if !is_token(name) {
        return Err(RequestError::bad_request(
            "header field name is not a valid token",
        ));
    }
    let name = ascii_string(name);

    let value = trim_whitespace(&line[colon + 1..]);
    if value.iter().any(|&byte| is_control(byte)) {
        let description = format!("header {name} contains a control character");
        return Err(RequestError::bad_request(description));
    }

    Ok((name, value.to_vec()))
}

/// Checks that an HTTP/1.1 request has exactly one `Host` header (RFC 9112, section 3.2).
fn check_host(head: &RequestHead) -> Result<(), RequestError> {
    if head.version == Version::Http10 {
        return Ok(());
    }
    match head.header_values("Host").count() {
        1 => Ok(()),
        0 => Err(RequestError::bad_request(
            "HTTP/1.1 request has no Host header",
        )),
        _ => Err(RequestError::bad_request(
            "request has more than one Host header",
        )),
    }
}

/// Determines the body framing from `Transfer-Encoding` and `Content-Length` (RFC 9112,
/// section 6.3), and rejects every combination whose length is ambiguous.
fn body_framing(head: &RequestHead, max_body_bytes: usize) -> Result<BodyFraming, RequestError> {
    let has_transfer_encoding = head.header_values("Transfer-Encoding").next().is_some();
    let has_content_length = head.header_values("Content-Length").next().is_some();

    if has_transfer_encoding {
        if head.version == Version::Http10 {
            return Err(RequestError::bad_request(
                "HTTP/1.0 request must not have a Transfer-Encoding header",
            ));
        }
        if has_content_length {
            return Err(RequestError::bad_request(
                "request has both Transfer-Encoding and Content-Length headers",
            ));
        }
        check_transfer_coding(head)?;
        return Ok(BodyFraming::Chunked);
    }

    if has_content_length {
        let length = content_length(head)?;
        if length > max_body_bytes {
            return Err(body_too_long(max_body_bytes));
        }
        return Ok(BodyFraming::Length(length));
    }

    Ok(BodyFraming::Empty)
}

/// Accepts `Transfer-Encoding: chunked` only. The server decodes no other transfer coding.
fn check_transfer_coding(head: &RequestHead) -> Result<(), RequestError> {
    let codings: Vec<String> = list_elements(head.header_values("Transfer-Encoding"))
        .map(|element| {
            let name = element
                .split(|&byte| byte == b';')
                .next()
                .unwrap_or(element);
            ascii_lowercase(trim_whitespace(name))
        })
        .collect();

    match codings.split_last() {
        Some((last, others)) if last == "chunked" => {
            if others.iter().any(|coding| coding == "chunked") {
                return Err(RequestError::bad_request(
                    "Transfer-Encoding applies chunked more than once",
                ));
            }
            if !others.is_empty() {
                return Err(RequestError::new(
                    501,
                    "Transfer-Encoding supports chunked only, without other codings",
                ));
            }
            Ok(())
        }
        _ => Err(RequestError::bad_request(
            "Transfer-Encoding must end in chunked, or the body length is unknown",
        )),
    }
}

/// Returns the `Content-Length` value. Repeated values must all be equal (RFC 9110,
/// section 8.6). A value too large for `u64` counts as too long for any limit.
fn content_length(head: &RequestHead) -> Result<usize, RequestError> {
    let invalid = || RequestError::bad_request("Content-Length is not a non-negative integer");

    let mut length = None;
    for element in list_elements(head.header_values("Content-Length")) {
        if !element.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        let value = ascii_string(element)
            .parse::<u64>()
            .map_or(usize::MAX, |value| {
                usize::try_from(value).unwrap_or(usize::MAX)
            });
        if length.is_some_and(|length| length != value) {
            return Err(RequestError::bad_request(
                "request has Content-Length values that differ",
            ));
        }
        length = Some(value);
    }

    length.ok_or_else(invalid)
}

fn keep_alive(head: &RequestHead) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for option in list_elements(head.header_values("Connection")) {
        close |= option.eq_ignore_ascii_case(b"close");
        keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
    }

    match head.version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive && !close,
    }
}

/// Returns whether the client waits for `100 Continue`. HTTP/1.0 clients and requests without
/// a body get no interim response (RFC 9110, section 10.1.1).
fn expects_continue(head: &RequestHead) -> Result<bool, RequestError> {
    let mut expects_continue = false;
    for expectation in list_elements(head.header_values("Expect")) {
        if !expectation.eq_ignore_ascii_case(b"100-continue") {
            return Err(RequestError::new(
                417,
                "Expect header supports only 100-continue",
            ));
        }
        expects_continue = true;
    }

    let has_body = !matches!(head.framing, BodyFraming::Empty | BodyFraming::Length(0));
    Ok(expects_continue && has_body && head.version == Version::Http11)
}
