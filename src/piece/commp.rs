//! Streaming CommP: the v2 PieceCID of a byte stream, and its window layer.
//!
//! What it is: [`CommP`] takes a piece's payload in chunks of any size and
//! returns its v2 [`PieceCid`]. The algorithm (filecoin.md, "PieceCID"):
//! zero-pad the payload to 127·2^k bytes, Fr32-expand every 127 bytes to 128
//! (two zero bits after each 254), cut into 32-byte leaves, and hash pairs
//! upward with SHA-256 whose last byte is masked `& 0x3f`.
//!
//! How it stays fast and small:
//! - Memory is constant: a stack of pending subtree roots, one slot per tree
//!   level, and a 127-byte tail. No per-node allocation.
//! - Each node costs exactly two SHA-256 compressions through
//!   [`sha2::compress256`] (SHA-NI when the CPU has it): the 64-byte message
//!   and the fixed final block (0x80, zeros, bit length 512).
//! - Zero padding costs O(height), not O(bytes): the roots of all-zero
//!   subtrees are computed once per process ([`zero_tree_root`]).
//! - With [`CommP::with_threads`] the input is buffered in batches of one
//!   aligned subtree per thread (8,323,072 raw bytes each by default, so 16 MiB
//!   for two threads) and the subtrees are hashed on scoped threads. The
//!   `update` that completes a batch returns once the batch is hashed: no
//!   read-ahead overlaps hashing.
//!
//! The window layer: with [`CommP::with_layer`] the hasher also records the
//! root of every aligned subtree of `window_padded` padded bytes (a "window",
//! `window_padded / 128 * 127` raw bytes) that holds payload. The last window
//! may be short; its root is that of the window zero-padded to full size,
//! exactly the node the piece tree has there. Windows made only of the
//! tree's zero padding are left out: [`root_from_layer`] puts them back from
//! the zero-subtree roots. If the whole tree is no taller than one window,
//! the layer is the single node `[piece root]` (the tree has no node at
//! window height, and the piece root is what verifies its bytes).
//!
//! Use: `let mut h = CommP::with_threads(2).layer(DEFAULT_WINDOW_PADDED)?;`,
//! `h.update(bytes)` as data arrives, `let (cid, layer) =
//! h.finish_with_layer()?`. A cache that holds `layer` checks it once with
//! [`verify_layer`] and then each window it fetches with
//! `window_root(bytes, window)? == layer[i]`.
//!
//! What it is not: a verifier of partial ranges below window size, or a
//! hasher for payloads under 127 bytes (the network rejects those; `finish`
//! says so).

use std::fmt;
use std::sync::OnceLock;

use sha2::digest::generic_array::GenericArray;
use sha2::digest::typenum::U64;

use crate::piece::cid::{height_for_payload, max_payload, PieceCid, PieceCidError, MAX_HEIGHT};

/// A 32-byte tree node.
pub type Node = [u8; 32];

/// Raw payload bytes in one Fr32 unit (128 padded bytes, 4 leaves).
pub const QUAD_RAW: usize = 127;

/// Smallest payload the network accepts (and `finish` hashes).
pub const MIN_PAYLOAD: u64 = 127;

/// Default window: 2^20 padded bytes = 1,040,384 raw bytes.
pub const DEFAULT_WINDOW_PADDED: u64 = 1 << 20;

/// Smallest window accepted: one Fr32 unit (128 padded, 127 raw bytes).
pub const MIN_WINDOW_PADDED: u64 = 128;

/// Largest window accepted: 64 GiB padded, the largest real sector size.
/// The proxy uses 2^17 to 2^26.
pub const MAX_WINDOW_PADDED: u64 = 1 << 36;

/// Default height of the subtree each thread hashes at a time: 2^18 leaves =
/// 8 MiB padded = 8,323,072 raw bytes. Large enough that a thread spawn is
/// noise, small enough that a two-thread batch stays at 16 MiB.
pub const DEFAULT_CHUNK_HEIGHT: u8 = 18;

