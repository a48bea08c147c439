//! Readers: cursors that read forward from a seq or a time, across segments, and can
//! be polled again to follow the tail.
//!
//! Each reader opens its own file handles and consults the shared segment table only
//! briefly (under a read lock) to learn how many bytes are acknowledged; the record
//! I/O happens without any lock, so readers never hold up the writer.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::LogError;
use super::record::{Event, ReadOutcome, read_record};
use super::segment::SegmentMeta;

/// State shared by the writer and all readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) max_body: u32,
    pub(crate) state: RwLock<State>,
}

/// The segment table: sorted by first seq, the last one is the writer's.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) segments: Vec<SegmentMeta>,
    /// The seq the next append will get.
    pub(crate) next_seq: u64,
}

impl State {
    /// The first retained seq; `next_seq` when nothing is stored.
    fn oldest_seq(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| s.count > 0)
            .map_or(self.next_seq, |s| s.first_seq)
    }
}

impl Shared {
    // A poisoned lock only means a panic elsewhere mid-update of plain numbers; the
    // table stays usable, so recover rather than propagate the panic.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A cloneable handle on the log for readers; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct LogHandle {
    shared: Arc<Shared>,
}

impl LogHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        LogHandle { shared }
    }

    /// A reader whose first event is the first retained one with `seq >= cursor`
    /// (inclusive; a `subscribeRepos` consumer's cursor `c` means "after `c`", so the
    /// server passes `c + 1`). `cursor` may be `latest_seq() + 1` to read only new
    /// events. A cursor older than the oldest retained event starts at the oldest and
    /// the reader reports [`LogReader::take_outdated`].
    ///
    /// # Errors
    /// [`LogError::FutureCursor`] when `cursor > latest_seq() + 1`.
    pub fn read_from_seq(&self, cursor: u64) -> Result<LogReader, LogError> {
        let next = self.shared.read().next_seq;
        if cursor > next {
            return Err(LogError::FutureCursor {
                cursor,
                latest: next - 1,
            });
        }
        Ok(LogReader::new(Arc::clone(&self.shared), Pos::Seq(cursor)))
    }

    /// A reader whose first event is the first retained one with `time_us >= time_us`
    /// (inclusive, like Jetstream's cursor). A time after the newest event starts at the
    /// live tail (Jetstream's behaviour for future cursors); a time before the oldest
    /// retained event, when older events were dropped, reports outdated.
    pub fn read_from_time(&self, time_us: i64) -> LogReader {
        LogReader::new(Arc::clone(&self.shared), Pos::Time(time_us))
    }

    /// The oldest retained seq, `None` when the log is empty.
    pub fn oldest_seq(&self) -> Option<u64> {
        let st = self.shared.read();
        st.segments
            .iter()
            .find(|s| s.count > 0)
            .map(|s| s.first_seq)
    }

    /// The oldest retained event's time.
    pub fn oldest_time(&self) -> Option<i64> {
        self.shared
            .read()
            .segments
            .iter()
            .find_map(|s| s.first_time)
    }

    /// The latest assigned seq, 0 if none.
    pub fn latest_seq(&self) -> u64 {
        self.shared.read().next_seq - 1
    }

    /// The newest event's time.
    pub fn latest_time(&self) -> Option<i64> {
        self.shared
            .read()
            .segments
            .iter()
            .rev()
            .find_map(|s| s.last_time)
    }

    /// Bytes of acknowledged records on disk.
    pub fn total_bytes(&self) -> u64 {
        self.shared.read().segments.iter().map(|s| s.len).sum()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared.read().segments.len()
    }
}

/// Where a reader stands.
#[derive(Debug, Clone, Copy)]
enum Pos {
    /// Not yet placed: the first event with seq >= this.
    Seq(u64),
    /// Not yet placed: the first event with time >= this.
    Time(i64),
    /// At a record boundary of a segment (named by its first seq).
    At { seg: u64, offset: u64 },
}

/// After an index seek, records before the target are skipped.
#[derive(Debug, Clone, Copy)]
enum Skip {
    Seq(u64),
    Time(i64),
}

/// The reader's open segment file.
#[derive(Debug)]
struct OpenSeg {
    seg: u64,
    path: PathBuf,
    reader: BufReader<File>,
    /// Where `reader` is positioned.
    pos: u64,
}

/// Reads events forward. [`LogReader::next_event`] returns `Ok(None)` when caught up;
/// call it again later to follow the tail (the async layer pairs this with a
/// notification from the writer). `Send`.
#[derive(Debug)]
pub struct LogReader {
    shared: Arc<Shared>,
    pos: Pos,
    skip: Option<Skip>,
    /// The seq expected next; used to re-place the reader if its segment is dropped.
    next_seq: u64,
    file: Option<OpenSeg>,
    outdated: bool,
}

impl LogReader {
    fn new(shared: Arc<Shared>, pos: Pos) -> Self {
        let next_seq = match pos {
            Pos::Seq(s) => s,
            _ => 0,
        };
        LogReader {
            shared,
            pos,
            skip: None,
            next_seq,
            file: None,
            outdated: false,
        }
    }

    /// Whether events the reader should have returned were dropped by retention (its
    /// starting cursor was too old, or it fell behind while following).
    pub fn outdated(&self) -> bool {
        self.outdated
    }

    /// Like [`LogReader::outdated`], and clears the flag: the server sends one
    /// `#info OutdatedCursor` per occurrence.
    pub fn take_outdated(&mut self) -> bool {
        std::mem::take(&mut self.outdated)
    }

