//! A test HTTP/1.1 server on 127.0.0.1 that plays either the upstream or a misbehaving
//! authorization service.
//!
//! ```text
//! e2e-server echo              respond 200 with a JSON summary of the request; GET /__requests
//!                              returns how many requests arrived
//! e2e-server status CODE       respond to every request with CODE and an empty body
//! e2e-server hang              accept connections, read requests, never respond
//! e2e-server close             accept connections and close them without responding
//! options:   --port N (default 0: any free port)   --delay-ms N (wait before responding)
//!            --drop-first N (close the connection of the first N requests without responding)
//! ```
//!
//! It prints `listening on 127.0.0.1:PORT` once bound. Connections are kept alive.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy)]
enum Mode {
    Echo,
    Status(u16),
    Hang,
    Close,
}

const USAGE: &str =
    "usage: e2e-server (echo | status CODE | hang | close) [--port N] [--delay-ms N] \
                     [--drop-first N]";

/// Command-line options besides the mode.
struct Options {
    port: u16,
    delay: Duration,
    drop_first: u64,
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1).collect()) {
        Ok((mode, options)) => match serve(mode, options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("e2e-server: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("e2e-server: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<(Mode, Options), String> {
    let mut args = args.into_iter();
    let mode = match args.next().as_deref() {
        Some("echo") => Mode::Echo,
        Some("hang") => Mode::Hang,
        Some("close") => Mode::Close,
        Some("status") => {
            let code = args.next().ok_or("status needs a CODE")?;
            Mode::Status(
                code.parse()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| format!("invalid status code {code:?}; expected 100 to 599"))?,
            )
        }
        other => return Err(format!("unknown mode {other:?}")),
    };
    let mut options = Options {
        port: 0,
        delay: Duration::ZERO,
        drop_first: 0,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let invalid = || format!("invalid {flag} {value:?}");
        match flag.as_str() {
            "--port" => options.port = value.parse().map_err(|_| invalid())?,
            "--delay-ms" => {
                options.delay = Duration::from_millis(value.parse().map_err(|_| invalid())?)
            }
            "--drop-first" => options.drop_first = value.parse().map_err(|_| invalid())?,
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    Ok((mode, options))
}

fn serve(mode: Mode, options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", options.port))?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;

    let count = Arc::new(AtomicU64::new(0));
    let to_drop = Arc::new(AtomicU64::new(options.drop_first));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let count = Arc::clone(&count);
        let to_drop = Arc::clone(&to_drop);
        let delay = options.delay;
        thread::spawn(move || {
            let _ = handle(stream, mode, delay, &count, &to_drop);
        });
    }
    Ok(())
}

fn handle(
    stream: TcpStream,
    mode: Mode,
    delay: Duration,
    count: &AtomicU64,
    to_drop: &AtomicU64,
) -> std::io::Result<()> {
    if let Mode::Close = mode {
        return Ok(());
    }
    // Responses are small; without this, Nagle's algorithm and delayed ACKs add ~40 ms.
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader)? else {
            return Ok(());
        };
        let Request {
            method,
            path,
            body_len,
            close,
            headers,
        } = request;
        let dropped = to_drop
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if dropped {
            // Closing without a response is what a crashed or restarted server looks like.
            return Ok(());
        }
        thread::sleep(delay);
        match mode {
            Mode::Hang => thread::sleep(Duration::from_secs(3600)),
            Mode::Close => return Ok(()),
            Mode::Status(code) => {
                write!(writer, "HTTP/1.1 {code} Test\r\ncontent-length: 0\r\n\r\n")?;
            }
            Mode::Echo if path == "/__requests" => {
                let body = count.load(Ordering::SeqCst).to_string();
                write!(
                    writer,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )?;
            }
            Mode::Echo => {
                count.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({
                    "upstream": true,
                    "method": method,
                    "path": path,
                    "body_bytes": body_len,
                    "headers": headers,
                })
                .to_string();
                write!(
                    writer,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )?;
            }
        }
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

struct Request {
    method: String,
    path: String,
    body_len: usize,
    /// The client sent `connection: close`.
    close: bool,
    /// Every header, by lowercase name; a repeated header keeps its last value.
    headers: serde_json::Map<String, serde_json::Value>,
}

/// Reads one request and its body; returns `None` at the end of the connection.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();

    let mut content_length = 0usize;
    let mut chunked = false;
    let mut close = false;
    let mut headers = serde_json::Map::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            headers.insert(name.to_ascii_lowercase(), value.into());
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
    }

    let body_len = if chunked {
        read_chunked(reader)?
    } else {
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        content_length
    };
    Ok(Some(Request {
        method,
        path,
        body_len,
        close,
        headers,
    }))
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16).unwrap_or(0);
        let mut chunk = vec![0; size + 2];
        if size == 0 {
            // Trailer section: lines until an empty one.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(total);
                }
            }
        }
        reader.read_exact(&mut chunk)?;
        total += size;
    }
}