/// Most threads a hasher uses; more would only add buffer memory
/// (8,323,072 bytes each by default) on any machine this runs on.
pub const MAX_THREADS: usize = 64;

/// Stack slots: one per level, levels `0..=MAX_HEIGHT` plus headroom.
const LEVELS: usize = 64;

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The second block of SHA-256 over any 64-byte message: 0x80, zeros, and the
/// message length (512 bits) big-endian. It never changes, so each node is
/// two compressions with no per-call padding logic.
const FINAL_BLOCK: [u8; 64] = {
    let mut b = [0u8; 64];
    b[0] = 0x80;
    b[62] = 0x02;
    b
};

/// Why a CommP computation or a layer check failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommpError {
    /// Under [`MIN_PAYLOAD`] bytes: the network rejects such pieces.
    #[error("payload of {len} bytes is too small: a piece holds at least 127 bytes")]
    PayloadTooSmall {
        /// Bytes hashed.
        len: u64,
    },
    /// More bytes than a tree of `MAX_HEIGHT` holds.
    #[error("payload of {len} bytes is too large: at most {max} bytes", max = max_payload())]
    PayloadTooLarge {
        /// Bytes hashed.
        len: u64,
    },
    /// The window size is not a power of two in range.
    #[error("window of {window_padded} padded bytes is invalid: it must be a power of two from {MIN_WINDOW_PADDED} to {MAX_WINDOW_PADDED}")]
    InvalidWindow {
        /// The size given.
        window_padded: u64,
    },
    /// More raw bytes than one window holds.
    #[error("{len} bytes do not fit one window of {capacity} raw bytes")]
    WindowOverflow {
        /// Bytes given.
        len: u64,
        /// Raw capacity of the window.
        capacity: u64,
    },
    /// The chunk height for threads is out of range.
    #[error("chunk height {height} is invalid: it must be 2 to 30")]
    InvalidChunkHeight {
        /// The height given.
        height: u8,
    },
    /// The tree height is out of range.
    #[error("tree height {height} is invalid: it must be 2 to {MAX_HEIGHT}")]
    InvalidHeight {
        /// The height given.
        height: u8,
    },
    /// The layer has the wrong number of nodes for the piece.
    #[error("layer has {found} nodes; this piece needs {expected}")]
    LayerLength {
        /// Nodes given.
        found: usize,
        /// Nodes the piece and window size call for.
        expected: u64,
    },
    /// The layer does not hash to the CID's root.
    #[error("layer does not hash to the PieceCID root")]
    LayerMismatch,
    /// A v1 CID carries no size, so its tree shape is unknown.
    #[error("a v1 PieceCID carries no size; a v2 PieceCID is needed")]
    NeedsV2,
    /// The computed root does not make a valid CID.
    #[error(transparent)]
    Cid(#[from] PieceCidError),
}

/// Streaming CommP hasher. Feed bytes with [`update`](Self::update), then call
/// [`finish`](Self::finish) or [`finish_with_layer`](Self::finish_with_layer).
pub struct CommP {
    stack: SubtreeStack,
    /// Bytes of the current, incomplete Fr32 unit.
    tail: [u8; QUAD_RAW],
    tail_len: usize,
    /// Payload bytes seen so far.
    total: u64,
    threads: usize,
    chunk_height: u8,
    /// Threaded mode only: pending raw bytes, less than one batch.
    batch: Vec<u8>,
    /// Window level (log2 of leaves per window) when recording a layer.
    tap: Option<u32>,
    layer: Vec<Node>,
}

impl fmt::Debug for CommP {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommP")
            .field("total", &self.total)
            .field("threads", &self.threads)
            .field("chunk_height", &self.chunk_height)
            .field("window_level", &self.tap)
            .field("layer_len", &self.layer.len())
            .finish_non_exhaustive()
    }
}

impl Default for CommP {
    fn default() -> Self {
        Self::new()
    }
}

