//! Runs the server in-process on 127.0.0.1 with a free port and checks its HTTP/1.1 transport:
//! keep-alive, connection close, request framing, limits and shutdown.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use authz_service::MAX_BODY_BYTES;
use common::{bearer, issue, start_server, Connection};

/// Maximum number of open connections for these tests, more than any of them opens.
const MAX_CONNECTIONS: usize = 8;

#[test]
fn keep_alive_serves_two_requests() {
    let server = start_server(MAX_CONNECTIONS);
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
    assert_eq!(first.header("Connection"), None);
}

#[test]
fn pipelined_requests_answered_in_order() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());

    connection.send_raw(
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /missing HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let first = connection.read_response();
    let second = connection.read_response();

    assert_eq!(first.status, 200);
    assert_eq!(first.body, "ok");
    assert_eq!(second.status, 404);
}

#[test]
fn connection_close_honoured() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());

    let response = connection.send("GET", "/healthz", &[("Connection", "close")], "");

    assert_eq!(response.status, 200);
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(connection.is_closed_by_server());
}

#[test]
fn http10_closed_unless_keep_alive() {
    let server = start_server(MAX_CONNECTIONS);
    let mut closing = Connection::open(server.local_addr());
    let mut keeping = Connection::open(server.local_addr());

    closing.send_raw(b"GET /healthz HTTP/1.0\r\n\r\n");
    let closed = closing.read_response();
    keeping.send_raw(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let kept_open = keeping.read_response();
    let next = keeping.send("GET", "/healthz", &[], "");

    assert_eq!(closed.header("Connection"), Some("close"));
    assert!(closing.is_closed_by_server());
    assert_eq!(kept_open.header("Connection"), Some("keep-alive"));
    assert_eq!(next.status, 200);
}

#[test]
fn head_request_has_no_body() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());

    connection.send_raw(b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = connection.read_response_without_body();
    // A body after the HEAD response would be read here in place of the next status line.
    let next = connection.send("GET", "/healthz", &[], "");

    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("2"));
    assert_eq!(next.status, 200);
    assert_eq!(next.body, "ok");
}

#[test]
fn malformed_request_line_rejected() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());

    connection.send_raw(b"GET /healthz HTTP/1.1 extra\r\nHost: a\r\n\r\n");
    let response = connection.read_response();

    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "invalid_request");
    assert!(response.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("request line"));
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(connection.is_closed_by_server());
}

#[test]
fn unsupported_version_rejected() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());

    connection.send_raw(b"GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n");
    let response = connection.read_response();

    assert_eq!(response.status, 505);
    assert!(connection.is_closed_by_server());
}

#[test]
fn oversized_headers_rejected() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());
    // Above the server's limit of 64 KiB for the request line and headers together.
    let big = "a".repeat(70 * 1024);

    connection
        .send_raw(format!("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let response = connection.read_response();

    assert_eq!(response.status, 431);
    assert_eq!(response.json()["error"], "invalid_request");
    assert!(connection.is_closed_by_server());
}

#[test]
fn oversized_body_rejected() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());
    let body = "x".repeat(MAX_BODY_BYTES + 1);

    let response = connection.send("POST", "/tokens", &[], &body);

    assert_eq!(response.status, 413);
    assert_eq!(
        response.json()["error_description"],
        format!("request body is longer than {MAX_BODY_BYTES} bytes")
    );
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(connection.is_closed_by_server());
}

#[test]
fn body_at_limit_accepted() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());
    // A JSON string of MAX_BODY_BYTES in all: the handler rejects the field, not the size.
    let body = format!(r#"{{"sub":"{}"}}"#, "a".repeat(MAX_BODY_BYTES - 10));

    let response = connection.send("POST", "/tokens", &[], &body);

    assert_eq!(body.len(), MAX_BODY_BYTES);
    assert_eq!(response.status, 200, "body {}", response.body);
}

#[test]
fn chunked_body_accepted() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());

    connection.send_raw(
        b"POST /tokens HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          8\r\n{\"sub\":\"\r\n6\r\nchunk\"\r\n1\r\n}\r\n0\r\n\r\n",
    );
    let response = connection.read_response();
    let next = connection.send("GET", "/healthz", &[], "");

    assert_eq!(response.status, 200, "body {}", response.body);
    assert!(response.json()["token"].is_string());
    assert_eq!(next.status, 200);
}

#[test]
fn expect_continue_gets_interim_response() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());
    let body = r#"{"sub":"alice"}"#;

    connection.send_raw(
        format!(
            "POST /tokens HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = connection.read_response_without_body();
    connection.send_raw(body.as_bytes());
    let response = connection.read_response();

    assert_eq!(interim.status, 100);
    assert_eq!(response.status, 200, "body {}", response.body);
}

#[test]
fn connections_over_limit_get_503() {
    let server = start_server(1);
    let mut first = Connection::open(server.local_addr());
    // A completed request shows that the server has registered the first connection.
    assert_eq!(first.send("GET", "/healthz", &[], "").status, 200);

    let mut second = Connection::open(server.local_addr());
    let rejected = second.read_response();
    let still_served = first.send("GET", "/healthz", &[], "");

    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.json()["error"], "temporarily_unavailable");
    assert_eq!(rejected.header("Retry-After"), Some("1"));
    assert!(second.is_closed_by_server());
    assert_eq!(still_served.status, 200);
}

#[test]
fn closed_connection_frees_its_slot() {
    let server = start_server(1);
    let mut first = Connection::open(server.local_addr());
    let response = first.send("GET", "/healthz", &[("Connection", "close")], "");
    assert_eq!(response.status, 200);
    assert!(first.is_closed_by_server());
    drop(first);

    // The server removes the connection when its thread ends, shortly after the close.
    let served = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        // A connection over the limit gets a 503 response or a reset.
        let mut connection = Connection::open(server.local_addr());
        connection
            .try_send("GET", "/healthz", &[], "")
            .is_ok_and(|response| response.status == 200)
    });

    assert!(
        served,
        "no request served within 2 s after the only connection closed"
    );
}

#[test]
fn dropped_server_stops_listening() {
    let server = start_server(MAX_CONNECTIONS);
    let addr = server.local_addr();

    drop(server);

    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts connections after the drop"
    );
}

#[test]
fn dropped_server_closes_connections() {
    let server = start_server(MAX_CONNECTIONS);
    let mut connection = Connection::open(server.local_addr());
    assert_eq!(connection.send("GET", "/healthz", &[], "").status, 200);

    drop(server);

    assert!(connection.is_closed_by_server());
}
