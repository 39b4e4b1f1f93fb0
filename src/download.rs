//! `beam-edge get`: downloads a piece or an asset and checks every byte
//! against its PieceCID before the file is put in place.
//!
//! The target is a PieceCID, an asset id (the PieceCID of an asset manifest,
//! see [`crate::upload::manifest`]) or an `http(s)` URL naming one
//! (`…/piece/<cid>`, `…/asset/<id>`, Beam's `…/<cid>`). Bytes come from an
//! edge (`--edge`), a storage provider (`--provider`, Curio's `/piece/<cid>`)
//! or Beam (`https://<payer>.<network domain>/<cid>`, from the config's
//! `upstream` section), in ranged requests of [`CHUNK`] bytes, `-j N` at once.
//! Chunks are written in file order into `FILE.part` while a streaming CommP
//! hashes them: each piece is compared with its CID as soon as its last byte
//! arrives. Only a file whose every piece matched is renamed to `FILE`.
//!
//! Resume: `FILE.part` always holds a prefix of the file (chunks are written
//! in order), so a new run hashes that prefix again and asks only for the
//! rest. A piece that does not match its CID is cut off the `.part` (the
//! verified pieces before it stay) and the run exits non-zero naming it.
//!
//! Memory stays flat: at most `2 × jobs` chunks are in flight or waiting for
//! their turn to be written. This is not a general HTTP downloader: a target
//! whose URL names no PieceCID is refused, since nothing could check it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::piece::commp::{commp_of, CommP};
use crate::piece::{CidVersion, PieceCid};
use crate::progress::Progress;
use crate::upload::manifest::{Manifest, MAX_MANIFEST_BYTES};

/// Bytes per ranged request. Large enough that a request's round trip is
/// small beside its transfer, small enough that `2 × jobs` of them in
/// memory stay modest (16 jobs: 128 MiB).
pub const CHUNK: u64 = 4 << 20;

/// Attempts per chunk for a transient failure (connection, timeout, 5xx,
/// 429, short body, a 200 that ignored the Range).
const ATTEMPTS: u32 = 4;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// A PieceCID, an asset id or an http(s) URL.
    pub target: String,
    /// Output file; `None`: the asset's file name, else the CID.
    pub output: Option<PathBuf>,
    /// An edge's base URL (`http://edge:8080`): `/piece/<cid>` there.
    pub edge: Option<String>,
    /// A storage provider's service URL: `/piece/<cid>` there.
    pub provider: Option<String>,
    /// Beam's base URL (`https://<payer>.filbeam.io`), from the config.
    pub beam: Option<String>,
    /// Ranged requests at once (1–64).
    pub jobs: usize,
    /// Treat a bare CID as a piece even when it is an asset manifest.
    pub piece_only: bool,
    /// Hashing threads.
    pub hash_threads: usize,
}

