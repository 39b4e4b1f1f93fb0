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
//! the one warm-up of that piece (`warmup`): it runs to completion so Beam's
//! CDN fills, its windows fill this cache as they stream past, readers near
//! it join it, and deep ranges go to the storage providers meanwhile.
//! Without a warm-up (off, too large, one failed) such a body is used only
//! when the range starts within `max_skip` of byte 0 (and the windows it
//! carries before the range are cached too); otherwise it is dropped at
//! once and the range is asked of a storage provider, then of Beam once
//! more. A reader moving forward triggers read-ahead of the next
//! `prefetch` windows, bounded process-wide.
//!
//! Nothing here knows about HTTP sessions: `edge` turns chunks into
//! responses. Pieces are immutable, so nothing expires; tiers evict by
//! their byte budgets.
//!
//! Files: this one holds the [`WindowCache`] API, the public types and the
//! tiers' composition; `reader` (where each slice comes from), `plan`
//! (registering runs of fills, read-ahead), `run` (one upstream request per
//! run, retries), `providers` (which upstream answers, provider fallback),
//! `beam_prefix` (windows before the range in a whole-piece 200), `warmup`
//! (Beam's one whole-body response per cold piece), `store`
//! (completing a fill: check, readers, tiers), `peers` (cluster mode: a
//! run opened from the window's owner; peer windows kept in memory only).

pub mod build;
pub mod disk;
pub mod fill;
pub mod inflight;
pub mod layers;
pub mod memory;
pub mod meta;
pub mod verify;
pub mod window;

mod beam_prefix;
mod critical;
mod peers;
mod plan;
mod providers;
mod reader;
mod run;
mod store;
mod warmup;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::cluster::Cluster;
use crate::http::range::ByteRange;
use crate::metrics;
use crate::upstream::Upstream;
use build::{Builds, CheckKind, LayerWait};
use disk::{DiskTier, PieceMetaRecord};
pub use fill::CacheError;
use fill::Fill;
use inflight::{Admission, InflightBudget};
use layers::{LayerSource, LayerStatus, Layers};
use memory::MemoryTier;
pub use reader::RangeReader;
use verify::PieceCheck;
use window::{Geometry, WindowKey};

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
    /// In-flight budget in bytes (`cache.inflight`): window bytes held
    /// outside the memory tier's budget.
    pub inflight_budget: u64,
    /// Most new requests waiting for in-flight room at once (`cache.inflight_queue`).
    pub inflight_queue: usize,
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
    /// Most bytes of a container index fetched beside a cold head (0: off).
    pub index_prefetch: u64,
    /// Fetch a cold piece's last window with its first (see
    /// [`WindowCache::prefetch_tail`]).
    pub tail_guess: bool,
    /// A reader at least this far into a cold window gets its part first
    /// (`cache.critical_first`; 0: off).
    pub critical_first: u64,
    /// Largest range start at which Beam's whole-piece 200 is used.
    pub max_skip: u64,
    /// Retries of a failed fetch.
    pub retries: u32,
    /// Storage-provider service URLs, tried in turn as fallbacks.
    pub providers: Vec<String>,
    /// Chain-resolved providers (tried after `providers`) and 429 backoffs.
    pub pool: crate::upstream::resolve::ProviderPool,
    /// How long a reader that read its whole range keeps its read-ahead alive
    /// (players read in consecutive ranges).
    pub prefetch_linger: Duration,
    /// Delay before asking Beam again after it sent a whole piece for a deep range.
    pub beam_retry_delay: Duration,
    /// Layer builds and the `verify.mode` policy.
    pub verify: build::VerifySettings,
    /// Warm Beam with its first whole-piece answer to a piece (`upstream.beam_warm`).
    pub beam_warm: bool,
    /// Largest padded piece size warmed that way (`upstream.beam_warm_max`).
    pub beam_warm_max: u64,
    /// A piece's state at Beam, while unknown, is taken to be warm: its
    /// first requests go at once (`upstream.beam_assume_warm`).
    pub beam_assume_warm: bool,
    /// Serve from the storage providers when Beam's egress quota is used up
    /// (`upstream.on_quota_exhausted: providers`).
    pub quota_fallback: bool,
    /// When a Beam request for windows is hedged (`upstream.hedge_after`).
    pub hedge_after: crate::config::HedgeAfter,
    /// Most hedges, in percent of the requests that could be hedged
    /// (`upstream.hedge_budget`).
    pub hedge_budget: f64,
    /// Per-payer budgets of upstream bytes: every window read from an
    /// upstream is reserved first (`None`: no budget).
    pub egress: Option<Arc<crate::access::budget::EgressBudget>>,
}

