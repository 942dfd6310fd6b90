use std::io::{self, BufRead, BufReader, Read};

use super::*;

/// Body limit for these tests, small enough to exceed in a few bytes.
const MAX_BODY: usize = 16;

fn parse(raw: &[u8]) -> Result<RequestHead, ReadError> {
    read_head(&mut &raw[..], MAX_BODY)
}

/// Reads one whole request, head and body, from the start of `reader`.
fn parse_with_body(reader: &mut impl BufRead) -> Result<(RequestHead, Vec<u8>), ReadError> {
    let head = read_head(reader, MAX_BODY)?;
    let body = read_body(reader, head.framing, MAX_BODY)?;
    Ok((head, body))
}

fn rejection(result: Result<impl std::fmt::Debug, ReadError>) -> RequestError {
    match result {
        Err(ReadError::Invalid(error)) => error,
        other => panic!("expected a rejected request, got {other:?}"),
    }
}

/// A reader whose every read fails as a socket read timeout does.
struct TimingOut;

impl Read for TimingOut {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

#[test]
fn head_get_parsed() {
    let head =
        parse(b"GET /healthz?probe=1 HTTP/1.1\r\nHost: a\r\nX-Test:  v 1 \t\r\n\r\n").unwrap();

    assert_eq!(head.method, "GET");
    assert_eq!(head.target, "/healthz?probe=1");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(
        head.headers,
        vec![
            ("Host".to_string(), b"a".to_vec()),
            ("X-Test".to_string(), b"v 1".to_vec()),
        ]
    );
    assert_eq!(head.framing, BodyFraming::Empty);
    assert!(head.keep_alive);
    assert!(!head.expects_continue);
}

#[test]
fn head_values_matched_in_any_case() {
    let head =
        parse(b"POST /a HTTP/1.1\r\nhost: a\r\nAUTHORIZATION: x\r\nAuthorization: y\r\n\r\n")
            .unwrap();

    let values: Vec<&[u8]> = head.header_values("authorization").collect();

    assert_eq!(values, vec![b"x".as_slice(), b"y".as_slice()]);
}

#[test]
fn head_non_ascii_value_kept() {
    let head = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9\r\n\r\n").unwrap();

    assert_eq!(head.headers[1].1, b"caf\xe9".to_vec());
}

#[test]
fn head_leading_empty_lines_skipped() {
    let head = parse(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();

    assert_eq!(head.target, "/");
}

#[test]
fn head_absolute_target_made_origin_form() {
    let cases = [
        ("http://127.0.0.1:9001/authorize?x=1", "/authorize?x=1"),
        ("HTTPS://example.test", "/"),
        ("http://example.test?x=1", "/?x=1"),
    ];

    for (target, expected) in cases {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        let head = parse(raw.as_bytes()).unwrap();
        assert_eq!(head.target, expected, "target {target}");
    }
}

#[test]
fn request_line_malformed_rejected() {
    let cases: [(&[u8], u16); 12] = [
        (b"GET /", 400),
        (b"GET  / HTTP/1.1", 400),
        (b"GET / HTTP/1.1 ", 400),
        (b"GET / HTTP/1.1 extra", 400),
        (b" GET / HTTP/1.1", 400),
        (b"G(T / HTTP/1.1", 400),
        (b"GET / http/1.1", 400),
        (b"GET / HTTP/1.10", 400),
        (b"GET authorize HTTP/1.1", 400),
        (b"GET http:///path HTTP/1.1", 400),
        (b"GET /caf\xe9 HTTP/1.1", 400),
        (b"GET / HTTP/2.0", 505),
    ];

    for (line, status) in cases {
        let mut raw = line.to_vec();
        raw.extend_from_slice(b"\r\nHost: a\r\n\r\n");
        let error = rejection(parse(&raw));
        assert_eq!(
            error.status,
            status,
            "line {:?}: {}",
            String::from_utf8_lossy(line),
            error.description
        );
    }
}

#[test]
fn line_without_cr_rejected() {
    let error = rejection(parse(b"GET / HTTP/1.1\nHost: a\n\n"));

    assert_eq!(error.status, 400);
    assert_eq!(error.description, "line ends in LF without CR");
}

#[test]
fn request_line_too_long_rejected() {
    let raw = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES)
    );

    let error = rejection(parse(raw.as_bytes()));

    assert_eq!(error.status, 414);
}

