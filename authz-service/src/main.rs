//! Command-line entry point of the reference authorization service.

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use authz_service::{serve, Key};

const DEFAULT_LISTEN: &str = "127.0.0.1:9001";
/// Default maximum number of open connections. Envoy's HTTP/1.1 connection pool sends one
/// request at a time on a connection, so it opens one connection per callout in flight.
const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Exit code for invalid command-line arguments.
const USAGE_EXIT_CODE: u8 = 2;

const HELP: &str = "\
Usage: authz-service --jwks PATH [--listen ADDR] [--workers N]

Reference authorization service for the JWT revocation filter. It issues HS256
JWTs, revokes them by jti, and responds to POST /authorize with 200 (valid),
401 (missing or invalid token) or 403 (revoked).

Options:
  --jwks PATH     JWKS file with exactly one HS256 key (kty \"oct\"). The service
                  signs and verifies tokens with this key. Required.
  --listen ADDR   IP address and TCP port to listen on. Port 0 picks a free port.
                  [default: 127.0.0.1:9001]
  --workers N     maximum number of connections open at once, each served by
                  its own thread, at least 1. A connection beyond it gets a 503
                  response. [default: 256]
  -h, --help      print this help and exit
  -V, --version   print the version and exit

Connections stay open between requests (HTTP/1.1 keep-alive), and the service
closes one after 60 s without a request.

On start the service prints one line, `listening on IP:PORT`, to standard
output. Logs go to standard error at level info. Set RUST_LOG=debug to log
every request.

HTTP API:
  POST /authorize  with Authorization: Bearer <token>, returns 200, 401 or 403
  POST /tokens     optional body {\"sub\": string, \"ttl\": seconds from 1 to 86400}
  POST /revoke     body {\"jti\": string, \"exp\": optional Unix time in seconds}
  GET  /healthz    200 ok
";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    jwks: PathBuf,
    listen: SocketAddr,
    max_connections: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run(Options),
    Help,
    Version,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("authz-service {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("authz-service: {message}");
            eprintln!("Run 'authz-service --help' for usage.");
            return ExitCode::from(USAGE_EXIT_CODE);
        }
    };

    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the key, starts the server and blocks until it stops.
fn run(options: &Options) -> Result<(), String> {
    let path = options.jwks.display();
    let jwks = std::fs::read_to_string(&options.jwks)
        .map_err(|error| format!("failed to read JWKS file {path}: {error}"))?;
    let key =
        Key::from_jwks_json(&jwks).map_err(|error| format!("invalid JWKS file {path}: {error}"))?;
    let kid = key.kid().to_string();

    let server = serve(options.listen, key, options.max_connections)
        .map_err(|error| format!("failed to listen on {}: {error}", options.listen))?;
    let local_addr = server.local_addr();
    log::info!(
        "authorization service started: address={local_addr} kid={kid} max_connections={}",
        options.max_connections
    );

    // Test harnesses that pass port 0 read the bound port from this line.
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {local_addr}")
        .and_then(|()| stdout.flush())
        .map_err(|error| format!("failed to write the listening address to stdout: {error}"))?;
    drop(stdout);

    let error = server.wait();
    Err(format!("server stopped accepting connections: {error}"))
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut jwks = None;
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut max_connections = DEFAULT_MAX_CONNECTIONS.to_string();

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))?;
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };

        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--jwks" | "--listen" | "--workers" => {
                let value = match inline_value {
                    Some(value) => value.to_string(),
                    None => args
                        .next()
                        .and_then(|value| value.into_string().ok())
                        .ok_or_else(|| format!("option {name} requires a value"))?,
                };
                match name.as_str() {
                    "--jwks" => jwks = Some(PathBuf::from(value)),
                    "--listen" => listen = value,
                    _ => max_connections = value,
                }
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }

    let jwks = jwks.ok_or("option --jwks is required")?;
    let listen = listen.parse().map_err(|_| {
        format!("invalid --listen address {listen:?}, expected IP:PORT such as {DEFAULT_LISTEN}")
    })?;
    let max_connections = match max_connections.parse::<usize>() {
        Ok(max_connections) if max_connections >= 1 => max_connections,
        _ => {
            return Err(format!(
                "invalid --workers value {max_connections:?}, expected an integer of at least 1"
            ))
        }
    };

    Ok(Command::Run(Options {
        jwks,
        listen,
        max_connections,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn args_defaults_applied() {
        let command = parse(&["--jwks", "keys.json"]).unwrap();

        assert_eq!(
            command,
            Command::Run(Options {
                jwks: PathBuf::from("keys.json"),
                listen: DEFAULT_LISTEN.parse().unwrap(),
                max_connections: DEFAULT_MAX_CONNECTIONS,
            })
        );
    }

    #[test]
    fn args_all_options_parsed() {
        let separate = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--jwks",
            "k.json",
        ]);
        let inline = parse(&["--listen=127.0.0.1:0", "--workers=2", "--jwks=k.json"]);
        let expected = Command::Run(Options {
            jwks: PathBuf::from("k.json"),
            listen: "127.0.0.1:0".parse().unwrap(),
            max_connections: 2,
        });

        assert_eq!(separate.unwrap(), expected);
        assert_eq!(inline.unwrap(), expected);
    }

    #[test]
    fn args_help_and_version() {
        assert_eq!(parse(&["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(&["-h"]).unwrap(), Command::Help);
        assert_eq!(parse(&["--version"]).unwrap(), Command::Version);
    }

    #[test]
    fn args_invalid_rejected() {
        let cases: [(&[&str], &str); 7] = [
            (&[], "option --jwks is required"),
            (&["--jwks"], "option --jwks requires a value"),
            (&["--jwks", "k", "--bogus"], "unknown argument \"--bogus\""),
            (&["--jwks", "k", "extra"], "unknown argument \"extra\""),
            (
                &["--jwks", "k", "--listen", "localhost"],
                "invalid --listen",
            ),
            (&["--jwks", "k", "--workers", "0"], "invalid --workers"),
            (&["--jwks", "k", "--workers", "many"], "invalid --workers"),
        ];

        for (args, expected) in cases {
            let error = parse(args).expect_err(&format!("{args:?}"));
            assert!(
                error.contains(expected),
                "args {args:?}: {error:?} does not contain {expected:?}"
            );
        }
    }
}
