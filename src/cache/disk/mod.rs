//! Disk tier of the window cache: a byte-budgeted, crash-safe store of aligned
//! piece windows (DESIGN.md decisions 3 and 7).
//!
//! What it is: one file per window under `<dir>/w/<shard>/<cid>/<index>`
//! (`shard` = two hex digits of a CRC-32 of the CID, so no directory holds
//! more than a few thousand pieces), each file a 24-byte header (magic,
//! version, body length, CRC-32 of the block table, CRC-32 of the header), a
//! table with a CRC-32 of every 64 KiB block of the body, then the body. A
//! read of part of a window reads and checks only the blocks it covers. A small `meta` file beside a piece's windows remembers its size
//! and content type. An in-memory index (an O(1) LRU list plus per-piece window
//! sets) is the only shared state; it sits behind one mutex that covers path
//! mutations (rename, mkdir, small unlinks: metadata operations) but never the
//! read, write or unlink of a window body.
//!
//! What it is not: asynchronous (every method is blocking std I/O; call it
//! from `tokio::task::spawn_blocking`), shared between processes (one
//! `DiskTier` per directory), or an HTTP cache (it knows windows, not
//! requests).
//!
//! Failure semantics, decided here:
//! - A write goes to `<dir>/tmp/` and is renamed into place, so a reader sees
//!   either no entry or a whole one.
//! - No fsync per window by default: the header checksum makes an entry torn
//!   by a crash detectable, so a crash costs at most the most recent windows,
//!   which come back as misses. [`DiskTierOptions::fsync`] turns it on.
//! - A torn, short, wrong-length, corrupt or unreadable entry is a miss and
//!   is deleted, never returned. Every byte returned was checked against its
//!   block's checksum in the same read.
//! - Entries of format 1 (one CRC-32 over the whole body, no block table)
//!   are still read, whole.
//! - The files are the truth: [`DiskTier::open`] rebuilds the index from the
//!   directory (a cheap size check per file; checksums are verified lazily on
//!   [`DiskTier::get`]), ordered by the LRU order that [`DiskTier::save_index`]
//!   last persisted and, for entries written after that, by mtime. After a
//!   `kill -9` every whole entry on disk is found again.
//! - The budget counts entry file sizes (header plus body); per-piece `meta`
//!   files, directories and filesystem block rounding are not counted.
//! - Two processes share a directory only during a graceful upgrade (the
//!   old one drains while the new one serves). An exclusive `flock` on
//!   `<dir>/lock` tells them apart: the holder owns `tmp/` leftovers; a
//!   tier opened while another process holds it neither wipes `tmp/` (the
//!   other's writes in flight live there) nor fails on files that vanish
//!   under its scan, and [`DiskTier::wait_until_sole_owner`] takes the lock
//!   once the other process exits and reconciles the index with the files
//!   (adopting windows the other wrote, dropping those it evicted).
//!
//! ```no_run
//! # use std::path::Path;
//! # use beam_edge::cache::disk::{DiskTier, WindowKey};
//! let tier = DiskTier::open(Path::new("/var/cache/beam-edge"), 10 << 30)?;
//! let key = WindowKey::new("baga6ea4seaqexample", 3);
//! tier.put(&key, b"window bytes")?;
//! assert_eq!(tier.get(&key, 12).as_deref(), Some(&b"window bytes"[..]));
//! tier.save_index()?; // periodically and at shutdown
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Files: `entry` (the entry file format and checked reads), `index` (the
//! LRU index and its saved order), `evict` (the budget and dropping
//! entries), `scan` (the start-up walk), `layout` (paths, temp files,
//! renames), `piece_meta` (the per-piece `meta` file); this file holds the
//! public types and the tier's operations.

mod entry;
mod evict;
mod index;
mod layout;
mod piece_meta;
mod scan;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;

use entry::{encode_head, entry_len_v1, read_entry, read_entry_v1};
use index::{load_saved_order, Index, INDEX_FILE};
use layout::{delete_all, remove_file_quietly, rename_into, write_temp};
use piece_meta::{encode_meta, MAX_CONTENT_TYPE_LEN, META_FILE};
use scan::scan_dir;

/// Largest window body the tier accepts (64 MiB).
pub const MAX_WINDOW_LEN: u64 = 64 << 20;
/// Longest accepted CID string.
pub const MAX_CID_LEN: usize = 128;
pub use entry::{entry_len, BLOCK_LEN};
/// Locked (`flock`, exclusive) by the process that owns the directory.
const LOCK_FILE: &str = "lock";

/// What [`DiskTier::wait_until_sole_owner`] changed in the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Windows on disk the index did not know (written by the other process).
    pub adopted: u64,
    /// Index entries whose files were gone (evicted by the other process).
    pub dropped: u64,
}

