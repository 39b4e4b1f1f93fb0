//! The hand-over of the disk tier's directory between two processes during a
//! graceful upgrade: the new process shares the directory while the old one
//! drains (it does not own `tmp/` then), takes the `flock` once the old
//! process exits, and reconciles its index with the files (adopting windows
//! the old process wrote, dropping those it evicted, rewriting lost `meta`
//! files, deleting the old process's temp files).
//!
//! What it is not: opening the tier and taking the lock when it is free
//! ([`DiskTier::open_with`] in `mod.rs`) or the start-up walk (`scan`).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::sync::atomic::Ordering;

use super::layout::{delete_all, remove_file_quietly};
use super::piece_meta::META_FILE;
use super::scan::scan_dir;
use super::{DiskTier, WindowKey};

/// What [`DiskTier::wait_until_sole_owner`] changed in the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Windows on disk the index did not know (written by the other process).
    pub adopted: u64,
    /// Index entries whose files were gone (evicted by the other process).
    pub dropped: u64,
}

impl DiskTier {
    /// True when no other process used the directory at open, or once
    /// [`DiskTier::wait_until_sole_owner`] has returned.
    pub fn is_sole_owner(&self) -> bool {
        self.sole_owner.load(Ordering::Acquire)
    }

    /// Blocks until no other process holds the directory (during a graceful
    /// upgrade: until the old process has drained and exited), then brings
    /// the index in line with the files: windows the other process wrote are
    /// adopted as the most recent entries (by mtime), entries whose files it
    /// evicted are dropped, meta files it deleted for pieces still held here
    /// are written again, its temp files are deleted, and the budget is
    /// enforced. Returns at once when this process already owns the
    /// directory. Call it from a thread of its own.
    pub fn wait_until_sole_owner(&self) -> io::Result<ReconcileReport> {
        if self.is_sole_owner() {
            return Ok(ReconcileReport::default());
        }
        self.lock_file.lock()?;
        self.sole_owner.store(true, Ordering::Release);
        self.reconcile()
    }

    fn reconcile(&self) -> io::Result<ReconcileReport> {
        let mut scan = scan_dir(&self.root)?;
        scan.windows.sort_by_key(|f| f.mtime);
        let on_disk: HashSet<WindowKey> = scan.windows.iter().map(|f| f.key.clone()).collect();
        let mut report = ReconcileReport::default();
        let mut trash = Vec::new();
        let mut lost_meta = Vec::new();
        {
            // Existence is re-checked under the lock: this process's own
            // puts and evictions rename under it, so the answer is exact.
            let mut index = self.lock();
            for found in scan.windows {
                if index.lru.find(&found.key).is_none() && self.window_path(&found.key).is_file() {
                    index.insert(found.key, found.len);
                    report.adopted += 1;
                }
            }
            for key in index.lru.keys_oldest_first() {
                if !on_disk.contains(&key) && !self.window_path(&key).is_file() {
                    index.remove(&key);
                    self.forget_piece_if_empty(&mut index, &key.cid);
                    report.dropped += 1;
                }
            }
            for (cid, meta) in scan.meta {
                if index.pieces.contains_key(&cid) {
                    index.meta.entry(cid).or_insert(meta);
                }
            }
            for (cid, meta) in &index.meta {
                if !self.piece_dir(cid).join(META_FILE).is_file() {
                    lost_meta.push((cid.clone(), meta.clone()));
                }
            }
            self.evict_to_budget(&mut index, &mut trash);
        }
        delete_all(trash);
        for (cid, meta) in lost_meta {
            if let Err(e) = self.put_meta(&cid, &meta) {
                log::warn!("disk tier: cannot rewrite the meta of {cid}: {e}");
            }
        }
        // Everything left in tmp/ that this process did not name is the
        // other process's, and it is gone.
        let own = format!("{}-", std::process::id());
        for entry in fs::read_dir(self.root.join("tmp"))?.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&own) {
                remove_file_quietly(&entry.path());
            }
        }
        let stats = self.stats();
        log::info!(
            "disk tier {}: now the only user; adopted {} windows, dropped {}; {} windows, {} bytes",
            self.root.display(),
            report.adopted,
            report.dropped,
            stats.entries,
            stats.bytes
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_second_opener_shares_then_reconciles_once_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let old = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert!(old.is_sole_owner());
        old.put(&WindowKey::new("bagaaa", 0), b"kept").unwrap();
        old.put(&WindowKey::new("bagaaa", 1), b"evicted by the old one")
            .unwrap();
        // An in-flight temp file of the old process (another pid: both
        // tiers live in this one test process) survives the new open.
        let in_flight = dir.path().join("tmp").join("4000000000-0.tmp");
        fs::write(&in_flight, b"half").unwrap();

        let new = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert!(!new.is_sole_owner());
        assert!(in_flight.exists());
        assert_eq!(new.stats().entries, 2);
        // While both run: the old one writes and removes windows the new
        // one's index does not see.
        old.put(&WindowKey::new("bagbbb", 3), b"written during the drain")
            .unwrap();
        old.remove_piece("bagaaa");
        old.put(&WindowKey::new("bagaaa", 0), b"kept").unwrap();
        new.put(&WindowKey::new("bagccc", 0), b"the new one's own")
            .unwrap();
        drop(old);

        let report = new.wait_until_sole_owner().unwrap();
        assert_eq!(
            report,
            ReconcileReport {
                adopted: 1,
                dropped: 1
            }
        );
        assert!(new.is_sole_owner());
        assert!(!in_flight.exists());
        assert_eq!(new.stats().entries, 3);
        assert_eq!(
            new.get(&WindowKey::new("bagbbb", 3), 24).as_deref(),
            Some(&b"written during the drain"[..])
        );
        assert_eq!(
            new.get(&WindowKey::new("bagaaa", 0), 4).as_deref(),
            Some(&b"kept"[..])
        );
        assert!(!new.contains(&WindowKey::new("bagaaa", 1)));
        // A third opener now finds the directory owned.
        assert!(!DiskTier::open(dir.path(), 1 << 20).unwrap().is_sole_owner());
    }
}
