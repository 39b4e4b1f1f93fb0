//! Getting every piece a layer, and every cached window checked against it.
//!
//! - A *build* reads a piece whole and hashes each window: first through the
//!   cache (cached windows cost no upstream byte, missing ones are filled and
//!   cached as any read would), and if those windows do not hash to the
//!   PieceCID, straight from each holder in turn (Beam, then the storage
//!   providers), until one holder's bytes do. A holder whose bytes do not is
//!   backed off and logged. Builds run at most `verify.build_concurrency` at
//!   once, only for pieces up to `verify.build_max` (padded), and fetch at
//!   most `verify.build_budget_per_hour` upstream bytes an hour.
//! - A *sweep* runs when a layer arrives for a piece that already has cached
//!   windows that were not hashed against it: each is hashed, a wrong one is
//!   purged from both tiers, the holder that sent it is backed off and
//!   logged, and the window is fetched again (from another holder).
//!
//! Both are single-flight per piece; a strict read waits on them.
//!
//! What it is not: the layer store (`layers`) or the checks made as windows
//! are filled (`store`, `verify`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Semaphore};

use super::layers::{Added, LayerSource};
use super::reader::RangeReader;
use super::window::WindowKey;
use super::{Inner, Piece};
use crate::config::VerifyMode;
use crate::http::range::ByteRange;
use crate::metrics;
use crate::piece::commp::{self, Node};
use crate::piece::PieceCid;
use crate::upstream::Origin;

/// How `verify.*` asks the cache to behave.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// `verify.mode`.
    pub mode: VerifyMode,
    /// `verify.build_max`: largest padded piece size built.
    pub build_max: u64,
    /// `verify.build_concurrency`.
    pub build_concurrency: usize,
    /// `verify.build_budget_per_hour`.
    pub build_budget_per_hour: u64,
    /// `verify.strict_wait`.
    pub strict_wait: Duration,
    /// `verify.build_delay` (under `background` only).
    pub build_delay: Duration,
    /// How long a holder that sent wrong bytes is skipped.
    pub holder_backoff: Duration,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            mode: VerifyMode::Background,
            build_max: 1 << 30,
            build_concurrency: 2,
            build_budget_per_hour: 100 << 30,
            strict_wait: Duration::from_secs(300),
            build_delay: Duration::from_secs(30),
            holder_backoff: Duration::from_secs(600),
        }
    }
}

/// How the bytes of a response are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// A piece of one window: hashed whole against the CID.
    Cid,
    /// Every window checked against the piece's layer.
    Layer,
    /// Not (yet) checked beyond status and length.
    Unchecked,
}

impl CheckKind {
    /// Header value and metric label.
    pub fn label(self) -> &'static str {
        match self {
            CheckKind::Cid => "cid",
            CheckKind::Layer => "layer",
            CheckKind::Unchecked => "unchecked",
        }
    }

    /// The weaker of two (a resource of several pieces is as checked as its
    /// least checked piece).
    pub fn min(self, other: CheckKind) -> CheckKind {
        match (self, other) {
            (CheckKind::Unchecked, _) | (_, CheckKind::Unchecked) => CheckKind::Unchecked,
            (CheckKind::Layer, _) | (_, CheckKind::Layer) => CheckKind::Layer,
            _ => CheckKind::Cid,
        }
    }
}

/// How a build or sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerOutcome {
    /// The layer is held and every cached window of the piece matches it.
    Ready,
    /// It could not be had; why.
    Failed(String),
}

/// What a reader can expect of a piece's layer.
pub enum LayerWait {
    /// Every byte of the piece can be checked now.
    Ready,
    /// A build or sweep is running.
    Pending(watch::Receiver<Option<LayerOutcome>>),
    /// No layer will be had (why).
    Unavailable(String),
}

/// Builds and sweeps in flight, the hourly budget, and who sent which window.
pub(super) struct Builds {
    running: Mutex<HashMap<Arc<str>, Running>>,
    slots: Arc<Semaphore>,
    budget: Mutex<(Instant, u64)>,
    /// Holder of each window stored unchecked (bounded; cleared when full).
    holders: Mutex<HashMap<WindowKey, Arc<str>>>,
    /// Pieces whose Beam copy sent wrong bytes, until when.
    beam_distrusted: Mutex<HashMap<Arc<str>, Instant>>,
}

