//! The memory tier: a byte-budgeted map from [`WindowKey`] to window bytes,
//! with frequency-aware S3-FIFO eviction (Pingora's `TinyUFO`); every window offered is admitted.
//!
//! Readers share a window zero-copy: `get` returns a `Bytes` handle to the
//! same buffer. TinyUFO weighs entries in `u16` units, so weight is counted
//! in 64 KiB units (a short last window is rounded up); the byte gauges are
//! exact.
//!
//! TinyUFO decides what stays; it does not hold the bytes. Its map frees a
//! removed value only after a batch of about 120 removals per thread (epoch
//! reclamation), which with 1 MiB windows kept some 130 MiB of evicted
//! windows alive beyond the budget. So TinyUFO holds a small slot (the key
//! and an id) and the bytes live in a plain map that drops a window the
//! moment TinyUFO evicts it: memory use is the budget, not the budget plus a
//! reclamation backlog. TinyUFO stores a 64-bit hash of the key, not the key,
//! so each slot keeps its key and a lookup whose stored key differs is a
//! miss: a hash collision can never serve another window's bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tinyufo::TinyUfo;

use super::window::WindowKey;

/// Weight unit of the TinyUFO budget.
const UNIT: u64 = 64 << 10;

/// A window's TinyUFO weight, in [`UNIT`]s (a short window rounded up).
fn weight_of(bytes: &Bytes) -> u16 {
    u16::try_from((bytes.len() as u64).div_ceil(UNIT)).unwrap_or(u16::MAX)
}

/// What TinyUFO holds for a window: which window, and which copy of it.
#[derive(Clone)]
struct Slot {
    key: WindowKey,
    id: u64,
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
    ufo: TinyUfo<WindowKey, Slot>,
    /// The bytes, by window, with the id of the slot they belong to. Every
    /// change to TinyUFO happens under this lock, so the two agree.
    windows: Mutex<HashMap<WindowKey, (u64, Bytes)>>,
    next_id: AtomicU64,
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
            windows: Mutex::new(HashMap::with_capacity(estimated.min(1 << 16))),
            next_id: AtomicU64::new(0),
            budget,
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<WindowKey, (u64, Bytes)>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The window, if held (and a use, for eviction's frequency count).
    pub fn get(&self, key: &WindowKey) -> Option<Bytes> {
        let slot = self.ufo.get(key).filter(|s| s.key == *key)?;
        self.lock()
            .get(key)
            .filter(|(id, _)| *id == slot.id)
            .map(|(_, b)| b.clone())
    }

    /// True when the window is held.
    pub fn contains(&self, key: &WindowKey) -> bool {
        self.get(key).is_some()
    }

    /// Adds a window, evicting others (S3-FIFO, frequency-aware) to keep the
    /// budget. Returns the keys that left the tier.
    pub fn put(&self, key: WindowKey, bytes: Bytes) -> Vec<WindowKey> {
        if bytes.is_empty() || bytes.len() as u64 > self.budget {
            return Vec::new();
        }
        let weight = weight_of(&bytes);
        let mut windows = self.lock();
        match self.ufo.get(&key) {
            Some(s) if s.key == key && windows.get(&key).is_some_and(|(id, _)| *id == s.id) => {
                return Vec::new();
            }
            // The slot of another window whose key hashes alike: TinyUFO is
            // about to replace it, so its bytes go too.
            Some(s) if s.key != key && windows.get(&s.key).is_some_and(|(id, _)| *id == s.id) => {
                self.drop_window(&mut windows, &s.key);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.drop_window(&mut windows, &key);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.entries.fetch_add(1, Ordering::Relaxed);
        windows.insert(key.clone(), (id, bytes));
        // Always admitted: every window offered was just asked for (or read
        // ahead for a reader), so refusing it would only cause a refetch.
        // S3-FIFO (with its use counts) still picks which older windows leave.
        self.admit(&mut windows, Slot { key, id }, weight)
    }

    /// Puts `slot` into TinyUFO and drops the bytes of every window it
    /// evicts; returns their keys.
    fn admit(
        &self,
        windows: &mut HashMap<WindowKey, (u64, Bytes)>,
        slot: Slot,
        weight: u16,
    ) -> Vec<WindowKey> {
        let mut left = Vec::new();
        for gone in self.ufo.force_put(slot.key.clone(), slot, weight) {
            let slot = gone.data;
            if windows.get(&slot.key).is_some_and(|(i, _)| *i == slot.id) {
                self.drop_window(windows, &slot.key);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                left.push(slot.key);
            }
        }
        left
    }

    /// Drops a window, if held.
    pub fn remove(&self, key: &WindowKey) -> bool {
        let mut windows = self.lock();
        match self.ufo.remove(key) {
            Some(s) if s.key == *key => self.drop_window(&mut windows, key),
            Some(other) => {
                // A colliding window's slot was removed: put it back.
                if let Some(weight) = windows.get(&other.key).map(|(_, b)| weight_of(b)) {
                    self.admit(&mut windows, other, weight);
                }
                false
            }
            None => false,
        }
    }

    /// Removes a window's bytes (freed now unless a reader still holds
    /// them); true if there were any.
    fn drop_window(&self, windows: &mut HashMap<WindowKey, (u64, Bytes)>, key: &WindowKey) -> bool {
        match windows.remove(key) {
            Some((_, b)) => {
                self.bytes.fetch_sub(b.len() as u64, Ordering::Relaxed);
                self.entries.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
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

    /// An owner of window bytes that counts its drops.
    struct Counted(Vec<u8>, Arc<std::sync::atomic::AtomicUsize>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn evicted_windows_are_freed_at_once() {
        let t = MemoryTier::new(4 << 20, 1 << 20);
        let freed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for i in 0..200 {
            let owner = Counted(vec![i as u8; 1 << 20], freed.clone());
            t.put(key(i), Bytes::from_owner(owner));
            let held = t.stats().entries as usize;
            assert!(held <= 4);
            // Every window put is either held or already freed: none waits
            // in a reclamation backlog.
            assert_eq!(
                freed.load(Ordering::SeqCst) + held,
                i as usize + 1,
                "after {i} puts"
            );
        }
        assert_eq!(t.stats().evictions, 196);
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
