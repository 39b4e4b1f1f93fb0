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
//! renames), `piece_meta` (the per-piece `meta` file), `window_io` (reading
//! and writing windows and `meta` files), `upkeep` (dropping windows and
//! pieces, and what the index holds), `handover` (sharing the directory
//! during a graceful upgrade and adopting it once the old process exits);
//! this file holds the public types, opening the tier and its counters.

mod entry;
mod evict;
mod handover;
mod index;
mod layout;
mod piece_meta;
mod scan;
#[cfg(test)]
mod tests;
mod upkeep;
mod window_io;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

pub use handover::ReconcileReport;
use index::{load_saved_order, Index, INDEX_FILE};
use layout::delete_all;
use scan::scan_dir;

/// Largest window body the tier accepts (64 MiB).
pub const MAX_WINDOW_LEN: u64 = 64 << 20;
/// Longest accepted CID string.
pub const MAX_CID_LEN: usize = 128;
pub use entry::{entry_len, BLOCK_LEN};
/// Locked (`flock`, exclusive) by the process that owns the directory.
const LOCK_FILE: &str = "lock";

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

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The options the store was opened with.
    pub fn options(&self) -> DiskTierOptions {
        self.options
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

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
