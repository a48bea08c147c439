//! Tests for the durable event log: round trips across segment rolls, exact seq and
//! time seeks, torn-tail repair, corruption reporting, a real `kill -9` of a writer
//! process, retention and tail following.
//!
//! The kill -9 test re-invokes this test binary (`std::env::current_exe()`) filtered
//! to the single test `kill9_child_writer` with `ATELIER_EVENTLOG_CHILD=<dir>` set.
//! That test is a no-op in a normal run; in the child it appends forever with
//! `FsyncPolicy::EveryAppend` and prints `ACK <seq>` after each acknowledged append,
//! until the parent SIGKILLs it (`Child::kill` sends SIGKILL on Unix).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atelier_relay::eventlog::{
    Event, EventLog, FsyncPolicy, LogConfig, LogError, LogHandle, Retention,
};

const CHILD_ENV: &str = "ATELIER_EVENTLOG_CHILD";
const DID: &str = "did:plc:eventlogtest";

fn config(segment_bytes: u64, fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes,
        max_record_bytes: 64 * 1024,
        index_interval: 8,
        fsync,
        retention: Retention::default(),
    }
}

fn small() -> LogConfig {
    config(4096, FsyncPolicy::Never)
}

/// Times leave gaps of 10 us so time seeks between events can be checked.
fn time_for(seq: u64) -> i64 {
    1_700_000_000_000_000 + 10 * seq as i64
}

/// A payload whose length and content depend on the seq.
fn payload_for(seq: u64) -> Vec<u8> {
    format!("payload-{seq};")
        .repeat((seq % 7 + 1) as usize)
        .into_bytes()
}

fn append_n(log: &mut EventLog, n: u64) {
    for _ in 0..n {
        let seq = log.latest_seq() + 1;
        let got = log
            .append(time_for(seq), (seq % 3) as u8, DID, &payload_for(seq))
            .expect("append");
        assert_eq!(got, seq);
    }
}

fn check_event(ev: &Event, seq: u64) {
    assert_eq!(ev.seq, seq);
    assert_eq!(ev.time_us, time_for(seq));
    assert_eq!(ev.kind, (seq % 3) as u8);
    assert_eq!(ev.did, DID);
    assert_eq!(
        &ev.payload[..],
        &payload_for(seq)[..],
        "payload of seq {seq}"
    );
}

fn read_all(handle: &LogHandle, from: u64) -> Vec<Event> {
    let mut r = handle.read_from_seq(from).expect("reader");
    let mut out = Vec::new();
    while let Some(ev) = r.next_event().expect("read") {
        out.push(ev);
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// xorshift64: deterministic "random" cursors without a dependency.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn round_trip_across_rolls_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EventLog::open(dir.path(), small()).expect("open");
    assert_eq!(log.latest_seq(), 0);
    assert_eq!(log.oldest_seq(), None);
    append_n(&mut log, 2000);
    let handle = log.handle();
    assert!(
        handle.segment_count() > 20,
        "{} segments",
        handle.segment_count()
    );
    let all = read_all(&handle, 1);
    assert_eq!(all.len(), 2000);
    for (i, ev) in all.iter().enumerate() {
        check_event(ev, i as u64 + 1);
    }
    assert_eq!(log.oldest_seq(), Some(1));
    assert_eq!(log.oldest_time(), Some(time_for(1)));
    assert_eq!(log.latest_time(), Some(time_for(2000)));
    drop(log);

    let mut log = EventLog::open(dir.path(), small()).expect("reopen");
    assert_eq!(log.latest_seq(), 2000);
    append_n(&mut log, 10);
    let all = read_all(&log.handle(), 0);
    assert_eq!(all.len(), 2010);
    for (i, ev) in all.iter().enumerate() {
        check_event(ev, i as u64 + 1);
    }
}

fn check_seeks(handle: &LogHandle, n: u64) {
    let mut state = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..300 {
        let c = rng(&mut state) % n + 1;
        // Seq cursors are inclusive: the first event is exactly `c`.
        let mut r = handle.read_from_seq(c).expect("reader");
        for s in c..(c + 3).min(n + 1) {
            check_event(&r.next_event().expect("read").expect("event"), s);
        }
        assert!(!r.outdated());
        // Time cursors are inclusive too: any time in (time(c-1), time(c)] lands on c.
        for back in [0, 1, 9] {
            let mut r = handle.read_from_time(time_for(c) - back);
            check_event(&r.next_event().expect("read").expect("event"), c);
        }
    }
    // Before everything: from the first event, not outdated (nothing was dropped).
    let mut r = handle.read_from_time(0);
    check_event(&r.next_event().expect("read").expect("event"), 1);
    assert!(!r.outdated());
    // The tail: nothing yet, no error.
    let mut r = handle.read_from_seq(n + 1).expect("tail reader");
    assert!(r.next_event().expect("read").is_none());
    assert!(
        handle
            .read_from_time(time_for(n) + 1)
            .next_event()
            .expect("read")
            .is_none()
    );
    // Beyond the tail: a typed error.
    match handle.read_from_seq(n + 2) {
        Err(LogError::FutureCursor { cursor, latest }) => {
            assert_eq!((cursor, latest), (n + 2, n));
        }
        other => panic!("expected FutureCursor, got {other:?}"),
    }
}

#[test]
fn seq_and_time_seeks_land_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 3000;
    let mut log = EventLog::open(dir.path(), small()).expect("open");
    append_n(&mut log, n);
    check_seeks(&log.handle(), n);
    drop(log);

    // Reopened with index files present, then with them missing, then stale.
    let log = EventLog::open(dir.path(), small()).expect("reopen");
    check_seeks(&log.handle(), n);
    drop(log);
    for p in segments(dir.path()) {
        let _ = fs::remove_file(p.with_extension("idx"));
    }
    let log = EventLog::open(dir.path(), small()).expect("reopen without indexes");
    check_seeks(&log.handle(), n);
    drop(log);
    let first_idx = segments(dir.path())[0].with_extension("idx");
    assert!(first_idx.exists(), "index rebuilt on open");
    fs::write(&first_idx, b"stale").expect("write");
    let log = EventLog::open(dir.path(), small()).expect("reopen with a stale index");
    check_seeks(&log.handle(), n);
}

