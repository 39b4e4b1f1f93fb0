//! The memory tier: a byte-budgeted map from [`WindowKey`] to window bytes,
//! with frequency-aware S3-FIFO eviction (Pingora's `TinyUFO`); every window offered is admitted.
//!
//! Readers share a window zero-copy: `get` returns a `Bytes` handle to the
//! same buffer. TinyUFO weighs entries in `u16` units, so weight is counted
//! in 64 KiB units (a short last window is rounded up); the byte gauges are
//! exact. TinyUFO stores a 64-bit hash of the key, not the key, so each entry
//! keeps its key and a lookup whose stored key differs is a miss: a hash
//! collision can never serve another window's bytes.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tinyufo::TinyUfo;

use super::window::WindowKey;

/// Weight unit of the TinyUFO budget.
const UNIT: u64 = 64 << 10;

#[derive(Clone)]
struct Entry {
    key: WindowKey,
    bytes: Bytes,
}

/// Counters of the memory tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Bytes held.
    pub bytes: u64,
    /// Windows held.
    pub entries: u64,
    /// Windows evicted (or refused admission) since start.
    pub evictions: u64,
}

/// The memory tier.
pub struct MemoryTier {
    ufo: TinyUfo<WindowKey, Entry>,
    budget: u64,
    bytes: AtomicU64,
    entries: AtomicU64,
    evictions: AtomicU64,
}

impl MemoryTier {
    /// A tier holding at most `budget` bytes of windows of about `window` bytes.
    pub fn new(budget: u64, window: u64) -> MemoryTier {
        let units = usize::try_from((budget / UNIT).max(1)).unwrap_or(usize::MAX);
        let estimated = usize::try_from((budget / window.max(1)).max(16)).unwrap_or(1 << 20);
        MemoryTier {
            ufo: TinyUfo::new(units, estimated),
            budget,
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The window, if held.
    pub fn get(&self, key: &WindowKey) -> Option<Bytes> {
        self.ufo.get(key).filter(|e| e.key == *key).map(|e| e.bytes)
    }

    /// True when the window is held.
    pub fn contains(&self, key: &WindowKey) -> bool {
        self.get(key).is_some()
    }

    /// Adds a window, evicting others (S3-FIFO, frequency-aware) to keep the
    /// budget. Returns the keys that left the tier.
    pub fn put(&self, key: WindowKey, bytes: Bytes) -> Vec<WindowKey> {
        if bytes.is_empty() || bytes.len() as u64 > self.budget || self.contains(&key) {
            return Vec::new();
        }
        let weight = u16::try_from((bytes.len() as u64).div_ceil(UNIT)).unwrap_or(u16::MAX);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.entries.fetch_add(1, Ordering::Relaxed);
        let mut left = Vec::new();
        // Always admitted: every window offered was just asked for (or read
        // ahead for a reader), so refusing it would only cause a refetch.
        // S3-FIFO (with its use counts) still picks which older windows leave.
        for gone in self
            .ufo
            .force_put(key.clone(), Entry { key, bytes }, weight)
        {
            self.forget(gone.data.bytes.len() as u64);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            left.push(gone.data.key);
        }
        left
    }

    /// Drops a window, if held.
    pub fn remove(&self, key: &WindowKey) -> bool {
        match self.ufo.remove(key) {
            Some(e) if e.key == *key => {
                self.forget(e.bytes.len() as u64);
                true
            }
            Some(other) => {
                // A colliding entry was removed: put it back.
                self.forget(other.bytes.len() as u64);
                let _ = self.put(other.key, other.bytes);
                false
            }
            None => false,
        }
    }

    fn forget(&self, len: u64) {
        self.bytes.fetch_sub(len, Ordering::Relaxed);
        self.entries.fetch_sub(1, Ordering::Relaxed);
    }

    /// Current counters.
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            bytes: self.bytes.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn key(i: u64) -> WindowKey {
        WindowKey {
            cid: Arc::from("bafkzcibtest"),
            index: i,
        }
    }

    #[test]
    fn shares_bytes_and_keeps_the_budget() {
        let t = MemoryTier::new(4 << 20, 1 << 20);
        let data = Bytes::from(vec![7u8; 1 << 20]);
        t.put(key(0), data.clone());
        let got = t.get(&key(0)).unwrap();
        assert_eq!(got.as_ptr(), data.as_ptr(), "zero-copy");
        assert_eq!(t.stats().bytes, 1 << 20);
        for i in 1..40 {
            t.put(key(i), Bytes::from(vec![i as u8; 1 << 20]));
            assert!(t.stats().bytes <= 4 << 20, "over budget after {i}");
        }
        assert!(t.stats().evictions >= 36);
        assert!(t.stats().entries <= 4);
        for i in 0..40 {
            if let Some(b) = t.get(&key(i)) {
                assert!(
                    b.iter().all(|&x| x == i as u8),
                    "window {i} holds its own bytes"
                );
            }
        }
        assert!(!t.contains(&WindowKey {
            cid: Arc::from("bafkzcibother"),
            index: 39
        }));
    }

    #[test]
    fn remove_and_oversize() {
        let t = MemoryTier::new(1 << 20, 1 << 20);
        t.put(key(1), Bytes::from(vec![1u8; 1000]));
        assert!(t.remove(&key(1)));
        assert!(!t.remove(&key(1)));
        assert_eq!(
            t.stats(),
            MemoryStats {
                bytes: 0,
                entries: 0,
                evictions: 0
            }
        );
        t.put(key(2), Bytes::from(vec![1u8; (1 << 20) + 1]));
        assert!(t.get(&key(2)).is_none());
    }
}
