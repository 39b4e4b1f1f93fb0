//! The window cache: memory tier → disk tier → single-flight fill from the
//! upstream, with read-ahead.
//!
//! A piece is cut into aligned windows ([`window`]). A [`RangeReader`]
//! yields the bytes of one byte range window by window, each from the
//! fastest place that has it: the memory tier ([`memory`], zero-copy), the
//! disk tier ([`disk`], checked, promoted to memory), or a [`fill`] from the
//! upstream, joined if one is already in flight, streamed as it arrives.
//!
//! A fill downloads a *run* of consecutive missing windows the reader needs
//! (at most `run_windows`) with one upstream request, splits the stream into
//! windows, caches each as it completes, and stops at a window boundary once
//! nothing it has left is wanted: a client that goes away does not leave a
//! 4 GB download running. Transient upstream failures are retried, resuming
//! at the first missing byte. Beam's whole-piece 200 to a ranged request is
//! used only when the range starts within `max_skip` of byte 0 (and the
//! windows it carries before the range are cached too); otherwise it is
//! dropped at once and the range is asked of a storage provider, then of
//! Beam once more. A reader moving forward triggers read-ahead of the next
//! `prefetch` windows, bounded process-wide.
//!
//! Nothing here knows about HTTP sessions: `edge` turns chunks into
//! responses. Pieces are immutable, so nothing expires; tiers evict by
//! their byte budgets.

pub mod disk;
pub mod fill;
pub mod memory;
pub mod meta;
pub mod verify;
pub mod window;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cluster::{Cluster, Route};
use crate::http::range::ByteRange;
use crate::metrics;
use crate::upstream::{Origin, Upstream, UpstreamBody, UpstreamError};
use disk::{DiskTier, PieceMetaRecord};
pub use fill::CacheError;
use fill::{Fill, FillReader, Interest};
use memory::MemoryTier;
use verify::{Layers, PieceCheck};
use window::{Geometry, WindowKey, WindowSlice};

/// Most completed windows waiting for their disk write at once.
const DISK_WRITES: usize = 4;

/// Disk reads in flight at once, per core: a hit's read and checksum is
/// CPU work on page-cached data, and more threads than cores only queue for
/// them (measured: a longer latency tail under load, no more throughput).
const DISK_READS_PER_CORE: usize = 1;

/// How the cache behaves (from the `cache` and `upstream` config sections).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Window size in padded bytes.
    pub window_padded: u64,
    /// Memory tier budget in bytes.
    pub memory_budget: u64,
    /// Disk tier directory and budget; `None` turns the tier off.
    pub disk: Option<(std::path::PathBuf, u64)>,
    /// Windows read ahead of a forward-moving reader.
    pub prefetch: u64,
    /// Most read-ahead fills at once.
    pub prefetch_concurrency: usize,
    /// Most windows per upstream request.
    pub run_windows: u64,
    /// Check fetched windows against the PieceCID where it can be done.
    pub check_windows: bool,
    /// Largest range start at which Beam's whole-piece 200 is used.
    pub max_skip: u64,
    /// Retries of a failed fetch.
    pub retries: u32,
    /// Storage-provider service URLs, tried in turn as fallbacks.
    pub providers: Vec<String>,
    /// How long a reader that read its whole range keeps its read-ahead alive
    /// (players read in consecutive ranges).
    pub prefetch_linger: Duration,
    /// Delay before asking Beam again after it sent a whole piece for a deep range.
    pub beam_retry_delay: Duration,
}

/// A piece as the cache sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Canonical PieceCID string.
    pub cid: Arc<str>,
    /// Size in bytes.
    pub size: u64,
}

/// Where served bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The memory tier.
    Memory,
    /// The disk tier.
    Disk,
    /// An upstream fill.
    Upstream,
    /// The owning replica (cluster mode).
    Peer,
}

impl Source {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Upstream => "upstream",
            Source::Peer => "peer",
        }
    }
}

/// Which windows of a piece each tier holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PieceStatus {
    /// The piece.
    pub cid: String,
    /// Size, when known.
    pub size: Option<u64>,
    /// Number of windows, when the size is known.
    pub windows: Option<u64>,
    /// Window indexes in memory.
    pub memory: Vec<u64>,
    /// Window indexes on disk.
    pub disk: Vec<u64>,
    /// Window indexes being filled.
    pub filling: Vec<u64>,
    /// How fetched windows are checked against the PieceCID: `"cid"` (a
    /// one-window piece), `"layer"` (from an asset manifest) or `null`
    /// (only by length; also while the size is unknown).
    pub checked_by: Option<&'static str>,
}

/// Sizes and counters of the tiers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Window size in raw bytes.
    pub window_bytes: u64,
    /// Memory tier.
    pub memory: TierStats,
    /// Disk tier (`None` when off).
    pub disk: Option<TierStats>,
    /// Windows being filled now.
    pub fills_in_flight: usize,
}

/// One tier's numbers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TierStats {
    /// Budget in bytes.
    pub budget: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Windows held.
    pub entries: u64,
    /// Windows evicted since start.
    pub evictions: u64,
}

struct Inner {
    geometry: Geometry,
    memory: MemoryTier,
    disk: Option<Arc<DiskTier>>,
    fills: Mutex<HashMap<WindowKey, Arc<Fill>>>,
    upstream: Upstream,
    settings: CacheSettings,
    prefetch_slots: Arc<Semaphore>,
    /// Disk writes in flight (see [`DISK_WRITES`]).
    disk_slots: Arc<Semaphore>,
    /// Disk reads in flight (see [`DISK_READS_PER_CORE`]).
    disk_reads: Arc<Semaphore>,
    /// Window checks in flight: one per core.
    check_slots: Arc<Semaphore>,
    /// Windows filled by read-ahead and not read yet (for used/wasted counts).
    prefetched_unread: Mutex<HashSet<WindowKey>>,
    /// Window roots of pieces whose asset manifests were read.
    layers: Layers,
    /// Cluster mode: where windows this replica does not own come from.
    cluster: Option<Arc<Cluster>>,
}

