//! A small HTTP/1.1 client over `TcpStream`, so tests can send exactly the bytes they mean:
//! repeated headers, tabs, non-ASCII values.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response read to the end of the connection.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Returns the first value of header `name`, compared in any case, as lossy UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("response body is not JSON ({e}): {}", self.body_text()))
    }
}

/// A request to send on a new connection.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Self {
        Self {
            method: "GET",
            path,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn post(path: &'a str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST",
            path,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn method(mut self, method: &'a str) -> Self {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &'a str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Sends the request to 127.0.0.1:`port` and reads the whole response.
    pub fn send(&self, port: u16) -> Result<Response, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("connect to 127.0.0.1:{port} failed: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;

        let mut raw = format!(
            "{} {} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.method,
            self.path,
            self.body.len()
        )
        .into_bytes();
        for (name, value) in &self.headers {
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(value);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&self.body);
        stream
            .write_all(&raw)
            .map_err(|e| format!("write to 127.0.0.1:{port} failed: {e}"))?;

        let mut bytes = Vec::new();
        stream
            .read_to_end(&mut bytes)
            .map_err(|e| format!("read from 127.0.0.1:{port} failed: {e}"))?;
        parse_response(&bytes)
    }
}

fn parse_response(bytes: &[u8]) -> Result<Response, String> {
    let text_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "incomplete HTTP response: {:?}",
                String::from_utf8_lossy(bytes)
            )
        })?;
    let head = &bytes[..text_end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));

    let status_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("malformed status line: {status_line:?}"))?;

    let mut headers = Vec::new();
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| format!("malformed header line: {:?}", String::from_utf8_lossy(line)))?;
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().to_vec();
        headers.push((name, value));
    }

    let raw_body = &bytes[text_end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        decode_chunked(raw_body)?
    } else {
        raw_body.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body ends without a chunk size line")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("invalid chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err("chunked body is truncated".to_owned());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_plain_response() {
        let response = parse_response(
            b"HTTP/1.1 403 Forbidden\r\nA: b\r\nWWW-Authenticate: Bearer x\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(response.status, 403);
        assert_eq!(
            response.header("www-authenticate").as_deref(),
            Some("Bearer x")
        );
        assert_eq!(response.body, b"{}");
    }

    #[test]
    fn parse_chunked_response() {
        let response =
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!(response.body, b"abcde");
    }
}
