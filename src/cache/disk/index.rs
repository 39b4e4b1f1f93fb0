//! In-memory index of the disk tier: an O(1) LRU list of windows (a slab
//! plus a hash map), the windows held per piece, the byte count and
//! eviction counters; and the saved LRU order (`<dir>/index`) that a
//! restart reads back as a hint.
//!
//! What it is not: the truth about what is stored (the files are; see
//! `scan`) or the eviction policy (`evict`). It does no I/O except saving
//! and loading the order file.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use super::layout::write_temp;
use super::scan::parse_index;
use super::{is_valid_cid, DiskTier, PieceMetaRecord, WindowKey};

pub(super) const INDEX_FILE: &str = "index";
pub(super) const INDEX_HEADER: &str = "beam-edge-disk-index 1";

impl DiskTier {
    /// Persists the LRU order (temp file, fsync, rename) so that a restart
    /// evicts in roughly the same order. The order is copied under the lock
    /// and written after releasing it.
    pub fn save_index(&self) -> io::Result<()> {
        let order: Vec<WindowKey> = self.lock().lru.keys_oldest_first();
        let temp = self.temp_path();
        let written = write_temp(&temp, true, |f| {
            let mut w = BufWriter::new(f);
            writeln!(w, "{INDEX_HEADER}")?;
            for key in &order {
                writeln!(w, "{} {}", key.cid, key.index)?;
            }
            writeln!(w, "end {}", order.len())?;
            w.flush()
        });
        let renamed = written.and_then(|()| fs::rename(&temp, self.root.join(INDEX_FILE)));
        if renamed.is_err() {
            let _ = fs::remove_file(&temp);
        }
        renamed
    }
}

/// The saved LRU order as key -> rank (0 = oldest). A missing or damaged file
/// yields what could be parsed: order is a hint, the files are the truth.
pub(super) fn load_saved_order(path: &Path) -> HashMap<WindowKey, usize> {
    let mut order = HashMap::new();
    let Ok(file) = File::open(path) else {
        return order;
    };
    let mut lines = BufReader::new(file).lines();
    if !matches!(lines.next(), Some(Ok(ref h)) if h == INDEX_HEADER) {
        log::warn!("disk tier: ignoring {} (unknown format)", path.display());
        return order;
    }
    for line in lines {
        let Ok(line) = line else { break };
        let Some((cid, index)) = line.split_once(' ') else {
            continue;
        };
        if let (true, Some(index)) = (is_valid_cid(cid), parse_index(index)) {
            let rank = order.len();
            order.entry(WindowKey::new(cid, index)).or_insert(rank);
        }
    }
    order
}

#[derive(Default)]
pub(super) struct Index {
    pub(super) lru: Lru,
    /// Windows held per piece, for `windows_of` and `remove_piece`.
    pub(super) pieces: HashMap<Arc<str>, HashSet<u64>>,
    pub(super) meta: HashMap<Arc<str>, PieceMetaRecord>,
    pub(super) bytes: u64,
    pub(super) evictions: u64,
    pub(super) evicted_bytes: u64,
    pub(super) next_gen: u64,
}

impl Index {
    /// Inserts or replaces `key` as the most recently used entry.
    pub(super) fn insert(&mut self, key: WindowKey, len: u64) {
        self.next_gen += 1;
        let gen = self.next_gen;
        if let Some(old) = self
            .lru
            .find(&key)
            .and_then(|slot| self.lru.remove_slot(slot))
        {
            self.bytes -= old.len;
        }
        self.pieces
            .entry(key.cid.clone())
            .or_default()
            .insert(key.index);
        self.lru.push_newest(key, len, gen);
        self.bytes += len;
    }

    pub(super) fn remove(&mut self, key: &WindowKey) -> Option<u64> {
        let node = self
            .lru
            .find(key)
            .and_then(|slot| self.lru.remove_slot(slot))?;
        self.bytes -= node.len;
        self.unlink_from_piece(key);
        Some(node.len)
    }

    pub(super) fn pop_oldest(&mut self) -> Option<(WindowKey, u64)> {
        let node = self.lru.pop_oldest()?;
        self.bytes -= node.len;
        self.unlink_from_piece(&node.key);
        Some((node.key, node.len))
    }

    pub(super) fn remove_piece(&mut self, cid: &str) -> (u64, u64) {
        let Some(set) = self.pieces.remove(cid) else {
            return (0, 0);
        };
        let (mut entries, mut bytes) = (0, 0);
        for index in set {
            let key = WindowKey::new(cid, index);
            if let Some(node) = self
                .lru
                .find(&key)
                .and_then(|slot| self.lru.remove_slot(slot))
            {
                self.bytes -= node.len;
                entries += 1;
                bytes += node.len;
            }
        }
        (entries, bytes)
    }

