//! Child processes that are stopped by PID when their guard drops.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A running child process, killed and reaped on drop.
pub struct Process {
    name: String,
    child: Child,
}

impl Process {
    /// Starts `command` with stdin closed and stderr inherited.
    ///
    /// The child gets SIGTERM when the thread that started it exits, so no server outlives a
    /// demo or test that was killed before its guards could drop.
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self, String> {
        // SAFETY: the closure runs in the child between fork and exec and calls only `prctl`,
        // which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("failed to start {name} ({command:?}): {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// Starts a server that prints `listening on 127.0.0.1:PORT` on stdout, and returns it with
    /// that port once the line arrives.
    pub fn spawn_server(name: &str, command: &mut Command) -> Result<(Self, u16), String> {
        let mut process = Self::spawn(name, command.stdout(Stdio::piped()))?;
        let stdout = process.child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(port) = line
                    .strip_prefix("listening on 127.0.0.1:")
                    .and_then(|p| p.trim().parse::<u16>().ok())
                {
                    let _ = sender.send(port);
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => Ok((process, port)),
            Err(_) => Err(format!(
                "{name} did not print \"listening on 127.0.0.1:PORT\" within 20 s{}",
                process.exit_status_note()
            )),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns `, exited with STATUS` when the process has already exited.
    pub fn exit_status_note(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!(", {} exited with {status}", self.name),
            _ => String::new(),
        }
    }

    /// Stops the process now and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Returns the path of a binary built from this workspace, next to the running executable.
///
/// Test executables live in `target/<profile>/deps`, binaries in `target/<profile>`.
pub fn workspace_binary(name: &str) -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        candidates.push(dir.join(name));
    }
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "binary {name} not found in {}; build it first with `cargo build --workspace --bins`",
                display_all(&candidates)
            )
        })
}

fn display_all(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Returns the workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
}