/// The bytes at the end of a piece that [`WindowCache::prefetch_tail`]
/// reads (it fetches the whole last window): a 30 s clip's `moov` is a few
/// KiB, and a longer index reaches back into the windows before, which the
/// head's own index prefetch fetches.
const TAIL_FIRST: u64 = 256 << 10;

/// A piece as the cache sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Canonical PieceCID string.
    pub cid: Arc<str>,
    /// Size in bytes.
    pub size: u64,
    /// The Beam base URL of the payer a request named (`/beam/<payer>/…`);
    /// `None`: the configured `upstream.payer`'s. Not part of the cache key:
    /// a fill started for one payer serves readers of every payer.
    pub beam_url: Option<Arc<str>>,
    /// Whose data sets the chain is asked about for the piece's holders
    /// when Beam fails (`upstream.resolve_providers`).
    pub chain_payer: crate::upstream::resolve::ChainPayer,
}

impl Piece {
    /// The Beam origin fills of this piece ask.
    pub fn beam_origin(&self) -> crate::upstream::Origin<'_> {
        match &self.beam_url {
            Some(url) => crate::upstream::Origin::BeamAt(url),
            None => crate::upstream::Origin::Beam,
        }
    }
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
    /// one-window piece), `"layer"` (against the piece's layer) or `null`
    /// (only by length; also while the size is unknown).
    pub checked_by: Option<&'static str>,
    /// The piece's layer when one is held: its source (`manifest`, `upload`,
    /// `built`, `peer`), windows, whether the windows cached before it were
    /// swept, whether it is on disk.
    pub layer: Option<LayerStatus>,
    /// A layer build or sweep in progress: windows hashed so far.
    pub layer_job: Option<build::BuildProgress>,
    /// How the bytes served now are checked: `cid`, `layer` or `unchecked`
    /// (the `X-Beam-Edge-Checked` header); `null` while the size is unknown.
    pub served_as: Option<&'static str>,
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
    /// Layers held: window roots in memory (32 bytes each) and layer files on disk.
    pub layers: LayerStats,
}

