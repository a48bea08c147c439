//! What the relay stores per event in the log, and the event both endpoints serve.
//!
//! A log record's payload is hand-framed (the layout is ours and sits on the replay hot
//! path, where a generic serializer would cost more than the copy):
//!
//! ```text
//! [version u8 = 1][upstream u32][upstream_seq i64]
//! [frame_len u32][frame: the subscribeRepos frame, already carrying the relay's seq]
//! [count u16] count × ([time_us i64][collection_len u16][collection][json_len u32][json])
//! ```
//!
//! Little-endian throughout. The frame is stored re-sequenced so replay sends it as is; the
//! Jetstream events are stored encoded so a JSON replay never touches CBOR.

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;

use crate::jetstream::JetstreamEvent;

/// Log record kinds (the log's `kind` byte).
pub(crate) mod kind {
    /// `#commit`.
    pub(crate) const COMMIT: u8 = 1;
    /// `#identity`.
    pub(crate) const IDENTITY: u8 = 2;
    /// `#account`.
    pub(crate) const ACCOUNT: u8 = 3;
    /// `#sync`.
    pub(crate) const SYNC: u8 = 4;
}

const VERSION: u8 = 1;

/// One relay event, as fanned out live and as decoded from the log.
#[derive(Debug, Clone)]
pub(crate) struct RelayEvent {
    /// The relay's seq (the log's).
    pub(crate) seq: u64,
    /// The log record's time: the last Jetstream event's `time_us` (so a time cursor
    /// finds the record holding its event), or a fresh tick when there is none.
    pub(crate) time_us: i64,
    /// See [`kind`].
    pub(crate) kind: u8,
    /// The account.
    pub(crate) did: String,
    /// The upstream's id in the state store.
    pub(crate) upstream: u32,
    /// The upstream's seq of the frame.
    pub(crate) upstream_seq: i64,
    /// The `subscribeRepos` frame with the relay's seq.
    pub(crate) frame: Bytes,
    /// The Jetstream events, in order, with strictly increasing `time_us`.
    pub(crate) jetstream: Vec<JetstreamEvent>,
    /// Each Jetstream event's JSON as WebSocket text, checked as UTF-8 once here rather
    /// than once per subscriber.
    pub(crate) text: Vec<Utf8Bytes>,
    /// The same events zstd-compressed, when the live path compressed them (empty on
    /// replay and when no dictionary is loaded).
    pub(crate) zstd: Vec<Bytes>,
}

/// A payload that does not parse: the log checksum passed, so this is a bug or a
/// payload version this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored relay event {seq} is malformed: {reason}")]
pub(crate) struct PayloadError {
    pub(crate) seq: u64,
    pub(crate) reason: &'static str,
}

