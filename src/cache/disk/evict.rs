//! Eviction of the disk tier: keeping it within its byte budget (least
//! recently used first), dropping a bad entry, and removing a piece's
//! `meta` file and directory with its last window. Index changes happen
//! under the lock; files are renamed aside there and unlinked after it.
//!
//! What it is not: the LRU structure itself (`index`) or reads and writes
//! of entries (the tier in `mod.rs`, `entry`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::index::Index;
use super::layout::{delete_all, remove_file_quietly};
use super::piece_meta::META_FILE;
use super::{DiskTier, WindowKey};

impl DiskTier {
    /// Drops `key` from the index and deletes its file, unless a newer put
    /// replaced it since generation `gen` was read.
    pub(super) fn discard(&self, key: &WindowKey, gen: u64) {
        let mut trash = Vec::new();
        let mut index = self.lock();
        let current = index
            .lru
            .find(key)
            .and_then(|slot| index.lru.node(slot))
            .map(|n| n.gen);
        if current == Some(gen) {
            index.remove(key);
            self.move_aside(&self.window_path(key), &mut trash);
            self.forget_piece_if_empty(&mut index, &key.cid);
        }
        drop(index);
        delete_all(trash);
    }

    /// Evicts least recently used windows until within budget. O(1) per
    /// evicted window: one list pop and one rename aside (plus a meta unlink
    /// and rmdir when it was the piece's last window); the caller unlinks the
    /// `trash` after releasing the lock.
    pub(super) fn evict_to_budget(&self, index: &mut Index, trash: &mut Vec<PathBuf>) {
        while index.bytes > self.options.budget_bytes {
            let Some((key, len)) = index.pop_oldest() else {
                break;
            };
            self.move_aside(&self.window_path(&key), trash);
            index.evictions += 1;
            index.evicted_bytes += len;
            self.forget_piece_if_empty(index, &key.cid);
        }
    }

    /// Renames `path` into `tmp/` so its name is free as soon as the lock is
    /// released. Unlinking a window frees its page-cache pages and blocks
    /// (about 90 µs per 1 MiB window under strace, growing with its size), which is
    /// kept out of the critical section; a rename is a few µs. Leftovers of
    /// a crash in between are removed by the next open.
    pub(super) fn move_aside(&self, path: &Path, trash: &mut Vec<PathBuf>) {
        let aside = self.temp_path();
        match fs::rename(path, &aside) {
            Ok(()) => trash.push(aside),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                log::warn!(
                    "disk tier: cannot move {} aside ({e}); deleting in place",
                    path.display()
                );
                remove_file_quietly(path);
            }
        }
    }

    pub(super) fn forget_piece_if_empty(&self, index: &mut Index, cid: &str) {
        if index.pieces.contains_key(cid) {
            return;
        }
        index.meta.remove(cid);
        let dir = self.piece_dir(cid);
        remove_file_quietly(&dir.join(META_FILE));
        let _ = fs::remove_dir(&dir);
    }
}
