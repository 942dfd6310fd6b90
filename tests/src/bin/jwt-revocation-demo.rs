//! Shows the main job of jwt-revocation on a real Envoy, for each build of the filter.
//!
//! ```text
//! jwt-revocation-demo [--target wasm|dynamic-module|both] [--keep-running]
//! ```
//!
//! For each target it starts the reference authorization service, a test upstream and Envoy with
//! the production chain (jwt_authn, then jwt-revocation), all on 127.0.0.1 with free ports, runs
//! the cases below, prints a table and exits 0 only when every status matched. With
//! `--keep-running` it starts the stacks, prints ready `curl` lines and waits for Enter or Ctrl-C.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use e2e::envoy::Target;
use e2e::http::Request;
use e2e::stack::{Authz, Stack};

struct Row {
    case: &'static str,
    expected: u16,
    /// One status per target, or the error that kept the request from completing.
    actual: Vec<Result<u16, String>>,
}

const USAGE: &str =
    "usage: jwt-revocation-demo [--target wasm|dynamic-module|both] [--keep-running]";

fn main() -> ExitCode {
    let (targets, keep_running) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("jwt-revocation-demo: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    for target in &targets {
        if !target.artifact().is_file() {
            eprintln!(
                "jwt-revocation-demo: {} is missing; build it with `make build` first",
                target.artifact().display()
            );
            return ExitCode::FAILURE;
        }
    }
    if keep_running {
        return keep_stacks_running(&targets);
    }

    let mut rows: Vec<Row> = Vec::new();
    for (column, target) in targets.iter().enumerate() {
        let statuses = match run_cases(*target) {
            Ok(statuses) => statuses,
            Err(e) => {
                eprintln!("jwt-revocation-demo: {}: {e}", target.name());
                CASES.iter().map(|_| Err(e.clone())).collect()
            }
        };
        for (index, status) in statuses.into_iter().enumerate() {
            if column == 0 {
                rows.push(Row {
                    case: CASES[index].0,
                    expected: CASES[index].1,
                    actual: Vec::new(),
                });
            }
            rows[index].actual.push(status);
        }
    }
    let all_matched = print_table(&targets, &rows);
    if all_matched {
        println!("\nEvery status matched. All processes started by the demo are stopped.");
        ExitCode::SUCCESS
    } else {
        println!("\nSome statuses did not match; see the rows marked MISMATCH.");
        ExitCode::FAILURE
    }
}

fn parse_args() -> Result<(Vec<Target>, bool), String> {
    let mut targets = Target::ALL.to_vec();
    let mut keep_running = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep-running" => keep_running = true,
            "--target" => {
                targets = match args.next().as_deref() {
                    Some("wasm") => vec![Target::Wasm],
                    Some("dynamic-module") => vec![Target::DynamicModule],
                    Some("both") => Target::ALL.to_vec(),
                    other => return Err(format!("invalid --target {other:?}")),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((targets, keep_running))
}

/// The cases, in the order they run, with the status each must get.
const CASES: [(&str, u16); 5] = [
    ("valid token", 200),
    ("same token after revoking its jti", 403),
    ("tampered signature", 401),
    ("no token", 401),
    ("authorization service stopped", 503),
];

fn run_cases(target: Target) -> Result<Vec<Result<u16, String>>, String> {
    let mut stack = Stack::start(&target.bootstrap_with_jwt_authn(), Authz::Reference, Ok)?;
    let port = stack.envoy.port;
    let status = |request: Request| request.send(port).map(|r| r.status);

    let (token, jti) = stack.issue_token("alice");
    let mut statuses = vec![status(Request::get("/").bearer(&token))];

    stack.revoke(&jti)?;
    statuses.push(status(Request::get("/").bearer(&token)));

    let (other, _) = stack.issue_token("bob");
    let (rest, signature) = other
        .rsplit_once('.')
        .ok_or("issued token has no signature")?;
    let tampered = format!("{rest}.{}", signature.chars().rev().collect::<String>());
    statuses.push(status(Request::get("/").bearer(&tampered)));

    statuses.push(status(Request::get("/")));

    let (fresh, _) = stack.issue_token("carol");
    stack.stop_authz();
    statuses.push(status(Request::get("/").bearer(&fresh)));
    Ok(statuses)
}

fn print_table(targets: &[Target], rows: &[Row]) -> bool {
    let case_width = rows.iter().map(|r| r.case.len()).max().unwrap_or(4);
    print!("\n{:<case_width$}  expected", "case");
    for target in targets {
        print!("  {:<16}", target.name());
    }
    println!();

    let mut all_matched = true;
    for row in rows {
        print!("{:<case_width$}  {:<8}", row.case, row.expected);
        for status in &row.actual {
            let cell = match status {
                Ok(status) if *status == row.expected => format!("{status} ok"),
                Ok(status) => {
                    all_matched = false;
                    format!("{status} MISMATCH")
                }
                Err(_) => {
                    all_matched = false;
                    "error MISMATCH".to_owned()
                }
            };
            print!("  {cell:<16}");
        }
        println!();
    }
    all_matched
}

fn keep_stacks_running(targets: &[Target]) -> ExitCode {
    let mut stacks = Vec::new();
    for target in targets {
        match Stack::start(&target.bootstrap_with_jwt_authn(), Authz::Reference, Ok) {
            Ok(stack) => stacks.push((*target, stack)),
            Err(e) => {
                eprintln!("jwt-revocation-demo: {}: {e}", target.name());
                return ExitCode::FAILURE;
            }
        }
    }

    let (_, first) = &stacks[0];
    let (token, jti) = first.issue_token("alice");
    println!("The stacks run on 127.0.0.1. A token for sub \"alice\" with jti {jti}:\n");
    println!("  TOKEN={token}\n");
    for (target, stack) in &stacks {
        println!(
            "  # {}: Envoy on port {}, admin on {}\n  curl -i -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:{}/\n",
            target.name(),
            stack.envoy.port,
            stack.envoy.admin_port,
            stack.envoy.port
        );
    }
    println!(
        "  # revoke the token, then repeat the curl; each stack has its own authorization service:"
    );
    for (target, stack) in &stacks {
        println!(
            "  curl -i -X POST -d '{{\"jti\":\"{jti}\"}}' http://127.0.0.1:{}/revoke   # {}",
            stack.authz_port,
            target.name()
        );
    }
    println!();
    println!(
        "  # a new token:\n  curl -s -X POST -d '{{\"sub\":\"bob\"}}' http://127.0.0.1:{}/tokens\n",
        first.authz_port
    );
    println!("Press Enter (or Ctrl-C) to stop every process.");
    let _ = std::io::stdout().flush();

    let mut line = String::new();
    while let Ok(0) = std::io::stdin().lock().read_line(&mut line) {
        // With no terminal attached, wait until the process is interrupted.
        std::thread::park();
    }
    drop(stacks);
    println!("Stopped.");
    ExitCode::SUCCESS
}