#[test]
fn headers_too_long_rejected() {
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES)
    );

    let error = rejection(parse(raw.as_bytes()));

    assert_eq!(error.status, 431);
}

#[test]
fn headers_at_size_limit_accepted() {
    let start = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ";
    let end = "\r\n\r\n";
    let filler = "a".repeat(MAX_HEAD_BYTES - start.len() - end.len());
    let raw = format!("{start}{filler}{end}");

    assert_eq!(raw.len(), MAX_HEAD_BYTES);
    assert!(parse(raw.as_bytes()).is_ok());
}

#[test]
fn too_many_headers_rejected() {
    let mut raw = "GET / HTTP/1.1\r\nHost: a\r\n".to_string();
    for index in 0..MAX_HEADERS {
        raw.push_str(&format!("X-{index}: v\r\n"));
    }
    raw.push_str("\r\n");

    let error = rejection(parse(raw.as_bytes()));

    assert_eq!(error.status, 431);
}

#[test]
fn header_line_malformed_rejected() {
    let cases: [(&[u8], &str); 6] = [
        (b" X: folded", "obsolete line folding"),
        (b"X-No-Colon", "has no colon"),
        (b"X-Space : v", "name is not a valid token"),
        (b": v", "name is not a valid token"),
        (
            b"X-Nul: a\x00b",
            "header X-Nul contains a control character",
        ),
        (b"X-Cr: a\rb", "header X-Cr contains a control character"),
    ];

    for (line, expected) in cases {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n\r\n");
        let error = rejection(parse(&raw));
        let line_text = String::from_utf8_lossy(line);
        assert_eq!(error.status, 400, "line {line_text:?}");
        assert!(
            error.description.contains(expected),
            "line {line_text:?}: {} does not contain {expected:?}",
            error.description
        );
    }
}

#[test]
fn host_required_once_in_http11() {
    let missing = rejection(parse(b"GET / HTTP/1.1\r\n\r\n"));
    let repeated = rejection(parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"));
    let http10 = parse(b"GET / HTTP/1.0\r\n\r\n");

    assert_eq!(missing.status, 400);
    assert_eq!(missing.description, "HTTP/1.1 request has no Host header");
    assert_eq!(repeated.status, 400);
    assert_eq!(http10.unwrap().version, Version::Http10);
}

#[test]
fn content_length_body_read() {
    let raw = b"POST /tokens HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";

    let (head, body) = parse_with_body(&mut &raw[..]).unwrap();

    assert_eq!(head.framing, BodyFraming::Length(5));
    assert_eq!(body, b"hello");
}

#[test]
fn content_length_repeated_equal_accepted() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n";

    assert_eq!(parse(raw).unwrap().framing, BodyFraming::Length(3));
}

#[test]
fn content_length_invalid_rejected() {
    let cases: [(&str, u16); 7] = [
        ("Content-Length: -1", 400),
        ("Content-Length: +1", 400),
        ("Content-Length: 1.0", 400),
        ("Content-Length:", 400),
        ("Content-Length: 1\r\nContent-Length: 2", 400),
        ("Content-Length: 17", 413),
        ("Content-Length: 99999999999999999999999", 413),
    ];

    for (headers, status) in cases {
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{headers}\r\n\r\n");
        let error = rejection(parse(raw.as_bytes()));
        assert_eq!(
            error.status, status,
            "headers {headers:?}: {}",
            error.description
        );
    }
}

#[test]
fn body_at_limit_accepted() {
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {MAX_BODY}\r\n\r\n{}",
        "b".repeat(MAX_BODY)
    );

    let (_, body) = parse_with_body(&mut raw.as_bytes()).unwrap();

    assert_eq!(body.len(), MAX_BODY);
}

#[test]
fn body_too_large_rejected() {
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );

    let error = rejection(parse(raw.as_bytes()));

    assert_eq!(error.status, 413);
    assert_eq!(
        error.description,
        format!("request body is longer than {MAX_BODY} bytes")
    );
}

#[test]
fn chunked_body_decoded() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n\
                3;name=value\r\nabc\r\nA \r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";

    let (head, body) = parse_with_body(&mut &raw[..]).unwrap();

    assert_eq!(head.framing, BodyFraming::Chunked);
    assert_eq!(body, b"abc0123456789");
}