/// The window cache. Cheap to clone.
#[derive(Clone)]
pub struct WindowCache {
    inner: Arc<Inner>,
}

impl WindowCache {
    /// Opens the tiers (the disk tier rebuilds its index from its directory).
    pub fn new(settings: CacheSettings, upstream: Upstream) -> std::io::Result<WindowCache> {
        WindowCache::new_clustered(settings, upstream, None)
    }

    /// [`WindowCache::new`] for a replica of a cluster: windows it does not
    /// own are asked of their owners (see [`crate::cluster`]).
    pub fn new_clustered(
        settings: CacheSettings,
        upstream: Upstream,
        cluster: Option<Arc<Cluster>>,
    ) -> std::io::Result<WindowCache> {
        let geometry = Geometry::from_padded(settings.window_padded);
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let disk = match &settings.disk {
            Some((path, budget)) => Some(Arc::new(DiskTier::open(path, *budget)?)),
            None => None,
        };
        let inner = Inner {
            geometry,
            memory: MemoryTier::new(settings.memory_budget, geometry.raw),
            disk,
            fills: Mutex::new(HashMap::new()),
            upstream,
            prefetch_slots: Arc::new(Semaphore::new(settings.prefetch_concurrency.max(1))),
            disk_slots: Arc::new(Semaphore::new(DISK_WRITES)),
            disk_reads: Arc::new(Semaphore::new(DISK_READS_PER_CORE * cores)),
            check_slots: Arc::new(Semaphore::new(cores)),
            layers: Layers::new(settings.window_padded),
            settings,
            prefetched_unread: Mutex::new(HashSet::new()),
            cluster,
        };
        let cache = WindowCache {
            inner: Arc::new(inner),
        };
        cache.inner.publish_sizes();
        Ok(cache)
    }

    /// Takes the window roots of `cid` from an asset manifest (for windows
    /// of `layer_window` padded bytes), once they hash to the CID: from then
    /// on every window of the piece fetched is checked.
    pub fn add_layer(
        &self,
        cid: &crate::piece::PieceCid,
        layer_window: u64,
        nodes: &[crate::piece::commp::Node],
    ) -> Result<(), verify::LayerError> {
        self.inner.layers.add(cid, layer_window, nodes)
    }

    /// True when `cache.check_windows` is on.
    pub fn checks_enabled(&self) -> bool {
        self.inner.settings.check_windows
    }

    /// Window geometry.
    pub fn geometry(&self) -> Geometry {
        self.inner.geometry
    }

    /// A reader of `range` of `piece`.
    pub fn reader(&self, piece: &Piece, range: ByteRange) -> RangeReader {
        let slices = self.inner.geometry.plan(range, piece.size);
        RangeReader {
            inner: self.inner.clone(),
            piece: piece.clone(),
            slices: slices.into(),
            current: None,
            token: Arc::new(()),
            interests: HashMap::new(),
            completed: false,
            restarts: 0,
            local_only: crate::cluster::serving_peer(),
        }
    }

    /// Bytes of `ranges` already held by a tier, and the total: what
    /// `X-Cache` reports (HIT: all, MISS: none, PARTIAL: some).
    pub fn coverage(&self, piece: &Piece, ranges: &[ByteRange]) -> (u64, u64) {
        let mut cached = 0;
        let mut total = 0;
        for r in ranges {
            for s in self.inner.geometry.plan(*r, piece.size) {
                let len = s.to - s.from + 1;
                total += len;
                let key = WindowKey::new(piece.cid.clone(), s.index);
                if self.inner.memory.contains(&key)
                    || self.inner.disk.as_ref().is_some_and(|d| d.contains(&key))
                {
                    cached += len;
                }
            }
        }
        (cached, total)
    }

    /// Persists a piece's size and content type beside its windows.
    pub fn remember_meta(&self, cid: &str, size: u64, content_type: &str) {
        if let Some(d) = self.inner.disk.clone() {
            let cid = cid.to_string();
            let rec = PieceMetaRecord {
                size,
                content_type: content_type.to_string(),
            };
            spawn_blocking_detached(move || {
                if let Err(e) = d.put_meta(&cid, &rec) {
                    log::warn!("cannot persist metadata of {cid}: {e}");
                }
            });
        }
    }

    /// Every persisted (cid, size, content type).
    pub fn persisted_meta(&self) -> Vec<(String, PieceMetaRecord)> {
        self.inner
            .disk
            .as_ref()
            .map(|d| d.all_meta())
            .unwrap_or_default()
    }

    /// Tier numbers.
    pub fn stats(&self) -> CacheStats {
        let m = self.inner.memory.stats();
        CacheStats {
            window_bytes: self.inner.geometry.raw,
            memory: TierStats {
                budget: self.inner.settings.memory_budget,
                bytes: m.bytes,
                entries: m.entries,
                evictions: m.evictions,
            },
            disk: self.inner.disk.as_ref().map(|d| {
                let s = d.stats();
                TierStats {
                    budget: self.inner.settings.disk.as_ref().map_or(0, |(_, b)| *b),
                    bytes: s.bytes,
                    entries: s.entries,
                    evictions: s.evictions,
                }
            }),
            fills_in_flight: self.inner.lock_fills().len(),
        }
    }

    /// Which windows of `cid` each tier holds (`size` when known).
    pub fn piece_status(&self, cid: &str, size: Option<u64>) -> PieceStatus {
        let cid_arc: Arc<str> = Arc::from(cid);
        let disk = self
            .inner
            .disk
            .as_ref()
            .map(|d| d.windows_of(cid))
            .unwrap_or_default();
        let mut filling: Vec<u64> = self
            .inner
            .lock_fills()
            .keys()
            .filter(|k| *k.cid == *cid)
            .map(|k| k.index)
            .collect();
        filling.sort_unstable();
        // Memory has no per-piece index: probe the windows that can exist.
        let count = size.map(|s| self.inner.geometry.count(s));
        let probe_upto = count.unwrap_or_else(|| disk.last().map_or(0, |l| l + 1).max(64));
        let memory = (0..probe_upto)
            .filter(|i| {
                self.inner
                    .memory
                    .contains(&WindowKey::new(cid_arc.clone(), *i))
            })
            .collect();
        let checked_by = size.and_then(|size| {
            let piece = Piece {
                cid: cid_arc.clone(),
                size,
            };
            self.inner.check_for(&piece).map(|c| match c {
                PieceCheck::Whole(_) => "cid",
                PieceCheck::Layer(_) => "layer",
            })
        });
        PieceStatus {
            checked_by,
            cid: cid.to_string(),
            size,
            windows: count,
            memory,
            disk,
            filling,
        }
    }

