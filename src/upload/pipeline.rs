//! Uploading a file of any size as an asset: split into pieces on the fly,
//! each streamed to the provider while its CommP is computed, then the
//! manifest.
//!
//! Memory stays flat whatever the file size: bytes are passed on as they
//! arrive, and the only buffering is the look-ahead near a piece boundary
//! (at most 127 bytes past it plus one chunk), needed because a piece must
//! hold at least 127 bytes: when the file would end with a shorter tail, the
//! piece before it is cut short so the tail gets 127.
//!
//! A source that fails (a client that disconnects mid-upload) aborts the
//! piece being sent: the provider never sees a finalize for it, no manifest
//! is written, and the error says so.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::sp::{SpClient, SpError, UploadOptions, MAX_UPLOAD_SIZE, MIN_UPLOAD_SIZE};
use crate::http::sniff::{sniff_content_type, SNIFF_LEN};
use crate::manifest::{encode_layer, Manifest, ManifestPiece, FORMAT, VERSION};
use crate::piece::PieceCid;

/// What an asset upload needs to know.
#[derive(Debug, Clone)]
pub struct AssetOptions {
    /// Largest piece, in raw bytes (at most 1,065,353,216).
    pub piece_size: u64,
    /// Largest file accepted.
    pub max_size: u64,
    /// Window of the layers recorded in the manifest, in padded bytes.
    pub window_padded: u64,
    /// The file's media type; `None` (or octet-stream) sniffs it from the first bytes.
    pub content_type: Option<String>,
    /// The file's name, recorded in the manifest.
    pub file_name: String,
    /// CommP threads per piece.
    pub commp_threads: usize,
}

/// The raw size of every piece [`upload_asset`] adds for a file of `size`
/// bytes (`None`: not known yet, priced as the smallest file), in order: the
/// file's pieces, cut as [`upload_asset`] cuts them (a last piece under 127
/// bytes takes its 127 from the piece before), then the manifest. The
/// manifest's length is exact when `options.content_type` is set, and an
/// upper bound (the longest type sniffing can give) when it is sniffed.
pub fn planned_piece_sizes(size: Option<u64>, options: &AssetOptions) -> Vec<u64> {
    let size = size.unwrap_or(MIN_UPLOAD_SIZE).max(MIN_UPLOAD_SIZE);
    let cap = options.piece_size.max(2 * MIN_UPLOAD_SIZE);
    let mut pieces = vec![cap; usize::try_from(size / cap).unwrap_or(0)];
    let rest = size % cap;
    if rest > 0 {
        if rest < MIN_UPLOAD_SIZE && !pieces.is_empty() {
            if let Some(last) = pieces.last_mut() {
                *last -= MIN_UPLOAD_SIZE - rest;
            }
            pieces.push(MIN_UPLOAD_SIZE);
        } else {
            pieces.push(rest);
        }
    }
    let content_type = match options.content_type.as_deref() {
        Some(t) if !t.is_empty() && t != crate::http::sniff::OCTET_STREAM => t,
        _ => crate::http::sniff::longest_sniffed_type(),
    };
    // A manifest too large to predict is priced at the largest piece.
    let manifest = Manifest::predicted_len(
        &pieces,
        options.window_padded,
        content_type,
        &options.file_name,
    )
    .unwrap_or(MAX_UPLOAD_SIZE);
    pieces.push(manifest.clamp(MIN_UPLOAD_SIZE, MAX_UPLOAD_SIZE));
    pieces
}

/// One uploaded piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPiece {
    /// Its PieceCID (v2).
    pub cid: PieceCid,
    /// Raw bytes of the file it holds.
    pub size: u64,
}

/// A file uploaded as pieces plus a manifest; not yet in a data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedAsset {
    /// The asset id: the manifest's PieceCID.
    pub asset_id: PieceCid,
    /// The manifest as uploaded.
    pub manifest: Manifest,
    /// The file's pieces, in order.
    pub pieces: Vec<UploadedPiece>,
}