    pub(super) fn unlink_from_piece(&mut self, key: &WindowKey) {
        if let Some(set) = self.pieces.get_mut(&key.cid) {
            set.remove(&key.index);
            if set.is_empty() {
                self.pieces.remove(&key.cid);
            }
        }
    }
}

pub(super) const NIL: usize = usize::MAX;

pub(super) struct Node {
    pub(super) key: WindowKey,
    pub(super) len: u64,
    /// Bumped on every insert, so a reader that found a bad file only
    /// deletes the entry it read, not one a concurrent put just replaced.
    pub(super) gen: u64,
    pub(super) prev: usize,
    pub(super) next: usize,
}

/// A doubly linked list in a slab plus a hash map from key to slot: O(1)
/// insert, touch, remove and pop of the oldest entry.
pub(super) struct Lru {
    pub(super) slots: Vec<Option<Node>>,
    pub(super) free: Vec<usize>,
    pub(super) map: HashMap<WindowKey, usize>,
    /// Least recently used end.
    pub(super) head: usize,
    /// Most recently used end.
    pub(super) tail: usize,
}

impl Default for Lru {
    fn default() -> Lru {
        Lru {
            slots: Vec::new(),
            free: Vec::new(),
            map: HashMap::new(),
            head: NIL,
            tail: NIL,
        }
    }
}

impl Lru {
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn find(&self, key: &WindowKey) -> Option<usize> {
        self.map.get(key).copied()
    }

    pub(super) fn node(&self, slot: usize) -> Option<&Node> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub(super) fn node_mut(&mut self, slot: usize) -> Option<&mut Node> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    pub(super) fn detach(&mut self, slot: usize) {
        let Some((prev, next)) = self.node(slot).map(|n| (n.prev, n.next)) else {
            return;
        };
        match self.node_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.node_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    pub(super) fn attach_newest(&mut self, slot: usize) {
        let old_tail = self.tail;
        if let Some(n) = self.node_mut(slot) {
            n.prev = old_tail;
            n.next = NIL;
        }
        match self.node_mut(old_tail) {
            Some(t) => t.next = slot,
            None => self.head = slot,
        }
        self.tail = slot;
    }

    pub(super) fn touch(&mut self, slot: usize) {
        if self.tail != slot {
            self.detach(slot);
            self.attach_newest(slot);
        }
    }

    pub(super) fn push_newest(&mut self, key: WindowKey, len: u64, gen: u64) {
        let node = Node {
            key: key.clone(),
            len,
            gen,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some(node);
                }
                slot
            }
            None => {
                self.slots.push(Some(node));
                self.slots.len() - 1
            }
        };
        self.map.insert(key, slot);
        self.attach_newest(slot);
    }

    pub(super) fn remove_slot(&mut self, slot: usize) -> Option<Node> {
        self.detach(slot);
        let node = self.slots.get_mut(slot).and_then(Option::take)?;
        self.map.remove(&node.key);
        self.free.push(slot);
        Some(node)
    }

    pub(super) fn pop_oldest(&mut self) -> Option<Node> {
        let head = self.head;
        if head == NIL {
            return None;
        }
        self.remove_slot(head)
    }

    pub(super) fn keys_oldest_first(&self) -> Vec<WindowKey> {
        let mut out = Vec::with_capacity(self.len());
        let mut slot = self.head;
        while let Some(node) = self.node(slot) {
            out.push(node.key.clone());
            slot = node.next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID_A: &str = "baga6ea4seaqaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn key(cid: &str, index: u64) -> WindowKey {
        WindowKey::new(cid, index)
    }

    #[test]
    fn the_lru_list_stays_linked_through_slot_reuse() {
        let mut lru = Lru::default();
        for i in 0..5 {
            lru.push_newest(key(CID_A, i), 1, i);
        }
        let s2 = lru.find(&key(CID_A, 2)).unwrap();
        lru.remove_slot(s2);
        lru.touch(lru.find(&key(CID_A, 0)).unwrap());
        lru.push_newest(key(CID_A, 9), 1, 9); // reuses slot 2
        let order: Vec<u64> = lru.keys_oldest_first().iter().map(|k| k.index).collect();
        assert_eq!(order, vec![1, 3, 4, 0, 9]);
        assert_eq!(lru.pop_oldest().unwrap().key.index, 1);
        assert_eq!(lru.len(), 4);
        while lru.pop_oldest().is_some() {}
        assert!(lru.keys_oldest_first().is_empty());
        assert_eq!((lru.head, lru.tail), (NIL, NIL));
    }
}