pub use crate::piece::WindowKey;

/// Piece metadata persisted beside the piece's windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceMetaRecord {
    /// Total piece size in bytes.
    pub size: u64,
    /// Content type served for the piece (printable ASCII, at most 255 bytes).
    pub content_type: String,
}

/// Counters of the disk tier. `bytes` and `entries` are gauges; the eviction
/// counters only ever grow (Prometheus counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Bytes of entry files held (headers included).
    pub bytes: u64,
    /// Windows held.
    pub entries: u64,
    /// Windows evicted to stay within the budget, since open.
    pub evictions: u64,
    /// Bytes evicted to stay within the budget, since open.
    pub evicted_bytes: u64,
}

/// Settings of a [`DiskTier`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskTierOptions {
    /// Upper bound on the bytes of entry files kept.
    pub budget_bytes: u64,
    /// fsync each window before renaming it into place. Off by default: the
    /// checksum already turns a torn entry into a miss after a crash.
    pub fsync: bool,
}

impl DiskTierOptions {
    /// Options with the given budget and no per-window fsync.
    pub fn new(budget_bytes: u64) -> DiskTierOptions {
        DiskTierOptions {
            budget_bytes,
            fsync: false,
        }
    }
}

/// True when `cid` is safe to use as a path component: 1 to 128 characters
/// of `[a-z0-9]` (lowercase base32 CIDs). Nothing else ever becomes a path.
pub fn is_valid_cid(cid: &str) -> bool {
    !cid.is_empty()
        && cid.len() <= MAX_CID_LEN
        && cid
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn invalid_cid(cid: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a valid CID for the disk tier: {cid:?}"),
    )
}

/// The byte-budgeted, crash-safe window store. `Send + Sync`; share it in an
/// `Arc` and call it from blocking threads.
pub struct DiskTier {
    root: PathBuf,
    options: DiskTierOptions,
    index: Mutex<Index>,
    temp_seq: AtomicU64,
    /// Open for the tier's life; its `flock` is held once `sole_owner` is set.
    lock_file: File,
    /// True once this process holds the directory's lock.
    sole_owner: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskTier")
            .field("root", &self.root)
            .field("options", &self.options)
            .field("stats", &self.stats())
            .finish()
    }
}

impl DiskTier {
    /// Opens (creating if needed) the store in `dir` with a budget of
    /// `budget_bytes` and no per-window fsync. See [`DiskTier::open_with`].
    pub fn open(dir: &Path, budget_bytes: u64) -> io::Result<DiskTier> {
        DiskTier::open_with(dir, DiskTierOptions::new(budget_bytes))
    }

    /// Opens the store: creates `dir`, deletes leftover temp files, rebuilds
    /// the index from the files present (saved LRU order first, then newer
    /// files by mtime) and evicts the oldest entries if they exceed the
    /// budget. Walks the directory once; nothing else ever does.
    pub fn open_with(dir: &Path, options: DiskTierOptions) -> io::Result<DiskTier> {
        fs::create_dir_all(dir.join("w"))?;
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        let sole_owner = match lock_file.try_lock() {
            Ok(()) => true,
            Err(std::fs::TryLockError::WouldBlock) => false,
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        };
        let tmp = dir.join("tmp");
        if sole_owner && tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        if !sole_owner {
            log::info!(
                "disk tier {}: another process (the one being upgraded) still uses this \
                 directory; sharing it until that process exits",
                dir.display()
            );
        }

        let mut scan = scan_dir(dir)?;
        let saved = load_saved_order(&dir.join(INDEX_FILE));
        // Saved entries keep their saved order (oldest first); entries that
        // the saved index does not know were written after it, so they are
        // newer than all of them and are ordered by mtime.
        scan.windows.sort_by_key(|f| match saved.get(&f.key) {
            Some(rank) => (0u8, *rank, SystemTime::UNIX_EPOCH),
            None => (1u8, 0, f.mtime),
        });

        let tier = DiskTier {
            root: dir.to_path_buf(),
            options,
            index: Mutex::new(Index::default()),
            temp_seq: AtomicU64::new(0),
            lock_file,
            sole_owner: std::sync::atomic::AtomicBool::new(sole_owner),
        };
        let mut trash = Vec::new();
        {
            let mut index = tier.lock();
            for found in scan.windows {
                index.insert(found.key, found.len);
            }
            index.meta = scan.meta;
            tier.evict_to_budget(&mut index, &mut trash);
        }
        delete_all(trash);
        let stats = tier.stats();
        log::info!(
            "disk tier {}: {} windows, {} bytes (budget {})",
            dir.display(),
            stats.entries,
            stats.bytes,
            options.budget_bytes
        );
        Ok(tier)
    }

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

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The options the store was opened with.
    pub fn options(&self) -> DiskTierOptions {
        self.options
    }