/// Why a download failed. Every variant says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The target is neither a CID nor a usable URL.
    #[error("{0}")]
    BadTarget(String),
    /// No source was given for a bare CID.
    #[error("no source for {0}: give --edge URL, --provider URL, or a payer (--payer 0x…, --network) to read from Beam")]
    NoSource(String),
    /// The server answered with a status that retrying will not change.
    #[error("{url}: HTTP {status}: {meaning}{detail}")]
    Status {
        /// The request's URL.
        url: String,
        /// Its status.
        status: u16,
        /// What the status means here.
        meaning: &'static str,
        /// The first line of the body, if any.
        detail: String,
    },
    /// Transport or protocol failure after every retry.
    #[error("{url}: {reason} (after {ATTEMPTS} attempts)")]
    Transfer {
        /// The request's URL.
        url: String,
        /// The last failure.
        reason: String,
    },
    /// A piece did not hash to its CID.
    #[error("piece {index} ({cid}) does not hash to its PieceCID (got {got}): the source sent wrong bytes; {part} keeps the {kept} bytes verified before it, run again to resume")]
    Mismatch {
        /// 1-based index of the piece in the file (1 for a lone piece).
        index: usize,
        /// Its CID.
        cid: String,
        /// What the bytes hash to.
        got: String,
        /// The partial file.
        part: String,
        /// Bytes left in it.
        kept: u64,
        /// Some of the piece's bytes came from an earlier run's `.part`
        /// (which may be what was wrong: worth one fresh try).
        from_resume: bool,
    },
    /// The asset manifest is not usable.
    #[error("asset {id}: {reason}")]
    Manifest {
        /// The asset id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else (runtime start-up, a client that cannot be built).
    #[error("{0}")]
    Other(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GetError + '_ {
    move |source| GetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One piece to fetch and check: where its bytes are and what they must hash to.
#[derive(Debug, Clone)]
struct PiecePlan {
    cid: PieceCid,
    url: String,
    size: u64,
}

/// How a URL for a piece is made from its CID: `prefix + cid + suffix`.
#[derive(Debug, Clone)]
struct PieceUrls {
    prefix: String,
    suffix: String,
}

impl PieceUrls {
    fn under(base: &str, path: &str) -> PieceUrls {
        PieceUrls {
            prefix: format!("{}{path}", base.trim_end_matches('/')),
            suffix: String::new(),
        }
    }

    fn of(&self, cid: &PieceCid) -> String {
        format!("{}{cid}{}", self.prefix, self.suffix)
    }
}

/// A resolved target: the pieces in file order and the default file name.
struct Plan {
    pieces: Vec<PiecePlan>,
    name: String,
    what: String,
}

fn parse_cid(s: &str) -> Result<PieceCid, GetError> {
    PieceCid::parse(s).map_err(|e| {
        GetError::BadTarget(format!(
            "invalid PieceCID or asset id \"{s}\": {e} (give a PieceCID bafkzcib…/baga6ea4seaq…, an asset id, or an http(s) URL)"
        ))
    })
}

/// Splits a URL target into where its pieces live, the CID it names, and
/// whether it names an asset (`…/asset/<id>`).
fn parse_url_target(target: &str) -> Result<(PieceUrls, PieceCid, bool), GetError> {
    let url = url::Url::parse(target)
        .map_err(|e| GetError::BadTarget(format!("invalid URL \"{target}\": {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(GetError::BadTarget(format!(
            "invalid URL \"{target}\": only http:// and https:// URLs with a host are supported"
        )));
    }
    let segments: Vec<&str> = url.path().split('/').collect();
    // An edge's /asset/<id>: the pieces are at the same edge's /piece/<cid>.
    if let Some(i) = segments.iter().position(|s| *s == "asset") {
        if let Some(id) = segments.get(i + 1).filter(|s| !s.is_empty()) {
            let cid = parse_cid(id)?;
            let mut base = url.clone();
            base.set_path(&segments[..i].join("/"));
            base.set_query(None);
            let base = base.as_str().trim_end_matches('/').to_string();
            return Ok((PieceUrls::under(&base, "/piece/"), cid, true));
        }
    }
    // Otherwise the last segment that is a PieceCID (Beam ignores segments
    // after it, e.g. /<cid>/name.mp4).
    for (i, seg) in segments.iter().enumerate().rev() {
        if let Ok(cid) = PieceCid::parse(seg) {
            let prefix_path = format!("{}/", segments[..i].join("/"));
            let mut prefix = url.clone();
            prefix.set_path(&prefix_path);
            prefix.set_query(None);
            let rest = segments[i + 1..].join("/");
            let mut suffix = if rest.is_empty() {
                String::new()
            } else {
                format!("/{rest}")
            };
            if let Some(q) = url.query() {
                suffix.push('?');
                suffix.push_str(q);
            }
            return Ok((
                PieceUrls {
                    prefix: prefix.as_str().to_string(),
                    suffix,
                },
                cid,
                false,
            ));
        }
    }
    Err(GetError::BadTarget(format!(
        "URL \"{target}\" names no PieceCID (…/piece/<cid>, …/asset/<id> or Beam's …/<cid>): there would be nothing to verify the bytes against"
    )))
}

/// What an HTTP status means for a piece request.
fn status_meaning(status: u16) -> &'static str {
    match status {
        400 => "the source refused the request (a CID it does not accept?)",
        401 => "the source wants credentials",
        402 => "payment required: no CDN data set of this payer holds the piece, or its egress quota is exhausted",
        403 => "forbidden: the payer or the piece is blocked",
        404 => "not found: the source does not have this piece (a fresh upload reaches Beam only after its indexer sees it; try --provider)",
        410 => "gone",
        416 => "range not satisfiable: the source's piece is shorter than its CID says",
        451 => "the provider has this piece on its deny list",
        429 => "too many requests",
        _ if status >= 500 => "the source failed",
        _ => "unexpected status",
    }
}

