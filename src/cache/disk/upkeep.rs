//! Index upkeep of the disk tier: dropping one window (it failed its check)
//! or a whole piece (a purge) from the index and the disk, and the views of
//! what the index holds (pieces, windows of a piece, piece metadata).
//!
//! What it is not: inserting entries (a write, in `window_io`), eviction for
//! the budget (`evict`), or persisting the LRU order (`index`).

use std::fs;
use std::io;

use super::layout;
use super::{is_valid_cid, DiskTier, PieceMetaRecord, WindowKey};
impl DiskTier {
    /// True when `key` is in the index (does not touch recency or the file).
    pub fn contains(&self, key: &WindowKey) -> bool {
        self.lock().lru.find(key).is_some()
    }

    /// Purges every window and the metadata of `cid`; returns the windows and
    /// entry bytes removed. The piece directory is renamed aside under the
    /// lock (one rename) and deleted after it is released.
    pub fn remove_piece(&self, cid: &str) -> (u64, u64) {
        if !is_valid_cid(cid) {
            return (0, 0);
        }
        let trash = self.temp_path();
        let (entries, bytes, moved) = {
            let mut index = self.lock();
            let (entries, bytes) = index.remove_piece(cid);
            index.meta.remove(cid);
            let moved = match fs::rename(self.piece_dir(cid), &trash) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => {
                    // Files the index no longer knows; the next open
                    // would find them again, so delete them here.
                    log::warn!("disk tier: purging {cid}: cannot move its directory ({e})");
                    let _ = fs::remove_dir_all(self.piece_dir(cid));
                    false
                }
            };
            (entries, bytes, moved)
        };
        if moved {
            if let Err(e) = fs::remove_dir_all(&trash) {
                log::warn!("disk tier: purging {cid}: {e} (removed at next open)");
            }
        }
        (entries, bytes)
    }

    /// Drops one window (it failed its check against the piece's layer);
    /// `true` when it was held.
    pub fn remove(&self, key: &WindowKey) -> bool {
        let mut trash = Vec::new();
        let mut index = self.lock();
        let held = index.remove(key).is_some();
        if held {
            self.move_aside(&self.window_path(key), &mut trash);
            self.forget_piece_if_empty(&mut index, &key.cid);
        }
        drop(index);
        layout::delete_all(trash);
        held
    }

    /// Every piece with a window here.
    pub fn pieces(&self) -> Vec<String> {
        self.lock().pieces.keys().map(|c| c.to_string()).collect()
    }

    /// Indexes of the windows of `cid` held, ascending.
    pub fn windows_of(&self, cid: &str) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .lock()
            .pieces
            .get(cid)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// The persisted metadata of `cid`, if any.
    pub fn get_meta(&self, cid: &str) -> Option<PieceMetaRecord> {
        self.lock().meta.get(cid).cloned()
    }

    /// Every persisted piece metadata record, for loading at start-up.
    pub fn all_meta(&self) -> Vec<(String, PieceMetaRecord)> {
        self.lock()
            .meta
            .iter()
            .map(|(cid, m)| (cid.to_string(), m.clone()))
            .collect()
    }
}
