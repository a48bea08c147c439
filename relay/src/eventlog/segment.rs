//! Segment files and their sparse indexes.
//!
//! A segment `NNNNNNNNNNNNNNNNNNNN.seg` holds consecutive records starting at the seq in
//! its name. Its sparse index (every Nth record's seq, time and offset) lives in memory
//! and, once the segment is sealed, in `NNNNNNNNNNNNNNNNNNNN.idx`. The `.idx` file
//! records the segment length it describes and a checksum; if it is missing, damaged or
//! describes a different length it is stale and rebuilt by scanning the segment, which
//! also verifies every record in it.

use std::fs::{self, File};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use super::LogError;
use super::crc32c::crc32c;
use super::record::{FRAME_PREFIX, ReadOutcome, read_record};

/// One sparse index point: the record with this seq and time starts at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) seq: u64,
    pub(crate) time_us: i64,
    pub(crate) offset: u64,
}

/// What the log knows about one segment; shared by the writer and readers.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    /// The seq in the file name: the first record's seq.
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
    /// Bytes of complete records readers may read (the writer's acknowledged length).
    pub(crate) len: u64,
    /// Records in the segment.
    pub(crate) count: u64,
    /// Time of the first and last record; `None` while the segment is empty.
    pub(crate) first_time: Option<i64>,
    pub(crate) last_time: Option<i64>,
    /// Every `interval`th record, starting with the first.
    pub(crate) index: Vec<IndexEntry>,
}

impl SegmentMeta {
    pub(crate) fn empty(first_seq: u64, path: PathBuf) -> Self {
        SegmentMeta {
            first_seq,
            path,
            len: 0,
            count: 0,
            first_time: None,
            last_time: None,
            index: Vec::new(),
        }
    }

    /// The seq of the last record, or `first_seq - 1` when empty.
    pub(crate) fn last_seq(&self) -> u64 {
        self.first_seq + self.count - 1
    }

    /// Accounts for one appended record of `frame_len` bytes at the current end.
    pub(crate) fn push(&mut self, seq: u64, time_us: i64, frame_len: u64, interval: u64) {
        if self.count.is_multiple_of(interval) {
            self.index.push(IndexEntry {
                seq,
                time_us,
                offset: self.len,
            });
        }
        if self.first_time.is_none() {
            self.first_time = Some(time_us);
        }
        self.last_time = Some(time_us);
        self.count += 1;
        self.len += frame_len;
    }

    /// The offset to start scanning at for the first record with seq >= `seq`.
    pub(crate) fn seek_seq(&self, seq: u64) -> u64 {
        let i = self.index.partition_point(|e| e.seq <= seq);
        if i == 0 { 0 } else { self.index[i - 1].offset }
    }

    /// The offset to start scanning at for the first record with time >= `time_us`.
    pub(crate) fn seek_time(&self, time_us: i64) -> u64 {
        let i = self.index.partition_point(|e| e.time_us < time_us);
        if i == 0 { 0 } else { self.index[i - 1].offset }
    }
}

/// The segment file name for a first seq.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

fn index_path(seg: &Path) -> PathBuf {
    seg.with_extension("idx")
}

/// Parses `NNNNNNNNNNNNNNNNNNNN.seg` into its first seq.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The result of scanning a segment from its start.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Metadata for the valid prefix.
    pub(crate) meta: SegmentMeta,
    /// The first invalid record, if any: its offset and why.
    pub(crate) bad: Option<(u64, String)>,
    /// The file's length on disk.
    pub(crate) file_len: u64,
}

