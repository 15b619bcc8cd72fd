//! Programs started in a lab, their output kept and awaited line by line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Error, Lab, Result};

/// Environment variable: when set (non-empty), every line a [`Process`] prints is also written
/// to this process's stderr as it arrives, prefixed with the process's name (a VM's serial
/// console, for instance).
pub const ECHO_VARIABLE: &str = "MACHINIST_LAB_ECHO";

/// How many transcript lines errors show.
const TAIL_LINES: usize = 40;

/// A program started with its stdin on `/dev/null` and its stdout and stderr read line by
/// line (lossy UTF-8, `\r` trimmed) into a transcript; killed and reaped in `Drop`.
///
/// [`wait_for`](Self::wait_for) and [`wait_until`](Self::wait_until) consume lines in order:
/// each looks only at lines that arrived after the line the previous wait matched (all lines
/// stay in the [`transcript`](Self::transcript)).
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Mutex<Child>,
    lines: Mutex<Receiver<String>>,
    transcript: Arc<Mutex<Vec<String>>>,
    started: Instant,
    _lab: Option<Lab>,
}

impl Process {
    /// Starts `command` (stdin null, stdout and stderr piped). `lab`, when given, is kept
    /// alive as long as the process.
    pub fn spawn(name: impl Into<String>, mut command: Command, lab: Option<Lab>) -> Result<Self> {
        let name = name.into();
        let started = Instant::now();
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|source| {
                Error::Start { name: name.clone(), command: machinist_ramdisk::run::describe(&command), source }
            })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let echo = std::env::var_os(ECHO_VARIABLE).is_some_and(|v| !v.is_empty()).then(|| name.clone());
        if let Some(stdout) = child.stdout.take() {
            pump(stdout, tx.clone(), Arc::clone(&transcript), echo.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            pump(stderr, tx, Arc::clone(&transcript), echo);
        }
        Ok(Self { name, child: Mutex::new(child), lines: Mutex::new(rx), transcript, started, _lab: lab })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.lock().unwrap_or_else(PoisonError::into_inner).id()
    }

    /// When it was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits at most `timeout` for a line containing `pattern`; returns that line.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Result<String> {
        self.wait_until(&format!("\"{pattern}\""), timeout, |line| line.contains(pattern))
    }

    /// Waits at most `timeout` for a line that `matches`; returns it. `what` names it in errors.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut matches: impl FnMut(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(remaining) {
                Ok(line) if matches(&line) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        process: self.name.clone(),
                        what: what.to_owned(),
                        timeout,
                        tail: self.tail(TAIL_LINES),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Ended {
                        process: self.name.clone(),
                        what: what.to_owned(),
                        tail: self.tail(TAIL_LINES),
                    });
                }
            }
        }
    }

    /// Waits at most `timeout` for the process to exit (its output ends first, then it is
    /// reaped); returns how it ended.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        {
            let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(_) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => return Err(self.exit_timeout(timeout)),
                }
            }
        }
        // Output closed: the process is exiting. Reap it, still within the bound (std has no
        // wait with a timeout, so poll).
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let exited = child.try_wait().map_err(|source| Error::Wait { process: self.name.clone(), source })?;
            if let Some(status) = exited {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.exit_timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn exit_timeout(&self, timeout: Duration) -> Error {
        Error::Timeout { process: self.name.clone(), what: "exit".into(), timeout, tail: self.tail(TAIL_LINES) }
    }

    /// Every line so far, stdout and stderr interleaved as they arrived.
    pub fn transcript(&self) -> Vec<String> {
        self.transcript.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The last `n` lines, joined.
    pub fn tail(&self, n: usize) -> String {
        let transcript = self.transcript.lock().unwrap_or_else(PoisonError::into_inner);
        transcript[transcript.len().saturating_sub(n)..].join("\n")
    }

    /// Kills (SIGKILL) and reaps the process; also done on drop. Failures are logged.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(child.try_wait(), Ok(None))
            && let Err(error) = child.kill()
        {
            tracing::warn!(process = %self.name, pid = child.id(), %error, "failed to kill a lab process");
        }
        if let Err(error) = child.wait() {
            tracing::warn!(process = %self.name, pid = child.id(), %error, "failed to reap a lab process");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `from` line by line into the channel and the transcript, on a thread that ends at EOF.
fn pump(
    from: impl Read + Send + 'static,
    to: Sender<String>,
    transcript: Arc<Mutex<Vec<String>>>,
    echo: Option<String>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            // A read error ends the output as EOF does: the waits then report it ended.
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buffer).trim_end_matches(['\r', '\n']).to_owned();
            if let Some(name) = &echo {
                eprintln!("[{name}] {line}");
            }
            transcript.lock().unwrap_or_else(PoisonError::into_inner).push(line.clone());
            // The receiver may be gone (the Process dropped): keep draining the pipe regardless.
            let _ = to.send(line);
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
    use super::*;

    #[test]
    fn process_lines_are_awaited_in_order_and_kept() -> Result<()> {
        let mut command = Command::new("sh");
        command.args(["-c", "echo one; echo two; printf 'three\\r\\n'; echo four >&2"]);
        let process = Process::spawn("sh", command, None)?;
        assert_eq!(process.wait_for("t", Duration::from_secs(10))?, "two");
        assert_eq!(process.wait_for("t", Duration::from_secs(10))?, "three");
        assert!(matches!(process.wait_for("one", Duration::from_secs(10)), Err(Error::Ended { .. })));
        assert!(process.wait_exit(Duration::from_secs(10))?.success());
        let mut transcript = process.transcript();
        transcript.sort();
        assert_eq!(transcript, ["four", "one", "three", "two"]);
        Ok(())
    }

    #[test]
    fn waits_are_bounded() -> Result<()> {
        let mut command = Command::new("sleep");
        command.arg("30");
        let process = Process::spawn("sleep", command, None)?;
        let started = Instant::now();
        assert!(matches!(process.wait_for("never", Duration::from_millis(200)), Err(Error::Timeout { .. })));
        assert!(started.elapsed() < Duration::from_secs(5));
        Ok(())
    }

    #[test]
    fn a_program_that_cannot_start_is_named_in_the_error() {
        let error = Process::spawn("nothing", Command::new("/nonexistent/program"), None).unwrap_err();
        assert!(matches!(&error, Error::Start { name, .. } if name == "nothing"), "{error:?}");
        assert_eq!(error.to_string(), "failed to start nothing (`/nonexistent/program`)");
    }
}
