//! The provenance that every result file records: the command, the date, the machine and the
//! versions of the tools involved.

use std::fs;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The machine a result was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Processing units available to the process, as `nproc` prints.
    pub nproc: usize,
    /// `model name` of the first processor in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` of `/proc/meminfo`, in GiB.
    pub memory_gib: f64,
    /// Kernel release, from `/proc/sys/kernel/osrelease`.
    pub kernel: String,
}

/// The command, date, machine and tool versions behind one result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The make target that ran the measurement, from `BENCH_MAKE_TARGET`, if any.
    pub make_target: Option<String>,
    /// The command line of the measuring program.
    pub command: String,
    /// Start of the measurement, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    pub machine: Machine,
    /// `(tool, version)` pairs, such as `("rustc", "rustc 1.95.0 (...)")`.
    pub tools: Vec<(String, String)>,
}

impl Provenance {
    /// Records the current process's command line, the current date and this machine.
    pub fn now(tools: Vec<(String, String)>) -> Self {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        Self {
            make_target: std::env::var("BENCH_MAKE_TARGET")
                .ok()
                .filter(|t| !t.is_empty()),
            command,
            date: utc_timestamp(SystemTime::now()),
            machine: Machine::current(),
            tools,
        }
    }

    /// Returns how the result was produced: the make target when known, and the command line.
    pub fn command_line(&self) -> String {
        match &self.make_target {
            Some(target) => format!("`make {target}`, which ran `{}`", self.command),
            None => format!("`{}`", self.command),
        }
    }
}

impl Machine {
    /// Reads the description of this machine from `/proc`.
    pub fn current() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Self {
            nproc: nproc(),
            cpu_model,
            memory_gib: memory_kib / (1024.0 * 1024.0),
            kernel,
        }
    }

    /// Returns a one-line description, such as `2 CPUs (nproc), AMD EPYC, 23.4 GiB, Linux 6.1`.
    pub fn describe(&self) -> String {
        format!(
            "{} CPUs (nproc), {}, {:.1} GiB memory, Linux {}",
            self.nproc, self.cpu_model, self.memory_gib, self.kernel
        )
    }
}

/// Returns the output of `nproc`, or `std::thread::available_parallelism` when `nproc` is
/// missing.
fn nproc() -> usize {
    Command::new("nproc")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Returns the first line that `program args` prints on stdout or stderr, or `None` when it
/// cannot run.
pub fn tool_version(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ` in UTC.
pub fn utc_timestamp(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, seconds_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60,
        seconds_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date, with Howard Hinnant's
/// `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamp_epoch() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn timestamp_leap_day() {
        let time = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(utc_timestamp(time), "2024-02-29T12:34:56Z");
    }
}