    /// Drops every window of `cid` from both tiers; returns the windows removed.
    /// Windows being filled still reach their readers but are not stored.
    pub async fn purge(&self, cid: &str, size: Option<u64>) -> u64 {
        for f in self.inner.lock_fills().values() {
            if *f.key.cid == *cid {
                f.mark_purged();
            }
        }
        let status = self.piece_status(cid, size);
        let cid_arc: Arc<str> = Arc::from(cid);
        let mut removed = 0;
        for i in &status.memory {
            if self
                .inner
                .memory
                .remove(&WindowKey::new(cid_arc.clone(), *i))
            {
                removed += 1;
            }
        }
        if let Some(d) = self.inner.disk.clone() {
            let c = cid.to_string();
            let (n, _) = tokio::task::spawn_blocking(move || d.remove_piece(&c))
                .await
                .unwrap_or((0, 0));
            removed += n;
        }
        self.inner.publish_sizes();
        removed
    }

    /// Fills `range` of `piece` in the background (admin warm-up); the fill
    /// runs to the end even though no client waits.
    pub fn warm(&self, piece: &Piece, range: ByteRange) {
        let mut reader = self.reader(piece, range);
        tokio::spawn(async move {
            loop {
                match reader.next_chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("warming {} failed: {e}", reader.piece.cid);
                        break;
                    }
                }
            }
        });
    }

    /// Puts every window of piece `cid` (`size` bytes, read from `file` at
    /// `offset`) into the tiers, with its metadata: how an upload warms the
    /// cache so that the first play is a hit. Blocking file I/O: run it on a
    /// blocking thread.
    pub fn warm_from_file(
        &self,
        cid: &str,
        size: u64,
        content_type: &str,
        file: &std::fs::File,
        offset: u64,
    ) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        self.warm_windows(cid, size, content_type, |span| {
            let mut buf = vec![0u8; usize::try_from(span.len()).unwrap_or(0)];
            file.read_exact_at(&mut buf, offset + span.start)?;
            Ok(Bytes::from(buf))
        })
    }

    /// [`WindowCache::warm_from_file`] for a piece held in memory (a manifest).
    pub fn warm_from_bytes(
        &self,
        cid: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> std::io::Result<u64> {
        let whole = Bytes::copy_from_slice(bytes);
        self.warm_windows(cid, bytes.len() as u64, content_type, |span| {
            let from = usize::try_from(span.start).unwrap_or(0);
            let to = usize::try_from(span.end).unwrap_or(0);
            Ok(whole.slice(from..=to))
        })
    }

    /// Stores each window of a piece, its bytes given by `window_bytes`.
    fn warm_windows(
        &self,
        cid: &str,
        size: u64,
        content_type: &str,
        mut window_bytes: impl FnMut(ByteRange) -> std::io::Result<Bytes>,
    ) -> std::io::Result<u64> {
        let cid_arc: Arc<str> = Arc::from(cid);
        let g = self.inner.geometry;
        let mut windows = 0;
        for i in 0..g.count(size) {
            let Some(span) = g.span(i, size) else { break };
            let bytes = window_bytes(span)?;
            let key = WindowKey::new(cid_arc.clone(), i);
            if let Some(d) = &self.inner.disk {
                d.put(&key, &bytes)?;
            }
            let evicted = self.inner.memory.put(key, bytes);
            metrics::EVICTIONS
                .with_label_values(&["memory"])
                .inc_by(evicted.len() as u64);
            windows += 1;
        }
        if let Some(d) = &self.inner.disk {
            let record = PieceMetaRecord {
                size,
                content_type: content_type.to_string(),
            };
            d.put_meta(cid, &record)?;
        }
        self.inner.publish_sizes();
        Ok(windows)
    }

    /// The disk tier's directory and budget, when it is on.
    pub fn disk_dir_and_budget(&self) -> Option<(std::path::PathBuf, u64)> {
        self.inner.settings.disk.clone()
    }

    /// Saves the disk tier's LRU order (periodically and at shutdown).
    pub fn save_index(&self) {
        if let Some(d) = &self.inner.disk {
            if let Err(e) = d.save_index() {
                log::warn!("cannot save the disk cache index: {e}");
            }
        }
    }
}

fn spawn_blocking_detached(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn_blocking(f);
        }
        Err(_) => f(),
    }
}

impl Inner {
    fn lock_fills(&self) -> std::sync::MutexGuard<'_, HashMap<WindowKey, Arc<Fill>>> {
        self.fills.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_for(&self, piece: &Piece) -> Option<PieceCheck> {
        if !self.settings.check_windows {
            return None;
        }
        self.layers
            .check_for(&piece.cid, piece.size, self.geometry.count(piece.size))
    }

    fn is_cached(&self, key: &WindowKey) -> bool {
        self.memory.contains(key) || self.disk.as_ref().is_some_and(|d| d.contains(key))
    }

    fn publish_sizes(&self) {
        let m = self.memory.stats();
        metrics::CACHE_BYTES
            .with_label_values(&["memory"])
            .set(m.bytes as i64);
        metrics::CACHE_ENTRIES
            .with_label_values(&["memory"])
            .set(m.entries as i64);
        if let Some(d) = &self.disk {
            let s = d.stats();
            metrics::CACHE_BYTES
                .with_label_values(&["disk"])
                .set(s.bytes as i64);
            metrics::CACHE_ENTRIES
                .with_label_values(&["disk"])
                .set(s.entries as i64);
        }
    }

