//! `atelier up` on the sandbox profile, timed with the real binary: from spawning `up` to
//! `atelier status` reporting every service healthy, first in a fresh directory (`init`
//! just ran: secrets, the PLC's and PDS's data, the labeler's identity are all created)
//! and then again in the same directory after `atelier down` (a restart). Then `atelier
//! plan` and `atelier status` on the running stack. Each figure is printed as
//! min/median/max over the runs.
//!
//! Run: `cargo bench -p atelier-control --bench up` (5 runs; `-- --runs N` for more).
//! The Control plane issue's target: healthy in < 10 s, `plan` and `status` in < 200 ms.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");
/// How long one start may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(120);

type BoxError = Box<dyn std::error::Error>;

fn atelier_in(dir: &Path, args: &[&str]) -> Result<Output, BoxError> {
    Ok(Command::new(ATELIER).args(args).current_dir(dir).output()?)
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Starts `atelier up` in `dir` and returns it with the time until `status` said healthy.
fn up_until_healthy(dir: &Path) -> Result<(std::process::Child, Duration), BoxError> {
    let stderr = std::fs::File::create(dir.join("up.stderr"))?;
    let started = Instant::now();
    let mut child = Command::new(ATELIER)
        .arg("up")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()?;
    loop {
        if atelier_in(dir, &["status"])?.status.success() {
            return Ok((child, started.elapsed()));
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("up.stderr")).unwrap_or_default();
            return Err(format!("atelier up exited ({status}) before healthy:\n{log}").into());
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            return Err(format!("not healthy within {LIMIT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn down(dir: &Path, mut child: std::process::Child) -> Result<(), BoxError> {
    let out = atelier_in(dir, &["down"])?;
    if !out.status.success() {
        let _ = child.kill();
        return Err(format!("atelier down failed: {out:?}").into());
    }
    child.wait()?;
    Ok(())
}

fn timed(dir: &Path, args: &[&str]) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let out = atelier_in(dir, args)?;
    let took = started.elapsed();
    if !out.status.success() {
        return Err(format!("atelier {args:?} failed: {out:?}").into());
    }
    Ok(took)
}

fn line(name: &str, values: &mut [Duration]) {
    values.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<32} min {:>8.1} ms   median {:>8.1} ms   max {:>8.1} ms   ({} runs)",
        ms(values[0]),
        ms(values[values.len() / 2]),
        ms(values[values.len() - 1]),
        values.len()
    );
}

fn main() -> Result<(), BoxError> {
    let mut runs = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().ok_or("--runs needs a value")?.parse()?,
            // cargo bench passes --bench; nothing else is ours.
            "--bench" => {}
            other => return Err(format!("unknown option {other} (use --runs N)").into()),
        }
    }
    let (mut fresh, mut restart, mut plan, mut status) = (vec![], vec![], vec![], vec![]);
    for run in 1..=runs {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let init = atelier_in(root, &["init"])?;
        if !init.status.success() {
            return Err(format!("atelier init failed: {init:?}").into());
        }
        let path = root.join("atelier.yaml");
        let mut yaml = std::fs::read_to_string(&path)?;
        for default in ["2480", "2582", "2583", "2584", "2585"] {
            yaml = yaml.replace(default, &free_port()?.to_string());
        }
        std::fs::write(&path, yaml)?;

        let (child, took) = up_until_healthy(root)?;
        fresh.push(took);
        for _ in 0..5 {
            plan.push(timed(root, &["plan"])?);
            status.push(timed(root, &["status"])?);
        }
        down(root, child)?;
        let (child, took) = up_until_healthy(root)?;
        restart.push(took);
        down(root, child)?;
        eprintln!(
            "run {run}/{runs}: fresh {fresh:?}, restart {restart:?}",
            fresh = fresh[fresh.len() - 1],
            restart = restart[restart.len() - 1]
        );
    }
    println!("atelier up (sandbox profile: PLC, PDS, relay, AppView, admin console):");
    line("up to healthy, fresh directory", &mut fresh);
    line("up to healthy, restart", &mut restart);
    line("atelier plan (stack running)", &mut plan);
    line("atelier status (stack running)", &mut status);
    Ok(())
}
