//! Upload progress, per account and idempotency key, for the Server-Sent Events endpoint
//! (`GET /publish/progress/{key}`).
//!
//! Each channel is a `watch`: a subscriber sees the latest event (late subscribers are
//! not replayed every step, only where the upload stands), and the final `done` or
//! `failed` event stays for [`KEEP_FINISHED`] so a client that subscribes after a fast
//! upload still learns its outcome. A subscriber may open the channel before the upload
//! starts. Channels are bounded per account ([`MAX_PER_ACCOUNT`]); the oldest go first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

/// How long a finished upload's last event is kept.
pub const KEEP_FINISHED: Duration = Duration::from_secs(10 * 60);
/// How long an idle channel (never finished) is kept.
const KEEP_IDLE: Duration = Duration::from_secs(60 * 60);
/// Channels kept per account.
pub const MAX_PER_ACCOUNT: usize = 32;

/// One progress event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Nothing yet (the channel was opened before the upload).
    Waiting,
    /// Bytes moved so far in a phase: `receiving` (client to AppView) or `uploading`
    /// (AppView to PDS); `total` when known.
    Progress {
        /// The phase.
        phase: &'static str,
        /// Bytes so far.
        bytes: u64,
        /// Bytes in all, if known.
        total: Option<u64>,
    },
    /// Finished: the answer the upload request got.
    Done(Value),
    /// Failed: the error body the upload request got.
    Failed(Value),
}

impl Event {
    /// Whether no more events follow.
    pub fn is_final(&self) -> bool {
        matches!(self, Event::Done(_) | Event::Failed(_))
    }

    /// The SSE event name and its JSON data.
    pub fn sse(&self) -> (&'static str, Value) {
        match self {
            Event::Waiting => ("waiting", json!({})),
            Event::Progress {
                phase,
                bytes,
                total,
            } => (
                "progress",
                json!({"phase": phase, "bytes": bytes, "total": total}),
            ),
            Event::Done(v) => ("done", v.clone()),
            Event::Failed(v) => ("failed", v.clone()),
        }
    }
}

struct Channel {
    tx: watch::Sender<Event>,
    touched: Instant,
    finished: Option<Instant>,
}

/// Every account's progress channels.
#[derive(Default)]
pub struct ProgressHub {
    channels: Mutex<HashMap<(String, String), Channel>>,
}

impl std::fmt::Debug for ProgressHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.channels.lock().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("ProgressHub").field("channels", &n).finish()
    }
}

impl ProgressHub {
    /// Follows `did`'s upload under `key` (opening its channel if needed).
    pub fn subscribe(&self, did: &str, key: &str) -> watch::Receiver<Event> {
        self.with_channel(did, key, |c| c.tx.subscribe())
    }

    /// Publishes `event` on `did`'s channel `key` (opening it if needed).
    pub fn send(&self, did: &str, key: &str, event: Event) {
        self.with_channel(did, key, |c| {
            if event.is_final() {
                c.finished = Some(Instant::now());
            }
            c.touched = Instant::now();
            c.tx.send_replace(event);
        });
    }

    fn with_channel<T>(&self, did: &str, key: &str, f: impl FnOnce(&mut Channel) -> T) -> T {
        let mut channels = match self.channels.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let id = (did.to_owned(), key.to_owned());
        if !channels.contains_key(&id) {
            sweep(&mut channels, did);
        }
        let channel = channels.entry(id).or_insert_with(|| Channel {
            tx: watch::channel(Event::Waiting).0,
            touched: Instant::now(),
            finished: None,
        });
        f(channel)
    }
}

/// Drops expired channels, and `did`'s oldest beyond [`MAX_PER_ACCOUNT`] - 1.
fn sweep(channels: &mut HashMap<(String, String), Channel>, did: &str) {
    let now = Instant::now();
    channels.retain(|_, c| match c.finished {
        Some(at) => now.duration_since(at) < KEEP_FINISHED,
        None => now.duration_since(c.touched) < KEEP_IDLE,
    });
    let mut mine: Vec<(Instant, String)> = channels
        .iter()
        .filter(|((d, _), _)| d == did)
        .map(|((_, k), c)| (c.touched, k.clone()))
        .collect();
    if mine.len() >= MAX_PER_ACCOUNT {
        mine.sort();
        for (_, key) in mine.iter().take(mine.len() + 1 - MAX_PER_ACCOUNT) {
            channels.remove(&(did.to_owned(), key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_subscriber_sees_the_outcome() {
        let hub = ProgressHub::default();
        hub.send("did:a", "k", Event::Done(json!({"ok": true})));
        let rx = hub.subscribe("did:a", "k");
        assert_eq!(*rx.borrow(), Event::Done(json!({"ok": true})));
        // Another account's key of the same name is another channel.
        assert_eq!(*hub.subscribe("did:b", "k").borrow(), Event::Waiting);
    }

    #[test]
    fn channels_per_account_are_bounded() {
        let hub = ProgressHub::default();
        for i in 0..(MAX_PER_ACCOUNT + 10) {
            hub.send("did:a", &format!("k{i}"), Event::Waiting);
        }
        let n = hub.channels.lock().map(|c| c.len()).unwrap_or(0);
        assert_eq!(n, MAX_PER_ACCOUNT);
    }
}
