//! Fan-out: live events go to every subscriber through one broadcast ring; a subscriber
//! that is behind (replaying, or after a gap) reads the event log instead. Both are driven
//! by seq, so the switch from replay to live has no gap and no duplicate.
//!
//! A subscriber is "too slow" only when it lags the broadcast ring while live: reading
//! from the log at its own pace never affects anyone else, and the writer never waits for
//! a subscriber.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::broadcast;

use super::payload::{self, RelayEvent, Want};
use crate::eventlog::{LogError, LogHandle, LogReader};

/// The live ring and the subscriber registry.
#[derive(Debug)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Arc<RelayEvent>>,
    max: usize,
    count: AtomicUsize,
    next_id: AtomicU64,
    registry: Mutex<BTreeMap<u64, Arc<SubscriberInfo>>>,
    /// Subscribers asking for zstd frames (the writer compresses only when there is one).
    compressing: AtomicUsize,
    /// Subscribers dropped for being too slow.
    pub(crate) dropped_slow: AtomicU64,
}

/// What the admin API shows about a subscriber.
#[derive(Debug, Serialize)]
pub(crate) struct SubscriberInfo {
    pub(crate) id: u64,
    pub(crate) endpoint: &'static str,
    pub(crate) remote: String,
    #[serde(skip)]
    pub(crate) since: Instant,
    pub(crate) sent: AtomicU64,
    pub(crate) last_seq: AtomicU64,
}

/// Removes a subscriber from the registry when its connection ends.
#[derive(Debug)]
pub(crate) struct Registration {
    hub: Arc<Hub>,
    pub(crate) info: Arc<SubscriberInfo>,
    compress: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.count.fetch_sub(1, Ordering::Relaxed);
        if self.compress {
            self.hub.compressing.fetch_sub(1, Ordering::Relaxed);
        }
        if let Ok(mut reg) = self.hub.registry.lock() {
            reg.remove(&self.info.id);
        }
    }
}

impl Hub {
    pub(crate) fn new(buffer: usize, max: usize) -> Hub {
        let (tx, _) = broadcast::channel(buffer.max(16));
        Hub {
            tx,
            max,
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            registry: Mutex::new(BTreeMap::new()),
            compressing: AtomicUsize::new(0),
            dropped_slow: AtomicU64::new(0),
        }
    }

    /// How many subscribers want zstd frames.
    pub(crate) fn compressing(&self) -> usize {
        self.compressing.load(Ordering::Relaxed)
    }

    /// Publishes an event the log has just accepted.
    pub(crate) fn publish(&self, event: Arc<RelayEvent>) {
        // No receivers is fine: nobody is live.
        let _ = self.tx.send(event);
    }

    /// Current subscribers.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// A snapshot of the registry.
    pub(crate) fn list(&self) -> Vec<Arc<SubscriberInfo>> {
        self.registry
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Registers a subscriber, or `None` when the limit is reached.
    pub(crate) fn register(
        self: &Arc<Self>,
        endpoint: &'static str,
        remote: SocketAddr,
        compress: bool,
    ) -> Option<Registration> {
        let prev = self.count.fetch_add(1, Ordering::Relaxed);
        if prev >= self.max {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let info = Arc::new(SubscriberInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            endpoint,
            remote: remote.to_string(),
            since: Instant::now(),
            sent: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
        });
        if let Ok(mut reg) = self.registry.lock() {
            reg.insert(info.id, Arc::clone(&info));
        }
        if compress {
            self.compressing.fetch_add(1, Ordering::Relaxed);
        }
        Some(Registration {
            hub: Arc::clone(self),
            info,
            compress,
        })
    }

    fn receiver(&self) -> broadcast::Receiver<Arc<RelayEvent>> {
        self.tx.subscribe()
    }
}

/// Why a subscriber's event source ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceEnd {
    /// It lagged the live ring.
    #[error("consumer too slow")]
    TooSlow,
    /// The relay is shutting down.
    #[error("relay shutting down")]
    Closed,
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A stored event did not parse.
    #[error(transparent)]
    Payload(#[from] payload::PayloadError),
}

/// One subscriber's ordered event source: the log while behind, the live ring when caught
/// up.
#[derive(Debug)]
pub(crate) struct EventSource {
    log: LogHandle,
    live: broadcast::Receiver<Arc<RelayEvent>>,
    reader: Option<LogReader>,
    /// The last seq delivered (0: none yet).
    last: u64,
    /// Whether the source caught up with the log and now follows the ring.
    is_live: bool,
    /// What the endpoint serves: what to decode from the log.
    want: Want,
}

/// Where a source starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum From {
    /// New events only.
    Live,
    /// Events with `seq >= n`.
    Seq(u64),
    /// Events whose record time is `>= t`.
    Time(i64),
}

impl EventSource {
    /// A source at `from`, and whether the cursor was older than the log's retention.
    pub(crate) fn open(
        hub: &Hub,
        log: &LogHandle,
        from: From,
        want: Want,
    ) -> Result<(Self, bool), LogError> {
        // Subscribe before looking at the log, so nothing falls between the two.
        let live = hub.receiver();
        let (reader, last) = match from {
            From::Live => (None, log.latest_seq()),
            From::Seq(seq) => (Some(log.read_from_seq(seq)?), seq.saturating_sub(1)),
            From::Time(t) => (Some(log.read_from_time(t)), 0),
        };
        let mut source = EventSource {
            log: log.clone(),
            live,
            reader,
            last,
            is_live: matches!(from, From::Live),
            want,
        };
        let outdated = source.reader.as_mut().is_some_and(LogReader::take_outdated);
        Ok((source, outdated))
    }

    /// The next event in seq order.
    pub(crate) async fn next(&mut self) -> Result<Arc<RelayEvent>, SourceEnd> {
        loop {
            if let Some(reader) = self.reader.as_mut() {
                match reader.next_event()? {
                    Some(ev) if ev.seq <= self.last && self.last != 0 => continue,
                    Some(ev) => {
                        self.last = ev.seq;
                        return Ok(Arc::new(payload::decode(ev, self.want)?));
                    }
                    None => {
                        // Caught up: follow the ring from now on. A fresh receiver drops
                        // the backlog that piled up during replay; anything appended
                        // since shows up as a gap and is read from the log.
                        self.reader = None;
                        self.live = self.live.resubscribe();
                        self.is_live = true;
                        if self.last == 0 {
                            self.last = self.log.latest_seq();
                        }
                    }
                }
            }
            match self.live.recv().await {
                Ok(ev) if ev.seq <= self.last => {}
                Ok(ev) if ev.seq == self.last + 1 => {
                    self.last = ev.seq;
                    return Ok(ev);
                }
                Ok(_) => self.back_to_log()?,
                Err(broadcast::error::RecvError::Lagged(_)) if self.is_live => {
                    return Err(SourceEnd::TooSlow);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.back_to_log()?,
                Err(broadcast::error::RecvError::Closed) => return Err(SourceEnd::Closed),
            }
        }
    }

    fn back_to_log(&mut self) -> Result<(), LogError> {
        self.reader = Some(self.log.read_from_seq(self.last + 1)?);
        self.is_live = false;
        Ok(())
    }
}
