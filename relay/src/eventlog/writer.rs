//! The single writer: opening (with tail repair), appending, rolling, fsync and
//! retention.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::reader::{LogHandle, LogReader, Shared, State};
use super::record::{self, FRAME_PREFIX, HEADER_FIXED};
use super::segment::{self, SegmentMeta};
use super::{FsyncPolicy, LogConfig, LogError};

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Whole segments deleted.
    pub segments_removed: usize,
    /// Their total size.
    pub bytes_removed: u64,
}

/// The log's single writer. Readers come from [`EventLog::handle`].
#[derive(Debug)]
pub struct EventLog {
    shared: Arc<Shared>,
    config: LogConfig,
    /// Append handle on the last segment; `None` until the first append of a new log.
    active: Option<File>,
    /// Local copies of the active segment's size and record count, so the roll check
    /// needs no lock.
    active_len: u64,
    active_count: u64,
    next_seq: u64,
    last_time: Option<i64>,
    /// Reused encoding buffer: one `write` per record.
    buf: Vec<u8>,
    last_sync: Instant,
    /// Set after a failed write, whose partial bytes only a reopen can repair.
    failed: bool,
}

impl EventLog {
    /// Opens (creating if needed) the log in `dir`, verifying sealed segments through
    /// their indexes (scanning those with a missing or stale index) and repairing a torn
    /// tail in the last segment.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self, LogError> {
        config.check()?;
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| LogError::io(&dir, e))? {
            let entry = entry.map_err(|e| LogError::io(&dir, e))?;
            if let Some(first) = entry
                .file_name()
                .to_str()
                .and_then(segment::parse_segment_name)
            {
                found.push((first, entry.path()));
            }
        }
        found.sort_unstable_by_key(|(first, _)| *first);

        let max = config.max_record_bytes;
        let ivl = config.index_interval;
        let mut segments: Vec<SegmentMeta> = Vec::with_capacity(found.len());
        let n = found.len();
        for (i, (first, path)) in found.into_iter().enumerate() {
            if let Some(prev) = segments.last()
                && first != prev.last_seq() + 1
            {
                return Err(LogError::Gap {
                    path,
                    found: first,
                    expected: prev.last_seq() + 1,
                });
            }
            if first == 0 {
                return Err(LogError::Corrupt {
                    path,
                    offset: 0,
                    reason: "segment named seq 0".to_owned(),
                });
            }
            let meta = if i + 1 < n {
                open_sealed(&path, first, max, ivl)?
            } else {
                open_last(&path, first, max, ivl)?
            };
            segments.push(meta);
        }

        let next_seq = segments.last().map_or(1, |s| s.last_seq() + 1);
        let last_time = segments.iter().rev().find_map(|s| s.last_time);
        let (active, active_len, active_count) = match segments.last() {
            Some(last) => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(|e| LogError::io(&last.path, e))?;
                (Some(f), last.len, last.count)
            }
            None => (None, 0, 0),
        };
        let shared = Arc::new(Shared {
            dir,
            max_body: max,
            state: std::sync::RwLock::new(State { segments, next_seq }),
        });
        Ok(EventLog {
            shared,
            config,
            active,
            active_len,
            active_count,
            next_seq,
            last_time,
            buf: Vec::new(),
            last_sync: Instant::now(),
            failed: false,
        })
    }

    /// Appends one event and returns its seq once the bytes are in the OS (and on disk
    /// under [`FsyncPolicy::EveryAppend`]); readers see it from then on.
    pub fn append(
        &mut self,
        time_us: i64,
        kind: u8,
        did: &str,
        payload: &[u8],
    ) -> Result<u64, LogError> {
        if self.failed {
            return Err(LogError::WriterFailed);
        }
        if did.len() > usize::from(u16::MAX) {
            return Err(LogError::DidTooLong {
                len: did.len(),
                max: usize::from(u16::MAX),
            });
        }
        let body = HEADER_FIXED + did.len() + payload.len();
        if body > self.config.max_record_bytes as usize {
            return Err(LogError::RecordTooLarge {
                size: body,
                max: self.config.max_record_bytes,
            });
        }
        if let Some(last_us) = self.last_time
            && time_us <= last_us
        {
            return Err(LogError::TimeNotIncreasing { time_us, last_us });
        }
        let seq = self.next_seq;
        let frame = (FRAME_PREFIX + body) as u64;
        if self.active.is_none()
            || (self.active_count > 0 && self.active_len + frame > self.config.segment_bytes)
        {
            self.roll(seq)?;
        }
        record::encode(&mut self.buf, seq, time_us, kind, did, payload);
        let Some(file) = self.active.as_mut() else {
            return Err(LogError::WriterFailed);
        };
        if let Err(e) = file.write_all(&self.buf) {
            self.failed = true;
            return Err(LogError::io(self.active_path(), e));
        }
        let sync_now = match self.config.fsync {
            FsyncPolicy::EveryAppend => true,
            FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        if sync_now {
            self.sync()?;
        }
        self.active_len += frame;
        self.active_count += 1;
        self.next_seq += 1;
        self.last_time = Some(time_us);
        let ivl = self.config.index_interval;
        let mut st = self.shared.write();
        st.next_seq = self.next_seq;
        if let Some(seg) = st.segments.last_mut() {
            seg.push(seq, time_us, frame, ivl);
        }
        Ok(seq)
    }

    /// Forces everything appended so far to disk.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.sync()
    }

    /// Under [`FsyncPolicy::Interval`], syncs if the interval has passed since the last
    /// sync; call it from a timer so a quiet log still reaches disk.
    pub fn sync_if_due(&mut self) -> Result<(), LogError> {
        match self.config.fsync {
            FsyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync(),
            _ => Ok(()),
        }
    }

    fn sync(&mut self) -> Result<(), LogError> {
        if let Some(f) = &self.active
            && let Err(e) = f.sync_data()
        {
            self.failed = true;
            return Err(LogError::io(self.active_path(), e));
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    fn active_path(&self) -> PathBuf {
        let st = self.shared.read();
        st.segments
            .last()
            .map_or_else(|| self.shared.dir.clone(), |s| s.path.clone())
    }

    /// Seals the active segment (fsync, index file) and starts one at `first_seq`.
    fn roll(&mut self, first_seq: u64) -> Result<(), LogError> {
        if self.active.is_some() {
            self.sync()?;
            let sealed = self.shared.read().segments.last().cloned();
            if let Some(meta) = sealed {
                segment::write_index(&meta, self.config.index_interval)?;
            }
        }
        let dir = self.shared.dir.clone();
        let path = segment::segment_path(&dir, first_seq);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        // Make the new directory entry durable before records in it are acknowledged.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LogError::io(&dir, e))?;
        self.active = Some(file);
        self.active_len = 0;
        self.active_count = 0;
        self.shared
            .write()
            .segments
            .push(SegmentMeta::empty(first_seq, path));
        if let Some(now) = self.last_time {
            self.enforce_retention(now)?;
        }
        Ok(())
    }

    /// Drops whole sealed segments that are too old relative to `now_us` or that push
    /// the total size over the limit, oldest first. The active segment is never
    /// dropped. Readers positioned in a dropped segment skip to the oldest event and
    /// report it through [`LogReader::take_outdated`].
    pub fn enforce_retention(&mut self, now_us: i64) -> Result<RetentionReport, LogError> {
        let r = self.config.retention;
        let max_age_us = r
            .max_age
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let mut removed = Vec::new();
        {
            let mut st = self.shared.write();
            let mut total: u64 = st.segments.iter().map(|s| s.len).sum();
            while st.segments.len() > 1 {
                let first = &st.segments[0];
                let too_old = max_age_us.is_some_and(|age| {
                    first
                        .last_time
                        .is_some_and(|t| t < now_us.saturating_sub(age))
                });
                let too_big = r.max_total_bytes.is_some_and(|m| total > m);
                if !(too_old || too_big) {
                    break;
                }
                total -= first.len;
                removed.push(st.segments.remove(0));
            }
        }
        let mut report = RetentionReport::default();
        for m in &removed {
            segment::remove_segment(&m.path)?;
            report.segments_removed += 1;
            report.bytes_removed += m.len;
        }
        if report.segments_removed > 0 {
            tracing::info!(
                segments = report.segments_removed,
                bytes = report.bytes_removed,
                "event log retention dropped old segments"
            );
        }
        Ok(report)
    }

    /// A cloneable, `Send + Sync` handle for creating readers and reading positions.
    pub fn handle(&self) -> LogHandle {
        LogHandle::new(Arc::clone(&self.shared))
    }

    /// See [`LogHandle::read_from_seq`].
    pub fn read_from_seq(&self, cursor: u64) -> Result<LogReader, LogError> {
        self.handle().read_from_seq(cursor)
    }

    /// See [`LogHandle::read_from_time`].
    pub fn read_from_time(&self, time_us: i64) -> LogReader {
        self.handle().read_from_time(time_us)
    }

    /// The latest assigned seq, 0 if none.
    pub fn latest_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// See [`LogHandle::oldest_seq`].
    pub fn oldest_seq(&self) -> Option<u64> {
        self.handle().oldest_seq()
    }

    /// See [`LogHandle::oldest_time`].
    pub fn oldest_time(&self) -> Option<i64> {
        self.handle().oldest_time()
    }

    /// The newest event's time.
    pub fn latest_time(&self) -> Option<i64> {
        self.last_time
    }
}

/// Loads a sealed segment through its index, or scans it strictly (any bad record is
/// an error) and rewrites the index.
fn open_sealed(path: &Path, first: u64, max: u32, ivl: u64) -> Result<SegmentMeta, LogError> {
    let len = fs::metadata(path).map_err(|e| LogError::io(path, e))?.len();
    if let Some(meta) = segment::load_index(path, first, len, ivl) {
        return Ok(meta);
    }
    let s = segment::scan(path, first, max, ivl)?;
    if let Some((offset, reason)) = s.bad {
        return Err(LogError::Corrupt {
            path: path.to_owned(),
            offset,
            reason,
        });
    }
    if s.meta.count == 0 {
        return Err(LogError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: "empty segment that is not the last".to_owned(),
        });
    }
    segment::write_index(&s.meta, ivl)?;
    Ok(s.meta)
}

/// Scans the last segment and truncates a torn or corrupt tail, unless a valid record
/// follows the bad one (then the damage is inside acknowledged data: an error).
fn open_last(path: &Path, first: u64, max: u32, ivl: u64) -> Result<SegmentMeta, LogError> {
    segment::remove_index(path);
    let s = segment::scan(path, first, max, ivl)?;
    if let Some((offset, reason)) = s.bad {
        let next_seq = s.meta.last_seq() + 1;
        if segment::valid_record_follows(path, offset, next_seq + 1, max) {
            return Err(LogError::Corrupt {
                path: path.to_owned(),
                offset,
                reason,
            });
        }
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        f.set_len(offset).map_err(|e| LogError::io(path, e))?;
        f.sync_all().map_err(|e| LogError::io(path, e))?;
        tracing::warn!(
            path = %path.display(),
            offset,
            bytes = s.file_len - offset,
            %reason,
            "event log: truncated torn tail of the last segment"
        );
    }
    Ok(s.meta)
}