fn last_frame_len(seq: u64) -> u64 {
    (8 + 19 + DID.len() + payload_for(seq).len()) as u64
}

/// Damages a segment file in place.
type Damage = Box<dyn Fn(&Path)>;

#[test]
fn torn_tail_is_truncated_to_last_good_record() {
    let n = 300;
    let frame = last_frame_len(n);
    let mut cases: Vec<(String, Damage, u64)> = Vec::new();
    for k in [1, 2, 7, 8, 9, 20, frame - 1, frame] {
        let expect = n - 1;
        cases.push((
            format!("truncate by {k}"),
            Box::new(move |p: &Path| {
                let f = OpenOptions::new().write(true).open(p).expect("open");
                let len = f.metadata().expect("meta").len();
                f.set_len(len - k).expect("set_len");
            }),
            expect,
        ));
    }
    for (name, garbage) in [
        ("zeros", vec![0u8; 100]),
        ("random", (0..57u8).map(|b| b.wrapping_mul(151)).collect()),
        ("plausible length, bad checksum", {
            let mut g = 40u32.to_le_bytes().to_vec();
            g.extend_from_slice(&[0xAB; 44]);
            g
        }),
        ("huge length", u32::MAX.to_le_bytes().to_vec()),
    ] {
        cases.push((
            format!("garbage: {name}"),
            Box::new(move |p: &Path| {
                let mut f = OpenOptions::new().append(true).open(p).expect("open");
                f.write_all(&garbage).expect("write");
            }),
            n,
        ));
    }
    for (name, damage, expect_latest) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EventLog::open(dir.path(), small()).expect("open");
        append_n(&mut log, n);
        drop(log);
        let last = segments(dir.path()).pop().expect("a segment");
        damage(&last);
        let mut log = EventLog::open(dir.path(), small()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(log.latest_seq(), expect_latest, "{name}");
        // Appending continues after the last good record: no gap, no duplicate.
        append_n(&mut log, 5);
        drop(log);
        let log = EventLog::open(dir.path(), small()).expect("reopen");
        let all = read_all(&log.handle(), 1);
        assert_eq!(all.len() as u64, expect_latest + 5, "{name}");
        for (i, ev) in all.iter().enumerate() {
            check_event(ev, i as u64 + 1);
        }
    }
}

fn flip_byte(path: &Path, at: u64) {
    let mut data = fs::read(path).expect("read");
    data[at as usize] ^= 0x55;
    fs::write(path, data).expect("write");
}

