//! `atelier dev pds` (and today's `atelier up`): the sandbox network in the foreground.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use atelier_sandbox::{Sandbox, SandboxOptions};
use tokio::signal::unix::{SignalKind, signal};

/// Options of `atelier dev pds`.
#[derive(Debug, Clone, clap::Args)]
pub struct PdsArgs {
    /// Keep data in DIR (reused on the next start). Default: a temporary directory that is
    /// deleted on exit.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Port for the PLC directory on 127.0.0.1 (default: any free port).
    #[arg(long, value_name = "PORT")]
    pub plc_port: Option<u16>,
    /// Port for the PDS on 127.0.0.1 (default: any free port).
    #[arg(long, value_name = "PORT")]
    pub pds_port: Option<u16>,
}

/// Starts the sandbox, prints its URLs, and runs until Ctrl-C/SIGTERM or until a service
/// dies (then exits with an error and the service's log).
pub async fn run_pds(args: PdsArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.data_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    eprintln!("Starting the sandbox network (PLC + PDS) on loopback...");
    let mut sandbox = Sandbox::start_with(SandboxOptions {
        data_dir: args.data_dir.clone(),
        plc_port: args.plc_port,
        pds_port: args.pds_port,
        runtime: None,
    })
    .await?;

    let data = sandbox.data_dir().display().to_string();
    println!("Sandbox network is up.");
    println!("  PLC       {}", sandbox.plc_url());
    println!("  PDS       {}", sandbox.pds_url());
    println!("  firehose  {}", sandbox.subscribe_repos_url(None));
    println!(
        "  data      {data}{}",
        if args.data_dir.is_some() {
            ""
        } else {
            " (temporary)"
        }
    );
    println!("  admin     user `admin`, password in {data}/secrets/pds_admin_password");
    println!("  logs      {data}/logs/");
    println!(
        "Create an account: curl -X POST {}/xrpc/com.atproto.server.createAccount -H 'content-type: application/json' -d '{{\"handle\":\"alice.test\",\"email\":\"alice@example.com\",\"password\":\"...\"}}'",
        sandbox.pds_url()
    );
    println!("Press Ctrl-C to stop.");

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let died = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break false,
            _ = term.recv() => break false,
            _ = check.tick() => {
                if !sandbox.is_running() {
                    break true;
                }
            }
        }
    };
    if died {
        let logs = sandbox.logs(40);
        drop(sandbox);
        anyhow::bail!("a sandbox service exited unexpectedly\n{logs}");
    }
    eprintln!("Stopping...");
    sandbox.shutdown().await;
    eprintln!("Stopped.");
    Ok(())
}
