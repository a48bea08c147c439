//! The event log's typed error.

use std::path::PathBuf;

/// Everything that can go wrong opening, writing or reading the event log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O operation on a log file failed.
    #[error("event log I/O on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record that is not the last one of the log failed validation; this is never
    /// skipped silently because the records after it were acknowledged.
    #[error("corrupt event log record in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// The record (header plus payload) exceeds the configured maximum.
    #[error("event log record of {size} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Header plus payload size.
        size: usize,
        /// `LogConfig::max_record_bytes`.
        max: u32,
    },
    /// A DID longer than the record header can hold.
    #[error("DID of {len} bytes exceeds the maximum of {max} bytes")]
    DidTooLong {
        /// The DID's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Event times must strictly increase.
    #[error("event time {time_us} us is not after the previous event's {last_us} us")]
    TimeNotIncreasing {
        /// The rejected time.
        time_us: i64,
        /// The previous event's time.
        last_us: i64,
    },
    /// A seq cursor beyond the next seq the log will assign.
    #[error("cursor {cursor} is beyond the latest seq {latest}")]
    FutureCursor {
        /// The requested cursor.
        cursor: u64,
        /// The latest assigned seq (0 when the log is empty).
        latest: u64,
    },
    /// The segments on disk do not form one contiguous seq range.
    #[error(
        "event log segments are not contiguous: {path} starts at seq {found}, expected {expected}"
    )]
    Gap {
        /// The segment that does not follow on.
        path: PathBuf,
        /// Its first seq.
        found: u64,
        /// The seq that should have come next.
        expected: u64,
    },
    /// An earlier write failed midway; the writer refuses further appends until the
    /// log is reopened (which repairs the tail).
    #[error("event log writer failed earlier and must be reopened")]
    WriterFailed,
    /// A configuration value is out of range.
    #[error("invalid event log config: {0}")]
    Config(&'static str),
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            source,
        }
    }
}
