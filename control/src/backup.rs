//! `atelier backup` and `atelier restore`: the whole data directory (secrets, PLC
//! operations, PDS accounts and blobs, the relay's log, the AppView's index) as one
//! zstd-compressed tar archive, and back.
//!
//! A backup is taken while `atelier up` is stopped: the PDS and the indexes are SQLite
//! databases in WAL mode, and copying their files while they are written would not give a
//! consistent copy. The archive starts with a manifest (`atelier-backup.json`: format,
//! atelier version, time, file count and bytes) that `restore` checks before writing
//! anything. Restoring goes into an empty (or missing) directory, or with `--force` moves
//! the existing one aside first; entries are unpacked with the `tar` crate's path checks
//! (no `..`, no absolute paths) and their permissions kept (secret files stay 0600).
//!
//! The AppView's Postgres database, when it uses one, is not in the data directory: back it
//! up with `pg_dump` (or rebuild it with a backfill).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::up_cmd::Target;
use crate::up_state::UpState;

/// The manifest's name, the archive's first entry.
const MANIFEST: &str = "atelier-backup.json";
/// The archive format this version writes and reads.
const FORMAT: u32 = 1;

/// What the archive holds.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    atelier: String,
    created_at: String,
    files: u64,
    bytes: u64,
}

/// Options of `atelier backup`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The archive to write (`.tar.zst`); refused if it exists.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub target: Target,
}

/// Options of `atelier restore`.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The archive `atelier backup` wrote.
    pub archive: PathBuf,
    /// Restore over an existing data directory: it is moved aside first
    /// (`DIR.before-restore-TIME`), never deleted.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub target: Target,
}

fn refuse_if_running(target: &Target) -> anyhow::Result<()> {
    if let Some(state) = UpState::read(&target.dir())? {
        anyhow::bail!(
            "atelier up is running (pid {}): stop it with `atelier down` first (a copy of a running PDS and index would not be consistent)",
            state.pid
        );
    }
    Ok(())
}

/// Every file under `root`, relative, in a stable order.
fn files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files(root, &path, out)?;
        } else if kind.is_file() {
            out.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

/// Writes the data directory to `args.out`.
pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    refuse_if_running(&args.target)?;
    let root = args.target.root();
    anyhow::ensure!(
        root.is_dir(),
        "there is no data directory at {} (nothing to back up)",
        root.display()
    );
    let mut list = Vec::new();
    files(&root, &root, &mut list)?;
    let out_abs = std::path::absolute(&args.out)?;
    list.retain(|p| root.join(p) != out_abs && p != Path::new("up.json"));
    let bytes: u64 = list
        .iter()
        .map(|p| std::fs::metadata(root.join(p)).map_or(0, |m| m.len()))
        .sum();
    let manifest = Manifest {
        format: FORMAT,
        atelier: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: atelier_appview::relay::service::rfc3339(
            atelier_appview::relay::jetstream::now_us(),
        ),
        files: list.len() as u64,
        bytes,
    };
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .with_context(|| format!("creating {} (it must not exist)", args.out.display()))?;
    let encoder = zstd::Encoder::new(BufWriter::new(file), 3)?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest_bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, manifest_bytes.as_slice())?;
    for (i, rel) in list.iter().enumerate() {
        tar.append_path_with_name(root.join(rel), rel)
            .with_context(|| format!("adding {}", rel.display()))?;
        if (i + 1) % 500 == 0 {
            eprintln!("  {}/{} files", i + 1, list.len());
        }
    }
    let encoder = tar.into_inner()?;
    let mut writer = encoder.finish()?;
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    println!(
        "Backed up {} ({} files, {:.1} MB) to {}",
        root.display(),
        manifest.files,
        manifest.bytes as f64 / 1e6,
        args.out.display()
    );
    Ok(())
}

/// Restores an archive into the data directory.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    refuse_if_running(&args.target)?;
    let root = args.target.root();
    let open = || -> anyhow::Result<tar::Archive<zstd::Decoder<'static, BufReader<File>>>> {
        let file = File::open(&args.archive)
            .with_context(|| format!("opening {}", args.archive.display()))?;
        let decoder = zstd::Decoder::new(file).with_context(|| {
            format!("{} is not an atelier backup (zstd)", args.archive.display())
        })?;
        Ok(tar::Archive::new(decoder))
    };
    // The manifest first: nothing is written for an archive that is not ours.
    let manifest: Manifest = {
        let mut archive = open()?;
        let mut entries = archive
            .entries()
            .with_context(|| format!("{} is not an atelier backup", args.archive.display()))?;
        let mut first = entries
            .next()
            .transpose()
            .ok()
            .flatten()
            .filter(|e| e.path().is_ok_and(|p| p == Path::new(MANIFEST)))
            .with_context(|| {
                format!(
                    "{} is not an atelier backup (no {MANIFEST} at its start)",
                    args.archive.display()
                )
            })?;
        let mut text = String::new();
        first.read_to_string(&mut text)?;
        serde_json::from_str(&text).with_context(|| format!("{MANIFEST} is damaged"))?
    };
    anyhow::ensure!(
        manifest.format == FORMAT,
        "{} has backup format {}; this atelier reads format {FORMAT}",
        args.archive.display(),
        manifest.format
    );
    let occupied = root.exists()
        && std::fs::read_dir(&root)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true);
    if occupied {
        anyhow::ensure!(
            args.force,
            "{} is not empty: restore into an empty directory, or pass --force to move it aside first",
            root.display()
        );
        let aside = PathBuf::from(format!(
            "{}.before-restore-{}",
            root.display(),
            atelier_appview::relay::jetstream::now_us() / 1_000_000
        ));
        std::fs::rename(&root, &aside)
            .with_context(|| format!("moving {} aside", root.display()))?;
        eprintln!("Moved the existing data to {}", aside.display());
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let mut archive = open()?;
    archive.set_preserve_permissions(true);
    let mut restored = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry.context("reading the archive")?;
        if entry.path().is_ok_and(|p| p == Path::new(MANIFEST)) {
            continue;
        }
        let unpacked = entry
            .unpack_in(&root)
            .with_context(|| format!("unpacking into {}", root.display()))?;
        anyhow::ensure!(
            unpacked,
            "the archive has an entry outside the data directory; nothing more is unpacked"
        );
        restored += 1;
    }
    anyhow::ensure!(
        restored == manifest.files,
        "the archive holds {restored} files but its manifest says {}: it is truncated",
        manifest.files
    );
    println!(
        "Restored {restored} files (backup of {}, atelier {}) into {}",
        manifest.created_at,
        manifest.atelier,
        root.display()
    );
    Ok(())
}
