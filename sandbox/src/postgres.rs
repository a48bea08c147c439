//! A throwaway PostgreSQL server on loopback, for tests of the Postgres index store.
//!
//! [`PgCluster::start`] runs `initdb` into a temporary directory and starts `postgres` on
//! a free loopback port (no unix socket, trust authentication for the `atelier` role, no
//! fsync: the data is thrown away). Dropping the cluster stops the server (immediate
//! shutdown) and removes the directory. The server binaries come from Debian's
//! `postgresql` package (`./install.sh --dev` installs it); when they are missing,
//! [`PgCluster::start`] fails with an error that says so, so tests that need Postgres fail,
//! never skip.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI), `initdb` and
//! `postgres` run as the `postgres` system user that the Debian package creates (or
//! `nobody`), and the temporary directory is handed to that user.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::SandboxError;

/// How long the server gets to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The superuser role `initdb` creates.
const ROLE: &str = "atelier";

/// A running PostgreSQL server, stopped on drop.
#[derive(Debug)]
pub struct PgCluster {
    child: Child,
    port: u16,
    bin: PathBuf,
    log: PathBuf,
    run_as: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl PgCluster {
    /// Creates and starts a cluster; returns once it accepts connections.
    ///
    /// # Errors
    /// If the PostgreSQL server binaries are not installed, or `initdb` or the server
    /// fails (the error holds the end of its log).
    pub fn start() -> Result<PgCluster, SandboxError> {
        let bin = server_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("atelier-pg-")
            .tempdir()
            .map_err(|e| SandboxError::io("creating the Postgres directory", e))?;
        let run_as = unprivileged_user()?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| SandboxError::io("handing the Postgres directory over", e))?;
        }
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let init = command(&bin, "initdb", dir.path(), run_as)
            .args([
                "--no-sync",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .arg(format!("--username={ROLE}"))
            .arg("-D")
            .arg(&data)
            .output()
            .map_err(|e| {
                SandboxError::io(format!("running {}", bin.join("initdb").display()), e)
            })?;
        if !init.status.success() {
            return Err(SandboxError::Unhealthy {
                service: "postgres",
                reason: format!("initdb failed ({})", init.status),
                log_tail: String::from_utf8_lossy(&init.stderr).into_owned(),
            });
        }
        let port = free_port()?;
        let log_file = std::fs::File::create(&log)
            .map_err(|e| SandboxError::io(format!("creating {}", log.display()), e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| SandboxError::io("duplicating the log handle", e))?;
        let child = command(&bin, "postgres", dir.path(), run_as)
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                SandboxError::io(format!("starting {}", bin.join("postgres").display()), e)
            })?;
        let mut cluster = PgCluster {
            child,
            port,
            bin,
            log,
            run_as,
            dir,
        };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// Waits for the server's "ready to accept connections" line.
    fn wait_ready(&mut self) -> Result<(), SandboxError> {
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("ready to accept connections") {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.unhealthy(format!("the server exited ({status})")));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(self.unhealthy(format!("not ready after {START_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn unhealthy(&self, reason: String) -> SandboxError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        SandboxError::Unhealthy {
            service: "postgres",
            reason,
            log_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` and returns its URL.
    ///
    /// # Errors
    /// If `createdb` fails (for example, the name is taken).
    pub fn create_database(&self, name: &str) -> Result<String, SandboxError> {
        let out = command(&self.bin, "createdb", self.dir.path(), self.run_as)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                ROLE,
                name,
            ])
            .output()
            .map_err(|e| SandboxError::io("running createdb", e))?;
        if !out.status.success() {
            return Err(SandboxError::Unhealthy {
                service: "postgres",
                reason: format!("createdb {name} failed ({})", out.status),
                log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(self.url(name))
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown (the data is thrown away with the directory).
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bin/name` run in `cwd`, as `run_as` when given.
fn command(bin: &Path, name: &str, cwd: &Path, run_as: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin.join(name));
    cmd.current_dir(cwd).env_remove("PGDATA");
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Where `initdb` and `postgres` are: `ATELIER_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `PATH`.
fn server_bin_dir() -> Result<PathBuf, SandboxError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("ATELIER_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(missing(&dir))
        };
    }
    let debian = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_server(dir))
        .ok_or_else(|| missing(debian))
}

fn missing(path: &Path) -> SandboxError {
    SandboxError::RuntimeMissing {
        what: "the PostgreSQL server (initdb, postgres; `./install.sh --dev` installs Debian's postgresql package)",
        path: path.to_owned(),
    }
}

/// The user to run the server as when we are root: `postgres`, else `nobody`.
fn unprivileged_user() -> Result<Option<(u32, u32)>, SandboxError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| SandboxError::io("reading /etc/passwd", e))?;
    let ids = |name: &str| {
        passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != name {
                return None;
            }
            let (uid, gid) = (f.nth(1)?.parse().ok()?, f.next()?.parse().ok()?);
            Some((uid, gid))
        })
    };
    ids("postgres")
        .or_else(|| ids("nobody"))
        .map(Some)
        .ok_or_else(|| SandboxError::Io {
            context: "PostgreSQL refuses to run as root, and there is no `postgres` or `nobody` user to run it as".to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, SandboxError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| SandboxError::io("finding a free port", e))
}
