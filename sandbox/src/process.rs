//! One supervised Node child process (the PLC or the PDS) with its log file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Runtime, SandboxError, poll_health};

/// A child process running one of the entry scripts in the runtime's `pds/` directory.
#[derive(Debug)]
pub(crate) struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
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
        let child = cmd.spawn().map_err(|e| {
            SandboxError::io(
                format!("starting {} ({})", name, runtime.node().display()),
                e,
            )
        })?;
        Ok(Service {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

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
