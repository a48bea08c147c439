//! Record framing: `[body_len u32 LE][crc32c(body) u32 LE][body]`, where the body is
//! `[seq u64 LE][time_us i64 LE][kind u8][did_len u16 LE][did][payload]`.
//!
//! The checksum covers the whole body, so a torn write (short body), a bit flip or
//! garbage after the last record are all detected before any field is trusted.

use std::io::{self, Read};

use bytes::Bytes;

use super::crc32c::crc32c;

/// Bytes before the body: length and checksum.
pub(crate) const FRAME_PREFIX: usize = 8;
/// The fixed part of the body: seq, time_us, kind, did_len.
pub(crate) const HEADER_FIXED: usize = 8 + 8 + 1 + 2;

/// One event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Assigned by the log: strictly increasing from 1, without gaps.
    pub seq: u64,
    /// Given by the writer: strictly increasing, unix microseconds.
    pub time_us: i64,
    /// The caller's event kind tag (for example commit, identity, account).
    pub kind: u8,
    /// The repository the event concerns.
    pub did: String,
    /// The stored bytes: a `subscribeRepos` frame or Jetstream JSON.
    pub payload: Bytes,
}

/// Encodes one record into `buf` (cleared first). Sizes are checked by the caller.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    seq: u64,
    time_us: i64,
    kind: u8,
    did: &str,
    payload: &[u8],
) {
    buf.clear();
    let body_len = HEADER_FIXED + did.len() + payload.len();
    buf.reserve(FRAME_PREFIX + body_len);
    buf.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&time_us.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(&u16::try_from(did.len()).unwrap_or(u16::MAX).to_le_bytes());
    buf.extend_from_slice(did.as_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32c(&buf[FRAME_PREFIX..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// What reading one record from a position produced.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// A valid record and its total framed length.
    Record(Event, u64),
    /// Clean end of data: zero bytes were available.
    End,
    /// The bytes at this position are not a valid record.
    Bad(String),
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads and validates one record. `max_body` bounds the allocation, so a corrupt
/// length can never make us allocate gigabytes.
pub(crate) fn read_record<R: Read>(r: &mut R, max_body: u32) -> io::Result<ReadOutcome> {
    let mut prefix = [0u8; FRAME_PREFIX];
    let n = read_full(r, &mut prefix)?;
    if n == 0 {
        return Ok(ReadOutcome::End);
    }
    if n < FRAME_PREFIX {
        return Ok(ReadOutcome::Bad(format!(
            "short frame prefix ({n} of {FRAME_PREFIX} bytes)"
        )));
    }
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let crc = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if (len as usize) < HEADER_FIXED || len > max_body {
        return Ok(ReadOutcome::Bad(format!(
            "record length {len} outside {HEADER_FIXED}..={max_body}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    let got = read_full(r, &mut body)?;
    if got < body.len() {
        return Ok(ReadOutcome::Bad(format!(
            "short record body ({got} of {len} bytes)"
        )));
    }
    if crc32c(&body) != crc {
        return Ok(ReadOutcome::Bad("checksum mismatch".to_owned()));
    }
    match decode_body(body) {
        Ok(ev) => Ok(ReadOutcome::Record(
            ev,
            FRAME_PREFIX as u64 + u64::from(len),
        )),
        Err(reason) => Ok(ReadOutcome::Bad(reason.to_owned())),
    }
}

fn decode_body(body: Vec<u8>) -> Result<Event, &'static str> {
    let fixed = body.get(..HEADER_FIXED).ok_or("body shorter than header")?;
    let mut b8 = [0u8; 8];
    b8.copy_from_slice(&fixed[0..8]);
    let seq = u64::from_le_bytes(b8);
    b8.copy_from_slice(&fixed[8..16]);
    let time_us = i64::from_le_bytes(b8);
    let kind = fixed[16];
    let did_len = usize::from(u16::from_le_bytes([fixed[17], fixed[18]]));
    let did_end = HEADER_FIXED + did_len;
    let did_bytes = body
        .get(HEADER_FIXED..did_end)
        .ok_or("DID length beyond record")?;
    let did = std::str::from_utf8(did_bytes)
        .map_err(|_| "DID is not UTF-8")?
        .to_owned();
    let payload = Bytes::from(body).slice(did_end..);
    Ok(Event {
        seq,
        time_us,
        kind,
        did,
        payload,
    })
}
