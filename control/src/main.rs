//! The `atelier` binary: parses the command line, starts logging, and hands over to
//! [`atelier_control::cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = atelier_control::cli::Cli::parse();
    atelier_control::cli::init_tracing(cli.verbose);
    match atelier_control::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("atelier: {}", atelier_control::cli::error_message(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
