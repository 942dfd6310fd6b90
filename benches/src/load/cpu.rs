//! CPU time during a load run: of the Envoy under test, of the helper processes (stand-in Envoy,
//! authorization service), of wrk, and of everything else on the machine.
//!
//! The machine's busy time comes from `/proc/stat`, each process's from `/proc/<pid>/stat`, and
//! wrk's from `getrusage(RUSAGE_CHILDREN)`, which counts wrk once it has been waited for. What
//! remains is other processes' time: a load test on a shared machine is only valid while that
//! stays small.

use std::fs;

/// A snapshot of CPU counters, in clock ticks except `children_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    machine_busy: u64,
    under_test: u64,
    helpers: u64,
    children_us: u64,
}

/// CPU use between two snapshots, in percent of one CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub under_test: f64,
    pub helpers: f64,
    pub wrk: f64,
    /// Busy time of the machine that none of the above accounts for.
    pub other: f64,
}

/// Reads the counters of the machine, of the process `under_test`, and of `helpers`.
pub fn snapshot(under_test: u32, helpers: &[u32]) -> Snapshot {
    Snapshot {
        machine_busy: machine_busy_ticks(),
        under_test: process_ticks(under_test),
        helpers: helpers.iter().map(|&pid| process_ticks(pid)).sum(),
        children_us: children_cpu_us(),
    }
}

/// Returns the CPU use between `before` and `after`, taken `seconds` apart.
pub fn usage(before: &Snapshot, after: &Snapshot, seconds: f64) -> Usage {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let percent = |ticks: u64| ticks as f64 / ticks_per_second / seconds * 100.0;
    let under_test = percent(after.under_test.saturating_sub(before.under_test));
    let helpers = percent(after.helpers.saturating_sub(before.helpers));
    let wrk = after.children_us.saturating_sub(before.children_us) as f64 / 1e6 / seconds * 100.0;
    let busy = percent(after.machine_busy.saturating_sub(before.machine_busy));
    Usage {
        under_test,
        helpers,
        wrk,
        other: (busy - under_test - helpers - wrk).max(0.0),
    }
}

/// Returns user, nice, system, irq, softirq and steal ticks of all CPUs added up.
fn machine_busy_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        return 0;
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum()
}

/// Returns the user and system ticks of process `pid`, or 0 when it cannot be read.
fn process_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may contain spaces, so count fields after it.
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), utime and stime, are the 12th and 13th after the name.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ticks(11) + ticks(12)
}

/// Returns the user and system time of this process's reaped children, in microseconds.
fn children_cpu_us() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0;
    }
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_ticks() {
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        assert!(process_ticks(std::process::id()) > 0);
    }

    #[test]
    fn machine_has_busy_ticks() {
        assert!(machine_busy_ticks() > 0);
    }
}