impl CommP {
    /// A single-threaded hasher without a layer.
    pub fn new() -> Self {
        Self {
            stack: SubtreeStack::new(),
            tail: [0; QUAD_RAW],
            tail_len: 0,
            total: 0,
            threads: 1,
            chunk_height: DEFAULT_CHUNK_HEIGHT,
            batch: Vec::new(),
            tap: None,
            layer: Vec::new(),
        }
    }

    /// A hasher that hashes aligned subtrees on `threads` threads (see
    /// [`threads`](Self::threads)). Buffers up to `threads` × 8,323,072 bytes.
    pub fn with_threads(threads: usize) -> Self {
        Self::new().threads(threads)
    }

    /// A single-threaded hasher that records the layer of `window_padded`
    /// windows (a power of two, [`MIN_WINDOW_PADDED`] to
    /// [`MAX_WINDOW_PADDED`]).
    pub fn with_layer(window_padded: u64) -> Result<Self, CommpError> {
        Self::new().layer(window_padded)
    }

    /// Sets the number of threads (0 counts as 1, more than [`MAX_THREADS`]
    /// as that many). Call before `update`.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.clamp(1, MAX_THREADS);
        self
    }

    /// Records the layer of `window_padded` windows. Call before `update`.
    pub fn layer(mut self, window_padded: u64) -> Result<Self, CommpError> {
        self.tap = Some(window_level(window_padded)?);
        Ok(self)
    }

    /// Sets the height of the subtree each thread hashes at a time (2 to 30;
    /// default [`DEFAULT_CHUNK_HEIGHT`]). Memory is `threads × 127 <<
    /// (height - 2)` bytes. Small values exist to test the threaded path on
    /// small inputs. Call before `update`.
    pub fn chunk_height(mut self, height: u8) -> Result<Self, CommpError> {
        if !(2..=30).contains(&height) {
            return Err(CommpError::InvalidChunkHeight { height });
        }
        self.chunk_height = height;
        Ok(self)
    }

    /// Payload bytes fed so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether no byte has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Feeds the next bytes of the payload; any chunk size, including 0.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.threads == 1 {
            self.update_serial(data);
            return;
        }
        let chunk = chunk_raw(self.chunk_height);
        let batch_len = chunk * self.threads;
        while !data.is_empty() {
            if self.batch.is_empty() && data.len() >= batch_len {
                // Whole batches straight from the caller's buffer: no copy.
                let (now, later) = data.split_at(batch_len);
                self.absorb_chunks(now);
                data = later;
                continue;
            }
            if self.batch.capacity() == 0 {
                self.batch.reserve_exact(batch_len);
            }
            let take = (batch_len - self.batch.len()).min(data.len());
            self.batch.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.batch.len() == batch_len {
                let batch = std::mem::take(&mut self.batch);
                self.absorb_chunks(&batch);
                // Reuse the allocation for the next batch.
                self.batch = batch;
                self.batch.clear();
            }
        }
    }

    /// Hashes whole chunks (each one aligned subtree) on up to `threads`
    /// threads and pushes their roots in order.
    fn absorb_chunks(&mut self, data: &[u8]) {
        let level = u32::from(self.chunk_height);
        let chunk = chunk_raw(self.chunk_height);
        // Windows smaller than a chunk are recorded by the chunk's thread;
        // windows of a chunk or larger form in the shared stack.
        let inner_tap = self.tap.filter(|&t| t < level);
        for group in data.chunks(chunk * self.threads) {
            let results = hash_chunks_parallel(group, chunk, inner_tap);
            for (root, windows) in results {
                self.layer.extend_from_slice(&windows);
                self.stack.push(level, root, self.tap, &mut self.layer);
            }
        }
    }

    fn update_serial(&mut self, mut data: &[u8]) {
        if self.tail_len > 0 {
            let take = (QUAD_RAW - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < QUAD_RAW {
                return;
            }
            let quad = self.tail;
            self.stack
                .push(2, quad_root(&quad), self.tap, &mut self.layer);
            self.tail_len = 0;
        }
        let whole = data.len() - data.len() % QUAD_RAW;
        push_quads(&mut self.stack, &data[..whole], self.tap, &mut self.layer);
        let rest = &data[whole..];
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// Ends the payload and returns its v2 PieceCID.
    pub fn finish(self) -> Result<PieceCid, CommpError> {
        self.finish_with_layer().map(|(cid, _)| cid)
    }

    /// Ends the payload and returns its v2 PieceCID and the window layer
    /// (empty unless the hasher was built with a layer; see the module doc
    /// for what the layer holds).
    pub fn finish_with_layer(mut self) -> Result<(PieceCid, Vec<Node>), CommpError> {
        if self.threads > 1 && !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            let chunk = chunk_raw(self.chunk_height);
            let whole = batch.len() - batch.len() % chunk;
            self.absorb_chunks(&batch[..whole]);
            // The rest is shorter than a chunk but still aligned after it.
            self.update_serial(&batch[whole..]);
        }
        if self.total < MIN_PAYLOAD {
            return Err(CommpError::PayloadTooSmall { len: self.total });
        }
        let height = height_for_payload(self.total)
            .ok_or(CommpError::PayloadTooLarge { len: self.total })?;
        if self.tail_len > 0 {
            let mut quad = [0u8; QUAD_RAW];
            quad[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            self.stack
                .push(2, quad_root(&quad), self.tap, &mut self.layer);
        }
        let height = u32::from(height);
        let root = self.stack.fold(height, self.tap, &mut self.layer);
        if self.tap.is_some_and(|t| t > height) {
            self.layer = vec![root];
        }
        let cid = PieceCid::from_root_v2(root, self.total)?;
        Ok((cid, self.layer))
    }
}

/// The v2 PieceCID of `data` (single-threaded).
pub fn commp_of(data: &[u8]) -> Result<PieceCid, CommpError> {
    let mut hasher = CommP::new();
    hasher.update(data);
    hasher.finish()
}

/// Raw payload bytes in a window of `window_padded` padded bytes.
pub fn window_raw_len(window_padded: u64) -> Result<u64, CommpError> {
    window_level(window_padded)?;
    Ok(window_padded / 128 * 127)
}

/// The root of one window from its raw bytes, zero-padded to the full window
/// if short: the node the piece tree has for that window (when the tree is
/// taller than one window).
pub fn window_root(raw_window: &[u8], window_padded: u64) -> Result<Node, CommpError> {
    let level = window_level(window_padded)?;
    let capacity = window_padded / 128 * 127;
    let len = raw_window.len() as u64;
    if len > capacity {
        return Err(CommpError::WindowOverflow { len, capacity });
    }
    let mut stack = SubtreeStack::new();
    let mut none = Vec::new();
    let whole = raw_window.len() - raw_window.len() % QUAD_RAW;
    push_quads(&mut stack, &raw_window[..whole], None, &mut none);
    let rest = &raw_window[whole..];
    if !rest.is_empty() {
        let mut quad = [0u8; QUAD_RAW];
        quad[..rest.len()].copy_from_slice(rest);
        stack.push(2, quad_root(&quad), None, &mut none);
    }
    Ok(stack.fold(level, None, &mut none))
}

/// How many layer nodes a piece of `payload_size` bytes has for
/// `window_padded` windows: one per window holding payload, or 1 when the
/// tree is no taller than a window.
pub fn layer_len(payload_size: u64, window_padded: u64) -> Result<u64, CommpError> {
    let level = window_level(window_padded)?;
    let height = height_for_payload(payload_size)
        .ok_or(CommpError::PayloadTooLarge { len: payload_size })?;
    if level >= u32::from(height) {
        Ok(1)
    } else {
        Ok(payload_size.div_ceil(window_padded / 128 * 127))
    }
}

/// Recomputes the root of a tree of `height` from its layer of
/// `window_padded` windows, filling the windows past the layer with
/// zero-subtree roots. When the tree is no taller than a window the layer
/// must be the single root node.
pub fn root_from_layer(layer: &[Node], window_padded: u64, height: u8) -> Result<Node, CommpError> {
    let level = window_level(window_padded)?;
    if !(2..=MAX_HEIGHT).contains(&height) {
        return Err(CommpError::InvalidHeight { height });
    }
    let height = u32::from(height);
    let width = if level >= height {
        1
    } else {
        1u64 << (height - level)
    };
    if layer.is_empty() || layer.len() as u64 > width {
        return Err(CommpError::LayerLength {
            found: layer.len(),
            expected: width,
        });
    }
    if level >= height {
        return Ok(layer[0]);
    }
    let mut stack = SubtreeStack::new();
    let mut none = Vec::new();
    for node in layer {
        stack.push(level, *node, None, &mut none);
    }
    Ok(stack.fold(height, None, &mut none))
}

/// Checks a layer against a v2 PieceCID: the node count the piece calls for
/// ([`layer_len`]) and the root it hashes to.
pub fn verify_layer(cid: &PieceCid, window_padded: u64, layer: &[Node]) -> Result<(), CommpError> {
    let (payload, height) = match (cid.payload_size(), cid.height()) {
        (Some(p), Some(h)) => (p, h),
        _ => return Err(CommpError::NeedsV2),
    };
    let expected = if u32::from(height) <= window_level(window_padded)? {
        1
    } else {
        payload.div_ceil(window_padded / 128 * 127)
    };
    if layer.len() as u64 != expected {
        return Err(CommpError::LayerLength {
            found: layer.len(),
            expected,
        });
    }
    if &root_from_layer(layer, window_padded, height)? == cid.root() {
        Ok(())
    } else {
        Err(CommpError::LayerMismatch)
    }
}

/// Root of an all-zero tree of `height` (2^height zero leaves); `None` past
/// `MAX_HEIGHT`. The empty 32 GiB piece is `zero_tree_root(30)`.
pub fn zero_tree_root(height: u8) -> Option<Node> {
    zero_roots()
        .get(usize::from(height))
        .copied()
        .filter(|_| height <= MAX_HEIGHT)
}

/// The root of a tree of height `to` whose first subtree, of height `from`,
/// has root `root` and whose other leaves are zero: the root a payload has
/// in a taller tree than the smallest that holds it. `None` when `to < from`
/// or past the tallest tree.
pub fn raise_root(root: &Node, from: u8, to: u8) -> Option<Node> {
    if to < from {
        return None;
    }
    let mut node = *root;
    for h in from..to {
        node = hash_pair(&node, &zero_tree_root(h)?);
    }
    zero_tree_root(to).map(|_| node)
}

/// Level (log2 of leaves) of a window of `window_padded` padded bytes.
fn window_level(window_padded: u64) -> Result<u32, CommpError> {
    if window_padded.is_power_of_two()
        && (MIN_WINDOW_PADDED..=MAX_WINDOW_PADDED).contains(&window_padded)
    {
        Ok(window_padded.trailing_zeros() - 5)
    } else {
        Err(CommpError::InvalidWindow { window_padded })
    }
}

/// Raw bytes in a subtree of `height` (height ≥ 2).
fn chunk_raw(height: u8) -> usize {
    QUAD_RAW << (height - 2)
}

/// Roots of all-zero subtrees by level, computed once per process (64 nodes,
/// microseconds), so padding never hashes zero bytes.
fn zero_roots() -> &'static [Node; LEVELS] {
    static ZEROS: OnceLock<[Node; LEVELS]> = OnceLock::new();
    ZEROS.get_or_init(|| {
        // A zero leaf: Fr32 of zero bytes is zero bytes.
        let mut roots = [[0u8; 32]; LEVELS];
        for level in 1..LEVELS {
            roots[level] = hash_pair(&roots[level - 1], &roots[level - 1]);
        }
        roots
    })
}

