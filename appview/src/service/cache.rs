//! A response cache for the read API: successful query responses are kept, keyed by path
//! and query string, until the index changes.
//!
//! The index changes only when ingest commits a batch, so the batch counter is the cache's
//! generation: a response computed under generation G is served again only while the
//! counter is still G, and the whole cache is dropped when it moves. A response computed
//! while a batch commits may hold the newer rows under the older generation; it is never
//! served after the counter moves, so no client sees data older than the last commit
//! before its request. The hottest query, the Atmosphere's first page, is then computed
//! once per batch instead of once per request.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// Cached response bodies of one generation, bounded in total size.
#[derive(Debug)]
pub(crate) struct ResponseCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    bodies: HashMap<String, Bytes>,
}

impl ResponseCache {
    /// A cache holding at most `max_bytes` of bodies (0: disabled).
    pub(crate) fn new(max_bytes: usize) -> ResponseCache {
        ResponseCache {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether caching is on.
    pub(crate) fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The body cached for `key` under `generation`.
    pub(crate) fn get(&self, key: &str, generation: u64) -> Option<Bytes> {
        let inner = self.inner.lock().ok()?;
        if inner.generation != generation {
            return None;
        }
        inner.bodies.get(key).cloned()
    }

    /// Keeps `body` for `key` under `generation` (a newer generation drops the rest; a
    /// full cache starts over).
    pub(crate) fn put(&self, key: String, generation: u64, body: Bytes) {
        if body.len() > self.max_bytes {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if generation < inner.generation {
            return;
        }
        if generation > inner.generation || inner.bytes + body.len() > self.max_bytes {
            inner.bodies.clear();
            inner.bytes = 0;
            inner.generation = generation;
        }
        inner.bytes += body.len() + key.len();
        inner.bodies.insert(key, body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_only_the_current_generation_within_its_budget() {
        let cache = ResponseCache::new(100);
        cache.put("a".into(), 1, Bytes::from_static(b"one"));
        assert_eq!(cache.get("a", 1).as_deref(), Some(&b"one"[..]));
        assert_eq!(cache.get("a", 2), None, "a newer generation misses");
        cache.put("b".into(), 2, Bytes::from_static(b"two"));
        assert_eq!(cache.get("a", 2), None, "the older generation is gone");
        cache.put("c".into(), 1, Bytes::from_static(b"old"));
        assert_eq!(cache.get("c", 1), None, "an older generation is not stored");
        cache.put("big".into(), 2, Bytes::from(vec![0u8; 101]));
        assert_eq!(cache.get("big", 2), None, "larger than the budget");
        cache.put("d".into(), 2, Bytes::from(vec![0u8; 97]));
        assert_eq!(cache.get("b", 2), None, "a full cache starts over");
        assert!(cache.get("d", 2).is_some());
        assert!(!ResponseCache::new(0).enabled());
    }
}
