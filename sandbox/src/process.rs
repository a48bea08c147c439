//! One supervised Node child process (the PLC or the PDS) with its log file.
//!
//! A [`Service`] remembers how it was started, so the supervisor
//! ([`crate::Sandbox::supervise`]) can start it again after it dies: with exponential
//! backoff (1 s, 2 s, 4 s, ...), and not at all once it has died [`CRASH_LIMIT`] times
//! within [`CRASH_WINDOW`] (a crash loop, reported with the end of its log).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Runtime, SandboxError, poll_health};

/// Deaths within [`CRASH_WINDOW`] after which a service is not restarted again.
pub const CRASH_LIMIT: usize = 5;
/// The window [`CRASH_LIMIT`] counts deaths in.
pub const CRASH_WINDOW: Duration = Duration::from_secs(120);
/// The first restart's delay; each further death within the window doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// A child process running one of the entry scripts in the runtime's `pds/` directory.
#[derive(Debug)]
pub(crate) struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
    runtime: Runtime,
    script: String,
    env: Vec<(String, String)>,
    /// Restarts so far.
    pub(crate) restarts: u32,
    /// When it died, recently (for the crash-loop limit).
    deaths: VecDeque<Instant>,
    /// When a dead service may be started again.
    next_start: Option<Instant>,
}

/// What the supervisor did about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Supervised {
    /// Running.
    Running,
    /// Dead; a restart is due at the given time.
    Waiting,
    /// Started again (and healthy).
    Restarted,
}