    /// Puts a complete window into both tiers; `then` runs once the window
    /// is on disk (or at once without a disk tier). A window of a `fill`
    /// that a purge marks, before or while it is stored, ends up in no tier.
    fn store(
        self: &Arc<Self>,
        key: WindowKey,
        bytes: Bytes,
        fill: Option<Arc<Fill>>,
        then: impl FnOnce() + Send + 'static,
    ) {
        let purged = move || fill.as_ref().is_some_and(|f| f.is_purged());
        if purged() {
            then();
            return;
        }
        let evicted = self.memory.put(key.clone(), bytes.clone());
        // A purge marks fills before it empties the tiers: a mark seen only
        // now means the purge may have run before this put.
        if purged() {
            self.memory.remove(&key);
        }
        if !evicted.is_empty() {
            metrics::EVICTIONS
                .with_label_values(&["memory"])
                .inc_by(evicted.len() as u64);
            // Read-ahead that leaves memory unread, with no disk copy, was wasted.
            if self.disk.is_none() {
                let mut unread = self
                    .prefetched_unread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for k in &evicted {
                    if unread.remove(k) {
                        metrics::PREFETCH.with_label_values(&["wasted"]).inc();
                    }
                }
            }
        }
        if let Some(d) = self.disk.clone() {
            let inner = self.clone();
            spawn_blocking_detached(move || {
                let before = d.stats().evictions;
                if let Err(e) = d.put_unless(&key, &bytes, &purged) {
                    log::warn!(
                        "disk cache write of {} window {} failed: {e}",
                        key.cid,
                        key.index
                    );
                }
                let evicted = d.stats().evictions.saturating_sub(before);
                if evicted > 0 {
                    metrics::EVICTIONS
                        .with_label_values(&["disk"])
                        .inc_by(evicted);
                }
                inner.publish_sizes();
                then();
            });
        } else {
            self.publish_sizes();
            then();
        }
    }

    /// Removes `fill` from the in-flight map if it is still the registered one.
    fn unregister(&self, fill: &Arc<Fill>) {
        let mut map = self.lock_fills();
        if map.get(&fill.key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(&fill.key);
        }
    }

    /// Checks a fill's window against the piece (when it can be checked).
    async fn check(&self, fill: &Fill, whole: &Bytes) -> bool {
        let Some(check) = &fill.check else {
            return true;
        };
        let (c, bytes, window, index) = (
            check.clone(),
            whole.clone(),
            self.settings.window_padded,
            fill.key.index,
        );
        let verdict = tokio::task::spawn_blocking(move || c.check(index, &bytes, window))
            .await
            .unwrap_or(Err(verify::Mismatch { index }));
        count_check(&fill.key, &verdict);
        verdict.is_ok()
    }

    /// Completes a window whose bytes are all in. A checked window is hashed
    /// beside the download (at most one check per core at once, which also
    /// bounds the windows held for it), so hashing does not stall the stream;
    /// one that fails its check fails its readers and is not stored.
    async fn finish_window(self: &Arc<Self>, fill: &Arc<Fill>) {
        if fill.check.is_none() {
            self.complete(fill).await;
            return;
        }
        let permit = self.check_slots.clone().acquire_owned().await.ok();
        let unfinished = Unfinished {
            inner: self.clone(),
            fill: fill.clone(),
        };
        tokio::spawn(async move {
            let Unfinished { inner, fill } = &unfinished;
            if !inner.complete(fill).await {
                let e = verify::Mismatch {
                    index: fill.key.index,
                };
                inner.abandon(std::slice::from_ref(fill), CacheError::Mismatch(e));
            }
            drop(permit);
        });
    }

    /// Finishes a fill whose bytes are all in: checks them, then hands the
    /// window to its readers and the tiers. `false`: the check failed, and
    /// nothing was finished or stored.
    async fn complete(self: &Arc<Self>, fill: &Arc<Fill>) -> bool {
        let whole = fill.assemble();
        if !self.check(fill, &whole).await {
            return false;
        }
        // Readers get the window now; the disk waits below only hold the
        // fill's registration (and, unchecked, the download) back.
        fill.finish_with(whole.clone());
        if fill.is_from_peer() {
            self.keep_peer_window(fill, whole);
            return true;
        }
        // At most DISK_WRITES windows wait for the disk at once: a fill that
        // outruns the disk waits here, so queued writes cannot pile up in memory.
        let permit = match &self.disk {
            Some(_) => self.disk_slots.clone().acquire_owned().await.ok(),
            None => None,
        };
        let bytes = whole;
        // The fill stays registered (readers join it and get the finished
        // window) until the disk write lands: otherwise a window refused by
        // the memory tier would be in no tier and not in flight meanwhile,
        // and be fetched again.
        let inner = self.clone();
        let done = fill.clone();
        self.store(fill.key.clone(), bytes, Some(fill.clone()), move || {
            inner.unregister(&done);
            drop(permit);
        });
        metrics::WINDOW_FILLS
            .with_label_values(&[fill_kind(fill), "ok"])
            .inc();
        true
    }

    /// A window that came from its owner: not stored on this replica's disk
    /// (one copy per cluster), but kept in memory once it is hot here.
    fn keep_peer_window(&self, fill: &Arc<Fill>, whole: Bytes) {
        if let Some(cluster) = &self.cluster {
            let (keep, dropped) = cluster.note_peer_window(&fill.key);
            for k in &dropped {
                self.memory.remove(k);
            }
            if keep && !fill.is_purged() {
                let evicted = self.memory.put(fill.key.clone(), whole);
                metrics::EVICTIONS
                    .with_label_values(&["memory"])
                    .inc_by(evicted.len() as u64);
            }
            self.publish_sizes();
        }
        self.unregister(fill);
        metrics::WINDOW_FILLS
            .with_label_values(&[fill_kind(fill), "ok"])
            .inc();
    }

