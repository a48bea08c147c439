//! A small TTL cache with a size bound and approximate least-recently-used eviction.
//!
//! Every entry carries its own expiry (positive and negative answers live for different
//! times) and the tick of its last use. When an insert finds the cache full, expired
//! entries go first; if that frees nothing, the least recently used eighth goes (found in
//! one linear pass), so eviction costs O(1) amortised per insert without a linked list.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Slot<V> {
    value: V,
    expires: Instant,
    /// The cache's tick at the last insert or hit; smaller = less recently used.
    used: u64,
}

/// Keys are strings (DIDs and handles); values are cloned out on a hit.
#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    slots: HashMap<String, Slot<V>>,
    capacity: usize,
    tick: u64,
}

impl<V: Clone> TtlCache<V> {
    /// A cache of at most `capacity` entries (0 disables caching).
    pub(crate) fn new(capacity: usize) -> Self {
        TtlCache {
            slots: HashMap::new(),
            capacity,
            tick: 0,
        }
    }

    /// The live value for `key`, refreshing its recency; an expired entry is dropped.
    pub(crate) fn get(&mut self, key: &str, now: Instant) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        match self.slots.get_mut(key) {
            Some(slot) if slot.expires > now => {
                slot.used = tick;
                Some(slot.value.clone())
            }
            Some(_) => {
                self.slots.remove(key);
                None
            }
            None => None,
        }
    }

    /// The live value for `key` without touching recency.
    pub(crate) fn peek(&self, key: &str, now: Instant) -> Option<&V> {
        self.slots
            .get(key)
            .filter(|slot| slot.expires > now)
            .map(|slot| &slot.value)
    }

    /// Stores `value` under `key` for `ttl`, evicting if the cache is full.
    pub(crate) fn insert(&mut self, key: String, value: V, ttl: Duration, now: Instant) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        if !self.slots.contains_key(&key) && self.slots.len() >= self.capacity {
            self.evict(now);
        }
        self.tick += 1;
        let expires = now.checked_add(ttl).unwrap_or(now);
        self.slots.insert(
            key,
            Slot {
                value,
                expires,
                used: self.tick,
            },
        );
    }

    /// Drops `key`.
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        self.slots.remove(key).map(|slot| slot.value)
    }

    /// How many entries are held (expired ones included until they are noticed).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    fn evict(&mut self, now: Instant) {
        self.slots.retain(|_, slot| slot.expires > now);
        if self.slots.len() < self.capacity {
            return;
        }
        let count = (self.capacity / 8).max(1);
        let mut ticks: Vec<u64> = self.slots.values().map(|slot| slot.used).collect();
        if ticks.is_empty() {
            return;
        }
        let index = (count - 1).min(ticks.len().saturating_sub(1));
        let (_, threshold, _) = ticks.select_nth_unstable(index);
        let threshold = *threshold;
        // Ticks are unique, so exactly `count` entries are at or below the threshold.
        self.slots.retain(|_, slot| slot.used > threshold);
    }
}