struct Running {
    done: watch::Receiver<Option<LayerOutcome>>,
    hashed: Arc<AtomicU64>,
    /// A build only: a window it had already hashed was stored again,
    /// unchecked (evicted and fetched anew meanwhile), so the build's end
    /// sweeps the cached windows rather than vouching for them.
    restored: Arc<std::sync::atomic::AtomicBool>,
}

/// Progress of a build, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildProgress {
    /// Windows hashed so far.
    pub windows_hashed: u64,
}

const MAX_HOLDERS: usize = 200_000;
const BEAM: &str = "beam";

impl Builds {
    pub(super) fn new(concurrency: usize) -> Builds {
        Builds {
            running: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            budget: Mutex::new((Instant::now(), 0)),
            holders: Mutex::new(HashMap::new()),
            beam_distrusted: Mutex::new(HashMap::new()),
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records who sent windows stored without a check.
    pub(super) fn note_holder(&self, keys: impl Iterator<Item = WindowKey>, holder: &Arc<str>) {
        let mut map = self.holders.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if map.len() >= MAX_HOLDERS {
                map.clear();
            }
            map.insert(k, holder.clone());
        }
    }

    fn take_holder(&self, key: &WindowKey) -> Option<Arc<str>> {
        self.holders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
    }

    /// True when Beam sent wrong bytes of `cid` lately: ask providers first.
    pub(super) fn beam_distrusted(&self, cid: &str) -> bool {
        let mut map = self
            .beam_distrusted
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, until| *until > now);
        map.contains_key(cid)
    }

    /// Spends `n` bytes of this hour's budget; `false` when it would overrun.
    fn spend(&self, n: u64, per_hour: u64) -> bool {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if b.0.elapsed() >= Duration::from_secs(3600) {
            *b = (Instant::now(), 0);
        }
        if b.1 + n > per_hour {
            return false;
        }
        b.1 += n;
        true
    }

    /// Window `key` was stored without a check: if a build of its piece
    /// already hashed that index (windows are hashed in order), the copy
    /// stored now is not the one hashed.
    pub(super) fn stored_unchecked(&self, key: &WindowKey) {
        if let Some(r) = self.lock_running().get(&key.cid) {
            if key.index < r.hashed.load(Ordering::Relaxed) {
                r.restored.store(true, Ordering::Relaxed);
            }
        }
    }

    /// True when [`Builds::stored_unchecked`] saw such a window for `cid`.
    fn restored_during_build(&self, cid: &str) -> bool {
        self.lock_running()
            .get(cid)
            .is_some_and(|r| r.restored.load(Ordering::Relaxed))
    }

    pub(super) fn progress(&self, cid: &str) -> Option<BuildProgress> {
        self.lock_running().get(cid).map(|r| BuildProgress {
            windows_hashed: r.hashed.load(Ordering::Relaxed),
        })
    }
}

impl Inner {
    /// How the bytes of `piece` served now are checked.
    pub(super) fn check_kind(&self, piece: &Piece) -> CheckKind {
        if !self.checking() {
            return CheckKind::Unchecked;
        }
        let count = self.geometry.count(piece.size);
        if count <= 1 {
            return if piece.size >= 127 && PieceCid::parse(&piece.cid).is_ok() {
                CheckKind::Cid
            } else {
                CheckKind::Unchecked
            };
        }
        match self.layers.nodes_of(&piece.cid) {
            Some((nodes, true)) if nodes.len() as u64 == count => CheckKind::Layer,
            _ => CheckKind::Unchecked,
        }
    }

    /// True when windows are checked at all (`cache.check_windows` on and
    /// `verify.mode` not `off`).
    pub(super) fn checking(&self) -> bool {
        self.settings.check_windows && self.settings.verify.mode != VerifyMode::Off
    }

