//! HTTP/1.1 client on `std::net::TcpStream` shared by the integration tests.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use authz_service::{serve, Key, Server};
use serde_json::Value;

/// Upper bound on each socket read and write, so a broken server fails the test instead of
/// hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// 32 bytes of 0x2a, base64url-encoded.
pub const JWKS: &str = r#"{"keys":[{"kty":"oct","alg":"HS256","kid":"it","k":"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio"}]}"#;

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("response body is JSON")
    }
}

/// An HTTP/1.1 client connection that keeps the socket open between requests.
pub struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> Connection {
        Connection::open_with_timeout(addr, IO_TIMEOUT).expect("connect to server")
    }

    /// Connects to `addr` with `timeout` as the limit on each socket read and write.
    pub fn open_with_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends a request with `Host` and `Content-Length` headers and reads the response.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        self.try_send(method, path, headers, body)
            .expect("request succeeds")
    }

    /// Like [`Connection::send`], but returns socket errors and malformed responses.
    pub fn try_send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<HttpResponse> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.writer.write_all(request.as_bytes())?;

        self.try_read_response()
    }

    /// Writes `bytes` to the socket as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads one response, which must have a `Content-Length` header.
    pub fn read_response(&mut self) -> HttpResponse {
        self.try_read_response().expect("response is readable")
    }

    /// Reads the status line and headers of one response, and leaves its body unread, as for
    /// a response to `HEAD` or an interim `100 Continue` response.
    pub fn read_response_without_body(&mut self) -> HttpResponse {
        self.try_read_response_head()
            .expect("response head is readable")
    }

    fn try_read_response(&mut self) -> io::Result<HttpResponse> {
        let mut response = self.try_read_response_head()?;

        let content_length: usize = response
            .header("Content-Length")
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| invalid_data("response has no valid Content-Length".to_string()))?;
        let mut body = vec![0; content_length];
        self.reader.read_exact(&mut body)?;

        response.body = String::from_utf8(body)
            .map_err(|_| invalid_data("response body is not UTF-8".to_string()))?;
        Ok(response)
    }

    fn try_read_response_head(&mut self) -> io::Result<HttpResponse> {
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid_data(format!("invalid status line {status_line:?}")))?;

        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid_data(format!("header line {line:?} has no colon")))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }

        Ok(HttpResponse {
            status,
            headers,
            body: String::new(),
        })
    }

    /// Returns true when the server has closed the connection: a read returns end of file, or
    /// the connection was reset.
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

pub fn start_server(max_connections: usize) -> Server {
    let key = Key::from_jwks_json(JWKS).unwrap();
    serve("127.0.0.1:0", key, max_connections).expect("server starts")
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Issues a token through `POST /tokens` and returns the token and its `jti`.
pub fn issue(connection: &mut Connection) -> (String, String) {
    let response = connection.send("POST", "/tokens", &[], r#"{"sub":"alice","ttl":600}"#);
    assert_eq!(response.status, 200, "body {}", response.body);
    let body = response.json();
    let token = body["token"].as_str().unwrap().to_string();
    let jti = body["jti"].as_str().unwrap().to_string();
    (token, jti)
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