/// Pending subtree roots, one slot per level, like the digits of a binary
/// counter: pushing a node at a level merges with the left sibling waiting
/// there and carries upward.
#[derive(Clone)]
struct SubtreeStack {
    nodes: [Node; LEVELS],
    /// Bit `l` set when `nodes[l]` holds a pending left sibling.
    occupied: u64,
}

impl SubtreeStack {
    fn new() -> Self {
        Self {
            nodes: [[0; 32]; LEVELS],
            occupied: 0,
        }
    }

    /// Adds the next node at `level` (left to right) and merges what it
    /// completes. Every node that reaches level `tap` is appended to `layer`.
    #[inline]
    fn push(&mut self, level: u32, node: Node, tap: Option<u32>, layer: &mut Vec<Node>) {
        let mut level = level;
        let mut node = node;
        loop {
            if tap == Some(level) {
                layer.push(node);
            }
            let bit = 1u64 << level;
            if self.occupied & bit == 0 {
                self.nodes[level as usize] = node;
                self.occupied |= bit;
                return;
            }
            self.occupied &= !bit;
            node = hash_pair(&self.nodes[level as usize], &node);
            level += 1;
        }
    }

    /// Completes the tree to `height` with zero subtrees on the right and
    /// returns its root. A partial node formed at level `tap` (the short
    /// last window) is appended to `layer`; whole ones were at push time.
    fn fold(&mut self, height: u32, tap: Option<u32>, layer: &mut Vec<Node>) -> Node {
        let zeros = zero_roots();
        // `carry` is the rightmost partial subtree, at level `level`.
        let mut carry: Option<Node> = None;
        for level in 0..height {
            if let (Some(partial), true) = (carry, tap == Some(level)) {
                layer.push(partial);
            }
            let bit = 1u64 << level;
            let pending = if self.occupied & bit != 0 {
                self.occupied &= !bit;
                Some(self.nodes[level as usize])
            } else {
                None
            };
            let l = level as usize;
            carry = match (pending, carry) {
                (Some(left), Some(right)) => Some(hash_pair(&left, &right)),
                (Some(left), None) => Some(hash_pair(&left, &zeros[l])),
                (None, Some(left)) => Some(hash_pair(&left, &zeros[l])),
                (None, None) => None,
            };
        }
        let h = height as usize;
        match carry {
            Some(root) => {
                if tap == Some(height) {
                    layer.push(root);
                }
                root
            }
            None if self.occupied & (1u64 << height) != 0 => self.nodes[h],
            None => zeros[h],
        }
    }
}

