//! `cargo xtask`: project automation. Run `cargo xtask codegen [--check]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

/// What `cargo xtask help` prints.
const USAGE: &str = "usage: cargo xtask codegen [--check]

  codegen          regenerate lexicons/src/generated/ and lexicons/ts/ from lexicons/**/*.json
  codegen --check  change nothing; fail and list every stale, missing or extra file";

fn main() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = xtask::workspace_lexicons();
    let shown = shown_path(&root);
    match args.as_slice() {
        ["codegen"] => {
            let report = xtask::write(&root)?;
            if report.is_clean() {
                println!("generated files are up to date");
            } else {
                for path in report.stale.iter().chain(&report.missing) {
                    println!("wrote {}", shown.join(path).display());
                }
                for path in &report.extra {
                    println!("removed {}", shown.join(path).display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ["codegen", "--check"] => {
            let mut report = xtask::check(&root)?;
            report.root = shown;
            if report.is_clean() {
                println!("{report}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{report}");
                Ok(ExitCode::FAILURE)
            }
        }
        ["help" | "--help" | "-h"] | [] => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("unknown arguments {args:?}\n\n{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}

/// `path` relative to the current directory when it is under it, for shorter messages.
fn shown_path(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}