fn assert_corrupt_names(err: &LogError, path: &Path) {
    match err {
        LogError::Corrupt { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let name = path.file_name().and_then(|s| s.to_str()).expect("name");
    assert!(err.to_string().contains(name), "{err}");
}

#[test]
fn corruption_in_an_older_segment_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EventLog::open(dir.path(), small()).expect("open");
    append_n(&mut log, 500);
    drop(log);
    let segs = segments(dir.path());
    let victim = segs[2].clone();
    let len = fs::metadata(&victim).expect("meta").len();
    flip_byte(&victim, len / 2);

    // With its index intact, open trusts the index; reading through it fails.
    let log = EventLog::open(dir.path(), small()).expect("open trusts the index");
    let mut r = log.handle().read_from_seq(1).expect("reader");
    let err = loop {
        match r.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("corruption was skipped"),
            Err(e) => break e,
        }
    };
    assert_corrupt_names(&err, &victim);
    drop(log);

    // Without the index, open scans the segment and refuses.
    fs::remove_file(victim.with_extension("idx")).expect("remove idx");
    let err = EventLog::open(dir.path(), small()).expect_err("corrupt");
    assert_corrupt_names(&err, &victim);
}

#[test]
fn corruption_inside_the_last_segment_is_not_treated_as_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EventLog::open(dir.path(), config(1 << 20, FsyncPolicy::Never)).expect("open");
    append_n(&mut log, 50);
    drop(log);
    let seg = segments(dir.path()).pop().expect("segment");
    // Damage a payload byte of the first record: records after it are still valid.
    flip_byte(&seg, 40);
    let err = EventLog::open(dir.path(), config(1 << 20, FsyncPolicy::Never)).expect_err("corrupt");
    assert_corrupt_names(&err, &seg);
}

/// The writer half of `kill9_acknowledged_events_survive`; a no-op unless
/// `ATELIER_EVENTLOG_CHILD` names the log directory.
#[test]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut log = EventLog::open(&dir, config(8192, FsyncPolicy::EveryAppend)).expect("child open");
    let mut out = std::io::stdout().lock();
    // Bounded even if the parent never kills us.
    for _ in 0..50_000 {
        let seq = log.latest_seq() + 1;
        let got = log
            .append(time_for(seq), (seq % 3) as u8, DID, &payload_for(seq))
            .expect("child append");
        assert_eq!(got, seq);
        writeln!(out, "ACK {seq}").expect("stdout");
        out.flush().expect("flush");
    }
}

#[test]
fn kill9_acknowledged_events_survive() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let mut acked = BTreeSet::new();
    for round in 0..4u64 {
        let mut child = Command::new(&exe)
            .args([
                "kill9_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let lines = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(seq) = line
                    .strip_prefix("ACK ")
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    let _ = tx.send(seq);
                }
            }
        });
        // Kill after a varying number of acknowledgements, or after a bounded time.
        let want = 40 + round * 23;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut this_round = 0;
        while this_round < want && Instant::now() < deadline {
            if let Ok(seq) = rx.recv_timeout(Duration::from_millis(50)) {
                acked.insert(seq);
                this_round += 1;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        lines.join().expect("line reader");
        acked.extend(rx.try_iter());
        assert!(this_round > 0, "round {round}: child acknowledged nothing");

        let log =
            EventLog::open(dir.path(), config(8192, FsyncPolicy::EveryAppend)).expect("reopen");
        let max_acked = *acked.last().expect("acks");
        let latest = log.latest_seq();
        assert!(
            latest >= max_acked,
            "round {round}: latest {latest} < acked {max_acked}"
        );
        // At most the one record in flight at the kill may be present unacknowledged.
        assert!(
            latest <= max_acked + 1,
            "round {round}: latest {latest}, acked {max_acked}"
        );
        let all = read_all(&log.handle(), 1);
        assert_eq!(
            all.len() as u64,
            latest,
            "round {round}: no gaps or duplicates"
        );
        for (i, ev) in all.iter().enumerate() {
            check_event(ev, i as u64 + 1);
        }
        for s in &acked {
            assert!(*s <= latest);
        }
    }
}

#[test]
fn retention_by_size_drops_old_segments_and_flags_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = small();
    cfg.retention.max_total_bytes = Some(20_000);
    let mut log = EventLog::open(dir.path(), cfg.clone()).expect("open");
    // A reader started at the beginning, which will fall behind retention.
    append_n(&mut log, 1);
    let handle = log.handle();
    let mut slow = handle.read_from_seq(1).expect("reader");
    check_event(&slow.next_event().expect("read").expect("event"), 1);
    append_n(&mut log, 1999);
    let oldest = log.oldest_seq().expect("oldest");
    assert!(oldest > 1);
    assert!(
        handle.total_bytes() <= 20_000 + 4096,
        "{}",
        handle.total_bytes()
    );
    assert!(segments(dir.path()).len() <= 7);
    assert_eq!(segments(dir.path()).len(), handle.segment_count());

    // A cursor before the oldest: outdated, starts at the oldest.
    let mut r = handle.read_from_seq(2).expect("reader");
    check_event(&r.next_event().expect("read").expect("event"), oldest);
    assert!(r.take_outdated());
    assert!(!r.outdated());
    let mut r = handle.read_from_time(time_for(2));
    check_event(&r.next_event().expect("read").expect("event"), oldest);
    assert!(r.outdated());
    // A cursor at the oldest is fine.
    let mut r = handle.read_from_seq(oldest).expect("reader");
    check_event(&r.next_event().expect("read").expect("event"), oldest);
    assert!(!r.outdated());

    // The slow follower skips to the oldest retained event and says so.
    let ev = slow.next_event().expect("read").expect("event");
    assert!(slow.take_outdated());
    check_event(&ev, oldest);
    drop(log);
    let log = EventLog::open(dir.path(), cfg).expect("reopen");
    assert_eq!(log.oldest_seq(), Some(oldest));
    assert_eq!(read_all(&log.handle(), 0).len() as u64, 2000 - oldest + 1);
}