/// Reads every record of a segment, checking checksums, seq continuity and time order,
/// and stops at the first bad record.
pub(crate) fn scan(
    path: &Path,
    first_seq: u64,
    max_body: u32,
    interval: u64,
) -> Result<Scan, LogError> {
    let file = File::open(path).map_err(|e| LogError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut meta = SegmentMeta::empty(first_seq, path.to_owned());
    let bad = loop {
        let offset = meta.len;
        match read_record(&mut r, max_body).map_err(|e| LogError::io(path, e))? {
            ReadOutcome::End => break None,
            ReadOutcome::Bad(reason) => break Some((offset, reason)),
            ReadOutcome::Record(ev, frame_len) => {
                let expected = first_seq + meta.count;
                if ev.seq != expected {
                    break Some((
                        offset,
                        format!("seq {} where {expected} was expected", ev.seq),
                    ));
                }
                if let Some(last) = meta.last_time
                    && ev.time_us <= last
                {
                    break Some((offset, format!("time {} not after {last}", ev.time_us)));
                }
                meta.push(ev.seq, ev.time_us, frame_len, interval);
            }
        }
    };
    Ok(Scan {
        meta,
        bad,
        file_len,
    })
}

/// Whether, after the bad record at `offset`, a valid record with seq `expected_seq`
/// follows where the bad record's length field says it ends. That tells corruption
/// inside acknowledged data (an error) from a torn tail (truncated).
pub(crate) fn valid_record_follows(
    path: &Path,
    offset: u64,
    expected_seq: u64,
    max_body: u32,
) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut len = [0u8; 4];
    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_exact(&mut len).is_err() {
        return false;
    }
    let next = offset + FRAME_PREFIX as u64 + u64::from(u32::from_le_bytes(len));
    if f.seek(SeekFrom::Start(next)).is_err() {
        return false;
    }
    matches!(read_record(&mut f, max_body), Ok(ReadOutcome::Record(ev, _)) if ev.seq == expected_seq)
}

const INDEX_MAGIC: &[u8; 8] = b"ATLIDX01";

/// Writes the segment's index atomically (temp file, fsync, rename).
pub(crate) fn write_index(meta: &SegmentMeta, interval: u64) -> Result<(), LogError> {
    let mut buf = Vec::with_capacity(64 + meta.index.len() * 24);
    buf.extend_from_slice(INDEX_MAGIC);
    buf.extend_from_slice(&meta.len.to_le_bytes());
    buf.extend_from_slice(&meta.count.to_le_bytes());
    buf.extend_from_slice(&interval.to_le_bytes());
    buf.extend_from_slice(&meta.first_time.unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&meta.last_time.unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&(meta.index.len() as u64).to_le_bytes());
    for e in &meta.index {
        buf.extend_from_slice(&e.seq.to_le_bytes());
        buf.extend_from_slice(&e.time_us.to_le_bytes());
        buf.extend_from_slice(&e.offset.to_le_bytes());
    }
    let crc = crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let path = index_path(&meta.path);
    let tmp = path.with_extension("idx.tmp");
    let mut f = File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    f.write_all(&buf).map_err(|e| LogError::io(&tmp, e))?;
    f.sync_data().map_err(|e| LogError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))?;
    Ok(())
}

/// Loads the segment's index if it exists and describes exactly `seg_len` bytes with
/// the same interval; `None` means missing or stale.
pub(crate) fn load_index(
    seg: &Path,
    first_seq: u64,
    seg_len: u64,
    interval: u64,
) -> Option<SegmentMeta> {
    let data = fs::read(index_path(seg)).ok()?;
    let (body, crc) = data.split_at_checked(data.len().checked_sub(4)?)?;
    if crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) || !body.starts_with(INDEX_MAGIC) {
        return None;
    }
    let mut words = body[INDEX_MAGIC.len()..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    let len = words.next()?;
    let count = words.next()?;
    let ivl = words.next()?;
    let first_time = words.next()? as i64;
    let last_time = words.next()? as i64;
    let n = words.next()?;
    if len != seg_len || ivl != interval || count == 0 {
        return None;
    }
    let mut index = Vec::with_capacity(usize::try_from(n).ok()?.min(1 << 20));
    for _ in 0..n {
        index.push(IndexEntry {
            seq: words.next()?,
            time_us: words.next()? as i64,
            offset: words.next()?,
        });
    }
    if words.next().is_some() || index.first().map(|e| (e.seq, e.offset)) != Some((first_seq, 0)) {
        return None;
    }
    Some(SegmentMeta {
        first_seq,
        path: seg.to_owned(),
        len,
        count,
        first_time: Some(first_time),
        last_time: Some(last_time),
        index,
    })
}

/// Removes a segment and its index file.
pub(crate) fn remove_segment(path: &Path) -> Result<(), LogError> {
    fs::remove_file(path).map_err(|e| LogError::io(path, e))?;
    let idx = index_path(path);
    match fs::remove_file(&idx) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(idx, e)),
    }
}

/// Deletes a segment's index file if present (the active segment never has one).
pub(crate) fn remove_index(seg: &Path) {
    let _ = fs::remove_file(index_path(seg));
}
