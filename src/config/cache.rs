//! `cache.*`: the window cache (window size, memory tier, read-ahead, window
//! checks) and `cache.disk.*`, its disk tier.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::units::ByteSize;
use super::Config;

/// Smallest and largest window, in padded bytes.
pub const MIN_WINDOW: u64 = 128 << 10;
/// Largest window, in padded bytes.
pub const MAX_WINDOW: u64 = 64 << 20;

/// `cache.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Window size in padded bytes (power of two, 128KiB..=64MiB).
    pub window: ByteSize,
    /// Memory tier budget.
    pub memory: ByteSize,
    /// In-flight budget: window bytes held beside the memory tier (windows
    /// being fetched, read-ahead, windows waiting for slow clients or for the
    /// disk tier), process-wide. Size a pod's memory limit as
    /// `memory + inflight + 128MiB`. At least 4 windows.
    pub inflight: ByteSize,
    /// Most new requests waiting for in-flight room at once; past it (or
    /// after 30 s in the queue) a request gets 503 with `Retry-After`.
    pub inflight_queue: usize,
    /// Windows read ahead of a forward-moving reader (0: no read-ahead).
    pub prefetch: u64,
    /// Most read-ahead fills running at once, process-wide.
    pub prefetch_concurrency: usize,
    /// Most windows one upstream request covers (at least 8 while the
    /// in-flight budget is under pressure).
    pub run_windows: u64,
    /// Hash fetched windows and compare them with the PieceCID (or the
    /// piece's layer) before they are served whole or cached.
    pub check_windows: bool,
    /// Most bytes of a container index (an MP4 `moov` after its media data,
    /// a WebM's `Cues`) fetched beside a cold piece's head, so the player's
    /// jump to it is a hit; 0 turns index prefetch off.
    pub index_prefetch: ByteSize,
    /// On the first read of a cold piece from byte 0, also fetch its last
    /// window (where ffmpeg puts a tail `moov` or `Cues`) once Beam has
    /// answered the head, before the head has said whether the piece is
    /// media. Needs `index_prefetch`.
    pub tail_guess: bool,
    /// A reader whose range starts at least this far into a cold window
    /// gets its part of the window first: the window is fetched as two
    /// requests at once, from the reader's byte on and the head before it
    /// (critical bytes first); 0 turns it off.
    pub critical_first: ByteSize,
    /// Disk tier.
    pub disk: DiskConfig,
}

/// `cache.disk.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Directory of the disk tier.
    pub path: PathBuf,
    /// Budget; 0 disables the disk tier.
    pub size: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            window: ByteSize(1 << 20),
            memory: ByteSize(256 << 20),
            inflight: ByteSize(256 << 20),
            inflight_queue: 1024,
            prefetch: 4,
            prefetch_concurrency: 16,
            run_windows: 2,
            check_windows: true,
            index_prefetch: ByteSize(16 << 20),
            tail_guess: true,
            critical_first: ByteSize(128 << 10),
            disk: DiskConfig::default(),
        }
    }
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            path: PathBuf::from("./beam-edge-cache"),
            size: ByteSize(10 << 30),
        }
    }
}

/// The checks of `cache.*`, in order.
pub(super) const CHECKS: &[super::validate::Check] = &[check_cache];

fn check_cache(c: &Config) -> Result<(), (&'static str, String)> {
    if !(1..=64).contains(&c.cache.run_windows) {
        return Err((
            "cache.run_windows",
            format!("must be 1 to 64, got {}", c.cache.run_windows),
        ));
    }
    if c.cache.prefetch > 64 {
        return Err((
            "cache.prefetch",
            format!("must be 0 to 64, got {}", c.cache.prefetch),
        ));
    }
    if c.cache.prefetch > 0 && c.cache.prefetch_concurrency == 0 {
        return Err((
            "cache.prefetch_concurrency",
            "must be at least 1 while cache.prefetch is on".into(),
        ));
    }
    let w = c.cache.window.0;
    if !w.is_power_of_two() || !(MIN_WINDOW..=MAX_WINDOW).contains(&w) {
        return Err((
            "cache.window",
            format!(
                "must be a power of two from 128KiB to 64MiB, got {}",
                c.cache.window
            ),
        ));
    }
    if c.cache.index_prefetch.0 > 1 << 30 {
        return Err((
            "cache.index_prefetch",
            format!("must be 0 (off) to 1GiB, got {}", c.cache.index_prefetch),
        ));
    }
    if c.cache.memory.0 < w {
        return Err((
            "cache.memory",
            format!(
                "must hold at least one window ({}), got {}",
                c.cache.window, c.cache.memory
            ),
        ));
    }
    if c.cache.inflight.0 < 4 * w {
        return Err((
            "cache.inflight",
            format!(
                "must hold at least 4 windows (4 x {}), got {}",
                c.cache.window, c.cache.inflight
            ),
        ));
    }
    if c.cache.inflight_queue > 1_000_000 {
        return Err((
            "cache.inflight_queue",
            format!("must be 0 to 1000000, got {}", c.cache.inflight_queue),
        ));
    }
    if c.cache.disk.size.0 != 0 && c.cache.disk.size.0 < w {
        return Err((
            "cache.disk.size",
            format!(
                "must be 0 (off) or at least one window ({}), got {}",
                c.cache.window, c.cache.disk.size
            ),
        ));
    }
    if c.cache.disk.size.0 != 0 && c.cache.disk.path.as_os_str().is_empty() {
        return Err((
            "cache.disk.path",
            "must not be empty while cache.disk.size is not 0".into(),
        ));
    }
    Ok(())
}
