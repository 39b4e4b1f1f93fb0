//! Start-up scan of the disk tier: one walk of `<dir>/w/` that finds every
//! whole-looking window entry and readable `meta` file, and deletes what
//! cannot be one (runts, oversized files, torn meta files).
//!
//! What it is not: the index (`index`) or the ordering and eviction done by
//! [`super::DiskTier::open_with`]; checksums are not read here (a cheap size
//! check only; [`super::DiskTier::get`] verifies lazily).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::entry::{entry_len, HEADER_LEN};
use super::layout::{remove_file_quietly, shard_of};
use super::piece_meta::{decode_meta, META_FILE};
use super::{is_valid_cid, PieceMetaRecord, WindowKey, MAX_WINDOW_LEN};

pub(super) struct FoundWindow {
    pub(super) key: WindowKey,
    pub(super) len: u64,
    pub(super) mtime: SystemTime,
}

#[derive(Default)]
pub(super) struct Scan {
    pub(super) windows: Vec<FoundWindow>,
    pub(super) meta: HashMap<Arc<str>, PieceMetaRecord>,
}

/// A canonical decimal window index ("0", "17"; not "017" or "+1").
pub(super) fn parse_index(name: &str) -> Option<u64> {
    let n: u64 = name.parse().ok()?;
    (name.bytes().all(|b| b.is_ascii_digit()) && n.to_string() == name).then_some(n)
}

pub(super) fn scan_dir(root: &Path) -> io::Result<Scan> {
    let mut scan = Scan::default();
    for shard in fs::read_dir(root.join("w"))? {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for piece in fs::read_dir(shard.path())? {
            let piece = piece?;
            let name = piece.file_name();
            let cid = match name.to_str() {
                Some(c)
                    if is_valid_cid(c)
                        && piece.file_type()?.is_dir()
                        && shard.file_name().to_str() == Some(&shard_of(c)) =>
                {
                    c
                }
                _ => {
                    log::warn!("disk tier: ignoring {}", piece.path().display());
                    continue;
                }
            };
            scan_piece(&piece.path(), Arc::from(cid), &mut scan)?;
        }
    }
    Ok(scan)
}

pub(super) fn scan_piece(dir: &Path, cid: Arc<str>, scan: &mut Scan) -> io::Result<()> {
    let mut windows = 0usize;
    for file in fs::read_dir(dir)? {
        let file = file?;
        let path = file.path();
        let name = file.file_name();
        let name = name.to_str().unwrap_or_default();
        if name == META_FILE {
            match fs::read_to_string(&path)
                .ok()
                .as_deref()
                .and_then(decode_meta)
            {
                Some(meta) => {
                    scan.meta.insert(cid.clone(), meta);
                }
                None => {
                    log::warn!("disk tier: deleting unreadable {}", path.display());
                    remove_file_quietly(&path);
                }
            }
            continue;
        }
        let Some(index) = parse_index(name) else {
            log::warn!("disk tier: ignoring {}", path.display());
            continue;
        };
        let md = file.metadata()?;
        let len = md.len();
        if !md.is_file() || !(HEADER_LEN as u64..=entry_len(MAX_WINDOW_LEN)).contains(&len) {
            log::warn!("disk tier: deleting {} ({len} bytes)", path.display());
            remove_file_quietly(&path);
            continue;
        }
        let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        scan.windows.push(FoundWindow {
            key: WindowKey {
                cid: cid.clone(),
                index,
            },
            len,
            mtime,
        });
        windows += 1;
    }
    if windows == 0 && !scan.meta.contains_key(&cid) {
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}