/// Hashes `data` (a whole number of chunks, at most one per thread) with one
/// subtree per scoped thread; the caller's thread takes the first chunk.
fn hash_chunks_parallel(data: &[u8], chunk: usize, tap: Option<u32>) -> Vec<(Node, Vec<Node>)> {
    let mut chunks = data.chunks(chunk);
    let Some(first) = chunks.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .map(|c| scope.spawn(move || subtree_root(c, tap)))
            .collect();
        let mut results = Vec::with_capacity(handles.len() + 1);
        results.push(subtree_root(first, tap));
        for handle in handles {
            // A panic in a hashing thread is a bug; re-raise it here.
            results.push(
                handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            );
        }
        results
    })
}

/// Root of one aligned subtree given as its raw bytes (a power-of-two number
/// of 127-byte units), plus the window roots inside it.
fn subtree_root(data: &[u8], tap: Option<u32>) -> (Node, Vec<Node>) {
    let mut stack = SubtreeStack::new();
    let mut windows = Vec::new();
    push_quads(&mut stack, data, tap, &mut windows);
    let height = (data.len() / QUAD_RAW).trailing_zeros() + 2;
    let root = stack.fold(height, None, &mut windows);
    (root, windows)
}

/// Pushes the quad root of each 127-byte unit of `data` (a multiple of 127).
fn push_quads(stack: &mut SubtreeStack, data: &[u8], tap: Option<u32>, layer: &mut Vec<Node>) {
    for quad in data.chunks_exact(QUAD_RAW) {
        let mut unit = [0u8; QUAD_RAW];
        unit.copy_from_slice(quad);
        stack.push(2, quad_root(&unit), tap, layer);
    }
}