/// What the layer store holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerStats {
    /// Pieces with a layer in memory.
    pub pieces_in_memory: u64,
    /// Bytes of window roots in memory.
    pub memory_bytes: u64,
    /// Layer files on disk.
    pub files: u64,
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
    /// Room for window bytes outside the memory tier (see [`inflight`]).
    inflight: Arc<InflightBudget>,
    /// Disk writes in flight (see [`DISK_WRITES`]).
    disk_slots: Arc<Semaphore>,
    /// Disk reads in flight (see [`DISK_READS_PER_CORE`]).
    disk_reads: Arc<Semaphore>,
    /// Window checks in flight: one per core.
    check_slots: Arc<Semaphore>,
    /// Windows filled by read-ahead and not read yet (for used/wasted counts).
    prefetched_unread: Mutex<HashSet<WindowKey>>,
    /// Window roots of pieces (from manifests, uploads, builds, peers).
    layers: Layers,
    /// Layer builds and sweeps in flight, their budget, window holders.
    builds: Builds,
    /// Cluster mode: where windows this replica does not own come from.
    cluster: Option<Arc<Cluster>>,
    /// Beam warm-ups running, by (Beam base URL, PieceCID).
    warmups: warmup::Warmups,
    /// Beam's recent times to first byte and the hedges left.
    hedging: crate::upstream::hedge::Hedging,
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
        if let Some(d) = disk.as_ref().filter(|d| !d.is_sole_owner()) {
            // A graceful upgrade: the old process still drains into the same
            // directory; reconcile the index once it has exited.
            let d = d.clone();
            std::thread::Builder::new()
                .name("beam-edge-disk-handover".into())
                .spawn(move || {
                    if let Err(e) = d.wait_until_sole_owner() {
                        log::error!("disk tier: cannot take over {}: {e}", d.dir().display());
                    }
                })?;
        }
        let layers = match &settings.disk {
            Some((path, _)) => Layers::with_dir(settings.window_padded, &path.join("layers"))?,
            None => Layers::new(settings.window_padded),
        };
        let inner = Inner {
            builds: Builds::new(settings.verify.build_concurrency),
            geometry,
            memory: MemoryTier::new(settings.memory_budget, geometry.raw),
            disk,
            fills: Mutex::new(HashMap::new()),
            upstream,
            prefetch_slots: Arc::new(Semaphore::new(settings.prefetch_concurrency.max(1))),
            inflight: InflightBudget::new(settings.inflight_budget, settings.inflight_queue),
            disk_slots: Arc::new(Semaphore::new(DISK_WRITES)),
            disk_reads: Arc::new(Semaphore::new(DISK_READS_PER_CORE * cores)),
            check_slots: Arc::new(Semaphore::new(cores)),
            hedging: crate::upstream::hedge::Hedging::new(
                settings.hedge_after,
                settings.hedge_budget,
            ),
            layers,
            settings,
            prefetched_unread: Mutex::new(HashSet::new()),
            cluster,
            warmups: warmup::Warmups::default(),
        };
        let cache = WindowCache {
            inner: Arc::new(inner),
        };
        cache.inner.publish_sizes();
        Ok(cache)
    }

    /// Takes the window roots of `cid` from `source` (for windows of
    /// `layer_window` padded bytes), once they hash to the CID, and persists
    /// them: from then on every window of the piece fetched is checked, and
    /// windows cached before are swept in the background. Blocking (hashing
    /// and a small file write): call it off the async threads.
    pub fn add_layer(
        &self,
        cid: &crate::piece::PieceCid,
        layer_window: u64,
        nodes: &[crate::piece::commp::Node],
        source: LayerSource,
    ) -> Result<(), layers::LayerError> {
        let added = self.inner.layers.add(cid, layer_window, nodes, source)?;
        if let Some(size) = cid.payload_size() {
            let piece = Piece {
                cid: Arc::from(cid.to_string()),
                size,
                beam_url: None,
                chain_payer: Default::default(),
            };
            self.inner.layer_arrived(&piece, added);
        }
        Ok(())
    }

    /// The layer held for `cid`, as another replica asks for it: the window
    /// size (padded bytes) and the roots, 32 bytes each. May read the
    /// layer's file (small): call it off the async threads.
    pub fn layer_of(&self, cid: &str) -> Option<(u64, Bytes)> {
        let (nodes, _) = self.inner.layers.nodes_of(cid)?;
        let bytes: Vec<u8> = nodes.iter().flatten().copied().collect();
        Some((self.inner.settings.window_padded, Bytes::from(bytes)))
    }

    /// A piece's size from the storage providers' `HEAD` (static ones,
    /// then the holders the chain names for `payer`): for a v1 CID while
    /// Beam is cold.
    pub async fn provider_size(
        &self,
        payer: &crate::upstream::resolve::ChainPayer,
        cid: &str,
    ) -> Option<u64> {
        let s = &self.inner.settings;
        let usable = s.pool.usable(&s.providers);
        if let Some(size) = self.inner.upstream.provider_size(&usable, cid).await {
            return Some(size);
        }
        let resolved = s.pool.resolved(payer, cid, &usable).await;
        self.inner.upstream.provider_size(&resolved, cid).await
    }

    /// True when fetched windows are checked (`cache.check_windows` on and
    /// `verify.mode` not `off`).
    pub fn checks_enabled(&self) -> bool {
        self.inner.checking()
    }

    /// True when a second Beam request for `piece` may go beside one in
    /// flight: Beam answered it with ranges, or its state is unknown and
    /// `upstream.beam_assume_warm` takes it as warm.
    pub fn beam_taken_as_warm(&self, piece: &Piece) -> bool {
        self.inner.beam_taken_as_warm(piece)
    }

    /// True while more than half the in-flight budget is reserved.
    pub fn inflight_under_pressure(&self) -> bool {
        self.inner.inflight.under_pressure()
    }

    /// `verify.mode`.
    pub fn verify_mode(&self) -> crate::config::VerifyMode {
        self.inner.settings.verify.mode
    }

    /// How the bytes of `piece` served now are checked.
    pub fn check_kind(&self, piece: &Piece) -> CheckKind {
        self.inner.check_kind(piece)
    }

    /// Starts what `piece` needs to be checked (a layer build or a sweep),
    /// in the background; under `background` every read calls this.
    pub fn want_layer(&self, piece: &Piece) {
        let _ = self.inner.want_layer(piece);
    }

    /// Waits until every byte of `piece` can be checked (its layer held and
    /// its cached windows swept), starting a build when needed, for at most
    /// `verify.strict_wait`: what a `strict` read does before its header.
    /// `Err` says why it cannot be checked.
    pub async fn until_checkable(&self, piece: &Piece) -> Result<(), String> {
        let wait = self.inner.settings.verify.strict_wait;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut rx = match self.inner.want_layer(piece) {
                LayerWait::Ready => return Ok(()),
                LayerWait::Unavailable(why) => return Err(why),
                LayerWait::Pending(rx) => rx,
            };
            let outcome = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
            match outcome {
                Err(_) => {
                    return Err(format!(
                        "its layer is not built yet (waited verify.strict_wait = {})",
                        humantime::format_duration(wait)
                    ))
                }
                Ok(Err(_)) => continue,
                Ok(Ok(o)) => {
                    if let Some(build::LayerOutcome::Failed(why)) = o.as_ref() {
                        return Err(why.clone());
                    }
                }
            }
        }
    }

    /// Window geometry.
    pub fn geometry(&self) -> Geometry {
        self.inner.geometry
    }

    /// A reader of `range` of `piece`.
    pub fn reader(&self, piece: &Piece, range: ByteRange) -> RangeReader {
        let strict = self.inner.settings.verify.mode == crate::config::VerifyMode::Strict
            && self.inner.checking();
        RangeReader::new(self.inner.clone(), piece, range, strict)
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
            layers: {
                let (nodes, files) = self.inner.layers.footprint();
                LayerStats {
                    pieces_in_memory: self.inner.layers.len() as u64,
                    memory_bytes: nodes as u64 * 32,
                    files: files as u64,
                }
            },
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
                beam_url: None,
                chain_payer: Default::default(),
            };
            self.inner.check_for(&piece).map(|c| match c {
                PieceCheck::Whole(_) => "cid",
                PieceCheck::Layer(_) => "layer",
            })
        });
        let served_as = size.map(|size| {
            let piece = Piece {
                cid: cid_arc.clone(),
                size,
                beam_url: None,
                chain_payer: Default::default(),
            };
            self.inner.check_kind(&piece).label()
        });
        PieceStatus {
            layer: self.inner.layers.status(cid),
            layer_job: self.inner.builds.progress(cid),
            served_as,
            checked_by,
            cid: cid.to_string(),
            size,
            windows: count,
            memory,
            disk,
            filling,
        }
    }

    /// Pieces the disk tier holds windows of, and pieces being filled (the
    /// memory tier keeps no per-piece index).
    pub fn known_pieces(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .inner
            .disk
            .as_ref()
            .map(|d| d.pieces())
            .unwrap_or_default();
        out.extend(self.inner.lock_fills().keys().map(|k| k.cid.to_string()));
        out
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
    /// runs to the end even though no client waits. An operator asked for
    /// it: it waits for in-flight room rather than being refused.
    pub fn warm(&self, piece: &Piece, range: ByteRange) {
        self.warm_as(piece, range, Admission::Continue);
    }

    /// [`WindowCache::warm`] whose runs ask for in-flight room as `how`.
    fn warm_as(&self, piece: &Piece, range: ByteRange, how: Admission) {
        let mut reader = self.reader(piece, range);
        reader.admission = Some(how);
        tokio::spawn(async move {
            loop {
                match reader.next_chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    // A guess refused room: read-ahead is the first to go.
                    Err(CacheError::Cancelled) if how == Admission::ReadAhead => {
                        log::debug!(
                            "guessed read of {} skipped: no in-flight room",
                            reader.piece.cid
                        );
                        break;
                    }
                    Err(e) => {
                        log::warn!("warming {} failed: {e}", reader.piece.cid);
                        break;
                    }
                }
            }
        });
    }

    /// True (and counted as read-ahead skipped) when the in-flight budget is
    /// past half full: guesses are not started then.
    fn skip_guess(&self) -> bool {
        if !self.inner.inflight.under_pressure() {
            return false;
        }
        metrics::INFLIGHT_EVENTS
            .with_label_values(&["readahead_skipped"])
            .inc();
        true
    }

    /// The last window of a cold piece, fetched beside its first on a
    /// player's first read (`cache.tail_guess`): ffmpeg's default MP4 and
    /// WebM keep their index there, and a browser asks for it right after
    /// the head. As read-ahead it leaves the piece's first Beam request to
    /// the head ([`Inner::after_first_contact`]). A piece of one window, or
    /// with the guess off, costs nothing.
    pub fn prefetch_tail(&self, piece: &Piece) {
        let s = &self.inner.settings;
        let last = self.inner.geometry.count(piece.size).saturating_sub(1);
        if !s.tail_guess || last == 0 || self.skip_guess() {
            return;
        }
        if let Some(span) = self.inner.geometry.span(last, piece.size) {
            // The whole window is fetched; the guess reads its last bytes,
            // where a small index sits, so that with `cache.critical_first`
            // they come first.
            let len = span.len().min(s.index_prefetch).min(TAIL_FIRST);
            metrics::INDEX_PREFETCH.with_label_values(&["tail"]).inc();
            self.warm_as(
                piece,
                ByteRange::new(span.end + 1 - len, span.end),
                Admission::ReadAhead,
            );
        }
    }

    /// A container index the head of `piece` points at (see
    /// [`crate::media::index_of`]), fetched in the background up to
    /// `cache.index_prefetch` bytes, less what [`WindowCache::prefetch_tail`]
    /// already asked for.
    pub fn prefetch_index(&self, piece: &Piece, index: ByteRange) {
        let s = &self.inner.settings;
        if s.index_prefetch == 0 || index.end >= piece.size {
            return;
        }
        let mut end = index
            .end
            .min(index.start.saturating_add(s.index_prefetch - 1));
        let last = self.inner.geometry.count(piece.size).saturating_sub(1);
        if s.tail_guess && last > 0 {
            let tail_start = last * self.inner.geometry.raw;
            if index.start >= tail_start {
                return;
            }
            end = end.min(tail_start - 1);
        }
        if self.skip_guess() {
            return;
        }
        metrics::INDEX_PREFETCH.with_label_values(&["index"]).inc();
        self.warm_as(
            piece,
            ByteRange::new(index.start, end),
            Admission::ReadAhead,
        );
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

    /// The fill of `key` in flight, unless it gave its bytes back. (The map's
    /// lock is let go before this returns.)
    fn in_flight(&self, key: &WindowKey) -> Option<Arc<Fill>> {
        self.lock_fills()
            .get(key)
            .filter(|f| !f.is_released())
            .cloned()
    }

    fn check_for(&self, piece: &Piece) -> Option<PieceCheck> {
        if !self.checking() {
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
}

/// Test bytes and their layers, shared by the cache's unit tests.
#[cfg(test)]
pub(crate) mod test_bytes {
    use crate::piece::commp::{CommP, Node};
    use crate::piece::PieceCid;

    /// Bytes with no period (so no two windows are alike).
    pub fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The v2 PieceCID of `bytes` and its layer at `window` padded bytes.
    pub fn cid_and_layer(bytes: &[u8], window: u64) -> (PieceCid, Vec<Node>) {
        let mut h = CommP::with_layer(window).unwrap();
        h.update(bytes);
        h.finish_with_layer().unwrap()
    }
}