#[test]
fn chunked_body_too_large_rejected() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                8\r\n01234567\r\n9\r\n012345678\r\n0\r\n\r\n";

    let error = rejection(parse_with_body(&mut &raw[..]));

    assert_eq!(error.status, 413);
}

#[test]
fn chunked_body_malformed_rejected() {
    let cases: [(&[u8], u16); 5] = [
        (b"x\r\n", 400),
        (b"3 x\r\nabc\r\n0\r\n\r\n", 400),
        (b"3\r\nabcd\r\n0\r\n\r\n", 400),
        (b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n", 400),
        (b"fffffffffffffffffffff\r\n", 413),
    ];

    for (body, status) in cases {
        let mut raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        let error = rejection(parse_with_body(&mut &raw[..]));
        assert_eq!(
            error.status,
            status,
            "body {:?}: {}",
            String::from_utf8_lossy(body),
            error.description
        );
    }
}

#[test]
fn transfer_encoding_unsupported_rejected() {
    let cases: [(&str, &str, u16); 5] = [
        ("HTTP/1.1", "Transfer-Encoding: gzip", 400),
        ("HTTP/1.1", "Transfer-Encoding: gzip, chunked", 501),
        ("HTTP/1.1", "Transfer-Encoding: chunked, chunked", 400),
        (
            "HTTP/1.1",
            "Transfer-Encoding: chunked\r\nContent-Length: 3",
            400,
        ),
        ("HTTP/1.0", "Transfer-Encoding: chunked", 400),
    ];

    for (version, headers, status) in cases {
        let raw = format!("POST / {version}\r\nHost: a\r\n{headers}\r\n\r\n");
        let error = rejection(parse(raw.as_bytes()));
        assert_eq!(
            error.status, status,
            "{version} {headers:?}: {}",
            error.description
        );
    }
}

#[test]
fn connection_option_sets_keep_alive() {
    let cases = [
        ("HTTP/1.1", "", true),
        ("HTTP/1.1", "Connection: close\r\n", false),
        ("HTTP/1.1", "Connection: TE, Close\r\n", false),
        ("HTTP/1.0", "", false),
        ("HTTP/1.0", "Connection: keep-alive\r\n", true),
    ];

    for (version, headers, expected) in cases {
        let raw = format!("GET / {version}\r\nHost: a\r\n{headers}\r\n");
        let head = parse(raw.as_bytes()).unwrap();
        assert_eq!(head.keep_alive, expected, "{version} {headers:?}");
    }
}

#[test]
fn expect_continue_only_with_body() {
    let with_body =
        parse(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    let without_body = parse(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n");
    let unknown = parse(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n");

    assert!(with_body.unwrap().expects_continue);
    assert!(!without_body.unwrap().expects_continue);
    assert_eq!(rejection(unknown).status, 417);
}

#[test]
fn two_requests_read_in_sequence() {
    let raw = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\
                GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut reader = &raw[..];

    let (first, first_body) = parse_with_body(&mut reader).unwrap();
    let (second, second_body) = parse_with_body(&mut reader).unwrap();
    let after = parse(reader);

    assert_eq!(first.target, "/a");
    assert_eq!(first_body, b"hi");
    assert_eq!(second.target, "/b");
    assert_eq!(second_body, b"");
    assert!(matches!(after, Err(ReadError::Idle)), "{after:?}");
}

#[test]
fn end_of_file_mid_request_is_io_error() {
    let in_head = parse(b"GET / HTTP/1.1\r\nHost");
    let in_body =
        parse_with_body(&mut &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab"[..]);

    for result in [in_head.map(|_| ()), in_body.map(|_| ())] {
        match result {
            Err(ReadError::Io(error)) => assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("expected end of file, got {other:?}"),
        }
    }
}

#[test]
fn timeout_before_request_is_idle() {
    let mut reader = BufReader::new(TimingOut);

    let result = read_head(&mut reader, MAX_BODY);

    assert!(matches!(result, Err(ReadError::Idle)), "{result:?}");
}

#[test]
fn timeout_mid_request_rejected() {
    let partial: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab";
    let mut in_head = BufReader::new(b"GET / HT".as_slice().chain(TimingOut));
    let mut in_body = BufReader::new(partial.chain(TimingOut));

    let head_error = rejection(read_head(&mut in_head, MAX_BODY));
    let body_error = rejection(parse_with_body(&mut in_body));

    assert_eq!(head_error.status, 408);
    assert_eq!(body_error.status, 408);
}