/// A status worth retrying.
fn transient(status: u16) -> bool {
    status == 429 || status >= 500
}

/// One failed attempt: either final or worth another try.
enum Attempt {
    Final(GetError),
    Retry(String),
}

async fn status_error(url: &str, resp: reqwest::Response) -> GetError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let first = String::from_utf8_lossy(&body[..body.len().min(300)])
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    GetError::Status {
        url: url.to_string(),
        status,
        meaning: status_meaning(status),
        detail: if first.is_empty() {
            String::new()
        } else {
            format!(" (server said: {first})")
        },
    }
}

/// GETs `[start, end]` of `url` (a piece of `size` bytes when known) and
/// returns exactly those bytes, calling `on_bytes` as they arrive.
async fn fetch_range_once(
    client: &reqwest::Client,
    url: &str,
    start: u64,
    end: u64,
    size: Option<u64>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Bytes, Attempt> {
    let resp = client
        .get(url)
        .header(http::header::RANGE, format!("bytes={start}-{end}"))
        // Curio compresses otherwise, and then drops Range and Content-Length.
        .header(http::header::ACCEPT_ENCODING, "identity")
        .send()
        .await
        .map_err(|e| Attempt::Retry(describe_reqwest(&e)))?;
    let status = resp.status().as_u16();
    let want = end - start + 1;
    match status {
        206 => {
            let cr = resp
                .headers()
                .get(http::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let ok = parse_content_range(&cr).is_some_and(|(a, b, total)| {
                a == start && b == end && size.is_none_or(|s| total == Some(s))
            });
            if !ok {
                return Err(Attempt::Final(GetError::Transfer {
                    url: url.to_string(),
                    reason: format!(
                        "asked for bytes {start}-{end}{}, the answer's Content-Range is \"{cr}\"",
                        size.map(|s| format!(" of {s}")).unwrap_or_default()
                    ),
                }));
            }
        }
        200 => {
            // A whole body is fine when it is what was asked for (a cold
            // Beam streams it chunked, without Content-Length).
            let whole =
                start == 0 && size == Some(want) && resp.content_length().is_none_or(|l| l == want);
            if !whole {
                warm_cold_source(url, resp).await;
                return Err(Attempt::Retry(
                    "the source ignored the Range and sent the whole piece (a cold Beam cache does): it was read to the end once, so Beam warms and answers ranges"
                        .into(),
                ));
            }
        }
        s if transient(s) => {
            let e = status_error(url, resp).await;
            return Err(Attempt::Retry(e.to_string()));
        }
        _ => return Err(Attempt::Final(status_error(url, resp).await)),
    }
    let mut buf = BytesMut::with_capacity(want as usize);
    let mut body = resp.bytes_stream();
    while let Some(part) = body.next().await {
        let part = part.map_err(|e| Attempt::Retry(describe_reqwest(&e)))?;
        if buf.len() as u64 + part.len() as u64 > want {
            return Err(Attempt::Final(GetError::Transfer {
                url: url.to_string(),
                reason: format!("the answer to bytes {start}-{end} is longer than {want} bytes"),
            }));
        }
        buf.extend_from_slice(&part);
        on_bytes(part.len() as u64);
    }
    if (buf.len() as u64) < want {
        return Err(Attempt::Retry(format!(
            "the answer to bytes {start}-{end} ended after {} of {want} bytes",
            buf.len()
        )));
    }
    Ok(buf.freeze())
}

/// A whole-piece answer to a range: Beam while the piece is cold in its CDN,
/// which it fills only when a response completes. One worker per URL reads
/// that body to the end (discarding it: memory stays flat), so the retries
/// get 206s; the others drop theirs and wait for it, instead of each
/// costing the payer a whole piece.
async fn warm_cold_source(url: &str, resp: reqwest::Response) {
    static WARMING: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let lock = WARMING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(url.to_string())
        .or_default()
        .clone();
    match lock.clone().try_lock_owned() {
        Ok(_drainer) => {
            let mut body = resp.bytes_stream();
            while let Some(Ok(_)) = body.next().await {}
        }
        Err(_) => {
            drop(resp);
            drop(lock.lock().await);
        }
    }
}

/// [`fetch_range_once`] with retries; bytes of a failed attempt are taken
/// back from the progress count.
async fn fetch_range(
    client: &reqwest::Client,
    url: &str,
    start: u64,
    end: u64,
    size: Option<u64>,
    progress: Option<&Progress>,
) -> Result<Bytes, GetError> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 << (2 * (attempt - 1)))).await;
        }
        let got = std::sync::atomic::AtomicU64::new(0);
        let on_bytes = |n: u64| {
            got.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            if let Some(p) = progress {
                p.add(n);
            }
        };
        match fetch_range_once(client, url, start, end, size, &on_bytes).await {
            Ok(b) => return Ok(b),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry(reason)) => {
                if let Some(p) = progress {
                    p.take_back(got.load(std::sync::atomic::Ordering::Relaxed));
                }
                last = reason;
            }
        }
    }
    Err(GetError::Transfer {
        url: url.to_string(),
        reason: last,
    })
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `bytes A-B/T` (T may be `*`) → (A, B, Some(T)).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((a.parse().ok()?, b.parse().ok()?, total))
}