#[test]
fn retention_by_age_drops_old_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = small();
    // Events are 10 us apart: keep roughly the last 5,000 us (500 events).
    cfg.retention.max_age = Some(Duration::from_micros(5_000));
    let mut log = EventLog::open(dir.path(), cfg).expect("open");
    append_n(&mut log, 2000);
    let oldest = log.oldest_seq().expect("oldest");
    assert!(oldest > 1000 && oldest <= 1501, "oldest {oldest}");
    // Every dropped segment ended before the cutoff; the oldest kept one did not.
    let oldest_time = log.oldest_time().expect("time");
    assert_eq!(oldest_time, time_for(oldest));
    // Explicit pass with a later clock drops all but the active segment.
    let report = log
        .enforce_retention(time_for(2000) + 1_000_000)
        .expect("retention");
    assert!(report.segments_removed > 0);
    assert_eq!(log.handle().segment_count(), 1);
    let all = read_all(&log.handle(), log.oldest_seq().expect("oldest"));
    assert_eq!(all.last().map(|e| e.seq), Some(2000));
}

#[test]
fn tail_follower_sees_each_new_event_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EventLog::open(dir.path(), small()).expect("open");
    append_n(&mut log, 100);
    let handle = log.handle();
    let mut reader = handle
        .read_from_seq(log.latest_seq() + 1)
        .expect("tail reader");
    let total = 3000u64;
    let follower = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while (got.len() as u64) < total && Instant::now() < deadline {
            match reader.next_event().expect("read") {
                Some(ev) => got.push(ev),
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        // Nothing beyond what was written.
        assert!(reader.next_event().expect("read").is_none());
        got
    });
    for chunk in 0..30 {
        append_n(&mut log, total / 30);
        if chunk % 5 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let got = follower.join().expect("follower");
    assert_eq!(got.len() as u64, total);
    for (i, ev) in got.iter().enumerate() {
        check_event(ev, 101 + i as u64);
    }
}

#[test]
fn empty_log_reader_waits_for_first_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EventLog::open(dir.path(), small()).expect("open");
    let mut r = log.read_from_seq(0).expect("reader");
    let mut t = log.read_from_time(0);
    assert!(r.next_event().expect("read").is_none());
    assert!(matches!(
        log.read_from_seq(2),
        Err(LogError::FutureCursor { .. })
    ));
    append_n(&mut log, 3);
    check_event(&r.next_event().expect("read").expect("event"), 1);
    check_event(&t.next_event().expect("read").expect("event"), 1);
    assert!(!r.outdated() && !t.outdated());
}

#[test]
fn types_can_cross_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<EventLog>();
    send::<atelier_relay::eventlog::LogReader>();
    send_sync::<LogHandle>();
    send_sync::<LogError>();
}

#[test]
fn invalid_appends_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EventLog::open(dir.path(), small()).expect("open");
    append_n(&mut log, 2);
    assert!(matches!(
        log.append(time_for(2), 0, DID, b"x"),
        Err(LogError::TimeNotIncreasing { .. })
    ));
    let big = vec![0u8; 64 * 1024];
    match log.append(time_for(3), 0, DID, &big) {
        Err(e @ LogError::RecordTooLarge { .. }) => assert!(e.to_string().contains("65536")),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    let long_did = "d".repeat(70_000);
    assert!(matches!(
        log.append(time_for(3), 0, &long_did, b""),
        Err(LogError::DidTooLong { .. })
    ));
    // The log is unaffected by rejected appends.
    append_n(&mut log, 1);
    assert_eq!(read_all(&log.handle(), 1).len(), 3);
    let mut bad = small();
    bad.index_interval = 0;
    assert!(matches!(
        EventLog::open(dir.path(), bad),
        Err(LogError::Config(_))
    ));
}