/// Writes the payload for an event into `out` (cleared first).
pub(crate) fn encode(
    out: &mut Vec<u8>,
    upstream: u32,
    upstream_seq: i64,
    frame: &[u8],
    events: &[JetstreamEvent],
) {
    out.clear();
    out.push(VERSION);
    out.extend_from_slice(&upstream.to_le_bytes());
    out.extend_from_slice(&upstream_seq.to_le_bytes());
    out.extend_from_slice(&len32(frame.len()).to_le_bytes());
    out.extend_from_slice(frame);
    out.extend_from_slice(
        &u16::try_from(events.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    for ev in events.iter().take(usize::from(u16::MAX)) {
        let collection = ev.collection.as_deref().unwrap_or("");
        out.extend_from_slice(&ev.time_us.to_le_bytes());
        out.extend_from_slice(
            &u16::try_from(collection.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(collection.as_bytes());
        out.extend_from_slice(&len32(ev.json.len()).to_le_bytes());
        out.extend_from_slice(&ev.json);
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What a reader of the log serves, so replay decodes only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The `subscribeRepos` frame (the Jetstream events are left empty).
    Frame,
    /// The Jetstream events and their text (and the frame, which is only a slice).
    Jetstream,
}

/// Reads a log event back into a [`RelayEvent`]; the frame and JSON are slices of the
/// payload (no copies). With [`Want::Frame`] the Jetstream part is skipped unread.
pub(crate) fn decode(
    event: crate::eventlog::Event,
    want: Want,
) -> Result<RelayEvent, PayloadError> {
    let seq = event.seq;
    let p = &event.payload;
    let mut at = 0usize;
    let err = |reason| PayloadError { seq, reason };
    let mut take = |n: usize| -> Result<std::ops::Range<usize>, PayloadError> {
        let end = at.checked_add(n).filter(|e| *e <= p.len());
        let end = end.ok_or(err("truncated"))?;
        let r = at..end;
        at = end;
        Ok(r)
    };
    let version = p[take(1)?][0];
    if version != VERSION {
        return Err(err("unknown payload version"));
    }
    let upstream = u32::from_le_bytes(arr(&p[take(4)?]));
    let upstream_seq = i64::from_le_bytes(arr(&p[take(8)?]));
    let frame_len = u32::from_le_bytes(arr(&p[take(4)?])) as usize;
    let frame = p.slice(take(frame_len)?);
    if want == Want::Frame {
        return Ok(RelayEvent {
            seq,
            time_us: event.time_us,
            kind: event.kind,
            did: event.did,
            upstream,
            upstream_seq,
            frame,
            jetstream: Vec::new(),
            text: Vec::new(),
            zstd: Vec::new(),
        });
    }
    let count = u16::from_le_bytes(arr(&p[take(2)?]));
    let mut jetstream = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let time_us = i64::from_le_bytes(arr(&p[take(8)?]));
        let clen = usize::from(u16::from_le_bytes(arr(&p[take(2)?])));
        let collection = &p[take(clen)?];
        let collection = if collection.is_empty() {
            None
        } else {
            Some(
                std::str::from_utf8(collection)
                    .map_err(|_| err("collection is not UTF-8"))?
                    .to_owned(),
            )
        };
        let jlen = u32::from_le_bytes(arr(&p[take(4)?])) as usize;
        let json = p.slice(take(jlen)?);
        jetstream.push(JetstreamEvent {
            time_us,
            did: event.did.clone(),
            collection,
            json,
        });
    }
    if at != p.len() {
        return Err(err("trailing bytes"));
    }
    let text = texts(&jetstream).map_err(|_| err("Jetstream JSON is not UTF-8"))?;
    Ok(RelayEvent {
        seq,
        time_us: event.time_us,
        kind: event.kind,
        did: event.did,
        upstream,
        upstream_seq,
        frame,
        jetstream,
        text,
        zstd: Vec::new(),
    })
}

/// The events' JSON as WebSocket text (fails if one is not UTF-8, which our encoder never
/// produces).
pub(crate) fn texts(events: &[JetstreamEvent]) -> Result<Vec<Utf8Bytes>, std::str::Utf8Error> {
    events
        .iter()
        .map(|ev| Utf8Bytes::try_from(ev.json.clone()))
        .collect()
}

/// Copies a slice the caller has sized into an array.
fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let events = vec![
            JetstreamEvent {
                time_us: 10,
                did: "did:plc:a".into(),
                collection: Some("computer.aesthetic.painting".into()),
                json: Bytes::from_static(b"{\"x\":1}"),
            },
            JetstreamEvent {
                time_us: 11,
                did: "did:plc:a".into(),
                collection: None,
                json: Bytes::from_static(b"{}"),
            },
        ];
        let mut buf = Vec::new();
        encode(&mut buf, 7, 1234, b"frame-bytes", &events);
        let ev = crate::eventlog::Event {
            seq: 5,
            time_us: 11,
            kind: kind::COMMIT,
            did: "did:plc:a".into(),
            payload: Bytes::from(buf.clone()),
        };
        let got = decode(ev.clone(), Want::Jetstream).unwrap();
        let frame_only = decode(ev, Want::Frame).unwrap();
        assert_eq!(&frame_only.frame[..], b"frame-bytes");
        assert!(frame_only.jetstream.is_empty());
        assert_eq!((got.seq, got.upstream, got.upstream_seq), (5, 7, 1234));
        assert_eq!(&got.frame[..], b"frame-bytes");
        assert_eq!(got.jetstream, events);
        for cut in 0..buf.len() {
            let ev = crate::eventlog::Event {
                seq: 5,
                time_us: 11,
                kind: kind::COMMIT,
                did: "did:plc:a".into(),
                payload: Bytes::copy_from_slice(&buf[..cut]),
            };
            assert!(decode(ev, Want::Jetstream).is_err(), "cut at {cut}");
        }
    }
}
