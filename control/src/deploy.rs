//! `atelier deploy systemd`: hardened systemd units for the services an `atelier.yaml`
//! configures, so a host runs them without a terminal.
//!
//! One unit per service process: `atelier-up.service` for the sandbox profile (the whole
//! sandbox in one supervised process), or in production `atelier-relay.service` (when the
//! file has a relay) and `atelier-appview.service`, each running the same binary with
//! `--config`. Every unit runs as a dedicated user, with the file system read-only except
//! the data directory (`ProtectSystem=strict`, `ReadWritePaths=`), no new privileges, a
//! private /tmp, no access to home directories, a restricted set of address families and
//! system calls, and `Restart=on-failure`. The units are written to a directory (default
//! `./systemd`) for the operator to review and install; nothing is enabled here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// `atelier deploy` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeployCommand {
    /// Write hardened systemd unit files for the configured services (review, then copy
    /// them to /etc/systemd/system and `systemctl enable --now` them).
    Systemd(SystemdArgs),
}

/// Options of `atelier deploy systemd`.
#[derive(Debug, Clone, clap::Args)]
pub struct SystemdArgs {
    /// The configuration the services run from (its absolute path goes into the units).
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_FILE)]
    pub config: PathBuf,
    /// Where to write the unit files.
    #[arg(long, value_name = "DIR", default_value = "systemd")]
    pub out: PathBuf,
    /// The user (and group) the services run as; create it with
    /// `useradd --system --home-dir DATA_DIR --shell /usr/sbin/nologin NAME`.
    #[arg(long, value_name = "NAME", default_value = "atelier")]
    pub user: String,
    /// The `atelier` binary the units run (default: this one).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

/// One unit: its file name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// `atelier-NAME.service`.
    pub name: String,
    /// The unit file.
    pub text: String,
}

/// The units for `loaded` (from the file at `config`), running `binary` as `user`, with
/// the runtime (Node and the pinned PDS, for the sandbox) under `home`. Paths should be
/// absolute.
pub fn units(
    loaded: &crate::config::Loaded,
    config: &Path,
    binary: &Path,
    user: &str,
    home: &Path,
) -> anyhow::Result<Vec<Unit>> {
    let data = std::path::absolute(loaded.data_dir())?;
    let mut services: Vec<(&str, String, &str)> = Vec::new();
    if loaded.config.plc().is_some() {
        services.push((
            "up",
            format!("up --config {}", config.display()),
            "the sandbox network: PLC, PDS, relay and AppView",
        ));
    } else {
        if loaded.config.services.relay.is_some() {
            services.push((
                "relay",
                format!("relay --config {}", config.display()),
                "the AC-namespace relay",
            ));
        }
        services.push((
            "appview",
            format!("appview --config {}", config.display()),
            "the AC AppView",
        ));
    }
    Ok(services
        .into_iter()
        .map(|(name, args, what)| Unit {
            name: format!("atelier-{name}.service"),
            text: unit_text(what, binary, &args, user, &data, home),
        })
        .collect())
}

fn unit_text(
    what: &str,
    binary: &Path,
    args: &str,
    user: &str,
    data: &Path,
    home: &Path,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# Written by `atelier deploy systemd`: Atelier, {what}.");
    let _ = writeln!(t, "[Unit]");
    let _ = writeln!(t, "Description=Atelier: {what}");
    let _ = writeln!(t, "After=network-online.target");
    let _ = writeln!(t, "Wants=network-online.target");
    let _ = writeln!(t);
    let _ = writeln!(t, "[Service]");
    let _ = writeln!(t, "Type=exec");
    let _ = writeln!(t, "ExecStart={} {args}", binary.display());
    let _ = writeln!(t, "User={user}");
    let _ = writeln!(t, "Group={user}");
    let _ = writeln!(t, "WorkingDirectory={}", data.display());
    let _ = writeln!(t, "Environment=ATELIER_HOME={}", home.display());
    let _ = writeln!(t, "Restart=on-failure");
    let _ = writeln!(t, "RestartSec=5s");
    let _ = writeln!(t, "TimeoutStopSec=60s");
    let _ = writeln!(t, "KillSignal=SIGTERM");
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "UMask=0077",
    ] {
        let _ = writeln!(t, "{line}");
    }
    let _ = writeln!(t, "ReadWritePaths={}", data.display());
    let _ = writeln!(t);
    let _ = writeln!(t, "[Install]");
    let _ = writeln!(t, "WantedBy=multi-user.target");
    t
}

/// Runs an `atelier deploy` subcommand.
pub fn run(command: DeployCommand) -> anyhow::Result<()> {
    match command {
        DeployCommand::Systemd(args) => systemd(args),
    }
}

fn systemd(args: SystemdArgs) -> anyhow::Result<()> {
    let loaded = crate::config::load(&args.config)?;
    let config = std::path::absolute(&args.config)?;
    let binary = match args.binary {
        Some(path) => std::path::absolute(path)?,
        None => std::env::current_exe().context("finding this atelier binary")?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let home = std::path::absolute(atelier_sandbox::Runtime::home())?;
    let units = units(&loaded, &config, &binary, &args.user, &home)?;
    for unit in &units {
        let path = args.out.join(&unit.name);
        std::fs::write(&path, &unit.text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    println!("Install them (as root):");
    println!(
        "  useradd --system --home-dir {} --shell /usr/sbin/nologin {}",
        loaded.data_dir().display(),
        args.user
    );
    println!(
        "  chown -R {}: {}",
        args.user,
        std::path::absolute(loaded.data_dir())?.display()
    );
    println!(
        "  cp {}/*.service /etc/systemd/system/ && systemctl daemon-reload",
        args.out.display()
    );
    println!("  systemctl enable --now {}", names.join(" "));
    if home.starts_with("/root") || home.starts_with("/home") {
        println!(
            "Note: the runtime is under {} (ProtectHome=yes hides it from the service); install it \
             where the service user can read it: ATELIER_HOME=/opt/atelier ./install.sh",
            home.display()
        );
    }
    Ok(())
}