    /// Makes sure `piece` gets a layer and its cached windows are swept:
    /// starts a build or sweep when one is needed and allowed.
    pub(super) fn want_layer(self: &Arc<Self>, piece: &Piece) -> LayerWait {
        if !self.checking() {
            return LayerWait::Unavailable("checking is off (verify.mode: off)".into());
        }
        let count = self.geometry.count(piece.size);
        if count <= 1 {
            return LayerWait::Ready;
        }
        if let Some(r) = self.builds.lock_running().get(&piece.cid) {
            return LayerWait::Pending(r.done.clone());
        }
        let Ok(cid) = PieceCid::parse(&piece.cid) else {
            return LayerWait::Unavailable("not a PieceCID".into());
        };
        if cid.height().is_none() {
            return LayerWait::Unavailable(
                "a v1 PieceCID does not give the tree a layer hashes to: ask with the v2 CID"
                    .into(),
            );
        }
        match self.layers.nodes_of(&piece.cid) {
            Some((_, true)) => LayerWait::Ready,
            Some((nodes, false)) => self.start(piece, Job::Sweep(nodes)),
            None => {
                let padded = 1u64
                    << (self
                        .geometry
                        .count(piece.size)
                        .next_power_of_two()
                        .trailing_zeros()
                        + self.settings.window_padded.trailing_zeros());
                if padded > self.settings.verify.build_max {
                    return LayerWait::Unavailable(format!(
                        "the piece ({padded} padded bytes) is larger than verify.build_max ({}) \
                         and no manifest, upload or peer gave its layer",
                        self.settings.verify.build_max
                    ));
                }
                self.start(piece, Job::Build)
            }
        }
    }

    /// Starts the sweep of `piece`'s cached windows against a layer that
    /// just arrived.
    pub(super) fn layer_arrived(self: &Arc<Self>, piece: &Piece, added: Added) {
        if added != Added::New || !self.checking() {
            return;
        }
        if let Some((nodes, false)) = self.layers.nodes_of(&piece.cid) {
            let _ = self.start(piece, Job::Sweep(nodes));
        }
    }

