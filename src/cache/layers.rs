//! The layer store: for each piece larger than one window, its *layer* (the
//! CommP root of every window, 32 bytes each), the thing that lets every
//! window be checked against the PieceCID.
//!
//! A layer is accepted only once it hashes up to the PieceCID's root, so it
//! may come from anyone: an asset manifest, an upload, a build that read the
//! whole piece (`build`), a cluster peer. Accepted layers are kept in memory
//! (bounded by [`MAX_LAYER_NODES`]; past it the oldest half is forgotten
//! there) and, with a disk tier, in `<disk dir>/layers/<shard>/<cid>`, so
//! they survive restarts and evictions from memory; a file read back is
//! checked against the CID again before use (a torn or altered file is
//! deleted and the layer is unknown).
//!
//! Each layer also records whether the windows cached before it arrived have
//! been *swept* (hashed against it, wrong ones purged): only then does every
//! cached window of the piece count as checked.
//!
//! What it is not: hashing windows (`verify`), building layers (`build`),
//! or deciding what a mode allows (`mod.rs`, `edge`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::piece::commp::{self, Node};
use crate::piece::PieceCid;

/// Most layer nodes kept in memory (32 bytes each: 64 MiB of layers, the
/// windows of about 2 PiB of pieces at the default window). Past it, the
/// oldest half of the pieces is forgotten in memory; those on disk are read
/// back when next needed.
pub const MAX_LAYER_NODES: usize = 2 << 20;

const FILE_HEADER: &str = "beam-edge-layer 1";

/// Where a layer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerSource {
    /// An asset manifest.
    Manifest,
    /// An upload through this edge (`beam-edge upload` or the admin endpoint).
    Upload,
    /// A build: the whole piece read and hashed here.
    Built,
    /// Another replica of the cluster.
    Peer,
}

impl LayerSource {
    /// Label in JSON, logs and the layer file.
    pub fn label(self) -> &'static str {
        match self {
            LayerSource::Manifest => "manifest",
            LayerSource::Upload => "upload",
            LayerSource::Built => "built",
            LayerSource::Peer => "peer",
        }
    }

    fn parse(s: &str) -> Option<LayerSource> {
        Some(match s {
            "manifest" => LayerSource::Manifest,
            "upload" => LayerSource::Upload,
            "built" => LayerSource::Built,
            "peer" => LayerSource::Peer,
            _ => return None,
        })
    }
}

/// Why a layer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    /// The layer's windows are larger than the cache's: it cannot check them.
    #[error("layer windows of {layer} bytes are larger than the cache's {cache}")]
    Coarser {
        /// The layer's window, padded bytes.
        layer: u64,
        /// The cache's window, padded bytes.
        cache: u64,
    },
    /// The layer does not hash to the PieceCID.
    #[error("the layer does not match the PieceCID: {0}")]
    Wrong(String),
}

/// What [`Layers::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The layer is new here: windows cached before it need a sweep.
    New,
    /// A layer of the piece was already held.
    Known,
    /// The piece is one window: it is checked against its CID, no layer needed.
    OneWindow,
}

/// A held layer as `/admin/cache/<cid>` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerStatus {
    /// Where it came from.
    pub source: LayerSource,
    /// Window roots it holds (= the piece's windows).
    pub windows: u64,
    /// True once the windows cached before it were hashed against it.
    pub swept: bool,
    /// True when it is persisted on disk.
    pub on_disk: bool,
}

#[derive(Clone)]
struct Entry {
    seq: u64,
    nodes: Arc<[Node]>,
    source: LayerSource,
    swept: bool,
}

#[derive(Default)]
struct LayerMap {
    by_cid: HashMap<Arc<str>, Entry>,
    nodes: usize,
    seq: u64,
    /// Pieces with a layer file (read back on demand).
    on_disk: HashSet<Arc<str>>,
    /// Pieces looked for on disk lately and not found: a layer file written
    /// by another process (`beam-edge upload`) is found within
    /// [`REPROBE_AFTER`] of being written, without a stat per lookup.
    probed: HashMap<Arc<str>, std::time::Instant>,
}

