//! Transfer: ranged GETs of one chunk with retries and resume, the checks on
//! each answer (status, `Content-Range`, length), and the order chunks are
//! handed out in.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::{GetError, ATTEMPTS, CHUNK};
use crate::progress::Progress;

/// What an HTTP status means for a piece request.
pub(super) fn status_meaning(status: u16) -> &'static str {
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
pub(super) fn transient(status: u16) -> bool {
    status == 429 || status >= 500
}

/// One failed attempt: either final or worth another try.
pub(super) enum Attempt {
    Final(GetError),
    Retry(String),
}

pub(super) async fn status_error(url: &str, resp: reqwest::Response) -> GetError {
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
pub(super) async fn fetch_range_once(
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
    type Locks = std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>;
    static WARMING: std::sync::LazyLock<std::sync::Mutex<Locks>> =
        std::sync::LazyLock::new(Default::default);
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
pub(super) async fn fetch_range(
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

pub(super) fn describe_reqwest(e: &reqwest::Error) -> String {
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
pub(super) fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
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
pub(super) async fn probe_size(client: &reqwest::Client, url: &str) -> Result<u64, GetError> {
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

/// A chunk of the file: which request fetches it.
pub(super) struct Chunk {
    pub(super) seq: u64,
    pub(super) piece: usize,
    pub(super) start: u64,
    pub(super) end: u64,
}

/// Hands out chunks in file order from `from` on.
pub(super) struct Cursor {
    pub(super) sizes: Vec<u64>,
    pub(super) piece: usize,
    pub(super) offset: u64,
    pub(super) seq: u64,
}

impl Cursor {
    pub(super) fn new(sizes: Vec<u64>, mut from: u64) -> Cursor {
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

    pub(super) fn next_chunk(&mut self) -> Option<Chunk> {
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
