//! Request body reading in the framing that the head selected: a fixed `Content-Length`, or the
//! chunked transfer coding (RFC 9112, sections 6 and 7).

use std::io::BufRead;

use super::head::parse_header_line;
use super::syntax::{ascii_string, is_control, read_failure, read_line, trim_whitespace};
use super::{BodyFraming, ReadError, RequestError, MAX_HEAD_BYTES};

/// Maximum length in bytes of a chunk-size line, chunk extensions and CRLF included.
const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// Reads the body that `framing` describes. A chunked body longer than `max_body_bytes` is
/// rejected with 413, and its trailer fields are checked and then discarded.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    framing: BodyFraming,
    max_body_bytes: usize,
) -> Result<Vec<u8>, ReadError> {
    match framing {
        BodyFraming::Empty => Ok(Vec::new()),
        BodyFraming::Length(length) => {
            let mut body = vec![0; length];
            reader
                .read_exact(&mut body)
                .map_err(|error| read_failure(error, true))?;
            Ok(body)
        }
        BodyFraming::Chunked => read_chunked_body(reader, max_body_bytes),
    }
}

fn read_chunked_body(
    reader: &mut impl BufRead,
    max_body_bytes: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut line = Vec::new();

    loop {
        let mut budget = MAX_CHUNK_LINE_BYTES;
        read_line(reader, &mut line, &mut budget, true, || {
            let description =
                format!("chunk-size line is longer than {MAX_CHUNK_LINE_BYTES} bytes");
            RequestError::bad_request(description)
        })?;
        let size = parse_chunk_size(&line, max_body_bytes)?;
        if size == 0 {
            break;
        }
        if size > max_body_bytes - body.len() {
            return Err(body_too_long(max_body_bytes).into());
        }

        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|error| read_failure(error, true))?;

        let mut end = [0u8; 2];
        reader
            .read_exact(&mut end)
            .map_err(|error| read_failure(error, true))?;
        if end != *b"\r\n" {
            return Err(RequestError::bad_request("chunk data is not followed by CRLF").into());
        }
    }

    // The trailer section ends the body. Its fields are checked like headers, then discarded.
    let mut budget = MAX_HEAD_BYTES;
    loop {
        read_line(reader, &mut line, &mut budget, true, || {
            let description = format!("trailer section is longer than {MAX_HEAD_BYTES} bytes");
            RequestError::new(431, description)
        })?;
        if line.is_empty() {
            return Ok(body);
        }
        parse_header_line(&line)?;
    }
}

/// Parses `chunk-size [chunk-ext]` (RFC 9112, section 7.1). Chunk extensions are ignored.
fn parse_chunk_size(line: &[u8], max_body_bytes: usize) -> Result<usize, RequestError> {
    let invalid = || RequestError::bad_request("chunk size is not a hexadecimal number");

    let digits = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        return Err(invalid());
    }
    let extensions = trim_whitespace(&line[digits..]);
    if !extensions.is_empty() && extensions[0] != b';' {
        return Err(invalid());
    }
    if extensions.iter().any(|&byte| is_control(byte)) {
        return Err(RequestError::bad_request(
            "chunk extension contains a control character",
        ));
    }

    // Only overflow makes an all-hex-digit size fail to parse, so it is too long for any limit.
    usize::from_str_radix(&ascii_string(&line[..digits]), 16)
        .map_err(|_| body_too_long(max_body_bytes))
}

pub(super) fn body_too_long(max_body_bytes: usize) -> RequestError {
    RequestError::new(
        413,
        format!("request body is longer than {max_body_bytes} bytes"),
    )
}