/// Why an upload failed; nothing was added to a data set.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The file is smaller than one piece may be.
    #[error("the file has {0} bytes; a Filecoin piece holds at least 127")]
    TooSmall(u64),
    /// The file is larger than allowed.
    #[error("the file is larger than the upload limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The source of the bytes failed (the client went away).
    #[error("the upload body failed after {received} bytes ({cause}); the provider session was abandoned and nothing was stored")]
    Source {
        /// Bytes read before the failure.
        received: u64,
        /// What failed.
        cause: String,
    },
    /// The provider refused or failed a step.
    #[error("{0}")]
    Provider(#[from] SpError),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Reads a source with a small look-ahead buffer.
struct Lookahead<S> {
    source: S,
    pending: VecDeque<Bytes>,
    pending_len: u64,
    eof: bool,
    received: u64,
}

impl<S: Stream<Item = io::Result<Bytes>> + Unpin> Lookahead<S> {
    /// Reads one more chunk into the buffer; `false` at the end.
    async fn fill(&mut self) -> Result<bool, UploadError> {
        if self.eof {
            return Ok(false);
        }
        match self.source.next().await {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                self.pending_len += chunk.len() as u64;
                if !chunk.is_empty() {
                    self.pending.push_back(chunk);
                }
                Ok(true)
            }
            Some(Err(e)) => Err(UploadError::Source {
                received: self.received,
                cause: e.to_string(),
            }),
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// Takes up to `n` buffered bytes, as chunks.
    fn take(&mut self, mut n: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        while n > 0 {
            let Some(mut c) = self.pending.pop_front() else {
                break;
            };
            if c.len() as u64 > n {
                let rest = c.split_off(usize::try_from(n).unwrap_or(c.len()));
                self.pending.push_front(rest);
            }
            n -= c.len() as u64;
            self.pending_len -= c.len() as u64;
            out.push(c);
        }
        out
    }
}

/// Uploads everything `source` yields as an asset: pieces, then the manifest.
/// `progress` is called with the number of file bytes sent so far.
pub async fn upload_asset<S>(
    sp: &SpClient,
    source: S,
    options: &AssetOptions,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<UploadedAsset, UploadError>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin + Send,
{
    let cap = options.piece_size;
    if !(2 * MIN_UPLOAD_SIZE..=MAX_UPLOAD_SIZE).contains(&cap) {
        return Err(UploadError::Invalid(format!(
            "upload.piece_size must be 254 to {MAX_UPLOAD_SIZE} bytes, got {cap}"
        )));
    }
    let mut input = Lookahead {
        source,
        pending: VecDeque::new(),
        pending_len: 0,
        eof: false,
        received: 0,
    };
    // Refuse a too-small file before any request reaches the provider.
    while input.pending_len < MIN_UPLOAD_SIZE && input.fill().await? {}
    if input.pending_len < MIN_UPLOAD_SIZE {
        return Err(UploadError::TooSmall(input.pending_len));
    }
    let mut fed = Fed {
        total: 0,
        head: Vec::with_capacity(SNIFF_LEN),
    };
    let mut pieces: Vec<(UploadedPiece, String)> = Vec::new();
    loop {
        while input.pending_len == 0 && input.fill().await? {}
        if input.pending_len == 0 {
            break;
        }
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let upload_options = UploadOptions {
            size_limit: cap,
            layer_window_padded: Some(options.window_padded),
            commp_threads: options.commp_threads.max(1),
        };
        let client = sp.clone();
        let upload =
            tokio::spawn(async move { client.upload_streaming_with(body, &upload_options).await });
        let result = feed_piece(&mut input, &tx, cap, options.max_size, &mut fed, &progress).await;
        drop(tx);
        let outcome = upload
            .await
            .map_err(|e| UploadError::Invalid(format!("upload task failed: {e}")))?;
        result?;
        let outcome = outcome?;
        let layer = outcome
            .layer
            .as_deref()
            .map(encode_layer)
            .unwrap_or_default();
        pieces.push((
            UploadedPiece {
                cid: outcome.piece_cid,
                size: outcome.size,
            },
            layer,
        ));
    }

    let content_type = match options.content_type.as_deref() {
        Some(t) if !t.is_empty() && t != crate::http::sniff::OCTET_STREAM => t.to_string(),
        _ => sniff_content_type(&fed.head).to_string(),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        size: fed.total,
        content_type,
        file_name: options.file_name.clone(),
        window: options.window_padded,
        pieces: pieces
            .iter()
            .map(|(p, layer)| ManifestPiece {
                cid: p.cid.to_string(),
                size: p.size,
                layer: layer.clone(),
            })
            .collect(),
    };
    let bytes = Bytes::from(manifest.to_bytes());
    let manifest_options = UploadOptions {
        size_limit: MAX_UPLOAD_SIZE,
        layer_window_padded: None,
        commp_threads: 1,
    };
    let one = futures_util::stream::iter([Ok::<Bytes, io::Error>(bytes)]);
    let outcome = sp.upload_streaming_with(one, &manifest_options).await?;
    Ok(UploadedAsset {
        asset_id: outcome.piece_cid,
        manifest,
        pieces: pieces.into_iter().map(|(p, _)| p).collect(),
    })
}

/// What has been fed to the provider so far.
struct Fed {
    total: u64,
    /// The file's first bytes, for sniffing its type.
    head: Vec<u8>,
}

/// Feeds one piece (at most `cap` bytes) from `input` into `tx`. On a
/// failure of the source or the size limit, the piece's body is ended with
/// an error so that the provider upload aborts without a finalize.
async fn feed_piece<S>(
    input: &mut Lookahead<S>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    cap: u64,
    max_size: u64,
    fed: &mut Fed,
    progress: &Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<(), UploadError>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let mut sent: u64 = 0;
    loop {
        let left = cap - sent;
        if left == 0 {
            return Ok(());
        }
        let boundary = left <= MIN_UPLOAD_SIZE;
        if boundary {
            // Look 127 bytes past the boundary (or to the end) before cutting.
            while input.pending_len < left + MIN_UPLOAD_SIZE && !input.eof {
                if let Err(e) = input.fill().await {
                    return Err(abort(tx, e).await);
                }
            }
        } else if input.pending_len == 0 {
            if let Err(e) = input.fill().await {
                return Err(abort(tx, e).await);
            }
            if input.pending_len == 0 && input.eof {
                return Ok(());
            }
            continue;
        }
        let n = if !boundary {
            input.pending_len.min(left - MIN_UPLOAD_SIZE)
        } else if input.pending_len <= left {
            input.pending_len // the file ends in this piece
        } else if input.pending_len < left + MIN_UPLOAD_SIZE {
            input.pending_len - MIN_UPLOAD_SIZE // leave the last piece its 127 bytes
        } else {
            left
        };
        for chunk in input.take(n) {
            fed.total += chunk.len() as u64;
            if fed.total > max_size {
                let e = UploadError::TooLarge { limit: max_size };
                return Err(abort(tx, e).await);
            }
            if fed.head.len() < SNIFF_LEN {
                let want = (SNIFF_LEN - fed.head.len()).min(chunk.len());
                fed.head.extend_from_slice(&chunk[..want]);
            }
            if tx.send(Ok(chunk)).await.is_err() {
                // The provider upload ended early; its result says why.
                return Ok(());
            }
            progress(fed.total);
        }
        sent += n;
        if boundary || (input.eof && input.pending_len == 0) {
            return Ok(());
        }
    }
}

/// Ends a piece's body with an error (so no finalize is sent) and returns `e`.
async fn abort(tx: &mpsc::Sender<io::Result<Bytes>>, e: UploadError) -> UploadError {
    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
    e
}
