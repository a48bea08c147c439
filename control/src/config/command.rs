//! The `atelier init` and `atelier check` commands.

use std::path::PathBuf;

use anyhow::Context;

use super::schema::{AtelierConfig, Profile};
use super::{DEFAULT_FILE, Loaded};

/// `atelier init`'s arguments.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// `sandbox` (everything on loopback, nothing to edit) or `production`.
    #[arg(long, value_enum, default_value_t = ProfileArg::Sandbox)]
    pub profile: ProfileArg,
    /// The public hostname (default: localhost in the sandbox).
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,
    /// Where to write the file.
    #[arg(long, alias = "output", value_name = "PATH", default_value = DEFAULT_FILE)]
    pub out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Do not generate the secrets under DATA_DIR/secrets/ now (`up` does it anyway).
    #[arg(long)]
    pub no_secrets: bool,
}

/// `--profile` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileArg {
    /// See [`Profile::Sandbox`].
    Sandbox,
    /// See [`Profile::Production`].
    Production,
}

/// `atelier check`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The file to check.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_FILE)]
    pub config: PathBuf,
}

/// Writes a commented `atelier.yaml` and, unless told not to, the missing secrets.
pub fn run_init(args: &InitArgs) -> anyhow::Result<()> {
    let profile = match args.profile {
        ProfileArg::Sandbox => Profile::Sandbox,
        ProfileArg::Production => Profile::Production,
    };
    let config = AtelierConfig::for_profile(profile, args.hostname.as_deref());
    let text = super::init::render(&config)?;
    let base_dir = super::base_dir_of(&args.out);
    // What is written must read back as the same configuration.
    let origin = args.out.display().to_string();
    let reread = super::parse(&text, &origin).context("the generated file does not parse")?;
    anyhow::ensure!(
        reread == config,
        "the generated file does not read back as the configuration it was made from"
    );
    let problem = config.check(&base_dir).err();
    if profile == Profile::Sandbox
        && let Some(problem) = &problem
    {
        anyhow::bail!("{problem}");
    }
    super::init::write(&args.out, &text, args.force)?;
    println!(
        "wrote {} ({} profile)",
        args.out.display(),
        profile.as_str()
    );
    if !args.no_secrets {
        let secrets = super::secrets::ensure_secrets(&config.data_dir_in(&base_dir))?;
        if secrets.created.is_empty() {
            println!("secrets already in {}", secrets.dir.display());
        } else {
            println!(
                "generated secrets in {}: {}",
                secrets.dir.display(),
                secrets.created.join(", ")
            );
        }
    }
    match problem {
        Some(problem) => println!("before `atelier up`, fix: {problem}"),
        None => println!("next: `atelier check`, then `atelier up`"),
    }
    Ok(())
}

/// Parses and checks a config file, printing a one-line summary.
pub fn run_check(args: &CheckArgs) -> anyhow::Result<()> {
    let loaded = super::load(&args.config)?;
    println!("ok: {}", summary(&loaded));
    Ok(())
}

/// `atelier.yaml: sandbox profile, hostname localhost, process backend; pds (reference)
/// 127.0.0.1:2583, ...`.
pub fn summary(loaded: &Loaded) -> String {
    let c = &loaded.config;
    let s = &c.services;
    let mut services = Vec::new();
    if let Some(plc) = c.plc() {
        services.push(format!("plc 127.0.0.1:{}", plc.port));
    }
    services.push(format!(
        "pds ({}) {}",
        s.pds.implementation.as_str(),
        s.pds.listen()
    ));
    if let Some(relay) = &s.relay {
        services.push(format!("relay {}", relay.listen));
    }
    let store = match s.appview.store.kind {
        super::StoreKind::Sqlite => "sqlite",
        super::StoreKind::Postgres => "postgres",
    };
    services.push(format!("appview {} ({store})", s.appview.listen()));
    services.push(format!("admin {}", s.admin.listen()));
    let tls = match (&c.tls.cert_file, c.tls.behind_proxy) {
        (Some(_), _) => ", TLS from certificate files",
        (None, true) => ", TLS by a reverse proxy",
        (None, false) => "",
    };
    format!(
        "{}: {} profile, hostname {}, {} backend{tls}; {}",
        loaded.path.display(),
        c.profile.as_str(),
        c.hostname,
        c.backend.as_str(),
        services.join(", ")
    )
}
