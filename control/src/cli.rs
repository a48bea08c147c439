//! The command line: argument definitions and dispatch.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Atelier: a self-hosted AT Protocol distribution for Aesthetic Computer.
///
/// One binary that provisions and supervises a PDS, the AC AppView and an AC-namespace
/// relay. Start with `atelier up`, which runs the sandbox network on loopback.
#[derive(Debug, Parser)]
#[command(name = "atelier", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of atelier and of the PDS/PLC/Node it provisions.
    Version,
    /// Start the sandbox network (local PLC + reference PDS) in the foreground, keeping its
    /// data under ATELIER_HOME/sandbox. Press Ctrl-C to stop.
    ///
    /// It also runs the AppView, indexing the sandbox PDS (its feed URL is printed). This is
    /// the first, small `up`: the relay and admin console join it, driven by atelier.yaml,
    /// as they land.
    Up {
        /// Run what this atelier.yaml configures (sandbox profile): the PLC and PDS on its
        /// ports, its relay if it has one, and its AppView (through the relay when there
        /// is one). Default: ./atelier.yaml when it exists, else the built-in sandbox.
        #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// Where the sandbox keeps its data (default: ATELIER_HOME/sandbox, or
        /// DATA_DIR/sandbox from atelier.yaml).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Port of the AppView on 127.0.0.1 (0: any free port; a taken port falls back
        /// to a free one). Default 2584, or `services.appview.port`.
        #[arg(long, value_name = "PORT")]
        appview_port: Option<u16>,
    },
    /// Show what `atelier up` would do with atelier.yaml: start, restart (naming the
    /// changed keys), stop or leave each service.
    Plan(crate::up_cmd::PlanArgs),
    /// Show whether `atelier up` is running and each service's health and URL (exit 1
    /// unless all are healthy).
    Status(crate::up_cmd::StatusArgs),
    /// Stop a running `atelier up` cleanly.
    Down(crate::up_cmd::Target),
    /// Print the sandbox services' logs (`-f` to follow).
    Logs(crate::up_cmd::LogsArgs),
    /// Write deployment files: `atelier deploy systemd` writes hardened unit files.
    Deploy {
        #[command(subcommand)]
        command: crate::deploy::DeployCommand,
    },
    /// Write the whole data directory to a .tar.zst archive (with `atelier up` stopped).
    Backup(crate::backup::BackupArgs),
    /// Restore a backup into an empty data directory (`--force`: move the existing aside).
    Restore(crate::backup::RestoreArgs),
    /// Accounts on the running sandbox's PDS.
    Account {
        #[command(subcommand)]
        command: crate::up_cmd::AccountCommand,
    },
    /// Write a commented atelier.yaml with every key and its default, and generate the
    /// secrets under DATA_DIR/secrets/.
    Init(crate::config::command::InitArgs),
    /// Check atelier.yaml: print `ok: <summary>`, or the error with its line and key.
    Check(crate::config::command::CheckArgs),
    /// Developer tools.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Run the AC-namespace relay from the `services.relay` section of atelier.yaml
    /// (`atelier relay --config FILE`), or use the sync layer's tools: replay and record
    /// firehose frames.
    #[command(args_conflicts_with_subcommands = true)]
    Relay {
        #[command(flatten)]
        serve: crate::relay_cmd::ServeArgs,
        #[command(subcommand)]
        command: Option<crate::relay_cmd::RelayCommand>,
    },
    /// The admin console for moderators: `atelier admin serve` runs it from the
    /// `services.admin` section of atelier.yaml; `add-user`, `reset-password` and
    /// `list-users` manage its accounts.
    Admin {
        #[command(subcommand)]
        command: crate::admin::command::AdminCommand,
    },
    /// Run the AC AppView from the `services.appview` section of atelier.yaml: ingest its
    /// source into the index and serve the computer.aesthetic.* XRPC queries; or backfill
    /// its index from whole repositories (`atelier appview backfill`).
    #[command(args_conflicts_with_subcommands = true)]
    Appview {
        #[command(flatten)]
        serve: crate::appview_cmd::ServeArgs,
        #[command(subcommand)]
        command: Option<crate::appview_cmd::AppviewCommand>,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Start a throwaway PLC + PDS on loopback in the foreground and print their URLs.
    Pds(crate::dev::PdsArgs),
}

/// Sets up logging to stderr. `RUST_LOG` wins over `-v`.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: logs redirected to a file or journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The one-line message for a failed command: the error and each cause, leaving out a
/// cause whose text the message already holds (most of our error types print their source
/// in their own message, and anyhow's `{:#}` would print it a second time).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Version => {
            print!("{}", crate::version::report());
            Ok(())
        }
        Command::Up {
            config,
            data_dir,
            appview_port,
        } => runtime()?.block_on(async {
            // An `up` already running from the same file applies the file's changes.
            if let Some(file) = crate::up_cmd::up_file(config.clone(), data_dir.as_deref())
                && crate::up_cmd::reconcile(&file).await?
            {
                return Ok(());
            }
            crate::dev::run_pds(crate::up_cmd::up_args(config, data_dir, appview_port)?).await
        }),
        Command::Plan(args) => crate::up_cmd::run_plan(args),
        Command::Status(args) => runtime()?.block_on(crate::up_cmd::status(args)),
        Command::Down(target) => runtime()?.block_on(crate::up_cmd::down(target)),
        Command::Logs(args) => runtime()?.block_on(crate::up_cmd::logs(args)),
        Command::Deploy { command } => crate::deploy::run(command),
        Command::Backup(args) => crate::backup::backup(args),
        Command::Restore(args) => crate::backup::restore(args),
        Command::Account { command } => runtime()?.block_on(crate::up_cmd::account(command)),
        Command::Init(args) => crate::config::command::run_init(&args),
        Command::Check(args) => crate::config::command::run_check(&args),
        Command::Dev {
            command: DevCommand::Pds(args),
        } => runtime()?.block_on(crate::dev::run_pds(args)),
        Command::Relay {
            command: Some(command),
            ..
        } => runtime()?.block_on(crate::relay_cmd::run(command)),
        Command::Relay {
            serve,
            command: None,
        } => runtime()?.block_on(crate::relay_cmd::serve(serve)),
        Command::Admin { command } => runtime()?.block_on(crate::admin::command::run(command)),
        Command::Appview {
            command: Some(command),
            ..
        } => runtime()?.block_on(crate::appview_cmd::run(command)),
        Command::Appview {
            serve,
            command: None,
        } => runtime()?.block_on(crate::appview_cmd::serve(serve)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