/// Root of the 4-leaf subtree over one Fr32-expanded 127-byte unit.
#[inline]
fn quad_root(raw: &[u8; QUAD_RAW]) -> Node {
    let expanded = fr32_expand(raw);
    let mut left = [0u8; 64];
    let mut right = [0u8; 64];
    left.copy_from_slice(&expanded[..64]);
    right.copy_from_slice(&expanded[64..]);
    hash_pair(&hash_block(left), &hash_block(right))
}

/// Fr32: 127 bytes (1016 bits, little-endian bit order) to four 32-byte
/// leaves of 254 data bits each followed by two zero bits.
#[inline]
fn fr32_expand(raw: &[u8; QUAD_RAW]) -> [u8; 128] {
    // One extra zero byte so the last leaf's shifted reads stay in bounds.
    let mut src = [0u8; 128];
    src[..QUAD_RAW].copy_from_slice(raw);
    let mut out = [0u8; 128];
    out[..32].copy_from_slice(&src[..32]);
    out[31] &= 0x3f;
    // Leaf j starts at input bit 254·j, i.e. byte ⌊254j/8⌋ = 31, 63, 95 for
    // j = 1, 2, 3, at bit shifts 6, 4, 2.
    for (j, (base, shift)) in [(31usize, 6u32), (63, 4), (95, 2)].into_iter().enumerate() {
        let leaf = &mut out[32 * (j + 1)..32 * (j + 2)];
        for (k, byte) in leaf.iter_mut().enumerate() {
            *byte = (src[base + k] >> shift) | (src[base + k + 1] << (8 - shift));
        }
        leaf[31] &= 0x3f;
    }
    out
}