    /// The window body for `key` if it is stored, whole, `expected_len` bytes
    /// long and matches its checksum; marks it most recently used. Anything
    /// else is `None`, and a present-but-bad entry is deleted.
    pub fn get(&self, key: &WindowKey, expected_len: u64) -> Option<Bytes> {
        self.get_range(key, expected_len, 0..expected_len)
    }

    /// Bytes `range` of the window body for `key`, under the same rules as
    /// [`DiskTier::get`]: only the blocks that cover the range are read, and
    /// each is checked against its checksum. A range past the end is `None`.
    pub fn get_range(
        &self,
        key: &WindowKey,
        expected_len: u64,
        range: std::ops::Range<u64>,
    ) -> Option<Bytes> {
        if !is_valid_cid(&key.cid) || range.start > range.end || range.end > expected_len {
            return None;
        }
        let (gen, len) = {
            let mut index = self.lock();
            let slot = index.lru.find(key)?;
            index.lru.touch(slot);
            let node = index.lru.node(slot)?;
            (node.gen, node.len)
        };
        let path = self.window_path(key);
        let read = if len == entry_len(expected_len) {
            read_entry(&path, expected_len, range)
        } else if len == entry_len_v1(expected_len) {
            read_entry_v1(&path, expected_len).map(|b| {
                b.slice(
                    usize::try_from(range.start).unwrap_or(0)
                        ..usize::try_from(range.end).unwrap_or(0),
                )
            })
        } else {
            log::warn!("disk tier: {key:?} holds {len} bytes, expected {expected_len}; deleting");
            self.discard(key, gen);
            return None;
        };
        match read {
            Ok(body) => Some(body),
            Err(e) => {
                if e.kind() == io::ErrorKind::NotFound {
                    log::warn!("disk tier: {key:?} vanished from disk");
                } else {
                    log::warn!("disk tier: {key:?} unreadable ({e}); deleting");
                }
                self.discard(key, gen);
                None
            }
        }
    }

    /// Stores `data` as the body of `key` (temp file + rename), then evicts
    /// least recently used windows until the store is within budget. A window
    /// that alone exceeds the budget is not stored (and evicts nothing).
    /// Errors: an invalid CID or a body over [`MAX_WINDOW_LEN`] is
    /// `InvalidInput`; I/O errors are returned and leave no temp file.
    pub fn put(&self, key: &WindowKey, data: &[u8]) -> io::Result<()> {
        self.put_unless(key, data, || false)
    }

