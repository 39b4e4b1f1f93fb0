//! Reading and writing the disk tier's files: a window (or part of one) read
//! and checked block by block, a window written to a temp file and renamed
//! into place under the index lock, and the per-piece `meta` file written the
//! same way.
//!
//! What it is not: the entry format (`entry`), the paths and temp-file
//! mechanics (`layout`), or eviction (`evict`).

use std::fs;
use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;

use super::entry::{encode_head, entry_len, entry_len_v1, read_entry, read_entry_v1};
use super::layout::{delete_all, rename_into, write_temp};
use super::piece_meta::{encode_meta, MAX_CONTENT_TYPE_LEN, META_FILE};
use super::{invalid_cid, is_valid_cid, DiskTier, PieceMetaRecord, WindowKey, MAX_WINDOW_LEN};
impl DiskTier {
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
}
