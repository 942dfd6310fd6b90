//! Bounded load tests: many keep-alive connections on 127.0.0.1, one request at a time on each,
//! the way Envoy's HTTP/1.1 connection pool sends authorization callouts.
//!
//! All connections open at the same moment, and every one stays open until all clients are done,
//! as Envoy keeps its upstream connections. The default test asserts only a generous latency
//! bound, so it does not depend on the speed of the machine. The ignored test runs the
//! `authz-service` binary with more requests and prints the latency distribution:
//!
//! ```text
//! cargo test -p authz-service --release --test load -- --ignored --nocapture
//! ```

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{bearer, issue, start_server, Connection, JWKS};

/// Limit on each request, the same as the filter's callout `timeout` (2000 ms) in the
/// configurations under `envoy-configs/`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Time after which the clients stop sending, so a stalled server cannot stretch a run much
/// beyond this plus one [`REQUEST_TIMEOUT`].
const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// Shape of a load run: every connection sends `requests_per_round` requests in each round, and
/// all connections start a round together.
#[derive(Clone, Copy)]
struct LoadPlan {
    connections: usize,
    rounds: usize,
    requests_per_round: usize,
}

impl LoadPlan {
    fn total_requests(&self) -> usize {
        self.connections * self.rounds * self.requests_per_round
    }
}

/// Results of a load run: the latency of every request sent, sorted in ascending order, and the
/// requests that failed.
struct LoadReport {
    sorted: Vec<Duration>,
    failures: Vec<String>,
    expected: usize,
}

impl LoadReport {
    fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }

    fn percentile(&self, percent: usize) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (self.sorted.len() * percent).div_ceil(100);
        self.sorted[rank.saturating_sub(1)]
    }

    fn summary(&self) -> String {
        let over_one_second = self
            .sorted
            .iter()
            .filter(|&&latency| latency > Duration::from_secs(1))
            .count();
        format!(
            "{}/{} requests sent, {} failed: p50 {:?}, p99 {:?}, max {:?}, over 1 s: {}",
            self.sorted.len(),
            self.expected,
            self.failures.len(),
            self.percentile(50),
            self.percentile(99),
            self.max(),
            over_one_second,
        )
    }
}

/// Runs `plan` against `addr` with valid `POST /authorize` requests, one at a time on each
/// connection. A connection stays open across rounds and is replaced only after a failed
/// request, as Envoy does after a timeout.
fn run_load(addr: SocketAddr, token: &str, plan: LoadPlan) -> LoadReport {
    let authorization = bearer(token);
    let round_start = Arc::new(Barrier::new(plan.connections));
    let deadline = Instant::now() + RUN_DEADLINE;

    let clients: Vec<_> = (0..plan.connections)
        .map(|_| {
            let round_start = Arc::clone(&round_start);
            let authorization = authorization.clone();
            thread::spawn(move || run_client(addr, &authorization, plan, &round_start, deadline))
        })
        .collect();

    let mut sorted = Vec::new();
    let mut failures = Vec::new();
    for client in clients {
        let (latencies, client_failures) = client.join().expect("client thread");
        sorted.extend(latencies);
        failures.extend(client_failures);
    }
    sorted.sort_unstable();

    LoadReport {
        sorted,
        failures,
        expected: plan.total_requests(),
    }
}

/// Sends the requests of one connection and returns their latencies and failures.
fn run_client(
    addr: SocketAddr,
    authorization: &str,
    plan: LoadPlan,
    round_start: &Barrier,
    deadline: Instant,
) -> (Vec<Duration>, Vec<String>) {
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut connection = None;

    for _ in 0..plan.rounds {
        round_start.wait();
        for _ in 0..plan.requests_per_round {
            if Instant::now() > deadline {
                break;
            }

            let sent = Instant::now();
            let result = match connection.as_mut() {
                Some(connection) => Ok(connection),
                None => Connection::open_with_timeout(addr, REQUEST_TIMEOUT)
                    .map(|opened| connection.insert(opened)),
            }
            .and_then(|connection| {
                connection.try_send(
                    "POST",
                    "/authorize",
                    &[("Authorization", authorization)],
                    "",
                )
            });
            latencies.push(sent.elapsed());

            match result {
                Ok(response) if response.status == 200 => {}
                Ok(response) => {
                    failures.push(format!("status {}: {}", response.status, response.body));
                    connection = None;
                }
                Err(error) => {
                    failures.push(format!("after {:?}: {error}", sent.elapsed()));
                    connection = None;
                }
            }
        }
    }

    // Keep every connection open until all clients are done, so that a connection closing early
    // cannot free server resources that a stalled one waits for.
    round_start.wait();
    (latencies, failures)
}

#[test]
fn load_40_connections_no_stall() {
    let server = start_server(64);
    let (token, _) = issue(&mut Connection::open(server.local_addr()));

    let plan = LoadPlan {
        connections: 40,
        rounds: 2,
        requests_per_round: 5,
    };

    let report = run_load(server.local_addr(), &token, plan);

    println!("in-process server: {}", report.summary());
    assert_eq!(
        report.failures,
        Vec::<String>::new(),
        "{}",
        report.summary()
    );
    assert_eq!(report.sorted.len(), report.expected);
    assert!(
        report.max() < Duration::from_secs(1),
        "max latency {:?} is 1 s or more: {}",
        report.max(),
        report.summary()
    );
}

/// The `authz-service` binary, killed when dropped.
struct ServiceProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServiceProcess {
    /// Starts the binary on a free port of 127.0.0.1 with its other options at their defaults.
    fn start() -> ServiceProcess {
        let jwks_path =
            std::env::temp_dir().join(format!("authz-load-{}.json", std::process::id()));
        std::fs::write(&jwks_path, JWKS).unwrap();

        let mut child = Command::new(env!("CARGO_BIN_EXE_authz-service"))
            .args(["--listen", "127.0.0.1:0", "--jwks"])
            .arg(&jwks_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start authz-service");

        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let _ = std::fs::remove_file(&jwks_path);
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"));

        ServiceProcess { child, addr }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "stress test of about 3000 requests; run with --ignored --nocapture to see latencies"]
fn load_stress_binary_rounds() {
    let service = ServiceProcess::start();
    let (token, _) = issue(&mut Connection::open(service.addr));

    let plan = LoadPlan {
        connections: 40,
        rounds: 3,
        requests_per_round: 25,
    };

    let report = run_load(service.addr, &token, plan);

    println!("authz-service binary: {}", report.summary());
    assert_eq!(
        report.failures,
        Vec::<String>::new(),
        "{}",
        report.summary()
    );
    assert_eq!(report.sorted.len(), report.expected);
    assert!(
        report.max() < Duration::from_secs(1),
        "max latency {:?} is 1 s or more: {}",
        report.max(),
        report.summary()
    );
}