    /// [`DiskTier::put`], but `cancelled` is asked under the index lock just
    /// before the entry goes in, and a `true` drops it: a purge that takes
    /// the lock after cancelling cannot be undone by a write in flight.
    pub fn put_unless(
        &self,
        key: &WindowKey,
        data: &[u8],
        cancelled: impl FnOnce() -> bool,
    ) -> io::Result<()> {
        if !is_valid_cid(&key.cid) {
            return Err(invalid_cid(&key.cid));
        }
        let len = data.len() as u64;
        if len > MAX_WINDOW_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("window of {len} bytes exceeds the {MAX_WINDOW_LEN}-byte limit"),
            ));
        }
        let entry_len = entry_len(len);
        if entry_len > self.options.budget_bytes {
            log::debug!("disk tier: {key:?} ({entry_len} bytes) exceeds the budget; not stored");
            return Ok(());
        }

        let temp = self.temp_path();
        let written = write_temp(&temp, self.options.fsync, |f| {
            f.write_all(&encode_head(data))?;
            f.write_all(data)
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }

        let mut index = self.lock();
        if cancelled() {
            drop(index);
            let _ = fs::remove_file(&temp);
            return Ok(());
        }
        let dest = self.window_path(key);
        if let Err(e) = rename_into(&temp, &dest) {
            drop(index);
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        index.insert(key.clone(), entry_len);
        let mut trash = Vec::new();
        self.evict_to_budget(&mut index, &mut trash);
        drop(index);
        delete_all(trash);
        Ok(())
    }

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

    /// Current counters.
    pub fn stats(&self) -> DiskStats {
        let index = self.lock();
        DiskStats {
            bytes: index.bytes,
            entries: index.lru.len() as u64,
            evictions: index.evictions,
            evicted_bytes: index.evicted_bytes,
        }
    }

    /// Persists `meta` for `cid` (temp file + rename into the piece's
    /// directory). It lives as long as the piece has windows here: evicting a
    /// piece's last window or purging the piece deletes it too.
    pub fn put_meta(&self, cid: &str, meta: &PieceMetaRecord) -> io::Result<()> {
        if !is_valid_cid(cid) {
            return Err(invalid_cid(cid));
        }
        let ct = &meta.content_type;
        if ct.len() > MAX_CONTENT_TYPE_LEN || !ct.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad content type {ct:?}"),
            ));
        }
        let text = encode_meta(meta);
        let temp = self.temp_path();
        if let Err(e) = write_temp(&temp, self.options.fsync, |f| f.write_all(text.as_bytes())) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        let mut index = self.lock();
        if let Err(e) = rename_into(&temp, &self.piece_dir(cid).join(META_FILE)) {
            drop(index);
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        index.meta.insert(Arc::from(cid), meta.clone());
        Ok(())
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

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::entry::{HEADER_LEN, MAGIC, VERSION_1};
    use super::index::INDEX_HEADER;
    use super::scan::parse_index;
    use super::*;
    use std::fs::{File, OpenOptions};
    use std::path::PathBuf;
    use std::sync::Barrier;
    use std::time::Duration;

    const CID_A: &str = "baga6ea4seaqaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const CID_B: &str = "bafkzcibbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn body(key: &WindowKey, len: usize) -> Vec<u8> {
        let seed = crc32fast::hash(format!("{}/{}", key.cid, key.index).as_bytes());
        (0..len)
            .map(|i| (seed as usize).wrapping_add(i * 31) as u8)
            .collect()
    }

    fn key(cid: &str, index: u64) -> WindowKey {
        WindowKey::new(cid, index)
    }

    /// Budget that holds exactly `n` windows of `len` bytes.
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

    fn budget_for(n: u64, len: u64) -> u64 {
        n * entry_len(len)
    }

    fn put_body(tier: &DiskTier, k: &WindowKey, len: usize) -> Vec<u8> {
        let b = body(k, len);
        tier.put(k, &b).unwrap();
        b
    }

    /// Every window file currently under the store's `w/` directory.
    fn files_on_disk(dir: &Path) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        for shard in fs::read_dir(dir.join("w")).unwrap() {
            for piece in fs::read_dir(shard.unwrap().path()).unwrap() {
                for f in fs::read_dir(piece.unwrap().path()).unwrap() {
                    let f = f.unwrap();
                    if parse_index(f.file_name().to_str().unwrap()).is_some() {
                        out.push((f.path(), f.metadata().unwrap().len()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_tier_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<DiskTier>();
        shareable::<Arc<DiskTier>>();
    }

    #[test]
    fn a_cancelled_put_stores_nothing_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        let k = key(CID_A, 3);
        tier.put_unless(&k, &body(&k, 4000), || true).unwrap();
        assert!(!tier.contains(&k));
        assert_eq!(tier.stats().entries, 0);
        assert!(files_on_disk(dir.path()).is_empty());
        let tmp: Vec<_> = fs::read_dir(dir.path().join("tmp"))
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(tmp.is_empty(), "temp files left: {tmp:?}");
        tier.put_unless(&k, &body(&k, 4000), || false).unwrap();
        assert_eq!(tier.get(&k, 4000).unwrap(), body(&k, 4000));
    }

    #[test]
    fn put_then_get_round_trips_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        let k = key(CID_A, 7);
        let b = put_body(&tier, &k, 5000);
        assert!(tier.contains(&k));
        assert_eq!(tier.get(&k, 5000).unwrap(), b);
        assert_eq!(tier.get(&key(CID_A, 8), 5000), None);
        assert_eq!(tier.windows_of(CID_A), vec![7]);
        assert_eq!(
            tier.stats(),
            DiskStats {
                bytes: entry_len(5000),
                entries: 1,
                evictions: 0,
                evicted_bytes: 0
            }
        );
        // The file is where the layout says, with header + body.
        let path = tier.window_path(&k);
        assert!(path.starts_with(dir.path().join("w")));
        assert_eq!(fs::metadata(path).unwrap().len(), entry_len(5000));
        // Overwriting replaces, it does not double-count.
        let b2 = vec![9u8; 100];
        tier.put(&k, &b2).unwrap();
        assert_eq!(tier.get(&k, 100).unwrap(), b2);
        assert_eq!(tier.stats().bytes, entry_len(100));
        assert_eq!(tier.stats().entries, 1);
        // An empty window (a zero-length tail never happens, but is legal).
        let e = key(CID_A, 9);
        tier.put(&e, b"").unwrap();
        assert_eq!(tier.get(&e, 0).unwrap(), Bytes::new());
    }

    #[test]
    fn eviction_is_lru_by_bytes_and_get_refreshes_recency() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), budget_for(3, 1000)).unwrap();
        let (a, b, c, d) = (key(CID_A, 0), key(CID_A, 1), key(CID_B, 0), key(CID_B, 1));
        for k in [&a, &b, &c] {
            put_body(&tier, k, 1000);
        }
        assert!(tier.get(&a, 1000).is_some()); // a is now newest: order b, c, a
        put_body(&tier, &d, 1000);
        assert!(!tier.contains(&b));
        assert!(!tier.window_path(&b).exists());
        for k in [&a, &c, &d] {
            assert_eq!(tier.get(k, 1000).unwrap(), body(k, 1000));
        }
        let s = tier.stats();
        assert_eq!(
            (s.entries, s.bytes, s.evictions, s.evicted_bytes),
            (3, budget_for(3, 1000), 1, entry_len(1000))
        );
        // contains() does not refresh recency: c is oldest and goes next.
        assert!(tier.contains(&c));
        // A bigger window evicts as many as needed.
        let big = key(CID_B, 2);
        put_body(&tier, &big, 2000);
        assert!(
            !tier.contains(&c) && !tier.contains(&a) && tier.contains(&d) && tier.contains(&big)
        );
        assert_eq!(tier.stats().evictions, 3);
        assert!(tier.stats().bytes <= budget_for(3, 1000));
    }

    #[test]
    fn last_window_evicted_takes_the_meta_and_directory_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), budget_for(1, 1000)).unwrap();
        put_body(&tier, &key(CID_A, 0), 1000);
        tier.put_meta(
            CID_A,
            &PieceMetaRecord {
                size: 1000,
                content_type: "video/mp4".into(),
            },
        )
        .unwrap();
        put_body(&tier, &key(CID_B, 0), 1000);
        assert_eq!(tier.get_meta(CID_A), None);
        assert!(!tier.piece_dir(CID_A).exists());
        assert!(tier.windows_of(CID_A).is_empty());
    }

    #[test]
    fn torn_or_corrupt_entries_are_misses_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        let len = 4096usize;
        type Damage = fn(&Path);
        let cases: [(&str, Damage); 5] = [
            ("truncated", |p| {
                let f = OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(2000).unwrap();
            }),
            ("body byte flipped", |p| flip(p, 3000)),
            ("header length flipped", |p| flip(p, 9)),
            ("magic flipped", |p| flip(p, 0)),
            ("extended", |p| {
                let mut f = OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(b"x").unwrap();
            }),
        ];
        fn flip(p: &Path, at: usize) {
            let mut bytes = fs::read(p).unwrap();
            bytes[at] ^= 0x40;
            fs::write(p, bytes).unwrap();
        }
        for (i, (what, damage)) in cases.iter().enumerate() {
            let k = key(CID_A, i as u64);
            put_body(&tier, &k, len);
            let path = tier.window_path(&k);
            damage(&path);
            assert_eq!(tier.get(&k, len as u64), None, "{what}");
            assert!(!path.exists(), "{what}: file must be deleted");
            assert!(!tier.contains(&k), "{what}");
        }
        // A caller expecting another length: miss, deleted.
        let k = key(CID_B, 0);
        put_body(&tier, &k, len);
        assert_eq!(tier.get(&k, len as u64 - 1), None);
        assert!(!tier.window_path(&k).exists());
        // A file deleted behind our back: miss, dropped from the index.
        let k = key(CID_B, 1);
        put_body(&tier, &k, len);
        fs::remove_file(tier.window_path(&k)).unwrap();
        assert_eq!(tier.get(&k, len as u64), None);
        assert_eq!(tier.stats(), DiskStats::default());
    }

    #[test]
    fn ranges_read_only_their_blocks_and_check_them() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), 8 << 20).unwrap();
        let len = 3 * BLOCK_LEN as usize + 1000; // a short last block
        let k = key(CID_A, 0);
        let b = put_body(&tier, &k, len);
        let l = len as u64;
        let bl = BLOCK_LEN;
        for r in [
            0..l,
            0..1,
            l - 1..l,
            5..bl,
            bl - 1..bl + 1,
            bl..2 * bl,
            100..3 * bl + 10,
            3 * bl..l,
            7..7,
        ] {
            let got = tier.get_range(&k, l, r.clone()).unwrap();
            assert_eq!(got, b[r.start as usize..r.end as usize], "{r:?}");
        }
        assert_eq!(tier.get_range(&k, l, 0..l + 1), None, "past the end");
        assert!(tier.contains(&k));
        // A flipped byte in block 2: ranges that avoid the block read fine
        // (every byte they return was checked); one that touches it is a
        // miss, and the entry is deleted.
        let path = tier.window_path(&k);
        let mut bytes = fs::read(&path).unwrap();
        let at = (entry_len(l) - l + 2 * bl + 17) as usize;
        bytes[at] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert_eq!(
            tier.get_range(&k, l, 0..2 * bl).unwrap(),
            b[..2 * bl as usize]
        );
        assert_eq!(tier.get_range(&k, l, 2 * bl + 17..2 * bl + 18), None);
        assert!(!path.exists());
        assert!(!tier.contains(&k));
        // A damaged block table is caught before any body byte is used.
        let k = key(CID_A, 1);
        put_body(&tier, &k, len);
        let path = tier.window_path(&k);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_LEN + 5] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert_eq!(tier.get_range(&k, l, 0..10), None);
        assert!(!path.exists());
    }

    #[test]
    fn entries_of_the_first_format_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(CID_B, 4);
        let b = body(&k, 5000);
        let path;
        {
            let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
            put_body(&tier, &k, 10); // creates the piece's directory
            path = tier.window_path(&k);
        }
        // Format 1: header (CRC-32 of the whole body), then the body.
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&VERSION_1.to_le_bytes());
        h[8..16].copy_from_slice(&5000u64.to_le_bytes());
        h[16..20].copy_from_slice(&crc32fast::hash(&b).to_le_bytes());
        let c = crc32fast::hash(&h[0..20]);
        h[20..24].copy_from_slice(&c.to_le_bytes());
        fs::write(&path, [&h[..], &b[..]].concat()).unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(tier.stats().bytes, entry_len_v1(5000));
        assert_eq!(tier.get_range(&k, 5000, 100..200).unwrap(), b[100..200]);
        assert_eq!(tier.get(&k, 5000).unwrap(), b);
        // Its body checksum is still checked.
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_LEN + 4000] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert_eq!(tier.get_range(&k, 5000, 0..10), None);
        assert!(!path.exists());
    }

    #[test]
    fn open_deletes_temp_files_and_runt_entries() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(CID_A, 1);
        {
            let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
            put_body(&tier, &k, 100);
            put_body(&tier, &key(CID_A, 2), 100);
            fs::write(tier.temp_path(), b"half a window").unwrap();
            fs::create_dir_all(dir.path().join("tmp/1-9.tmp")).unwrap(); // an interrupted purge
            fs::write(dir.path().join("tmp/1-9.tmp/0"), b"x").unwrap();
            // A crash that left an empty (never written back) entry.
            fs::write(tier.window_path(&key(CID_A, 2)), b"").unwrap();
        }
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(!tier.window_path(&key(CID_A, 2)).exists());
        assert_eq!(tier.windows_of(CID_A), vec![1]);
        assert_eq!(tier.get(&k, 100).unwrap(), body(&k, 100));
    }

    #[test]
    fn reopen_serves_every_entry_and_keeps_saved_lru_order() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<WindowKey> = (0..4)
            .map(|i| key(if i % 2 == 0 { CID_A } else { CID_B }, i))
            .collect();
        {
            let tier = DiskTier::open(dir.path(), budget_for(4, 500)).unwrap();
            for k in &keys {
                put_body(&tier, k, 500);
            }
            // Recency order now: 1, 2, 3, 0 (oldest first), against mtime order 0..3.
            assert!(tier.get(&keys[0], 500).is_some());
            tier.save_index().unwrap();
        } // dropped: a restart
        let tier = DiskTier::open(dir.path(), budget_for(4, 500)).unwrap();
        assert_eq!(tier.stats().entries, 4);
        for k in &keys {
            assert_eq!(tier.get(k, 500).unwrap(), body(k, 500));
        }
        // The gets above refreshed in order 0..3, so the order is now 0..3.
        tier.save_index().unwrap();
        drop(tier);
        let tier = DiskTier::open(dir.path(), budget_for(4, 500)).unwrap();
        assert!(tier.get(&keys[0], 500).is_some()); // order 1, 2, 3, 0
        put_body(&tier, &key(CID_B, 9), 500);
        assert!(
            !tier.contains(&keys[1]),
            "the least recently used goes first"
        );
        assert!(tier.contains(&keys[0]) && tier.contains(&keys[2]) && tier.contains(&keys[3]));
    }

    #[test]
    fn entries_written_after_the_last_save_are_found_and_count_as_newer() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new1, new2) = (key(CID_A, 0), key(CID_A, 1), key(CID_B, 0));
        {
            let tier = DiskTier::open(dir.path(), budget_for(3, 300)).unwrap();
            put_body(&tier, &old, 300);
            tier.save_index().unwrap();
            put_body(&tier, &new1, 300);
            put_body(&tier, &new2, 300);
            // No save_index: as after kill -9. Make the mtime order explicit.
            let t0 = SystemTime::now() - Duration::from_secs(100);
            File::options()
                .write(true)
                .open(tier.window_path(&new2))
                .unwrap()
                .set_modified(t0)
                .unwrap();
            File::options()
                .write(true)
                .open(tier.window_path(&new1))
                .unwrap()
                .set_modified(t0 + Duration::from_secs(1))
                .unwrap();
        }
        let tier = DiskTier::open(dir.path(), budget_for(3, 300)).unwrap();
        for k in [&old, &new1, &new2] {
            assert_eq!(tier.get(k, 300).unwrap(), body(k, 300));
        }
        drop(tier);
        // Saved order first (old, despite a newer mtime), then new2, new1 by mtime.
        let tier = DiskTier::open(dir.path(), budget_for(3, 300)).unwrap();
        put_body(&tier, &key(CID_B, 5), 300);
        assert!(!tier.contains(&old));
        put_body(&tier, &key(CID_B, 6), 300);
        assert!(!tier.contains(&new2));
        assert!(tier.contains(&new1));
    }

    #[test]
    fn without_a_saved_index_order_is_by_mtime_and_a_smaller_budget_evicts_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<WindowKey> = (0..4).map(|i| key(CID_A, i)).collect();
        {
            let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
            let now = SystemTime::now();
            for (age, k) in [3u64, 0, 2, 1].iter().zip(&keys) {
                put_body(&tier, k, 200);
                let f = File::options()
                    .write(true)
                    .open(tier.window_path(k))
                    .unwrap();
                f.set_modified(now - Duration::from_secs(10 * age)).unwrap();
            }
        }
        let tier = DiskTier::open(dir.path(), budget_for(2, 200)).unwrap();
        // Oldest by mtime were keys[0] (30 s) and keys[2] (20 s).
        assert_eq!(tier.windows_of(CID_A), vec![1, 3]);
        assert!(!tier.window_path(&keys[0]).exists() && !tier.window_path(&keys[2]).exists());
        assert_eq!(tier.stats().evictions, 2);
    }

    #[test]
    fn remove_piece_purges_windows_and_meta_of_that_piece_only() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        for i in 0..3 {
            put_body(&tier, &key(CID_A, i), 100);
        }
        put_body(&tier, &key(CID_B, 0), 100);
        tier.put_meta(
            CID_A,
            &PieceMetaRecord {
                size: 300,
                content_type: "video/mp4".into(),
            },
        )
        .unwrap();
        assert_eq!(tier.remove_piece(CID_A), (3, 3 * (entry_len(100))));
        assert!(tier.windows_of(CID_A).is_empty());
        assert_eq!(tier.get(&key(CID_A, 0), 100), None);
        assert_eq!(tier.get_meta(CID_A), None);
        assert!(!tier.piece_dir(CID_A).exists());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(tier.windows_of(CID_B), vec![0]);
        assert_eq!(tier.stats().entries, 1);
        assert_eq!(tier.stats().evictions, 0, "a purge is not an eviction");
        assert_eq!(tier.remove_piece(CID_A), (0, 0));
        drop(tier);
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert!(tier.windows_of(CID_A).is_empty());
        assert_eq!(tier.get_meta(CID_A), None);
    }

    #[test]
    fn cids_that_could_escape_the_directory_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let tier = DiskTier::open(&root, 1 << 20).unwrap();
        let long = "b".repeat(MAX_CID_LEN + 1);
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "/etc",
            "Bafk",
            "baf-k",
            "baf k",
            "baf\0k",
            long.as_str(),
        ] {
            let k = key(bad, 0);
            let err = tier.put(&k, b"data").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert_eq!(tier.get(&k, 4), None);
            assert!(!tier.contains(&k));
            let meta = PieceMetaRecord {
                size: 4,
                content_type: "x/y".into(),
            };
            assert_eq!(
                tier.put_meta(bad, &meta).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            assert_eq!(tier.remove_piece(bad), (0, 0));
        }
        assert!(is_valid_cid(&"b".repeat(MAX_CID_LEN)));
        assert_eq!(tier.stats(), DiskStats::default());
        // Nothing was created beside the store.
        let siblings: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings, vec![std::ffi::OsString::from("cache")]);
        // A bad content type cannot inject lines into the meta file.
        let meta = PieceMetaRecord {
            size: 4,
            content_type: "text/plain\nsize 9".into(),
        };
        assert_eq!(
            tier.put_meta(CID_A, &meta).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn a_window_larger_than_the_budget_is_not_stored_and_evicts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path(), budget_for(2, 1000)).unwrap();
        put_body(&tier, &key(CID_A, 0), 1000);
        let big = key(CID_A, 1);
        tier.put(&big, &body(&big, 3000)).unwrap();
        assert!(!tier.contains(&big));
        assert!(!tier.window_path(&big).exists());
        assert!(tier.contains(&key(CID_A, 0)));
        assert_eq!(tier.stats().evictions, 0);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let huge = vec![0u8; (MAX_WINDOW_LEN + 1) as usize];
        assert_eq!(
            tier.put(&big, &huge).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn concurrent_puts_and_gets_keep_index_and_disk_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let len = 2048usize;
        let tier = Arc::new(DiskTier::open(dir.path(), budget_for(12, len as u64)).unwrap());
        let threads = 4;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (tier, barrier) = (tier.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut hits = 0;
                    for i in 0..300u64 {
                        let k = key(
                            [CID_A, CID_B][(i % 2) as usize],
                            (i * 7 + t as u64 * 13) % 20,
                        );
                        match i % 5 {
                            0 if t == 0 && i % 50 == 0 => {
                                tier.remove_piece(&k.cid);
                            }
                            0 | 1 => tier.put(&k, &body(&k, len)).unwrap(),
                            _ => {
                                if let Some(b) = tier.get(&k, len as u64) {
                                    assert_eq!(b, body(&k, len), "never wrong bytes");
                                    hits += 1;
                                }
                            }
                        }
                    }
                    hits
                })
            })
            .collect();
        let hits: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(hits > 0);
        let s = tier.stats();
        let files = files_on_disk(dir.path());
        assert!(s.bytes <= budget_for(12, len as u64));
        assert_eq!(s.entries, files.len() as u64);
        assert_eq!(s.bytes, files.iter().map(|(_, l)| l).sum::<u64>());
        assert_eq!(s.bytes, s.entries * entry_len(len as u64));
        assert!(s.evictions > 0);
        let mut listed: Vec<(String, u64)> = Vec::new();
        for cid in [CID_A, CID_B] {
            listed.extend(
                tier.windows_of(cid)
                    .into_iter()
                    .map(|i| (cid.to_string(), i)),
            );
        }
        assert_eq!(listed.len() as u64, s.entries);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn meta_round_trips_across_reopen_and_a_torn_meta_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let meta_a = PieceMetaRecord {
            size: 34_359_738_368,
            content_type: "video/mp4".into(),
        };
        let meta_b = PieceMetaRecord {
            size: 127,
            content_type: "application/octet-stream".into(),
        };
        {
            let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
            put_body(&tier, &key(CID_A, 0), 10);
            tier.put_meta(CID_A, &meta_a).unwrap();
            tier.put_meta(CID_B, &meta_b).unwrap(); // no windows yet: kept too
            assert_eq!(tier.get_meta(CID_A), Some(meta_a.clone()));
        }
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(tier.get_meta(CID_A), Some(meta_a.clone()));
        assert_eq!(tier.get_meta(CID_B), Some(meta_b.clone()));
        let mut all = tier.all_meta();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            all,
            vec![(CID_B.to_string(), meta_b), (CID_A.to_string(), meta_a)]
        ); // "bafk" < "baga"
           // Tear B's meta file: dropped (and deleted) at the next open.
        let path = tier.piece_dir(CID_B).join(META_FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() - 5]).unwrap();
        drop(tier);
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(tier.get_meta(CID_B), None);
        assert!(!path.exists());
        assert!(tier.get_meta(CID_A).is_some());
    }

    #[test]
    fn a_damaged_saved_index_only_loses_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
            put_body(&tier, &key(CID_A, 0), 10);
            put_body(&tier, &key(CID_A, 1), 10);
            tier.save_index().unwrap();
        }
        let text = fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
        assert!(text.starts_with(INDEX_HEADER) && text.ends_with("end 2\n"));
        fs::write(dir.path().join(INDEX_FILE), "garbage\n../../etc 1\n").unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(tier.windows_of(CID_A), vec![0, 1]);
    }
}
