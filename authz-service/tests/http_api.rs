//! Runs the server in-process on 127.0.0.1 with a free port and checks the HTTP API over plain
//! HTTP/1.1 on `std::net::TcpStream`.

mod common;

use common::{bearer, issue, Connection};

/// Maximum number of open connections for these tests, more than any of them opens.
const MAX_CONNECTIONS: usize = 8;

fn start_server() -> authz_service::Server {
    common::start_server(MAX_CONNECTIONS)
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