/// How long "no layer file" is believed for a piece.
const REPROBE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Layers of pieces, converted to the cache's window size.
pub struct Layers {
    window_padded: u64,
    dir: Option<PathBuf>,
    temp_seq: AtomicU64,
    inner: Mutex<LayerMap>,
}

impl Layers {
    /// An in-memory store for a cache of `window_padded` windows.
    pub fn new(window_padded: u64) -> Layers {
        Layers {
            window_padded,
            dir: None,
            temp_seq: AtomicU64::new(0),
            inner: Mutex::new(LayerMap::default()),
        }
    }

    /// A store that also persists layers under `dir` (created when missing);
    /// the names of the layer files present are listed (their contents are
    /// read when first needed).
    pub fn with_dir(window_padded: u64, dir: &Path) -> io::Result<Layers> {
        fs::create_dir_all(dir)?;
        let mut map = LayerMap::default();
        for shard in fs::read_dir(dir)? {
            let shard = shard?;
            let name = shard.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") {
                let _ = fs::remove_file(shard.path());
                continue;
            }
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(shard.path())? {
                let f = f?;
                if let Some(cid) = f.file_name().to_str() {
                    map.on_disk.insert(Arc::from(cid));
                }
            }
        }
        Ok(Layers {
            window_padded,
            dir: Some(dir.to_path_buf()),
            temp_seq: AtomicU64::new(0),
            inner: Mutex::new(map),
        })
    }

    /// A store that only writes layer files under `dir` (created when
    /// missing), for another process than the edge (`beam-edge upload`):
    /// it neither lists nor tidies the directory, which a running edge
    /// may be writing to. The edge finds the files when it next needs them.
    pub fn writer(window_padded: u64, dir: &Path) -> io::Result<Layers> {
        fs::create_dir_all(dir)?;
        Ok(Layers {
            dir: Some(dir.to_path_buf()),
            ..Layers::new(window_padded)
        })
    }

    fn lock(&self) -> MutexGuard<'_, LayerMap> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the layer of `cid` (the roots of its windows of `layer_window`
    /// padded bytes) from `source` once it is checked against the CID and
    /// converted to the cache's windows, and persists it. Blocking (hashing,
    /// a small file write): call it off the async threads.
    pub fn add(
        &self,
        cid: &PieceCid,
        layer_window: u64,
        nodes: &[Node],
        source: LayerSource,
    ) -> Result<Added, LayerError> {
        let Some(height) = cid.height() else {
            return Err(LayerError::Wrong("a layer needs a v2 PieceCID".into()));
        };
        let level = self.window_padded.trailing_zeros() - 5;
        if u32::from(height) <= level {
            return Ok(Added::OneWindow);
        }
        if layer_window > self.window_padded {
            return Err(LayerError::Coarser {
                layer: layer_window,
                cache: self.window_padded,
            });
        }
        let key: Arc<str> = Arc::from(cid.to_string());
        if self.nodes_of(&key).is_some() {
            return Ok(Added::Known);
        }
        commp::verify_layer(cid, layer_window, nodes)
            .map_err(|e| LayerError::Wrong(e.to_string()))?;
        let nodes = coarsen(nodes, layer_window, self.window_padded)
            .map_err(|e| LayerError::Wrong(e.to_string()))?;
        let entry = Entry {
            seq: 0,
            nodes: nodes.into(),
            source,
            swept: false,
        };
        if let Err(e) = self.write_file(&key, &entry) {
            log::warn!("cannot persist the layer of {key}: {e}");
        }
        if self.insert(key, entry) {
            Ok(Added::New)
        } else {
            Ok(Added::Known)
        }
    }

    /// Inserts unless present; `false` when a layer was already held.
    fn insert(&self, key: Arc<str>, mut entry: Entry) -> bool {
        let mut map = self.lock();
        if map.by_cid.contains_key(&key) {
            return false;
        }
        if map.nodes + entry.nodes.len() > MAX_LAYER_NODES {
            map.forget_oldest_half();
        }
        map.seq += 1;
        entry.seq = map.seq;
        map.nodes += entry.nodes.len();
        if self.dir.is_some() {
            map.on_disk.insert(key.clone());
        }
        map.by_cid.insert(key, entry);
        true
    }

    /// The window roots of `cid` and whether its cached windows were swept,
    /// from memory or, failing that, its layer file (checked again).
    pub fn nodes_of(&self, cid: &str) -> Option<(Arc<[Node]>, bool)> {
        {
            let mut map = self.lock();
            if let Some(e) = map.by_cid.get(cid) {
                return Some((e.nodes.clone(), e.swept));
            }
            if !map.on_disk.contains(cid) && !self.appeared_on_disk(&mut map, cid) {
                return None;
            }
        }
        let entry = self.read_file(cid)?;
        let out = (entry.nodes.clone(), entry.swept);
        self.insert(Arc::from(cid), entry);
        Some(out)
    }

    /// How to check the windows of `cid` (`size` bytes, `count` windows),
    /// if it can be checked.
    pub fn check_for(&self, cid: &str, size: u64, count: u64) -> Option<super::verify::PieceCheck> {
        use super::verify::PieceCheck;
        if count == 1 {
            // The window's bytes are the whole payload.
            return (size >= 127)
                .then(|| PieceCid::parse(cid).ok())
                .flatten()
                .map(PieceCheck::Whole);
        }
        self.layer_for(cid, count).map(PieceCheck::Layer)
    }

    /// The layer of `cid` if it has `count` windows.
    pub fn layer_for(&self, cid: &str, count: u64) -> Option<Arc<[Node]>> {
        self.nodes_of(cid)
            .map(|(n, _)| n)
            .filter(|n| n.len() as u64 == count)
    }

    /// Records that every window of `cid` cached before its layer was hashed
    /// against it (in memory and in the layer file).
    pub fn mark_swept(&self, cid: &str) {
        let entry = {
            let mut map = self.lock();
            let Some(e) = map.by_cid.get_mut(cid) else {
                return;
            };
            if e.swept {
                return;
            }
            e.swept = true;
            e.clone()
        };
        if let Err(e) = self.write_file(cid, &entry) {
            log::warn!("cannot persist the layer of {cid}: {e}");
        }
    }

    /// The held layer of `cid`, for the admin API.
    pub fn status(&self, cid: &str) -> Option<LayerStatus> {
        self.nodes_of(cid)?;
        let map = self.lock();
        let e = map.by_cid.get(cid)?;
        Some(LayerStatus {
            source: e.source,
            windows: e.nodes.len() as u64,
            swept: e.swept,
            on_disk: map.on_disk.contains(cid),
        })
    }

    /// Forgets the layer of `cid` (memory and disk): a purge.
    pub fn remove(&self, cid: &str) {
        let on_disk = {
            let mut map = self.lock();
            if let Some(e) = map.by_cid.remove(cid) {
                map.nodes -= e.nodes.len();
            }
            map.on_disk.remove(cid)
        };
        if let (true, Some(path)) = (on_disk, self.file_path(cid)) {
            let _ = fs::remove_file(path);
        }
    }

    /// Pieces with a layer held in memory.
    pub fn len(&self) -> usize {
        self.lock().by_cid.len()
    }

    /// True when no layer is held in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Layer nodes held in memory, and layer files on disk.
    pub fn footprint(&self) -> (usize, usize) {
        let map = self.lock();
        (map.nodes, map.on_disk.len())
    }

    fn file_path(&self, cid: &str) -> Option<PathBuf> {
        // A CID is base32 (letters and digits): it cannot leave the directory.
        if cid.is_empty() || !cid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let shard = format!("{:02x}", crc32fast::hash(cid.as_bytes()) & 0xff);
        Some(self.dir.as_ref()?.join(shard).join(cid))
    }

    /// True when a layer file of `cid` that this store did not list has
    /// appeared (written by `beam-edge upload`); looked for at most once per
    /// [`REPROBE_AFTER`] per piece.
    fn appeared_on_disk(&self, map: &mut LayerMap, cid: &str) -> bool {
        let Some(path) = self.file_path(cid) else {
            return false;
        };
        let now = std::time::Instant::now();
        if map
            .probed
            .get(cid)
            .is_some_and(|at| now.duration_since(*at) < REPROBE_AFTER)
        {
            return false;
        }
        if map.probed.len() >= 100_000 {
            map.probed.clear();
        }
        if path.is_file() {
            map.probed.remove(cid);
            map.on_disk.insert(Arc::from(cid));
            true
        } else {
            map.probed.insert(Arc::from(cid), now);
            false
        }
    }

    fn write_file(&self, cid: &str, entry: &Entry) -> io::Result<()> {
        let (Some(dir), Some(path)) = (self.dir.as_ref(), self.file_path(cid)) else {
            return Ok(());
        };
        let bytes = encode(entry, self.window_padded);
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".tmp-{}-{seq}", std::process::id()));
        let written = (|| {
            let mut f = fs::File::create(&temp)?;
            f.write_all(&bytes)?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&temp, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    fn read_file(&self, cid: &str) -> Option<Entry> {
        let path = self.file_path(cid)?;
        let forget = || {
            self.lock().on_disk.remove(cid);
            let _ = fs::remove_file(&path);
        };
        let Ok(bytes) = fs::read(&path) else {
            self.lock().on_disk.remove(cid);
            return None;
        };
        let checked = decode(&bytes).filter(|(window, _)| *window == self.window_padded);
        let Some((_, entry)) = checked else {
            log::warn!("layer file of {cid} is damaged or of another window size: deleted");
            forget();
            return None;
        };
        let ok = PieceCid::parse(cid)
            .ok()
            .is_some_and(|c| commp::verify_layer(&c, self.window_padded, &entry.nodes).is_ok());
        if !ok {
            log::warn!("layer file of {cid} does not hash to the PieceCID: deleted");
            forget();
            return None;
        }
        Some(entry)
    }
}

impl LayerMap {
    fn forget_oldest_half(&mut self) {
        let mut seqs: Vec<u64> = self.by_cid.values().map(|e| e.seq).collect();
        seqs.sort_unstable();
        let Some(&cut) = seqs.get(seqs.len() / 2) else {
            return;
        };
        self.by_cid.retain(|_, e| e.seq >= cut);
        self.nodes = self.by_cid.values().map(|e| e.nodes.len()).sum();
    }
}

fn encode(entry: &Entry, window_padded: u64) -> Vec<u8> {
    let mut out = format!(
        "{FILE_HEADER}\nsource {}\nswept {}\nwindow {window_padded}\nnodes {}\n",
        entry.source.label(),
        u8::from(entry.swept),
        entry.nodes.len()
    )
    .into_bytes();
    for n in entry.nodes.iter() {
        out.extend_from_slice(n);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<(u64, Entry)> {
    let (body, crc) = bytes.split_at(bytes.len().checked_sub(4)?);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return None;
    }
    let mut rest = body;
    let mut line = || -> Option<&str> {
        let at = rest.iter().position(|b| *b == b'\n')?;
        let (l, r) = rest.split_at(at);
        rest = &r[1..];
        std::str::from_utf8(l).ok()
    };
    if line()? != FILE_HEADER {
        return None;
    }
    let source = LayerSource::parse(line()?.strip_prefix("source ")?)?;
    let swept = line()?.strip_prefix("swept ")? == "1";
    let window: u64 = line()?.strip_prefix("window ")?.parse().ok()?;
    let count: usize = line()?.strip_prefix("nodes ")?.parse().ok()?;
    if rest.len() != count.checked_mul(32)? {
        return None;
    }
    let nodes: Vec<Node> = rest
        .chunks_exact(32)
        .map(|c| {
            let mut n = [0u8; 32];
            n.copy_from_slice(c);
            n
        })
        .collect();
    Some((
        window,
        Entry {
            seq: 0,
            nodes: nodes.into(),
            source,
            swept,
        },
    ))
}

/// Turns a layer of `from` windows into one of `to` windows (`to` ≥ `from`,
/// both powers of two): each group of `to / from` nodes hashes to one node,
/// the last group padded with zero subtrees as the tree is.
pub(super) fn coarsen(nodes: &[Node], from: u64, to: u64) -> Result<Vec<Node>, commp::CommpError> {
    if from == to {
        return Ok(nodes.to_vec());
    }
    let group = usize::try_from(to / from).unwrap_or(usize::MAX);
    let height = u8::try_from(to.trailing_zeros() - 5).unwrap_or(u8::MAX);
    nodes
        .chunks(group)
        .map(|g| commp::root_from_layer(g, from, height))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const W128K: u64 = 128 << 10;

    use super::super::test_bytes::{cid_and_layer, data};

    #[test]
    fn a_layer_survives_a_reopen_with_its_source_and_sweep_state() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(5 * 130_048 + 7, 9);
        let (cid, layer) = cid_and_layer(&bytes, W128K);
        let key = cid.to_string();
        {
            let layers = Layers::with_dir(W128K, dir.path()).unwrap();
            assert_eq!(
                layers.add(&cid, W128K, &layer, LayerSource::Upload),
                Ok(Added::New)
            );
            assert_eq!(
                layers.add(&cid, W128K, &layer, LayerSource::Built),
                Ok(Added::Known)
            );
            layers.mark_swept(&key);
        }
        let layers = Layers::with_dir(W128K, dir.path()).unwrap();
        assert!(layers.is_empty(), "read back only when needed");
        let (nodes, swept) = layers.nodes_of(&key).unwrap();
        assert_eq!(&nodes[..], &layer[..]);
        assert!(swept);
        let st = layers.status(&key).unwrap();
        assert_eq!(st.source, LayerSource::Upload);
        assert_eq!(st.windows, 6);
        layers.remove(&key);
        let again = Layers::with_dir(W128K, dir.path()).unwrap();
        assert_eq!(again.nodes_of(&key), None);
    }

    #[test]
    fn an_altered_layer_file_is_deleted_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(3 * 130_048, 10);
        let (cid, layer) = cid_and_layer(&bytes, W128K);
        let key = cid.to_string();
        Layers::with_dir(W128K, dir.path())
            .unwrap()
            .add(&cid, W128K, &layer, LayerSource::Built)
            .unwrap();
        let layers = Layers::with_dir(W128K, dir.path()).unwrap();
        let path = layers.file_path(&key).unwrap();
        // A node changed and the CRC recomputed: only the CID check catches it.
        let (window, mut entry) = decode(&fs::read(&path).unwrap()).unwrap();
        let mut nodes = entry.nodes.to_vec();
        nodes[1][3] ^= 1;
        entry.nodes = nodes.into();
        fs::write(&path, encode(&entry, window)).unwrap();
        assert_eq!(layers.nodes_of(&key), None);
        assert!(!path.exists());
    }

    #[test]
    fn the_store_forgets_old_layers_past_its_cap() {
        let mut map = LayerMap::default();
        for i in 0..10u64 {
            map.seq += 1;
            map.nodes += 3;
            let seq = map.seq;
            map.by_cid.insert(
                Arc::from(format!("cid{i}")),
                Entry {
                    seq,
                    nodes: vec![[0u8; 32]; 3].into(),
                    source: LayerSource::Built,
                    swept: false,
                },
            );
        }
        map.forget_oldest_half();
        assert_eq!(map.by_cid.len(), 5);
        assert_eq!(map.nodes, 15);
        assert!(map.by_cid.contains_key("cid9") && !map.by_cid.contains_key("cid0"));
    }
}
