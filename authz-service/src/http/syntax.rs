//! Line reading and the byte-level rules of RFC 9110 and RFC 9112 that the head and body
//! parsers share: tokens, lists, whitespace and control characters.

use std::io::{self, BufRead, Read};

use super::{ReadError, RequestError};

/// Reads one line into `line` without its CRLF, and subtracts the bytes read from `budget`.
///
/// `started` is true when earlier bytes of the request were read. It decides between
/// [`ReadError::Idle`] and an error when the connection ends or times out. `too_long` builds the
/// error for a line that does not fit in `budget`.
pub(super) fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    budget: &mut usize,
    started: bool,
    too_long: impl FnOnce() -> RequestError,
) -> Result<(), ReadError> {
    line.clear();
    let limit = u64::try_from(*budget).unwrap_or(u64::MAX);
    let read = match reader.by_ref().take(limit).read_until(b'\n', line) {
        Ok(read) => read,
        Err(error) => return Err(read_failure(error, started || !line.is_empty())),
    };
    *budget -= read;

    if line.last() != Some(&b'\n') {
        if *budget == 0 {
            return Err(too_long().into());
        }
        if !started && line.is_empty() {
            return Err(ReadError::Idle);
        }
        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }

    line.pop();
    if line.pop() != Some(b'\r') {
        return Err(RequestError::bad_request("line ends in LF without CR").into());
    }
    Ok(())
}

/// Maps a socket error to a [`ReadError`]. A read timeout before the first byte of a request is
/// an idle connection, and after it a 408 response.
pub(super) fn read_failure(error: io::Error, started: bool) -> ReadError {
    let timed_out = matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    );
    match (timed_out, started) {
        (true, false) => ReadError::Idle,
        (true, true) => ReadError::Invalid(RequestError::new(
            408,
            "request timed out before it was complete",
        )),
        (false, _) => ReadError::Io(error),
    }
}

/// Splits comma-separated header values into their non-empty elements, without surrounding
/// whitespace (RFC 9110, section 5.6.1).
pub(super) fn list_elements<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|value| value.split(|&byte| byte == b','))
        .map(trim_whitespace)
        .filter(|element| !element.is_empty())
}

/// Returns `bytes` without leading and trailing spaces and tabs.
pub(super) fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_whitespace = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes
        .iter()
        .position(|byte| !is_whitespace(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|byte| !is_whitespace(byte))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// Returns whether `bytes` is a non-empty token (RFC 9110, section 5.6.2).
pub(super) fn is_token(bytes: &[u8]) -> bool {
    let is_tchar = |byte: &u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(byte);
    !bytes.is_empty() && bytes.iter().all(is_tchar)
}

/// Returns whether `byte` is a control character other than horizontal tab, which no field
/// value may contain (RFC 9110, section 5.5).
pub(super) fn is_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// Converts bytes that the caller has checked to be ASCII. Other bytes become the Latin-1
/// character of the same value.
pub(super) fn ascii_string(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

pub(super) fn ascii_lowercase(bytes: &[u8]) -> String {
    ascii_string(bytes).to_ascii_lowercase()
}