    fn abandon(&self, fills: &[Arc<Fill>], e: CacheError) {
        let outcome = if e == CacheError::Cancelled {
            "cancelled"
        } else {
            "failed"
        };
        for f in fills {
            f.fail(e.clone());
            self.unregister(f);
            metrics::WINDOW_FILLS
                .with_label_values(&[fill_kind(f), outcome])
                .inc();
            if f.prefetch {
                let mut unread = self
                    .prefetched_unread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if unread.remove(&f.key) {
                    metrics::PREFETCH.with_label_values(&["wasted"]).inc();
                }
            }
        }
    }

    /// Registers fills for consecutive windows from `first` that are neither
    /// cached nor in flight, up to `limit` windows and `last`. With
    /// `force_first`, the first window is planned even if a tier claims it
    /// (the caller just failed to read it from there).
    // One flag more than clippy's limit (cluster routing); `split` is
    // reorganising this file, so no parameter struct here yet.
    #[allow(clippy::too_many_arguments)]
    fn plan_run(
        &self,
        piece: &Piece,
        first: u64,
        last: u64,
        limit: u64,
        force_first: bool,
        prefetch: bool,
        local_only: bool,
    ) -> Vec<Arc<Fill>> {
        let mut run = Vec::new();
        let check = self.check_for(piece);
        // Cluster mode: one run, one source (this replica or one owner).
        let routed = self.cluster.as_ref().filter(|_| !local_only);
        let first_route = routed.map(|c| c.route(&piece.cid, first));
        let mut map = self.lock_fills();
        let mut i = first;
        while i <= last && (run.len() as u64) < limit {
            if i > first {
                if let (Some(c), Some(r)) = (routed, &first_route) {
                    if c.route(&piece.cid, i) != *r {
                        break;
                    }
                }
            }
            let key = WindowKey::new(piece.cid.clone(), i);
            let forced = force_first && i == first;
            if map.contains_key(&key) || (!forced && self.is_cached(&key)) {
                break;
            }
            let len = self.geometry.len_of(i, piece.size);
            if len == 0 {
                break;
            }
            let fill = Fill::with_check(key.clone(), len, prefetch, check.clone());
            map.insert(key, fill.clone());
            run.push(fill);
            i += 1;
        }
        run
    }

    fn start_run(
        self: &Arc<Self>,
        piece: &Piece,
        run: Vec<Arc<Fill>>,
        permit: Option<OwnedSemaphorePermit>,
        local_only: bool,
    ) {
        if run.is_empty() {
            return;
        }
        let inner = self.clone();
        let piece = piece.clone();
        tokio::spawn(async move {
            inner.run_fill(&piece, &run, local_only).await;
            drop(permit);
        });
    }

    /// Read-ahead of the windows after `index`, kept wanted while `owner` lives.
    fn prefetch_after(self: &Arc<Self>, piece: &Piece, index: u64, owner: &Arc<()>) {
        let n = self.settings.prefetch;
        if n == 0 {
            return;
        }
        let last = self.geometry.count(piece.size).saturating_sub(1);
        let mut i = index + 1;
        let end = (index + n).min(last);
        while i <= end {
            let key = WindowKey::new(piece.cid.clone(), i);
            let in_flight = self.lock_fills().get(&key).cloned();
            if let Some(f) = in_flight {
                f.add_owner(Arc::downgrade(owner));
                i += 1;
                continue;
            }
            if self.is_cached(&key) {
                i += 1;
                continue;
            }
            let Ok(permit) = self.prefetch_slots.clone().try_acquire_owned() else {
                metrics::PREFETCH
                    .with_label_values(&["skipped"])
                    .inc_by(end - i + 1);
                return;
            };
            let run = self.plan_run(piece, i, end, self.settings.run_windows, false, true, false);
            if run.is_empty() {
                i += 1;
                continue;
            }
            i += run.len() as u64;
            {
                let mut unread = self
                    .prefetched_unread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if unread.len() > 100_000 {
                    unread.clear();
                }
                for f in &run {
                    f.add_owner(Arc::downgrade(owner));
                    unread.insert(f.key.clone());
                }
            }
            metrics::PREFETCH
                .with_label_values(&["issued"])
                .inc_by(run.len() as u64);
            self.start_run(piece, run, Some(permit), false);
        }
    }

    fn note_read(&self, key: &WindowKey) {
        let mut unread = self
            .prefetched_unread
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if unread.remove(key) {
            metrics::PREFETCH.with_label_values(&["used"]).inc();
        }
    }