    /// The seq the next returned event will have at the least.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Places an unplaced reader. Returns `false` when there is nothing to place it in
    /// yet (empty log).
    fn place(&mut self, st: &State) -> bool {
        let Some(last) = st.segments.last() else {
            return false;
        };
        let oldest = st.oldest_seq();
        match self.pos {
            Pos::At { .. } => true,
            Pos::Seq(cursor) => {
                let target = if cursor.max(1) < oldest {
                    self.outdated = true;
                    oldest
                } else {
                    cursor.max(oldest)
                };
                if target >= st.next_seq {
                    self.pos = Pos::At {
                        seg: last.first_seq,
                        offset: last.len,
                    };
                } else {
                    let i = st
                        .segments
                        .partition_point(|s| s.first_seq <= target)
                        .saturating_sub(1);
                    let s = &st.segments[i];
                    self.pos = Pos::At {
                        seg: s.first_seq,
                        offset: s.seek_seq(target),
                    };
                    self.skip = Some(Skip::Seq(target));
                }
                self.next_seq = target;
                true
            }
            Pos::Time(t) => {
                let dropped_any = oldest > 1;
                let first_time = st.segments.iter().find_map(|s| s.first_time);
                if dropped_any && first_time.is_some_and(|ft| t < ft) {
                    self.outdated = true;
                }
                let i = st
                    .segments
                    .partition_point(|s| s.last_time.is_some_and(|lt| lt < t));
                match st.segments.get(i).filter(|s| s.count > 0) {
                    Some(s) => {
                        self.pos = Pos::At {
                            seg: s.first_seq,
                            offset: s.seek_time(t),
                        };
                        self.skip = Some(Skip::Time(t));
                        self.next_seq = s.first_seq;
                    }
                    None => {
                        self.pos = Pos::At {
                            seg: last.first_seq,
                            offset: last.len,
                        };
                        self.next_seq = st.next_seq;
                    }
                }
                true
            }
        }
    }

    /// The next event, or `Ok(None)` when the reader has caught up with the writer.
    ///
    /// # Errors
    /// I/O errors, and [`LogError::Corrupt`] naming the file and offset if a record
    /// fails validation.
    pub fn next_event(&mut self) -> Result<Option<Event>, LogError> {
        loop {
            // Under the read lock: find the segment and how far it may be read.
            let (seg, offset, visible, path) = {
                let shared = Arc::clone(&self.shared);
                let st = shared.read();
                if !self.place(&st) {
                    return Ok(None);
                }
                let Pos::At { seg, offset } = self.pos else {
                    return Ok(None);
                };
                let found = st.segments.binary_search_by_key(&seg, |s| s.first_seq);
                let Ok(i) = found else {
                    // Our segment was dropped by retention: re-place by seq.
                    self.pos = Pos::Seq(self.next_seq);
                    self.file = None;
                    continue;
                };
                let s = &st.segments[i];
                if offset >= s.len {
                    match st.segments.get(i + 1) {
                        Some(n) => {
                            self.pos = Pos::At {
                                seg: n.first_seq,
                                offset: 0,
                            };
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                let need_path = self.file.as_ref().is_none_or(|f| f.seg != seg);
                (seg, offset, s.len, need_path.then(|| s.path.clone()))
            };
            let max_body = self.shared.max_body;
            let of = self.open_at(seg, offset, path)?;
            let outcome =
                read_record(&mut of.reader, max_body).map_err(|e| LogError::io(&of.path, e))?;
            let (ev, frame) = match outcome {
                ReadOutcome::Record(ev, frame) if offset + frame <= visible => (ev, frame),
                ReadOutcome::Record(..) => {
                    return Err(corrupt(
                        of,
                        offset,
                        "record extends past acknowledged data".into(),
                    ));
                }
                ReadOutcome::End => {
                    return Err(corrupt(
                        of,
                        offset,
                        "file shorter than acknowledged length".into(),
                    ));
                }
                ReadOutcome::Bad(reason) => return Err(corrupt(of, offset, reason)),
            };
            of.pos = offset + frame;
            self.pos = Pos::At {
                seg,
                offset: offset + frame,
            };
            match self.skip {
                Some(Skip::Seq(s)) if ev.seq < s => continue,
                Some(Skip::Time(t)) if ev.time_us < t => continue,
                _ => self.skip = None,
            }
            self.next_seq = ev.seq + 1;
            return Ok(Some(ev));
        }
    }

    /// Makes `self.file` the segment `seg` positioned at `offset`.
    fn open_at(
        &mut self,
        seg: u64,
        offset: u64,
        path: Option<PathBuf>,
    ) -> Result<&mut OpenSeg, LogError> {
        if let Some(path) = path {
            let f = File::open(&path).map_err(|e| LogError::io(&path, e))?;
            self.file = Some(OpenSeg {
                seg,
                path,
                reader: BufReader::with_capacity(1 << 16, f),
                pos: 0,
            });
        }
        let Some(of) = self.file.as_mut() else {
            return Err(LogError::WriterFailed);
        };
        if of.pos != offset {
            of.reader
                .seek(SeekFrom::Start(offset))
                .map_err(|e| LogError::io(&of.path, e))?;
            of.pos = offset;
        }
        Ok(of)
    }
}

fn corrupt(of: &OpenSeg, offset: u64, reason: String) -> LogError {
    LogError::Corrupt {
        path: of.path.clone(),
        offset,
        reason,
    }
}