/// The size of a piece whose CID carries none (v1): from a one-byte request.
async fn probe_size(client: &reqwest::Client, url: &str) -> Result<u64, GetError> {
    let resp = client
        .get(url)
        .header(http::header::RANGE, "bytes=0-0")
        .header(http::header::ACCEPT_ENCODING, "identity")
        .send()
        .await
        .map_err(|e| GetError::Transfer {
            url: url.to_string(),
            reason: describe_reqwest(&e),
        })?;
    match resp.status().as_u16() {
        206 => resp
            .headers()
            .get(http::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .and_then(|(_, _, t)| t)
            .ok_or_else(|| GetError::Transfer {
                url: url.to_string(),
                reason: "a 206 without a usable Content-Range total".into(),
            }),
        200 => resp.content_length().ok_or_else(|| GetError::Transfer {
            url: url.to_string(),
            reason: "a 200 without Content-Length".into(),
        }),
        _ => Err(status_error(url, resp).await),
    }
}

/// Resolves the target into pieces. A v2 CID small enough to be a manifest
/// whose first byte is `{` is fetched whole, hashed against its CID and
/// parsed: an asset manifest makes the target an asset.
async fn plan(client: &reqwest::Client, o: &GetOptions) -> Result<Plan, GetError> {
    let target = o.target.trim();
    let (urls, cid, asset_url) = if target.starts_with("http://") || target.starts_with("https://")
    {
        parse_url_target(target)?
    } else if target.contains("://") {
        return Err(GetError::BadTarget(format!(
            "invalid URL \"{target}\": only http:// and https:// are supported"
        )));
    } else {
        let cid = parse_cid(target)?;
        let urls = if let Some(edge) = &o.edge {
            PieceUrls::under(edge, "/piece/")
        } else if let Some(p) = &o.provider {
            PieceUrls::under(p, "/piece/")
        } else if let Some(b) = &o.beam {
            PieceUrls::under(b, "/")
        } else {
            return Err(GetError::NoSource(cid.to_string()));
        };
        (urls, cid, false)
    };
    let manifest_candidate = !o.piece_only
        && cid.version() == CidVersion::V2
        && cid.payload_size().is_some_and(|s| s <= MAX_MANIFEST_BYTES);
    let url = urls.of(&cid);
    if asset_url && !manifest_candidate {
        return Err(GetError::Manifest {
            id: cid.to_string(),
            reason: "an asset id is the v2 PieceCID of a manifest of at most 64 MiB".into(),
        });
    }
    if manifest_candidate {
        let size = cid.payload_size().unwrap_or(0);
        let first = fetch_range(client, &url, 0, 0, Some(size), None).await?;
        if first.first() == Some(&b'{') {
            let bytes = fetch_range(client, &url, 0, size - 1, Some(size), None).await?;
            let got = commp_of(&bytes).map_err(|e| GetError::Other(e.to_string()))?;
            if got != cid {
                return Err(GetError::Manifest {
                    id: cid.to_string(),
                    reason: format!(
                        "its bytes hash to {got}, not to the id: the source sent wrong bytes"
                    ),
                });
            }
            match Manifest::parse(&bytes) {
                Ok(m) => return asset_plan(&urls, &cid, &m),
                Err(e) if asset_url => {
                    return Err(GetError::Manifest {
                        id: cid.to_string(),
                        reason: e.to_string(),
                    })
                }
                Err(_) => {} // a JSON file that is no manifest: a piece
            }
        } else if asset_url {
            return Err(GetError::Manifest {
                id: cid.to_string(),
                reason: "this piece is not an asset manifest".into(),
            });
        }
    }
    let size = match cid.payload_size() {
        Some(s) => s,
        None => probe_size(client, &url).await?,
    };
    Ok(Plan {
        pieces: vec![PiecePlan {
            cid: cid.clone(),
            url,
            size,
        }],
        name: cid.to_string(),
        what: format!("piece {cid}"),
    })
}

fn asset_plan(urls: &PieceUrls, id: &PieceCid, m: &Manifest) -> Result<Plan, GetError> {
    let mut pieces = Vec::with_capacity(m.pieces.len());
    for p in &m.pieces {
        let cid = PieceCid::parse(&p.cid).map_err(|e| GetError::Manifest {
            id: id.to_string(),
            reason: format!("piece {}: {e}", p.cid),
        })?;
        pieces.push(PiecePlan {
            url: urls.of(&cid),
            cid,
            size: p.size,
        });
    }
    // Only the last path component of the uploader's name, and never a
    // hidden or empty one: the name comes from the network.
    let name = Path::new(&m.file_name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .unwrap_or_else(|| id.to_string());
    Ok(Plan {
        what: format!("asset {id} ({} pieces)", pieces.len()),
        pieces,
        name,
    })
}

/// Hashes the file's bytes in order, piece by piece, and compares each
/// piece with its CID when its last byte went in.
struct Verifier {
    pieces: Vec<(PieceCid, u64)>,
    /// Index of the piece being hashed.
    index: usize,
    /// Bytes of it hashed so far.
    in_piece: u64,
    /// File offset where it starts.
    piece_start: u64,
    hasher: CommP,
    threads: usize,
}

/// A piece that did not match: which, what it hashed to, where it starts.
struct Mismatch {
    index: usize,
    cid: String,
    got: String,
    start: u64,
}

impl Verifier {
    fn new(pieces: Vec<(PieceCid, u64)>, threads: usize) -> Verifier {
        Verifier {
            pieces,
            index: 0,
            in_piece: 0,
            piece_start: 0,
            hasher: CommP::with_threads(threads),
            threads,
        }
    }

    /// Restarts at the piece starting at `start`, after a mismatch there.
    fn restart_piece(&mut self) {
        self.in_piece = 0;
        self.hasher = CommP::with_threads(self.threads);
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), Mismatch> {
        while !data.is_empty() {
            let Some(&(_, size)) = self.pieces.get(self.index) else {
                return Ok(()); // past the end: the writer never sends more
            };
            let take = (size - self.in_piece).min(data.len() as u64) as usize;
            self.hasher.update(&data[..take]);
            self.in_piece += take as u64;
            data = &data[take..];
            if self.in_piece == size {
                let hasher = std::mem::replace(&mut self.hasher, CommP::with_threads(self.threads));
                let cid = self.pieces[self.index].0.clone();
                let matched = match hasher.finish() {
                    Ok(got) if cid.version() == CidVersion::V1 => {
                        (got.to_v1() == cid, got.to_v1().to_string())
                    }
                    Ok(got) => (got == cid, got.to_string()),
                    Err(e) => (false, e.to_string()),
                };
                if !matched.0 {
                    self.restart_piece();
                    return Err(Mismatch {
                        index: self.index + 1,
                        cid: cid.to_string(),
                        got: matched.1,
                        start: self.piece_start,
                    });
                }
                self.index += 1;
                self.piece_start += size;
                self.in_piece = 0;
            }
        }
        Ok(())
    }
}

/// A chunk of the file: which request fetches it.
struct Chunk {
    seq: u64,
    piece: usize,
    start: u64,
    end: u64,
}

/// Hands out chunks in file order from `from` on.
struct Cursor {
    sizes: Vec<u64>,
    piece: usize,
    offset: u64,
    seq: u64,
}

impl Cursor {
    fn new(sizes: Vec<u64>, mut from: u64) -> Cursor {
        let mut piece = 0;
        while piece < sizes.len() && from >= sizes[piece] {
            from -= sizes[piece];
            piece += 1;
        }
        Cursor {
            sizes,
            piece,
            offset: from,
            seq: 0,
        }
    }

    fn next_chunk(&mut self) -> Option<Chunk> {
        let size = *self.sizes.get(self.piece)?;
        let start = self.offset;
        let end = (start + CHUNK).min(size) - 1;
        let chunk = Chunk {
            seq: self.seq,
            piece: self.piece,
            start,
            end,
        };
        self.seq += 1;
        if end + 1 == size {
            self.piece += 1;
            self.offset = 0;
        } else {
            self.offset = end + 1;
        }
        Some(chunk)
    }
}

/// The `.part` file beside `out`.
pub fn part_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Runs `beam-edge get`; returns the final file's path.
pub fn get_command(o: &GetOptions) -> Result<PathBuf, GetError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| GetError::Other(format!("cannot start the async runtime: {e}")))?;
    match rt.block_on(get(o)) {
        // The bad piece was partly read back from the .part, which now ends
        // before it: fetch it fresh once before blaming the source.
        Err(GetError::Mismatch {
            index,
            from_resume: true,
            ..
        }) => {
            eprintln!("piece {index} did not match and was partly from the earlier run's .part: fetching it again");
            rt.block_on(get(o))
        }
        other => other,
    }
}