/// SHA-256 of two nodes, truncated to 254 bits.
#[inline]
fn hash_pair(left: &Node, right: &Node) -> Node {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(left);
    block[32..].copy_from_slice(right);
    hash_block(block)
}

/// SHA-256 of one 64-byte message, truncated to 254 bits: two compressions.
#[inline]
fn hash_block(block: [u8; 64]) -> Node {
    let mut state = SHA256_IV;
    let blocks: [GenericArray<u8, U64>; 2] = [block.into(), FINAL_BLOCK.into()];
    sha2::compress256(&mut state, &blocks);
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out[31] &= 0x3f;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn hash_block_is_truncated_sha256() {
        let block: [u8; 64] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let mut expected: [u8; 32] = Sha256::digest(block).into();
        expected[31] &= 0x3f;
        assert_eq!(hash_block(block), expected);
    }

    #[test]
    fn fr32_matches_bit_by_bit_definition() {
        let raw: [u8; 127] = std::array::from_fn(|i| (i * 37 + 11) as u8 ^ 0xa5);
        let out = fr32_expand(&raw);
        for leaf in 0..4 {
            for bit in 0..256 {
                let got = (out[leaf * 32 + bit / 8] >> (bit % 8)) & 1;
                let want = if bit < 254 {
                    let src = leaf * 254 + bit;
                    (raw[src / 8] >> (src % 8)) & 1
                } else {
                    0
                };
                assert_eq!(got, want, "leaf {leaf} bit {bit}");
            }
        }
    }

    #[test]
    fn zero_roots_chain() {
        assert_eq!(zero_tree_root(0), Some([0; 32]));
        let z1 = zero_tree_root(1);
        assert_eq!(z1, Some(hash_pair(&[0; 32], &[0; 32])));
        assert_eq!(zero_tree_root(MAX_HEIGHT + 1), None);
    }
}
