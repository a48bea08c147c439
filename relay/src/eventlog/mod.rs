//! The namespace relay's durable event log: append-only, segmented, crash-safe, and
//! addressable by seq or by time.
//!
//! One writer ([`EventLog`]) appends events `(seq, time_us, kind, did, payload)`; the
//! log assigns `seq` (strictly increasing from 1, no gaps) and the caller supplies
//! `time_us` (strictly increasing). Any number of readers ([`LogReader`], created from
//! a cloneable [`LogHandle`]) read forward from a seq or a time, across segments, and
//! can be polled again to follow the tail.
//!
//! On disk: segment files `NNNNNNNNNNNNNNNNNNNN.seg` named by their first seq, rolled
//! at [`LogConfig::segment_bytes`], each record framed as
//! `[len u32][crc32c u32][header][payload]` (CRC32C rather than truncated SHA-256: see
//! `crc32c.rs`), plus a sparse seq/time index per segment, kept in memory and, for
//! sealed segments, in a `.idx` file that is rebuilt by a scan when missing or stale. On open the last segment is scanned and a torn or corrupt tail is
//! truncated; damage anywhere else is an error naming the file and offset.
//!
//! Everything here is synchronous and `Send`; the relay's async layer wraps it.

mod crc32c;
mod error;
mod reader;
mod record;
mod segment;
mod writer;

use std::time::Duration;

pub use error::LogError;
pub use reader::{LogHandle, LogReader};
pub use record::Event;
pub use writer::{EventLog, RetentionReport};

/// When appended data is forced to disk with `fsync`.
///
/// Readers see an event as soon as `append` returns it. Under `EveryAppend` that is
/// after the `fsync`, so no reader ever sees an event a crash could take back (its seq
/// would otherwise be reused for a different event); under `Interval` and `Never` a
/// power loss can remove events readers already saw.
///
/// Only one `EventLog` may have a directory open at a time; that is up to the caller
/// (the relay opens it once at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fsync` before every `append` returns: an acknowledged seq survives power loss.
    EveryAppend,
    /// `fsync` at most once per interval (checked on append and by
    /// [`EventLog::sync_if_due`]); a crash loses at most about one interval of events.
    Interval(Duration),
    /// Leave it to the OS; data survives a process crash but not power loss.
    Never,
}

/// How long events are kept. Whole segments are dropped, never the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Drop a sealed segment once its newest event is older than this, measured
    /// against the newest event in the log (or the `now_us` given to
    /// [`EventLog::enforce_retention`]).
    pub max_age: Option<Duration>,
    /// Drop the oldest sealed segments while the log's total size exceeds this.
    pub max_total_bytes: Option<u64>,
}

/// Event log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is rolled when the next record would take it past this size (a single
    /// larger record still gets a segment of its own).
    pub segment_bytes: u64,
    /// Largest record body (header plus payload) accepted; also bounds what a reader
    /// allocates for a record read from disk.
    pub max_record_bytes: u32,
    /// Index every Nth record of a segment for seq and time seeks.
    pub index_interval: u64,
    /// When to `fsync`.
    pub fsync: FsyncPolicy,
    /// What to keep; checked whenever a segment is rolled.
    pub retention: Retention,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 128 << 20,
            max_record_bytes: 8 << 20,
            index_interval: 64,
            fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
            retention: Retention::default(),
        }
    }
}

impl LogConfig {
    fn check(&self) -> Result<(), LogError> {
        if self.index_interval == 0 {
            return Err(LogError::Config("index_interval must be at least 1"));
        }
        if self.segment_bytes < 1024 {
            return Err(LogError::Config("segment_bytes must be at least 1024"));
        }
        if (self.max_record_bytes as usize) < record::HEADER_FIXED {
            return Err(LogError::Config(
                "max_record_bytes is smaller than a record header",
            ));
        }
        Ok(())
    }
}
