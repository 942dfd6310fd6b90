//! Runs the server in-process on 127.0.0.1 with a free port and talks to it over plain
//! HTTP/1.1 on `std::net::TcpStream`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use authz_service::{serve, Key, Server};
use serde_json::Value;

/// Upper bound on each socket read and write, so a broken server fails the test instead of
/// hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// 32 bytes of 0x2a, base64url-encoded.
const JWKS: &str = r#"{"keys":[{"kty":"oct","alg":"HS256","kid":"it","k":"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio"}]}"#;

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("response body is JSON")
    }
}

/// An HTTP/1.1 client connection that keeps the socket open between requests.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).expect("connect to server");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Connection {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.writer.write_all(request.as_bytes()).unwrap();

        self.read_response()
    }

    fn read_response(&mut self) -> HttpResponse {
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("invalid status line {status_line:?}"));

        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line has a colon");
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }

        let content_length: usize = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, value)| value.parse().unwrap())
            .expect("response has Content-Length");
        let mut body = vec![0; content_length];
        self.reader.read_exact(&mut body).unwrap();

        HttpResponse {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }
}

fn start_server() -> Server {
    let key = Key::from_jwks_json(JWKS).unwrap();
    serve("127.0.0.1:0", key, 2).expect("server starts")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn issue(connection: &mut Connection) -> (String, String) {
    let response = connection.send("POST", "/tokens", &[], r#"{"sub":"alice","ttl":600}"#);
    assert_eq!(response.status, 200, "body {}", response.body);
    let body = response.json();
    let token = body["token"].as_str().unwrap().to_string();
    let jti = body["jti"].as_str().unwrap().to_string();
    (token, jti)
}

#[test]
fn server_binds_free_loopback_port() {
    let server = start_server();

    let addr = server.local_addr();

    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
}

#[test]
fn revoked_token_is_forbidden() {
    let server = start_server();
    let mut connection = Connection::open(server.local_addr());
    let (token, jti) = issue(&mut connection);

    let before = connection.send(
        "POST",
        "/authorize",
        &[("Authorization", &bearer(&token))],
        "",
    );
    assert_eq!(before.status, 200);
    assert_eq!(before.body, r#"{"active":true}"#);

    let revoked = connection.send("POST", "/revoke", &[], &format!(r#"{{"jti":"{jti}"}}"#));
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.json()["revoked"], jti.as_str());

    let after = connection.send(
        "POST",
        "/authorize",
        &[("Authorization", &bearer(&token))],
        "",
    );
    assert_eq!(after.status, 403);
    assert_eq!(after.json()["error"], "revoked");
    assert_eq!(after.json()["error_description"], "token has been revoked");
}

#[test]
fn tampered_token_is_unauthorized() {
    let server = start_server();
    let mut connection = Connection::open(server.local_addr());
    let (token, _) = issue(&mut connection);
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_payload = "eyJqdGkiOiJ4IiwiZXhwIjo0MDAwMDAwMDAwfQ"; // {"jti":"x","exp":4000000000}
    parts[1] = forged_payload;
    let tampered = parts.join(".");

    let response = connection.send(
        "POST",
        "/authorize",
        &[("Authorization", &bearer(&tampered))],
        "",
    );

    assert_eq!(response.status, 401);
    assert_eq!(response.json()["error"], "invalid_token");
    assert_eq!(
        response.json()["error_description"],
        "token signature is invalid"
    );
    assert_eq!(
        response.header("WWW-Authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert!(!response.body.contains(&tampered));
}

#[test]
fn missing_authorization_is_unauthorized() {
    let server = start_server();
    let mut connection = Connection::open(server.local_addr());

    let response = connection.send("POST", "/authorize", &[], "");

    assert_eq!(response.status, 401);
    assert_eq!(response.json()["error"], "invalid_token");
}

#[test]
fn keep_alive_serves_two_requests() {
    let server = start_server();
    let mut connection = Connection::open(server.local_addr());
    let (token, _) = issue(&mut connection);

    // The request body is ignored by /authorize but must be consumed for the next request.
    let first = connection.send(
        "POST",
        "/authorize",
        &[("Authorization", &bearer(&token))],
        "ignored body",
    );
    let second = connection.send(
        "POST",
        "/authorize",
        &[("authorization", &format!("bearer {token}"))],
        "",
    );

    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(first.header("Content-Length"), Some("15"));
    assert_eq!(first.header("Transfer-Encoding"), None);
}

#[test]
fn healthz_returns_ok() {
    let server = start_server();
    let mut connection = Connection::open(server.local_addr());

    let response = connection.send("GET", "/healthz", &[], "");

    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok");
}

#[test]
fn invalid_requests_get_json_errors() {
    let server = start_server();
    let mut connection = Connection::open(server.local_addr());

    let not_found = connection.send("GET", "/missing", &[], "");
    let wrong_method = connection.send("GET", "/authorize", &[], "");
    let bad_ttl = connection.send("POST", "/tokens", &[], r#"{"ttl":0}"#);
    let no_jti = connection.send("POST", "/revoke", &[], "{}");

    assert_eq!(not_found.status, 404);
    assert_eq!(not_found.json()["error"], "not_found");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("Allow"), Some("POST"));
    assert_eq!(bad_ttl.status, 400);
    assert!(bad_ttl.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("ttl"));
    assert_eq!(no_jti.status, 400);
    assert!(no_jti.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("jti"));
}

#[test]
fn oversized_body_rejected() {
    let server = start_server();
    let mut connection = Connection::open(server.local_addr());
    let body = "x".repeat(authz_service::MAX_BODY_BYTES + 1);

    let response = connection.send("POST", "/tokens", &[], &body);

    assert_eq!(response.status, 413);
}

#[test]
fn dropped_server_stops_listening() {
    let server = start_server();
    let addr = server.local_addr();

    drop(server);

    // `tiny_http` closes the listening socket on its accept thread shortly after the drop.
    let connection_refused = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        TcpStream::connect(addr).is_err()
    });
    assert!(
        connection_refused,
        "{addr} still accepts connections 2 s after the drop"
    );
}