impl Service {
    /// Starts `node SCRIPT` in the runtime's PDS directory with `env` added, stdout and
    /// stderr appended to `log`.
    pub(crate) fn spawn(
        name: &'static str,
        runtime: &Runtime,
        script: &str,
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<Service, SandboxError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let child = start(name, runtime, script, &env, log)?;
        Ok(Service {
            name,
            child,
            log: log.to_path_buf(),
            runtime: runtime.clone(),
            script: script.to_owned(),
            env,
            restarts: 0,
            deaths: VecDeque::new(),
            next_start: None,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// If the process has died: notes the death and, when its backoff has passed, starts
    /// it again and waits until `health_url` answers. A crash loop is an error.
    pub(crate) async fn supervise(
        &mut self,
        http: &reqwest::Client,
        health_url: &str,
        timeout: Duration,
    ) -> Result<Supervised, SandboxError> {
        if self.next_start.is_none() {
            let status = match self.child.try_wait() {
                Ok(None) => return Ok(Supervised::Running),
                Ok(Some(status)) => status.to_string(),
                Err(e) => e.to_string(),
            };
            let now = Instant::now();
            self.deaths.push_back(now);
            while self
                .deaths
                .front()
                .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
            {
                self.deaths.pop_front();
            }
            if self.deaths.len() >= CRASH_LIMIT {
                return Err(SandboxError::CrashLoop {
                    service: self.name,
                    deaths: self.deaths.len(),
                    window: CRASH_WINDOW,
                    log_tail: self.log_tail(40),
                });
            }
            let shift = u32::try_from(self.deaths.len() - 1).unwrap_or(0).min(6);
            let backoff = FIRST_BACKOFF * 2u32.pow(shift);
            self.note(&format!(
                "{} exited ({status}); starting it again in {backoff:?}",
                self.name
            ));
            self.next_start = Some(now + backoff);
        }
        if self.next_start.is_some_and(|t| Instant::now() < t) {
            return Ok(Supervised::Waiting);
        }
        self.next_start = None;
        self.child = start(self.name, &self.runtime, &self.script, &self.env, &self.log)?;
        match self.wait_healthy(http, health_url, timeout).await {
            Ok(()) => {
                self.restarts += 1;
                Ok(Supervised::Restarted)
            }
            // Dead again (or killed for not answering): the next call counts the death.
            Err(_) => Ok(Supervised::Waiting),
        }
    }

    /// Appends a supervisor line to the service's log.
    fn note(&self, line: &str) {
        if let Ok(mut f) = File::options().append(true).open(&self.log) {
            let _ = writeln!(f, "[atelier supervisor] {line}");
        }
    }
}

/// A log larger than this is rotated when its service (re)starts.
pub(crate) const LOG_ROTATE_BYTES: u64 = 16 << 20;
/// Rotated logs kept: `NAME.log.1` (newest) to `NAME.log.N`.
pub(crate) const LOG_KEEP: u32 = 3;

/// Rotates `log` if it has grown past [`LOG_ROTATE_BYTES`]: `x.log` -> `x.log.1` ->
/// `x.log.2` ..., dropping the oldest. Done only when the service (re)starts, so the
/// process never writes to a renamed file.
fn rotate(log: &Path) {
    if std::fs::metadata(log).map_or(true, |m| m.len() <= LOG_ROTATE_BYTES) {
        return;
    }
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    let _ = std::fs::remove_file(numbered(LOG_KEEP));
    for n in (1..LOG_KEEP).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(log, numbered(1));
}

/// Starts `node SCRIPT` in the runtime's PDS directory with `env` added, stdout and
/// stderr appended to `log` (rotated first if it is large).
fn start(
    name: &'static str,
    runtime: &Runtime,
    script: &str,
    env: &[(String, String)],
    log: &Path,
) -> Result<Child, SandboxError> {
    rotate(log);
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| SandboxError::io(format!("opening {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| SandboxError::io(format!("opening {}", log.display()), e))?;
    let mut cmd = Command::new(runtime.node());
    cmd.arg(runtime.pds_dir().join(script))
        .current_dir(runtime.pds_dir())
        .env("ATELIER_LISTEN_HOST", "127.0.0.1")
        .env("NODE_ENV", "development")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.spawn().map_err(|e| {
        SandboxError::io(
            format!("starting {} ({})", name, runtime.node().display()),
            e,
        )
    })
}

impl Service {
    /// Waits until `url` answers 2xx. Fails early, with the log, if the process exits.
    pub(crate) async fn wait_healthy(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.unhealthy(format!("process exited with {status}")));
            }
            let step = (Instant::now() + Duration::from_millis(500)).min(deadline);
            match poll_health(http, url, step).await {
                Ok(()) => return Ok(()),
                Err(last) if Instant::now() >= deadline => {
                    self.kill();
                    return Err(self.unhealthy(format!(
                        "not healthy after {}s (last: {last})",
                        timeout.as_secs()
                    )));
                }
                Err(_) => {}
            }
        }
    }

    fn unhealthy(&self, reason: String) -> SandboxError {
        SandboxError::Unhealthy {
            service: self.name,
            reason,
            log_tail: self.log_tail(40),
        }
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log (lossy UTF-8).
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`.
    pub(crate) async fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// SIGKILL and reap. Safe to call more than once.
    pub(crate) fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_logs_rotate_and_the_oldest_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("pds.log");
        let numbered = |n: u32| dir.path().join(format!("pds.log.{n}"));
        // Small: left alone.
        std::fs::write(&log, "small").expect("write");
        rotate(&log);
        assert!(log.exists() && !numbered(1).exists());
        // Large, several times: each generation moves up, at most LOG_KEEP are kept.
        let big = vec![b'x'; usize::try_from(LOG_ROTATE_BYTES).expect("fits") + 1];
        for round in 0..=LOG_KEEP {
            std::fs::write(&log, [&big[..], &[b'0' + round as u8]].concat()).expect("write");
            rotate(&log);
            assert!(!log.exists(), "round {round}: the live log moved");
        }
        for n in 1..=LOG_KEEP {
            let last = std::fs::read(numbered(n)).expect("kept").pop();
            assert_eq!(
                last,
                Some(b'0' + (LOG_KEEP - n + 1) as u8),
                "generation {n}"
            );
        }
        assert!(!numbered(LOG_KEEP + 1).exists(), "the oldest is dropped");
    }
}
