//! Where the disk tier's files live and how they are written and deleted:
//! `<dir>/w/<shard>/<cid>/<index>` paths, temp files in `<dir>/tmp/` renamed
//! into place, quiet unlinks.
//!
//! What it is not: the entry format (`entry`) or the decision of what to
//! write or delete (the tier in `mod.rs`, `evict`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{DiskTier, WindowKey};

impl DiskTier {
    pub(super) fn piece_dir(&self, cid: &str) -> PathBuf {
        self.root.join("w").join(shard_of(cid)).join(cid)
    }

    pub(super) fn window_path(&self, key: &WindowKey) -> PathBuf {
        self.piece_dir(&key.cid).join(key.index.to_string())
    }

    pub(super) fn temp_path(&self) -> PathBuf {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{}-{seq}.tmp", std::process::id()))
    }
}

pub(super) fn delete_all(trash: Vec<PathBuf>) {
    for path in trash {
        remove_file_quietly(&path);
    }
}

pub(super) fn remove_file_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("disk tier: cannot delete {}: {e}", path.display());
        }
    }
}

/// Creates `path` (which must not exist), fills it with `fill`, optionally
/// fsyncs it.
pub(super) fn write_temp(
    path: &Path,
    fsync: bool,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    fill(&mut f)?;
    if fsync {
        f.sync_data()?;
    }
    Ok(())
}

/// Renames `temp` to `dest`, creating `dest`'s directory when missing.
pub(super) fn rename_into(temp: &Path, dest: &Path) -> io::Result<()> {
    match fs::rename(temp, dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(temp, dest)
        }
        other => other,
    }
}

/// Two hex digits spreading pieces over 256 directories. CRC-32 is a fixed
/// function, so the layout is stable across builds and versions.
pub(super) fn shard_of(cid: &str) -> String {
    format!("{:02x}", crc32fast::hash(cid.as_bytes()) & 0xff)
}
