//! `atelier admin`: run the console, and manage its accounts from the command line.
//!
//! - `atelier admin serve [--config FILE] [--listen ADDR]`: the console, where
//!   `services.admin` says, until Ctrl-C/SIGTERM.
//! - `atelier admin add-user NAME --role ROLE [--labels a,b]`: adds a user and prints their
//!   first password once.
//! - `atelier admin reset-password NAME`: a new password, printed once, to be changed at
//!   the next sign-in; the user's sessions end.
//! - `atelier admin list-users`.
//!
//! Each finds the data directory through `atelier.yaml` (`--config`, default
//! `./atelier.yaml`), like the other services' commands. The account commands work
//! beside a running console: they share its SQLite file, which allows that.
//! Passwords go to standard output alone on their line, everything else to standard
//! error, so a script can capture the password.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use super::access::Permission;
use super::service::{AdminServiceConfig, AdminState};
use super::store::{NewUser, UserStore, database_path, parse_label_limit};
use crate::config::{Role, Secret};

/// `atelier admin` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Run the admin console from the `services.admin` section of atelier.yaml (creating
    /// its bootstrap users on first start).
    Serve(ServeArgs),
    /// Add a console user and print their first password (shown once; they must change it
    /// at first sign-in).
    AddUser(AddUserArgs),
    /// Give a user a new password (printed once) that they must change at their next
    /// sign-in; their sessions end.
    ResetPassword(UserArgs),
    /// List the console's users.
    ListUsers(ConfigArgs),
}

/// The configuration file option every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// The configuration file: its data directory holds the console's accounts.
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_FILE)]
    pub config: PathBuf,
}

/// Options of `atelier admin serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Listen here instead of `services.admin.bind`/`port` (port 0: any free port; the
    /// chosen address is printed).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

/// Options of `atelier admin add-user`.
#[derive(Debug, Clone, clap::Args)]
pub struct AddUserArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Login name: 1 to 64 letters, digits, '-', '_' or '.'.
    name: String,
    /// admin (everything), moderator (reports, labels, takedowns) or triage (view,
    /// comment, escalate).
    #[arg(long)]
    role: Role,
    /// Limit a moderator to these label values (comma-separated). Default: every value.
    #[arg(long, value_name = "VALUES")]
    labels: Option<String>,
}

/// Options naming one user.
#[derive(Debug, Clone, clap::Args)]
pub struct UserArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Login name.
    name: String,
}

/// Runs an `atelier admin` subcommand.
pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Serve(args) => serve(args).await,
        AdminCommand::AddUser(args) => add_user(args).await,
        AdminCommand::ResetPassword(args) => reset_password(args).await,
        AdminCommand::ListUsers(args) => list_users(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let loaded = crate::config::load(&args.config.config)?;
    let data_dir = loaded.data_dir();
    // The bootstrap password is one of the generated secrets; make it if `atelier init`
    // has not.
    crate::config::secrets::ensure_secrets(&data_dir)?;
    let config = AdminServiceConfig::from_loaded(&loaded);
    let listen = args
        .listen
        .unwrap_or_else(|| loaded.config.services.admin.listen());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} (services.admin.bind/port)"))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    // With the labeler's identity (made by `atelier up`), the whole console: moderation
    // pages, the labeler and createReport. Without it, accounts only.
    if let Some(did) = crate::console::up::recorded_labeler(&data_dir) {
        let sandbox = loaded.config.profile == crate::config::Profile::Sandbox;
        let plc_url = loaded.plc_url();
        let autoflag = loaded
            .appview_config()
            .ok()
            .and_then(|a| a.ingest)
            .map(|i| crate::moderation::autoflag::AutoflagConfig {
                source: i.source,
                trusted: i.trusted,
                plc_url: i.plc_url,
                allow_loopback: i.allow_loopback,
            });
        let console = crate::console::ConsoleConfig {
            admin: config,
            labeler_did: did.clone(),
            labeler_key_file: crate::config::secrets::secrets_dir(&data_dir).join("labeler_key"),
            plc_url,
            allow_loopback: sandbox,
            autoflag,
            services: configured_probes(&loaded),
        };
        println!("Admin console listening on http://{addr} (labeler {did})");
        println!("Press Ctrl-C to stop.");
        crate::console::run(console, listener, crate::relay_cmd::interrupted()?).await?;
        eprintln!("Stopped.");
        return Ok(());
    }
    let state = AdminState::open(&config).await?;
    println!("Admin console listening on http://{addr}");
    println!(
        "  accounts only: the moderation pages and the labeler need the labeler's identity, \
         which `atelier up` makes"
    );
    println!("  users    {}", database_path(&data_dir).display());
    for user in state.store().users().await? {
        if user.must_change_password && config.bootstrap.iter().any(|b| b.name == user.name) {
            println!(
                "  sign in as {} with the password in {}",
                user.name,
                config.bootstrap_password_file.display()
            );
        }
    }
    println!("Press Ctrl-C to stop.");
    let store = state.store().clone();
    let result = super::serve(
        state,
        super::accounts_pages(),
        listener,
        crate::relay_cmd::interrupted()?,
    )
    .await;
    store.close().await;
    result?;
    eprintln!("Stopped.");
    Ok(())
}

