//! Child processes of the load test (Envoy, the authorization service), each stopped by its PID
//! when dropped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Time a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running child process whose stdout and stderr go to a log file.
#[derive(Debug)]
pub struct Server {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl Server {
    /// Starts `command` with stdout and stderr appended to `log_path`.
    pub fn spawn(name: &str, command: &mut Command, log_path: &Path) -> Result<Self, String> {
        let log = File::create(log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot reopen {}: {e}", log_path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log_path: log_path.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns an error naming the exit status when the process has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} (PID {}) exited with {status}\n{}",
                self.name,
                self.child.id(),
                self.log_tail()
            )),
            Err(e) => Err(format!(
                "cannot query {} (PID {}): {e}",
                self.name,
                self.pid()
            )),
        }
    }

    /// Waits until the log contains a line with `marker` and returns that line.
    pub fn wait_for_log_line(&mut self, marker: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = fs::read_to_string(&self.log_path).unwrap_or_default();
            if let Some(line) = log.lines().find(|line| line.contains(marker)) {
                return Ok(line.to_owned());
            }
            self.check_running()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{} printed no line with {marker:?} within {} s\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns the last 30 lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!(
            "--- last lines of {} ---\n{}",
            self.log_path.display(),
            lines[start..].join("\n")
        )
    }

    /// Sends SIGTERM, waits up to [`STOP_GRACE`], then sends SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        };
        // SAFETY: `kill` has no memory-safety preconditions. The PID belongs to a child that has
        // not been reaped, so it cannot have been reused by another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{} (PID {}) did not exit {} s after SIGTERM; killing it",
            self.name,
            pid,
            STOP_GRACE.as_secs()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
