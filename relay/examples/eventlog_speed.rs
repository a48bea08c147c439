//! Event log speed check: appends/s with `FsyncPolicy::Interval(100ms)` and replay
//! reads/s, for up to 1M small records (each phase bounded to 30 s).
//!
//! `cargo run --release -p atelier-relay --example eventlog_speed`

use std::time::{Duration, Instant};

use atelier_relay::eventlog::{EventLog, FsyncPolicy, LogConfig};

const RECORDS: u64 = 1_000_000;
const PHASE_LIMIT: Duration = Duration::from_secs(30);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        segment_bytes: 64 << 20,
        fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
        ..LogConfig::default()
    };
    let mut log = EventLog::open(dir.path(), config.clone())?;
    // A Jetstream-sized small event: about 200 bytes of JSON.
    let payload = br#"{"did":"did:plc:abcdefghijklmnopqrstuvwx","time_us":1700000000000000,"kind":"commit","commit":{"rev":"3l3qo2vutsw2b","operation":"create","collection":"computer.aesthetic.painting","rkey":"3l3qo2vuowo2b"}}"#;
    let start = Instant::now();
    let mut n = 0u64;
    while n < RECORDS && start.elapsed() < PHASE_LIMIT {
        n = log.append(
            1_700_000_000_000_000 + n as i64,
            1,
            "did:plc:abcdefghijklmnopqrstuvwx",
            payload,
        )?;
    }
    log.flush()?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = log.handle().total_bytes();
    println!(
        "append: {n} records ({:.1} MB, {} segments) in {secs:.2} s = {:.0} appends/s",
        bytes as f64 / 1e6,
        log.handle().segment_count(),
        n as f64 / secs
    );
    drop(log);

    let start = Instant::now();
    let log = EventLog::open(dir.path(), config)?;
    println!(
        "reopen (index load + tail scan): {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let start = Instant::now();
    let mut reader = log.read_from_seq(1)?;
    let mut read = 0u64;
    let mut payload_bytes = 0usize;
    while start.elapsed() < PHASE_LIMIT {
        match reader.next_event()? {
            Some(ev) => {
                read += 1;
                payload_bytes += ev.payload.len();
            }
            None => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "replay: {read} records ({:.1} MB payload) in {secs:.2} s = {:.0} reads/s",
        payload_bytes as f64 / 1e6,
        read as f64 / secs
    );

    let start = Instant::now();
    let mut seeks = 0u64;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while seeks < 10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let c = x % n + 1;
        let mut r = log.read_from_seq(c)?;
        if r.next_event()?.map(|e| e.seq) != Some(c) {
            return Err(format!("seek to {c} landed elsewhere").into());
        }
        seeks += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "random seq seeks: {seeks} in {secs:.2} s = {:.0} seeks/s",
        seeks as f64 / secs
    );
    Ok(())
}