    /// Downloads `fills` (consecutive windows) with as few upstream requests
    /// as the upstream allows.
    async fn run_fill(self: &Arc<Self>, piece: &Piece, fills: &[Arc<Fill>], local_only: bool) {
        let g = self.geometry;
        let mut cur = 0usize;
        let mut failures = 0u32;
        loop {
            if cur == fills.len() {
                return;
            }
            if !fills[cur..].iter().any(|f| f.is_wanted()) {
                self.abandon(&fills[cur..], CacheError::Cancelled);
                return;
            }
            let (Some(first), Some(last)) = (
                g.span(fills[cur].key.index, piece.size),
                g.span(fills[fills.len() - 1].key.index, piece.size),
            ) else {
                self.abandon(&fills[cur..], CacheError::Cancelled);
                return;
            };
            let start = first.start + fills[cur].received();
            let range = ByteRange::new(start, last.end);
            let result = self.open_source(piece, range, local_only).await;
            let (mut body, from_zero) = match result {
                Ok(b) => {
                    let from_peer = b.0.kind() == crate::upstream::UpstreamKind::Peer;
                    for f in &fills[cur..] {
                        f.set_from_peer(from_peer);
                    }
                    b
                }
                Err(e) => {
                    if e.is_transient() && failures < self.settings.retries {
                        failures += 1;
                        backoff(failures).await;
                        continue;
                    }
                    self.abandon(&fills[cur..], CacheError::Upstream(e));
                    return;
                }
            };
            // A whole-piece body used from byte 0: cache the windows before
            // the run as they pass, and drop what this run already has.
            let mut offset = if from_zero { 0 } else { start };
            let mut prefix = BytesMut::new();
            loop {
                match body.next_chunk().await {
                    Ok(Some(mut chunk)) => {
                        if offset < start {
                            let skip = usize::try_from((start - offset).min(chunk.len() as u64))
                                .unwrap_or(0);
                            let head = chunk.split_to(skip);
                            let check = fills[0].check.as_ref();
                            self.cache_prefix(
                                piece,
                                check,
                                offset,
                                &head,
                                first.start,
                                &mut prefix,
                            );
                            offset += skip as u64;
                            if chunk.is_empty() {
                                continue;
                            }
                        }
                        offset += chunk.len() as u64;
                        while !chunk.is_empty() {
                            let f = &fills[cur];
                            let need = usize::try_from(f.len - f.received()).unwrap_or(usize::MAX);
                            f.push(chunk.split_to(need.min(chunk.len())));
                            if f.received() == f.len {
                                self.finish_window(f).await;
                                cur += 1;
                                if cur == fills.len() {
                                    return;
                                }
                                if !fills[cur..].iter().any(|f| f.is_wanted()) {
                                    self.abandon(&fills[cur..], CacheError::Cancelled);
                                    return;
                                }
                            }
                        }
                    }
                    Ok(None) => {
                        // The body ended exactly where asked; anything left is short.
                        if cur < fills.len() {
                            failures += 1;
                            if failures > self.settings.retries {
                                let e = UpstreamError::ShortBody {
                                    expected: range.len(),
                                    got: offset - start,
                                };
                                self.abandon(&fills[cur..], CacheError::Upstream(e));
                                return;
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if !e.is_transient() || failures > self.settings.retries {
                            self.abandon(&fills[cur..], CacheError::Upstream(e));
                            return;
                        }
                        log::info!("retrying {} from byte {} after: {e}", piece.cid, offset);
                        backoff(failures).await;
                        break;
                    }
                }
            }
        }
    }

    /// Caches whole windows that lie before `run_start`, from a whole-piece
    /// body read from byte 0, once they pass `check` (the run's). `prefix`
    /// accumulates the current window.
    fn cache_prefix(
        self: &Arc<Self>,
        piece: &Piece,
        check: Option<&PieceCheck>,
        offset: u64,
        data: &[u8],
        run_start: u64,
        prefix: &mut BytesMut,
    ) {
        let g = self.geometry;
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() && pos < run_start {
            let idx = g.index_of(pos);
            let Some(span) = g.span(idx, piece.size) else {
                return;
            };
            let take = usize::try_from((span.end + 1 - pos).min(rest.len() as u64)).unwrap_or(0);
            prefix.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            pos += take as u64;
            if pos == span.end + 1 {
                let key = WindowKey::new(piece.cid.clone(), idx);
                let bytes = std::mem::take(prefix).freeze();
                if bytes.len() as u64 == span.len() && !self.is_cached(&key) {
                    // Checked as the run's windows are (one decision per
                    // run), inline: at most max_skip of windows, once.
                    let checked = check.map(|c| {
                        let verdict = c.check(idx, &bytes, self.settings.window_padded);
                        count_check(&key, &verdict);
                        verdict.is_ok()
                    });
                    if checked != Some(false) {
                        self.store(key, bytes, None, || {});
                    }
                }
            }
        }
    }

    /// Opens `range` from its owner in cluster mode (unless `local_only`),
    /// else from the best upstream. An owner that fails is marked and the
    /// next member in hash order is asked, finally Beam: a peer's death
    /// never reaches the client.
    async fn open_source(
        &self,
        piece: &Piece,
        range: ByteRange,
        local_only: bool,
    ) -> Result<(UpstreamBody, bool), UpstreamError> {
        if let Some(cluster) = self.cluster.as_ref().filter(|_| !local_only) {
            let index = self.geometry.index_of(range.start);
            let mut failed_before = false;
            while let Route::Peer(peer) = cluster.route(&piece.cid, index) {
                if failed_before {
                    metrics::PEER_FALLBACKS
                        .with_label_values(&["next_peer"])
                        .inc();
                }
                match cluster.fetch(&peer, &piece.cid, range, piece.size).await {
                    Ok(body) => return Ok((body, false)),
                    // The piece itself is refused: Beam would say the same.
                    Err(
                        e @ (UpstreamError::NotFound
                        | UpstreamError::PaymentRequired
                        | UpstreamError::Forbidden),
                    ) => return Err(e),
                    Err(e) => {
                        log::warn!("peer {} failed for {}: {e}", peer.name, piece.cid);
                        cluster.peer_failed(&peer);
                        failed_before = true;
                    }
                }
            }
            if failed_before {
                metrics::PEER_FALLBACKS.with_label_values(&["beam"]).inc();
            }
        }
        self.open_upstream(piece, range).await
    }

    /// Opens `range` from the best upstream. Returns the body and whether it
    /// starts at byte 0 (a whole-piece answer used as is).
    async fn open_upstream(
        &self,
        piece: &Piece,
        range: ByteRange,
    ) -> Result<(UpstreamBody, bool), UpstreamError> {
        let beam = self
            .upstream
            .fetch_from(Origin::Beam, &piece.cid, range, Some(piece.size))
            .await;
        match beam {
            Ok(body) if !body.whole_piece() => Ok((body, false)),
            Ok(mut body) if range.start <= self.settings.max_skip => {
                body.rewind_to_zero();
                Ok((body, true))
            }
            Ok(body) => {
                // A deep range answered with the whole piece: never read up to it.
                drop(body);
                if let Some(b) = self.try_providers(piece, range, "full_body").await {
                    return Ok((b, false));
                }
                metrics::FALLBACKS
                    .with_label_values(&["full_body", "beam_retry"])
                    .inc();
                tokio::time::sleep(self.settings.beam_retry_delay).await;
                match self.upstream.fetch_from(Origin::Beam, &piece.cid, range, Some(piece.size)).await {
                    Ok(b) if !b.whole_piece() => Ok((b, false)),
                    Ok(_) => Err(UpstreamError::BadResponse(format!(
                        "Beam answered a range starting at byte {} with the whole piece and no storage provider \
                         could serve it (set upstream.providers)",
                        range.start
                    ))),
                    Err(e) => Err(e),
                }
            }
            Err(e) => match self.try_providers(piece, range, "error").await {
                Some(b) => Ok((b, false)),
                None => Err(e),
            },
        }
    }

    async fn try_providers(
        &self,
        piece: &Piece,
        range: ByteRange,
        reason: &str,
    ) -> Option<UpstreamBody> {
        for p in &self.settings.providers {
            metrics::FALLBACKS
                .with_label_values(&[reason, "provider"])
                .inc();
            match self
                .upstream
                .fetch_from(Origin::Provider(p), &piece.cid, range, Some(piece.size))
                .await
            {
                Ok(b) if !b.whole_piece() || range.start == 0 => return Some(b),
                Ok(_) => log::warn!("provider {p} ignored Range for {}", piece.cid),
                Err(e) => log::warn!("provider {p} failed for {}: {e}", piece.cid),
            }
        }
        None
    }
}

/// Fails a fill whose completion task ended without finishing it (a panic):
/// its readers get an error instead of waiting for ever.
struct Unfinished {
    inner: Arc<Inner>,
    fill: Arc<Fill>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.fill.is_done() {
            self.inner
                .abandon(std::slice::from_ref(&self.fill), CacheError::Cancelled);
        }
    }
}

/// Counts a window check, and says which piece failed.
fn count_check(key: &WindowKey, verdict: &Result<(), verify::Mismatch>) {
    let result = match verdict {
        Ok(()) => "ok",
        Err(e) => {
            log::warn!("{}: {e}; not cached, the transfer is cut", key.cid);
            "mismatch"
        }
    };
    metrics::WINDOW_CHECKS.with_label_values(&[result]).inc();
}

/// Where the bytes a fill reader yields come from.
fn fill_source(reader: &FillReader) -> Source {
    if reader.from_peer() {
        Source::Peer
    } else {
        Source::Upstream
    }
}

fn fill_kind(f: &Fill) -> &'static str {
    if f.prefetch {
        "prefetch"
    } else {
        "demand"
    }
}