async fn get(o: &GetOptions) -> Result<PathBuf, GetError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(o.jobs.max(1))
        .build()
        .map_err(|e| GetError::Other(format!("cannot build the HTTP client: {e}")))?;
    let plan = plan(&client, o).await?;
    let out = o
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(&plan.name));
    let part = part_path(&out);
    let total: u64 = plan.pieces.iter().map(|p| p.size).sum();
    let mut verifier = Verifier::new(
        plan.pieces
            .iter()
            .map(|p| (p.cid.clone(), p.size))
            .collect(),
        o.hash_threads.max(1),
    );

    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part)
        .map_err(io_err(&part))?;
    let mut have = file.metadata().map_err(io_err(&part))?.len();
    if have > total {
        return Err(GetError::BadTarget(format!(
            "{} holds {have} bytes, more than the {total} of {}: it is not a partial download of this target; remove it",
            part.display(),
            plan.what
        )));
    }
    // Hash the prefix an earlier run left; a piece in it that does not match
    // is cut off and fetched again.
    if have > 0 {
        eprintln!(
            "resuming {}: {have} of {total} bytes already there, checking them",
            part.display()
        );
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < have {
            let n = (have - pos).min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..n]).map_err(io_err(&part))?;
            if let Err(m) = verifier.feed(&buf[..n]) {
                eprintln!(
                    "piece {} ({}) in {} does not match its CID: fetching it again",
                    m.index,
                    m.cid,
                    part.display()
                );
                have = m.start;
                file.set_len(have).map_err(io_err(&part))?;
                break;
            }
            pos += n as u64;
        }
        file.seek(SeekFrom::Start(have)).map_err(io_err(&part))?;
    }

    eprintln!(
        "getting {} ({total} bytes) into {}, {} request(s) at once",
        plan.what,
        out.display(),
        o.jobs
    );
    let progress = Progress::resumed(total, have);
    let jobs = o.jobs.clamp(1, 64);
    let window = Arc::new(Semaphore::new(2 * jobs));
    let cursor = Arc::new(Mutex::new(Cursor::new(
        plan.pieces.iter().map(|p| p.size).collect(),
        have,
    )));
    let pieces = Arc::new(plan.pieces);
    let (tx, rx) = mpsc::unbounded_channel::<(u64, Bytes, OwnedSemaphorePermit)>();
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<GetError>();

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let (client, window, cursor, pieces, tx, fail_tx, progress) = (
            client.clone(),
            window.clone(),
            cursor.clone(),
            pieces.clone(),
            tx.clone(),
            fail_tx.clone(),
            progress.clone(),
        );
        workers.spawn(async move {
            loop {
                // The permit comes first, so the lowest chunk not yet written
                // is always being fetched: the window cannot deadlock.
                let Ok(permit) = window.clone().acquire_owned().await else {
                    return;
                };
                let next = cursor
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next_chunk();
                let Some(c) = next else { return };
                let p = &pieces[c.piece];
                match fetch_range(
                    &client,
                    &p.url,
                    c.start,
                    c.end,
                    Some(p.size),
                    Some(&progress),
                )
                .await
                {
                    Ok(bytes) => {
                        if tx.send((c.seq, bytes, permit)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = fail_tx.send(e);
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    drop(fail_tx);

    // The writer: chunks into the file in order, through the verifier.
    let writer_part = part.clone();
    let resumed_from = have;
    let writer = tokio::task::spawn_blocking(move || -> Result<(), GetError> {
        let mut rx = rx;
        let mut pending: BTreeMap<u64, (Bytes, OwnedSemaphorePermit)> = BTreeMap::new();
        let mut next = 0u64;
        let mut written = have;
        while let Some((seq, bytes, permit)) = rx.blocking_recv() {
            pending.insert(seq, (bytes, permit));
            while let Some((bytes, permit)) = pending.remove(&next) {
                if let Err(m) = verifier.feed(&bytes) {
                    // Keep only what was verified before the bad piece.
                    file.set_len(m.start).map_err(io_err(&writer_part))?;
                    return Err(GetError::Mismatch {
                        index: m.index,
                        cid: m.cid,
                        got: m.got,
                        part: writer_part.display().to_string(),
                        kept: m.start,
                        from_resume: m.start < resumed_from,
                    });
                }
                file.write_all(&bytes).map_err(io_err(&writer_part))?;
                written += bytes.len() as u64;
                next += 1;
                drop(permit);
            }
        }
        if written != total || verifier.index != verifier.pieces.len() {
            // The workers stopped early; their error says why.
            return Err(GetError::Other(format!(
                "stopped after {written} of {total} bytes"
            )));
        }
        file.sync_all().map_err(io_err(&writer_part))?;
        Ok(())
    });

    let written = writer
        .await
        .map_err(|e| GetError::Other(format!("the writer failed: {e}")))?;
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    progress.finish();
    if let Ok(e) = fail_rx.try_recv() {
        if !matches!(written, Err(GetError::Mismatch { .. })) {
            return Err(e);
        }
    }
    written?;
    std::fs::rename(&part, &out).map_err(io_err(&out))?;
    eprintln!(
        "verified {} piece(s) against their PieceCID: {} ({total} bytes)",
        pieces.len(),
        out.display()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_targets_name_their_cid_and_where_pieces_live() {
        let cid = "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy";
        let (u, c, asset) = parse_url_target(&format!("http://e:8080/piece/{cid}")).unwrap();
        assert_eq!(c.to_string(), cid);
        assert!(!asset);
        assert_eq!(u.of(&c), format!("http://e:8080/piece/{cid}"));
        let (u, c, asset) =
            parse_url_target(&format!("https://0xab.filbeam.io/{cid}/a.mp4")).unwrap();
        assert!(!asset);
        assert_eq!(u.of(&c), format!("https://0xab.filbeam.io/{cid}/a.mp4"));
        let (u, c, asset) = parse_url_target(&format!("http://e/x/asset/{cid}")).unwrap();
        assert!(asset);
        assert_eq!(u.of(&c), format!("http://e/x/piece/{cid}"));
        for bad in ["http://e/piece/nope", "ftp://e/x", "http:///x"] {
            assert!(parse_url_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunks_follow_the_file_and_never_cross_a_piece() {
        let mut c = Cursor::new(vec![10 << 20, 3], (4 << 20) + 7);
        let spans: Vec<(usize, u64, u64)> = std::iter::from_fn(|| c.next_chunk())
            .map(|c| (c.piece, c.start, c.end))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, (4 << 20) + 7, (8 << 20) + 6),
                (0, (8 << 20) + 7, (10 << 20) - 1),
                (1, 0, 2)
            ]
        );
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 5-6/*"), Some((5, 6, None)));
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
