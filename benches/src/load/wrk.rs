//! Running wrk 4.1.0 and reading its `--latency` report.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Time wrk gets beyond its `--duration` to print the report and exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// One wrk run.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    pub port: u16,
    pub threads: u32,
    pub connections: u32,
    pub seconds: u32,
    pub headers: &'a [(String, String)],
}

/// The numbers of one wrk report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p75_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub non_2xx_3xx: u64,
    pub socket_errors: u64,
}

/// Runs wrk against `http://127.0.0.1:{port}/`, saves its output to `output_path` and parses it.
/// wrk stops by itself after `seconds`; a wrk still running [`EXIT_GRACE`] later is killed.
pub fn run(load: &Load, output_path: &Path) -> Result<Report, String> {
    let mut command = Command::new("wrk");
    command
        .arg("--threads")
        .arg(load.threads.to_string())
        .arg("--connections")
        .arg(load.connections.to_string())
        .arg("--duration")
        .arg(format!("{}s", load.seconds))
        .arg("--latency");
    for (name, value) in load.headers {
        command.arg("--header").arg(format!("{name}: {value}"));
    }
    command.arg(format!("http://127.0.0.1:{}/", load.port));

    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start wrk (install it with `apt-get install wrk`): {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(u64::from(load.seconds)) + EXIT_GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "wrk (PID {}) ran {} s past its duration and was killed",
                    child.id(),
                    EXIT_GRACE.as_secs()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("cannot query wrk (PID {}): {e}", child.id())),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot read the output of wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    fs::write(output_path, format!("{stdout}{stderr}"))
        .map_err(|e| format!("cannot write {}: {e}", output_path.display()))?;
    if !output.status.success() {
        return Err(format!(
            "wrk exited with {}:\n{stdout}{stderr}",
            output.status
        ));
    }
    parse(&stdout)
}

/// Parses the report that `wrk --latency` prints.
pub fn parse(text: &str) -> Result<Report, String> {
    let mut requests = None;
    let mut seconds = None;
    let mut requests_per_second = None;
    let mut percentiles = [None; 4];
    let mut non_2xx_3xx = 0;
    let mut socket_errors = 0;

    for line in text.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            requests_per_second = rate.trim().parse().ok();
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx_3xx = count
                .trim()
                .parse()
                .map_err(|_| format!("invalid count in {line:?}"))?;
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in errors.split(',') {
                let count = part.split_whitespace().nth(1).unwrap_or("");
                socket_errors += count
                    .parse::<u64>()
                    .map_err(|_| format!("invalid count in {line:?}"))?;
            }
        } else if let Some((count, rest)) = line.split_once(" requests in ") {
            // "172000 requests in 10.00s, 20.50MB read"
            requests = count.trim().parse().ok();
            seconds = rest.split(',').next().and_then(parse_seconds);
        } else if let Some((label, value)) = line.split_once(char::is_whitespace) {
            let index = ["50%", "75%", "90%", "99%"]
                .iter()
                .position(|p| *p == label);
            if let Some(index) = index {
                percentiles[index] = parse_latency_us(value.trim());
            }
        }
    }

    let missing = |what: &str| format!("wrk printed no {what}:\n{text}");
    let [p50, p75, p90, p99] = percentiles;
    Ok(Report {
        requests: requests.ok_or_else(|| missing("request count"))?,
        seconds: seconds.ok_or_else(|| missing("duration"))?,
        requests_per_second: requests_per_second.ok_or_else(|| missing("Requests/sec"))?,
        p50_us: p50.ok_or_else(|| missing("50% latency (was --latency passed?)"))?,
        p75_us: p75.ok_or_else(|| missing("75% latency"))?,
        p90_us: p90.ok_or_else(|| missing("90% latency"))?,
        p99_us: p99.ok_or_else(|| missing("99% latency"))?,
        non_2xx_3xx,
        socket_errors,
    })
}

/// Parses a wrk latency such as `438.00us`, `1.01ms` or `2.00s` into microseconds.
fn parse_latency_us(text: &str) -> Option<f64> {
    let units = [
        ("us", 1.0),
        ("ms", 1e3),
        ("s", 1e6),
        ("m", 60e6),
        ("h", 3600e6),
    ];
    units.iter().find_map(|(suffix, scale)| {
        let number: f64 = text.strip_suffix(suffix)?.parse().ok()?;
        Some(number * scale)
    })
}

/// Parses a wrk duration such as `10.00s` or `1.00m` into seconds.
fn parse_seconds(text: &str) -> Option<f64> {
    parse_latency_us(text.trim()).map(|us| us / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
Running 10s test @ http://127.0.0.1:40001/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   470.12us  120.50us   5.20ms   90.00%
    Req/Sec    17.01k   500.00    18.00k    70.00%
  Latency Distribution
     50%  438.00us
     75%  500.00us
     90%  600.00us
     99%    1.01ms
  170100 requests in 10.00s, 25.30MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  17010.00
Transfer/sec:      2.53MB
";

    #[test]
    fn report_parsed() {
        let report = parse(REPORT).unwrap();
        assert_eq!(report.requests, 170_100);
        assert_eq!(report.seconds, 10.0);
        assert_eq!(report.requests_per_second, 17_010.0);
        assert_eq!(report.p50_us, 438.0);
        assert_eq!(report.p99_us, 1010.0);
        assert_eq!(report.non_2xx_3xx, 5);
        assert_eq!(report.socket_errors, 3);
    }

    #[test]
    fn clean_report_has_no_failures() {
        let clean: String = REPORT
            .lines()
            .filter(|line| !line.contains("errors") && !line.contains("Non-2xx"))
            .map(|line| format!("{line}\n"))
            .collect();
        let report = parse(&clean).unwrap();
        assert_eq!(report.non_2xx_3xx, 0);
        assert_eq!(report.socket_errors, 0);
    }

    #[test]
    fn latency_units() {
        assert_eq!(parse_latency_us("438.00us"), Some(438.0));
        assert_eq!(parse_latency_us("1.50ms"), Some(1500.0));
        assert_eq!(parse_latency_us("2.00s"), Some(2_000_000.0));
    }

    #[test]
    fn missing_latency_rejected() {
        let without: String = REPORT
            .lines()
            .filter(|line| !line.contains('%') || line.contains("Stdev"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(parse(&without).is_err());
    }
}