async fn backoff(attempt: u32) {
    let ms = 100u64 << (2 * attempt.saturating_sub(1)).min(8);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

enum Current {
    Ready(Bytes, Source),
    Filling {
        reader: FillReader,
        pos: u64,
        slice: WindowSlice,
    },
    /// The last byte of a slice read from a checked fill, handed out once
    /// the window passed its check.
    Tail {
        reader: FillReader,
        byte: Bytes,
        slice: WindowSlice,
    },
}

/// Reads one byte range of a piece, window by window.
pub struct RangeReader {
    inner: Arc<Inner>,
    piece: Piece,
    slices: VecDeque<WindowSlice>,
    current: Option<Current>,
    /// Liveness of this reader: read-ahead fills stay wanted while it lives.
    token: Arc<()>,
    interests: HashMap<u64, Interest>,
    completed: bool,
    restarts: u32,
    /// Serving another replica: windows come from this replica's tiers or
    /// Beam, never a peer, and no read-ahead starts.
    local_only: bool,
}

impl RangeReader {
    /// The next chunk of the range and where it came from; `Ok(None)` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<(Bytes, Source)>, CacheError> {
        loop {
            match self.current.take() {
                Some(Current::Ready(bytes, source)) => return Ok(Some((bytes, source))),
                Some(Current::Tail {
                    mut reader,
                    byte,
                    slice,
                }) => loop {
                    match reader.next().await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            self.interests.remove(&slice.index);
                            return Ok(Some((byte, fill_source(&reader))));
                        }
                        // Part of the slice is out already: it cannot be
                        // served again from the start.
                        Err(e) => return Err(e),
                    }
                },
                Some(Current::Filling {
                    mut reader,
                    pos,
                    slice,
                }) => match reader.next().await {
                    Ok(Some(chunk)) => {
                        let end = pos + chunk.len() as u64;
                        let done = end > slice.to;
                        let a = pos.max(slice.from);
                        let b = end.min(slice.to + 1);
                        let source = fill_source(&reader);
                        if done && reader.is_checked() {
                            // The window is checked: keep the slice's last
                            // byte until it passed, so no response completes
                            // with bytes that turn out wrong (the client sees
                            // a cut transfer instead). a < b: the slice ends
                            // inside this chunk.
                            let cut = usize::try_from(b - 1 - pos).unwrap_or(0);
                            let head = chunk.slice(usize::try_from(a - pos).unwrap_or(0)..cut);
                            let source = fill_source(&reader);
                            self.current = Some(Current::Tail {
                                reader,
                                byte: chunk.slice(cut..cut + 1),
                                slice,
                            });
                            if !head.is_empty() {
                                return Ok(Some((head, source)));
                            }
                            continue;
                        }
                        if !done {
                            self.current = Some(Current::Filling {
                                reader,
                                pos: end,
                                slice,
                            });
                        } else {
                            self.interests.remove(&slice.index);
                        }
                        if a < b {
                            let part = chunk.slice(
                                usize::try_from(a - pos).unwrap_or(0)
                                    ..usize::try_from(b - pos).unwrap_or(0),
                            );
                            return Ok(Some((part, source)));
                        }
                    }
                    // The window ended before the slice did (cannot happen for
                    // a correct fill), or the fill was cancelled: resolve the
                    // window again, unless part of the slice is out already
                    // (serving it again from its start would repeat bytes).
                    Ok(None) | Err(CacheError::Cancelled) if pos <= slice.from => {
                        self.retry_slice(slice)?;
                    }
                    Ok(None) => return Err(CacheError::Cancelled),
                    Err(e) => return Err(e),
                },
                None => {
                    let Some(slice) = self.slices.pop_front() else {
                        self.completed = true;
                        return Ok(None);
                    };
                    self.current = Some(self.open(slice).await);
                }
            }
        }
    }

    fn retry_slice(&mut self, slice: WindowSlice) -> Result<(), CacheError> {
        self.interests.remove(&slice.index);
        self.restarts += 1;
        if self.restarts > 8 {
            return Err(CacheError::Cancelled);
        }
        self.slices.push_front(slice);
        Ok(())
    }

    /// Opens one window slice from the fastest tier that has it, then lets
    /// a forward-moving reader (one that reads through the window) start
    /// read-ahead of the windows after it.
    async fn open(&mut self, slice: WindowSlice) -> Current {
        let current = self.locate(slice).await;
        if slice.reaches_end() && !self.local_only {
            self.inner
                .prefetch_after(&self.piece, slice.index, &self.token);
        }
        current
    }

    /// Starts a demand run from window `from` over the windows this reader
    /// still needs that are neither cached nor in flight.
    fn plan_ahead(&mut self, from: u64) {
        let Some(last_needed) = self.slices.back().map(|s| s.index) else {
            return;
        };
        if from > last_needed || self.interests.contains_key(&from) {
            return;
        }
        let inner = self.inner.clone();
        let run = inner.plan_run(
            &self.piece,
            from,
            last_needed,
            inner.settings.run_windows,
            false,
            false,
            self.local_only,
        );
        for f in &run {
            self.interests
                .entry(f.key.index)
                .or_insert_with(|| f.interest());
        }
        inner.start_run(&self.piece, run, None, self.local_only);
    }

    /// Reads `slice` from `fill`, which another reader or read-ahead started:
    /// a coalesced waiter. The rest of this reader's range gets a run of its own.
    fn join(&mut self, fill: Arc<Fill>, slice: WindowSlice) -> Current {
        metrics::COALESCED.inc();
        self.inner.note_read(&fill.key);
        self.interests
            .entry(slice.index)
            .or_insert_with(|| fill.interest());
        self.plan_ahead(slice.index + 1);
        Current::Filling {
            reader: fill.reader(),
            pos: 0,
            slice,
        }
    }

    async fn locate(&mut self, slice: WindowSlice) -> Current {
        let inner = self.inner.clone();
        let key = WindowKey::new(self.piece.cid.clone(), slice.index);
        let cut = |bytes: &Bytes| {
            bytes.slice(
                usize::try_from(slice.from).unwrap_or(0)
                    ..usize::try_from(slice.to + 1).unwrap_or(0),
            )
        };
        if let Some(bytes) = inner
            .memory
            .get(&key)
            .filter(|b| b.len() as u64 == slice.window_len)
        {
            metrics::WINDOW_LOOKUPS
                .with_label_values(&["memory", "hit"])
                .inc();
            inner.note_read(&key);
            return Current::Ready(cut(&bytes), Source::Memory);
        }
        metrics::WINDOW_LOOKUPS
            .with_label_values(&["memory", "miss"])
            .inc();
        // A window of this reader's own run: read it from the fill it holds,
        // even if the tiers have already evicted it.
        if let Some(fill) = self.interests.get(&slice.index).map(|i| i.fill().clone()) {
            return Current::Filling {
                reader: fill.reader(),
                pos: 0,
                slice,
            };
        }
        let joined = inner.lock_fills().get(&key).cloned();
        if let Some(fill) = joined {
            return self.join(fill, slice);
        }
        if let Some(d) = inner.disk.clone().filter(|d| d.contains(&key)) {
            // A slice of the whole window reads it all and promotes it to
            // memory; a part reads only the blocks it covers and is not
            // promoted (random ranges would otherwise read twice the bytes
            // and churn a memory tier too small for them).
            let k = key.clone();
            let len = slice.window_len;
            let whole = slice.from == 0 && slice.reaches_end();
            let permit = inner.disk_reads.clone().acquire_owned().await.ok();
            let got = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                if whole {
                    d.get(&k, len)
                } else {
                    d.get_range(&k, len, slice.from..slice.to + 1)
                }
            })
            .await
            .ok()
            .flatten();
            if let Some(bytes) = got {
                metrics::WINDOW_LOOKUPS
                    .with_label_values(&["disk", "hit"])
                    .inc();
                inner.note_read(&key);
                if !whole {
                    return Current::Ready(bytes, Source::Disk);
                }
                let evicted = inner.memory.put(key, bytes.clone());
                metrics::EVICTIONS
                    .with_label_values(&["memory"])
                    .inc_by(evicted.len() as u64);
                inner.publish_sizes();
                return Current::Ready(cut(&bytes), Source::Disk);
            }
        }
        if inner.disk.is_some() {
            metrics::WINDOW_LOOKUPS
                .with_label_values(&["disk", "miss"])
                .inc();
        }
        // Start a run over this and the following windows this reader needs.
        let last_needed = self.slices.back().map_or(slice.index, |s| s.index);
        let run = inner.plan_run(
            &self.piece,
            slice.index,
            last_needed,
            inner.settings.run_windows,
            true,
            false,
            self.local_only,
        );
        for f in &run {
            self.interests
                .entry(f.key.index)
                .or_insert_with(|| f.interest());
        }
        let fill = match run.first() {
            Some(f) => f.clone(),
            None => match inner.lock_fills().get(&key).cloned() {
                // Someone registered it between our look and the plan: join theirs.
                Some(f) => return self.join(f, slice),
                None => {
                    // Registered and finished between our look and the plan:
                    // look again.
                    let f = Fill::new(key.clone(), slice.window_len, false);
                    f.fail(CacheError::Cancelled);
                    f
                }
            },
        };
        let reader = fill.reader();
        let next = run.last().map(|f| f.key.index + 1);
        inner.start_run(&self.piece, run, None, self.local_only);
        // Cluster mode: windows after this run belong to other owners; ask
        // them at once, so that owners work concurrently while the reader
        // streams in order.
        if let Some(next) = next.filter(|_| inner.cluster.is_some() && !self.local_only) {
            self.plan_ahead(next);
        }
        Current::Filling {
            reader,
            pos: 0,
            slice,
        }
    }
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        // A reader that read its whole range keeps its read-ahead wanted a
        // little longer: players fetch consecutive ranges. One that was cut
        // off releases it at once.
        if self.completed && !self.inner.settings.prefetch_linger.is_zero() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                let token = self.token.clone();
                let linger = self.inner.settings.prefetch_linger;
                h.spawn(async move {
                    tokio::time::sleep(linger).await;
                    drop(token);
                });
            }
        }
    }
}