    fn start(self: &Arc<Self>, piece: &Piece, job: Job) -> LayerWait {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return LayerWait::Unavailable("no runtime".into());
        };
        let (tx, rx) = watch::channel(None);
        let hashed = Arc::new(AtomicU64::new(0));
        let restored = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let mut running = self.builds.lock_running();
            if let Some(r) = running.get(&piece.cid) {
                return LayerWait::Pending(r.done.clone());
            }
            running.insert(
                piece.cid.clone(),
                Running {
                    done: rx.clone(),
                    hashed: hashed.clone(),
                    restored: restored.clone(),
                },
            );
        }
        let inner = self.clone();
        let piece = piece.clone();
        let job_name = match &job {
            Job::Build => "build",
            Job::Sweep(_) => "sweep",
        };
        handle.spawn(async move {
            let mut job_name = job_name;
            let outcome = match job {
                Job::Build => {
                    // Another replica's layer, checked, costs no read at all,
                    // only a sweep of what is cached here. Asked again after
                    // the build delay: a peer may have built it meanwhile.
                    let delay = inner.settings.verify.build_delay;
                    let mut layer = inner.layer_from_peers(&piece).await;
                    if layer.is_none() && inner.settings.verify.mode == VerifyMode::Background {
                        tokio::time::sleep(delay).await;
                        if !delay.is_zero() {
                            layer = inner.layer_from_peers(&piece).await;
                        }
                    }
                    match layer {
                        Some(nodes) => {
                            job_name = "sweep";
                            inner.sweep(&piece, &nodes, &hashed).await
                        }
                        None => {
                            let permit = inner.builds.slots.clone().acquire_owned().await.ok();
                            let o = inner.build(&piece, &hashed).await;
                            drop(permit);
                            o
                        }
                    }
                }
                Job::Sweep(nodes) => inner.sweep(&piece, &nodes, &hashed).await,
            };
            let kind = match &outcome {
                LayerOutcome::Ready => "ok",
                LayerOutcome::Failed(why) => {
                    log::warn!("{}: no layer: {why}", piece.cid);
                    "failed"
                }
            };
            metrics::LAYER_JOBS
                .with_label_values(&[job_name, kind])
                .inc();
            inner.builds.lock_running().remove(&piece.cid);
            let _ = tx.send(Some(outcome));
        });
        LayerWait::Pending(rx)
    }

    /// Cluster mode: the layer of `piece` from another replica (up to three
    /// asked, in the piece's hash order), once it hashes to the PieceCID.
    /// A replica whose layer does not is skipped for `cluster.fail_for`.
    async fn layer_from_peers(self: &Arc<Self>, piece: &Piece) -> Option<Arc<[Node]>> {
        let cluster = self.cluster.as_ref()?;
        let cid = PieceCid::parse(&piece.cid).ok()?;
        for peer in cluster.layer_peers(&piece.cid, 3) {
            let (window, body) = match cluster.fetch_layer(&peer, &piece.cid).await {
                Ok(Some(layer)) => layer,
                Ok(None) => continue,
                Err(e) => {
                    log::info!("{}: asking {} for its layer: {e}", piece.cid, peer.name);
                    continue;
                }
            };
            let nodes: Vec<Node> = body
                .chunks_exact(32)
                .filter_map(|c| <Node>::try_from(c).ok())
                .collect();
            let (inner, cid) = (self.clone(), cid.clone());
            let added = tokio::task::spawn_blocking(move || {
                inner.layers.add(&cid, window, &nodes, LayerSource::Peer)
            })
            .await;
            match added {
                Ok(Ok(_)) => {
                    log::info!("{}: layer from {}, checked", piece.cid, peer.name);
                    metrics::LAYER_JOBS.with_label_values(&["peer", "ok"]).inc();
                    return self.layers.nodes_of(&piece.cid).map(|(n, _)| n);
                }
                Ok(Err(e)) => {
                    log::warn!(
                        "{}: {} sent a layer that is not the piece's ({e}): skipped for cluster.fail_for",
                        piece.cid,
                        peer.name
                    );
                    cluster.peer_failed(&peer);
                }
                Err(e) => log::warn!("{}: checking a peer's layer: {e}", piece.cid),
            }
        }
        metrics::LAYER_JOBS
            .with_label_values(&["peer", "failed"])
            .inc();
        None
    }

    /// Reads `piece` whole and hashes each window; see the module docs.
    async fn build(self: &Arc<Self>, piece: &Piece, hashed: &AtomicU64) -> LayerOutcome {
        match self.layer_through_cache(piece, hashed).await {
            Ok(nodes) if self.take_layer(piece, &nodes).is_some() => {
                if self.builds.restored_during_build(&piece.cid) {
                    // A window was fetched again after it was hashed: hash
                    // what is cached now against the layer.
                    let layer: Arc<[Node]> = nodes.into();
                    return self.sweep(piece, &layer, hashed).await;
                }
                // Every cached window was just hashed into the layer.
                self.layers.mark_swept(&piece.cid);
                return LayerOutcome::Ready;
            }
            Ok(_) => log::warn!(
                "{}: the cached and fetched windows do not hash to the PieceCID: \
                 reading it from each holder in turn",
                piece.cid
            ),
            Err(e) if e.contains("build_budget") => return LayerOutcome::Failed(e),
            Err(e) => log::warn!(
                "{}: reading it through the cache failed ({e}): reading it from each holder in turn",
                piece.cid
            ),
        }
        for holder in self.holders_of(piece).await {
            hashed.store(0, Ordering::Relaxed);
            match self.layer_from(piece, &holder, hashed).await {
                Ok(nodes) => {
                    if self.take_layer(piece, &nodes).is_some() {
                        let layer: Arc<[Node]> = nodes.into();
                        return self.sweep(piece, &layer, hashed).await;
                    }
                    self.back_off(
                        &piece.cid,
                        &holder,
                        "sent bytes that do not hash to the PieceCID",
                    );
                }
                Err(e) => log::warn!("{}: building the layer from {holder}: {e}", piece.cid),
            }
        }
        LayerOutcome::Failed("no holder sent bytes that hash to the PieceCID".into())
    }

    /// The window roots of `piece` as the cache reads it (cached windows,
    /// then fills of the missing ones).
    async fn layer_through_cache(
        self: &Arc<Self>,
        piece: &Piece,
        hashed: &AtomicU64,
    ) -> Result<Vec<Node>, String> {
        let count = self.geometry.count(piece.size);
        let per_hour = self.settings.verify.build_budget_per_hour;
        let mut nodes: Vec<Node> = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for i in 0..count {
            let key = WindowKey::new(piece.cid.clone(), i);
            let len = self.geometry.len_of(i, piece.size);
            if !self.is_cached(&key) && !self.builds.spend(len, per_hour) {
                return Err("verify.build_budget_per_hour is spent for this hour".into());
            }
            let span = self
                .geometry
                .span(i, piece.size)
                .ok_or("window out of range")?;
            let bytes = self
                .read_through_cache(piece, span)
                .await
                .map_err(|e| format!("reading window {i}: {e}"))?;
            nodes.push(self.hash_window(bytes).await.ok_or("hashing failed")?);
            hashed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(nodes)
    }

    /// Stores `nodes` as the layer of `piece` if they hash to its CID.
    fn take_layer(&self, piece: &Piece, nodes: &[Node]) -> Option<Added> {
        let cid = PieceCid::parse(&piece.cid).ok()?;
        self.layers
            .add(&cid, self.settings.window_padded, nodes, LayerSource::Built)
            .ok()
    }

    /// Every byte of `span` of `piece`, through the tiers and fills.
    async fn read_through_cache(
        self: &Arc<Self>,
        piece: &Piece,
        span: ByteRange,
    ) -> Result<Bytes, super::CacheError> {
        let mut reader = RangeReader::new(self.clone(), piece, span, false);
        let mut buf = BytesMut::with_capacity(usize::try_from(span.len()).unwrap_or(0));
        while let Some((c, _)) = reader.next_chunk().await? {
            buf.extend_from_slice(&c);
        }
        Ok(buf.freeze())
    }

    async fn hash_window(&self, bytes: Bytes) -> Option<Node> {
        let window = self.settings.window_padded;
        tokio::task::spawn_blocking(move || commp::window_root(&bytes, window).ok())
            .await
            .ok()
            .flatten()
    }

    /// Beam, then the providers that are not backing off.
    async fn holders_of(&self, piece: &Piece) -> Vec<String> {
        let mut out = vec![BEAM.to_string()];
        let pool = &self.settings.pool;
        out.extend(pool.usable(&self.settings.providers));
        let tried = out.clone();
        out.extend(pool.resolved(&piece.chain_payer, &piece.cid, &tried).await);
        out
    }

    /// The window roots of `piece` as `holder` sends it (one whole read).
    async fn layer_from(
        &self,
        piece: &Piece,
        holder: &str,
        hashed: &AtomicU64,
    ) -> Result<Vec<Node>, String> {
        let origin = if holder == BEAM {
            piece.beam_origin()
        } else {
            Origin::Provider(holder)
        };
        if !self
            .builds
            .spend(piece.size, self.settings.verify.build_budget_per_hour)
        {
            return Err("verify.build_budget_per_hour is spent for this hour".into());
        }
        let whole = ByteRange::new(0, piece.size - 1);
        let mut body = self
            .upstream
            .fetch_from(origin, &piece.cid, whole, Some(piece.size))
            .await
            .map_err(|e| e.to_string())?;
        let mut nodes = Vec::new();
        let mut window = BytesMut::new();
        let mut index = 0u64;
        loop {
            let chunk = body.next_chunk().await.map_err(|e| e.to_string())?;
            let done = chunk.is_none();
            if let Some(mut c) = chunk {
                while !c.is_empty() {
                    // Windows are whole but the last; a chunk may span two.
                    let want = self.geometry.len_of(index, piece.size);
                    let need = usize::try_from(want - window.len() as u64).unwrap_or(0);
                    let part = c.split_to(need.min(c.len()));
                    window.extend_from_slice(&part);
                    if window.len() as u64 == want {
                        let node = self
                            .hash_window(window.split().freeze())
                            .await
                            .ok_or("hashing failed")?;
                        nodes.push(node);
                        hashed.fetch_add(1, Ordering::Relaxed);
                        index += 1;
                    }
                }
            }
            if done {
                break;
            }
        }
        Ok(nodes)
    }

    /// Hashes each cached window of `piece` against `layer`; a wrong one is
    /// purged, its holder backed off, and it is fetched again.
    async fn sweep(
        self: &Arc<Self>,
        piece: &Piece,
        layer: &Arc<[Node]>,
        hashed: &AtomicU64,
    ) -> LayerOutcome {
        let count = self.geometry.count(piece.size);
        let mut wrong = Vec::new();
        for i in 0..count {
            let key = WindowKey::new(piece.cid.clone(), i);
            let len = self.geometry.len_of(i, piece.size);
            let mut copies = Vec::new();
            if let Some(b) = self.memory.get(&key) {
                copies.push(b);
            }
            if let Some(d) = self.disk.clone().filter(|d| d.contains(&key)) {
                let k = key.clone();
                if let Ok(Some(b)) = tokio::task::spawn_blocking(move || d.get(&k, len)).await {
                    copies.push(b);
                }
            }
            let Some(want) = layer.get(usize::try_from(i).unwrap_or(usize::MAX)) else {
                break;
            };
            for bytes in copies {
                let ok = bytes.len() as u64 == len
                    && self.hash_window(bytes).await.as_ref() == Some(want);
                metrics::WINDOW_CHECKS
                    .with_label_values(&[if ok { "ok" } else { "mismatch" }])
                    .inc();
                if !ok {
                    wrong.push(key.clone());
                    break;
                }
            }
            hashed.fetch_add(1, Ordering::Relaxed);
        }
        for key in &wrong {
            self.purge_wrong_window(key).await;
        }
        self.layers.mark_swept(&piece.cid);
        // Fetched again now (from another holder: the one that lied is
        // backed off), so the next reader finds them checked and cached.
        for key in wrong {
            if let Some(span) = self.geometry.span(key.index, piece.size) {
                let inner = self.clone();
                let piece = piece.clone();
                tokio::spawn(async move {
                    if let Err(e) = inner.read_through_cache(&piece, span).await {
                        log::warn!("refetching {} window {}: {e}", piece.cid, key.index);
                    }
                });
            }
        }
        LayerOutcome::Ready
    }

    /// Drops a cached window that does not match the piece's layer from
    /// both tiers, and backs off the holder that sent it.
    pub(super) async fn purge_wrong_window(&self, key: &WindowKey) {
        self.memory.remove(key);
        if let Some(d) = self.disk.clone() {
            let k = key.clone();
            let _ = tokio::task::spawn_blocking(move || d.remove(&k)).await;
        }
        self.publish_sizes();
        metrics::PURGED_WRONG_WINDOWS.inc();
        self.wrong_window(key, "cached bytes do not match the layer; purged");
    }

    /// Logs a window that failed its check and backs off its holder.
    pub(super) fn wrong_window(&self, key: &WindowKey, what: &str) {
        let holder = self.builds.take_holder(key);
        let who = holder.as_deref().unwrap_or("an unknown holder");
        log::warn!("{} window {}: {what} (sent by {who})", key.cid, key.index);
        if let Some(h) = holder {
            self.back_off(
                &key.cid,
                &h,
                "sent a window that does not hash to the PieceCID",
            );
        }
    }

    pub(super) fn back_off(&self, cid: &Arc<str>, holder: &str, why: &str) {
        metrics::WRONG_BYTES_HOLDERS.inc();
        if holder == BEAM || holder.starts_with("beam:") {
            log::warn!(
                "Beam {why} ({cid}): providers are asked first for this piece for {}",
                humantime::format_duration(self.settings.verify.holder_backoff)
            );
            self.builds
                .beam_distrusted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    cid.clone(),
                    Instant::now() + self.settings.verify.holder_backoff,
                );
        } else if let Some(p) = holder.strip_prefix("peer:") {
            log::warn!("peer {p} {why} ({cid})");
        } else {
            self.settings.pool.back_off(holder, why);
        }
    }
}

enum Job {
    Build,
    Sweep(Arc<[Node]>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_stored_again_after_the_build_hashed_it_makes_the_build_sweep() {
        let builds = Builds::new(1);
        let cid: Arc<str> = Arc::from("bafkzcibe-some-piece");
        let (_tx, rx) = watch::channel(None);
        let hashed = Arc::new(AtomicU64::new(5));
        builds.lock_running().insert(
            cid.clone(),
            Running {
                done: rx,
                hashed: hashed.clone(),
                restored: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            },
        );
        // Windows not hashed yet (5 and on) will be hashed as stored now.
        builds.stored_unchecked(&WindowKey::new(cid.clone(), 5));
        builds.stored_unchecked(&WindowKey::new(cid.clone(), 9));
        assert!(!builds.restored_during_build(&cid));
        // Another piece's window says nothing about this build.
        builds.stored_unchecked(&WindowKey::new(Arc::from("other"), 0));
        assert!(!builds.restored_during_build(&cid));
        // Window 2 was hashed already: the copy stored now was not.
        builds.stored_unchecked(&WindowKey::new(cid.clone(), 2));
        assert!(builds.restored_during_build(&cid));
    }
}
