//! Jetstream v1 compatibility: the JSON events and subscription options of Bluesky's legacy
//! Jetstream `/subscribe`, so existing Jetstream clients can read the namespace relay. The
//! contract is `shared/brief/jetstream.md`; section numbers below refer to it.
//!
//! - [`record`]: record DAG-CBOR to the exact JSON bytes legacy Jetstream emits (§4),
//!   written directly from the borrowing CBOR reader: this is the fan-out hot path.
//! - [`event`]: commits (one event per op), identity and account events with their
//!   `time_us` from a strictly increasing [`TimeClock`] (§3, §5).
//! - [`options`]: the query string, `options_update` messages and the per-event filter
//!   (§1, §2), with errors that render as the legacy 400 bodies and close reasons.
//!
//! What remains for the relay:
//! - **zstd (§6)**: every event as one zstd frame compressed with the legacy dictionary
//!   (112,640 bytes, dict ID 1612007021, sha256 `b8d77b46…6522f70c`), frame header carrying
//!   the dict ID, default level, 128 KiB window, checksum on. The dictionary must be taken at
//!   build or install time from the crates.io package `jetstream-oxide` 0.1.2 (`zstd/dictionary`)
//!   and its sha256 checked; its bytes are not committed. Nothing here compresses yet.
//! - **The server (§1, §2, §5, §7)**: the `/subscribe` WebSocket handler (validation before
//!   upgrade, `Socket-Encoding`, requireHello, replay-to-live as one ordered read from the
//!   event log, never resending a `time_us` ≤ the last sent, pings, per-IP rate limit, slow
//!   client handling, close codes), fed by the event log with the events built here.

mod json;

pub mod event;
pub mod options;
pub mod record;
pub mod zstd;

pub use event::{
    JetstreamEvent, TimeClock, encode_account, encode_commit, encode_identity, encode_sync_event,
    now_us,
};
pub use options::{
    CollectionFilter, OptionsError, OptionsUpdate, Start, SubscribeOptions, UpdateError,
};
pub use record::{MAX_RECORD_BYTES, RecordEncoder, RecordError, record_json};
pub use zstd::{Compressor, Dictionary, DictionaryError, dictionary_path};