/// Where the dashboard finds the services `atelier.yaml` configures.
fn configured_probes(
    loaded: &crate::config::Loaded,
) -> Vec<crate::console::dashboard::ServiceProbe> {
    use crate::console::up::probe;
    let services = &loaded.config.services;
    let http = |addr| format!("http://{}", crate::config::reachable(addr));
    let mut probes = Vec::new();
    if loaded.config.plc().is_some() {
        probes.push(probe("plc", &loaded.plc_url(), "/_health"));
    }
    probes.push(probe("pds", &http(services.pds.listen()), "/xrpc/_health"));
    if let Some(relay) = &services.relay {
        probes.push(probe("relay", &http(relay.listen), "/xrpc/_health"));
    }
    probes.push(probe(
        "appview",
        &http(services.appview.listen()),
        "/xrpc/_health",
    ));
    probes
}

async fn open_store(args: &ConfigArgs) -> anyhow::Result<UserStore> {
    let loaded = crate::config::load(&args.config)?;
    let path = database_path(&loaded.data_dir());
    UserStore::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))
}

async fn add_user(args: AddUserArgs) -> anyhow::Result<()> {
    let allowed_labels = parse_label_limit(args.labels.as_deref().unwrap_or_default())?;
    let store = open_store(&args.config).await?;
    let password = Secret::new(super::password::generate());
    let user = store
        .create_user(NewUser {
            name: args.name,
            role: args.role,
            allowed_labels,
            password: password.clone(),
        })
        .await;
    store.close().await;
    let user = user?;
    let limit = match &user.allowed_labels {
        Some(values) => format!(", labels: {}", values.join(", ")),
        None => String::new(),
    };
    eprintln!("Added {} ({}{limit}).", user.name, user.role.as_str());
    eprintln!(
        "Their first password follows, shown this once; they must change it at first sign-in:"
    );
    println!("{}", password.expose());
    Ok(())
}

async fn reset_password(args: UserArgs) -> anyhow::Result<()> {
    let store = open_store(&args.config).await?;
    let password = store.reset_password(&args.name).await;
    store.close().await;
    let password = password?;
    eprintln!(
        "Reset the password of {}; their sessions have ended. The new password follows, \
         shown this once; they must change it at their next sign-in:",
        args.name
    );
    println!("{}", password.expose());
    Ok(())
}

async fn list_users(args: ConfigArgs) -> anyhow::Result<()> {
    let store = open_store(&args).await?;
    let users = store.users().await;
    store.close().await;
    let users = users?;
    println!("{:<24} {:<10} {:<22} LABELS", "NAME", "ROLE", "STATUS");
    for user in users {
        let status = if user.disabled {
            "disabled"
        } else if user.must_change_password {
            "must change password"
        } else {
            "active"
        };
        let labels = match (&user.allowed_labels, user.role.allows(Permission::Label)) {
            (_, false) => "-".to_owned(),
            (None, true) => "all".to_owned(),
            (Some(values), true) => values.join(","),
        };
        println!(
            "{:<24} {:<10} {:<22} {labels}",
            user.name,
            user.role.as_str(),
            status
        );
    }
    Ok(())
}
