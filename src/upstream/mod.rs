//! Fetching piece bytes from Beam, with every response checked before a byte
//! of it is used.
//!
//! [`Upstream::fetch`] asks for one inclusive byte range of a piece and
//! returns an [`UpstreamBody`] that yields exactly those bytes or an error:
//!
//! - a 206 must carry `Content-Range: bytes START-END/TOTAL` equal to what
//!   was asked (and the known size), and a `Content-Length` equal to the
//!   range length when it has one;
//! - a 200 (Beam's answer while a piece is cold in its CDN, or any server
//!   that ignores `Range`) must be the whole piece: its `Content-Length`
//!   must equal the known size; the bytes before the range are read and
//!   dropped, and the response is dropped as soon as the range is complete,
//!   so a range never costs more than the bytes up to its end;
//! - a body that ends early is [`UpstreamError::ShortBody`].
//!
//! Non-2xx answers become [`UpstreamError`]s that say what Beam meant (404
//! unknown or not yet indexed, 402 no CDN data set or quota, 403 refused),
//! and timeouts and connection failures are told apart, so `edge` can answer
//! 404/402/403/504/502 honestly. Nothing here knows about the client side.
//!
//! Requests never carry the client's `Authorization` or `Cookie` (they are
//! built from scratch), and ask for `Accept-Encoding: identity` so offsets
//! are byte-exact.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header;

use crate::http::range::ByteRange;
use crate::metrics;

pub mod resolve;

/// Which upstream a request went to (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// The Beam CDN.
    Beam,
    /// A storage provider's `/piece/` endpoint.
    Provider,
}

impl UpstreamKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamKind::Beam => "beam",
            UpstreamKind::Provider => "provider",
        }
    }
}

/// Why an upstream fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream is not usable with this configuration.
    #[error("{0}")]
    NotConfigured(String),
    /// 404: the piece is unknown to Beam, or not indexed yet.
    #[error(
        "piece not found upstream (unknown, or not yet indexed by Beam after a recent upload)"
    )]
    NotFound,
    /// 402: no CDN data set for this payer and piece, or egress quota exhausted.
    #[error("upstream requires payment: no CDN-enabled data set of this payer holds the piece, or the egress quota is exhausted")]
    PaymentRequired,
    /// 403: the upstream refuses to serve this payer or piece.
    #[error("upstream refused the request (403: payer or piece is blocked)")]
    Forbidden,
    /// Another non-2xx status.
    #[error("upstream answered {0}")]
    Status(u16),
    /// No response header, or no body bytes, within the read timeout; or no
    /// connection within the connect timeout.
    #[error("upstream timed out: {0}")]
    Timeout(String),
    /// The connection could not be made or broke.
    #[error("upstream connection failed: {0}")]
    Connect(String),
    /// The response was not what was asked for.
    #[error("upstream sent a bad response: {0}")]
    BadResponse(String),
    /// The body ended before the promised bytes arrived.
    #[error("upstream body ended early: expected {expected} bytes, got {got}")]
    ShortBody {
        /// Bytes the range needed.
        expected: u64,
        /// Bytes that arrived.
        got: u64,
    },
}

impl UpstreamError {
    /// True for failures worth retrying on the same upstream (timeouts,
    /// broken connections, short bodies, 5xx); false for answers that would
    /// be the same again (404, 402, 403, a malformed response).
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Timeout(_)
            | UpstreamError::Connect(_)
            | UpstreamError::ShortBody { .. } => true,
            UpstreamError::Status(s) => *s >= 500 || *s == 429,
            _ => false,
        }
    }

    /// The status to answer the client with, when no header was sent yet.
    pub fn client_status(&self) -> u16 {
        match self {
            UpstreamError::NotConfigured(_) => 503,
            UpstreamError::NotFound => 404,
            UpstreamError::PaymentRequired => 402,
            UpstreamError::Forbidden => 403,
            UpstreamError::Timeout(_) => 504,
            UpstreamError::Status(_)
            | UpstreamError::Connect(_)
            | UpstreamError::BadResponse(_)
            | UpstreamError::ShortBody { .. } => 502,
        }
    }

    /// The `outcome` label of `beam_edge_upstream_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            UpstreamError::NotConfigured(_) => "not_configured",
            UpstreamError::NotFound => "not_found",
            UpstreamError::PaymentRequired => "payment_required",
            UpstreamError::Forbidden => "forbidden",
            UpstreamError::Status(_) => "error_status",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Connect(_) => "connect_error",
            UpstreamError::BadResponse(_) => "bad_response",
            UpstreamError::ShortBody { .. } => "short_body",
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> UpstreamError {
        // The innermost cause is the useful part ("connection refused").
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let text = cause.to_string();
        if e.is_timeout() {
            UpstreamError::Timeout(text)
        } else if e.is_connect() {
            UpstreamError::Connect(text)
        } else if e.is_body() || e.is_decode() {
            UpstreamError::Connect(format!("body: {text}"))
        } else {
            UpstreamError::Connect(text)
        }
    }
}

/// Upstream settings, taken from the config.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Beam base URL with placeholders filled, or `None` when the payer is missing.
    pub beam_base_url: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Header / body read timeout.
    pub read_timeout: Duration,
}

/// A client for the Beam CDN.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    settings: UpstreamSettings,
}

/// Where a piece request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// The Beam CDN (`upstream.beam_url`).
    Beam,
    /// A storage provider's service URL (`upstream.providers`), serving `/piece/<cid>`.
    Provider(&'a str),
}

impl Origin<'_> {
    fn kind(&self) -> UpstreamKind {
        match self {
            Origin::Beam => UpstreamKind::Beam,
            Origin::Provider(_) => UpstreamKind::Provider,
        }
    }
}

/// What a fetch learnt about the piece from the response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceFacts {
    /// The piece's total size in bytes.
    pub size: u64,
}

impl Upstream {
    /// Builds the HTTP client (rustls, pooled keep-alive connections).
    pub fn new(settings: UpstreamSettings) -> Result<Upstream, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("beam-edge/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))?;
        Ok(Upstream { client, settings })
    }

    /// The URL of a piece on Beam.
    pub fn piece_url(&self, cid: &str) -> Result<String, UpstreamError> {
        match &self.settings.beam_base_url {
            Some(base) => Ok(format!("{base}/{cid}")),
            None => Err(UpstreamError::NotConfigured(
                "upstream.payer is not set: beam-edge does not know whose Beam data sets to read (set upstream.payer or --payer)".into(),
            )),
        }
    }

    /// Fetches `range` of piece `cid`. `known_size` is the piece size when
    /// already known (from a v2 CID or an earlier response); the response
    /// must agree with it. Returns once the response header has been checked.
    pub async fn fetch(
        &self,
        cid: &str,
        range: ByteRange,
        known_size: Option<u64>,
    ) -> Result<UpstreamBody, UpstreamError> {
        self.fetch_from(Origin::Beam, cid, range, known_size).await
    }

    /// [`Upstream::fetch`] from a chosen origin.
    pub async fn fetch_from(
        &self,
        origin: Origin<'_>,
        cid: &str,
        range: ByteRange,
        known_size: Option<u64>,
    ) -> Result<UpstreamBody, UpstreamError> {
        let kind = origin.kind();
        let result = self
            .fetch_inner(origin, cid, range, known_size, false)
            .await;
        if let Err(e) = &result {
            metrics::UPSTREAM_REQUESTS
                .with_label_values(&[kind.label(), e.outcome()])
                .inc();
        }
        result
    }

    /// Reads the first `want` bytes of piece `cid` (fewer when the piece is
    /// smaller) and its size: how a piece whose size the CID does not carry
    /// is learnt, and how its content type is sniffed when a request starts
    /// past byte 0.
    pub async fn probe(
        &self,
        cid: &str,
        known_size: Option<u64>,
        want: u64,
    ) -> Result<(u64, Bytes), UpstreamError> {
        let want = want.max(1);
        let end = match known_size {
            Some(0) => return Ok((0, Bytes::new())),
            Some(size) => want.min(size) - 1,
            None => want - 1,
        };
        let kind = UpstreamKind::Beam;
        let result = self
            .fetch_inner(Origin::Beam, cid, ByteRange::new(0, end), known_size, true)
            .await;
        let mut body = match result {
            Ok(b) => b,
            Err(e) => {
                metrics::UPSTREAM_REQUESTS
                    .with_label_values(&[kind.label(), e.outcome()])
                    .inc();
                return Err(e);
            }
        };
        let size = body.facts().size;
        let mut head = bytes::BytesMut::with_capacity(want as usize);
        while let Some(chunk) = body.next_chunk().await? {
            head.extend_from_slice(&chunk);
        }
        Ok((size, head.freeze()))
    }

    async fn fetch_inner(
        &self,
        origin: Origin<'_>,
        cid: &str,
        range: ByteRange,
        known_size: Option<u64>,
        clamp_end: bool,
    ) -> Result<UpstreamBody, UpstreamError> {
        let kind = origin.kind();
        let url = match origin {
            Origin::Beam => self.piece_url(cid)?,
            Origin::Provider(base) => format!("{}/piece/{cid}", base.trim_end_matches('/')),
        };
        let started = Instant::now();
        let resp = self
            .client
            .get(&url)
            .header(
                header::RANGE,
                format!("bytes={}-{}", range.start, range.end),
            )
            .header(header::ACCEPT_ENCODING, "identity")
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(&e))?;
        metrics::UPSTREAM_LATENCY
            .with_label_values(&[kind.label()])
            .observe(started.elapsed().as_secs_f64());
        let status = resp.status().as_u16();
        let headers = resp.headers();
        // Curio compresses any body when asked for gzip/br/zstd and then
        // drops Range and Content-Length (filecoin.md, last section). We ask
        // for identity; a compressed answer anyway is not the piece's bytes
        // at these offsets, so it is an upstream error: never cached, never
        // relayed.
        if (200..300).contains(&status) {
            if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
                let encoding = String::from_utf8_lossy(encoding.as_bytes())
                    .trim()
                    .to_string();
                if !encoding.eq_ignore_ascii_case("identity") {
                    return Err(UpstreamError::BadResponse(format!(
                        "{status} with Content-Encoding {encoding:?} although identity was asked for: not the piece's bytes"
                    )));
                }
            }
        }
        match status {
            206 => {
                let cr = headers
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        UpstreamError::BadResponse("206 without a Content-Range".into())
                    })?;
                let (got, total) = parse_content_range(cr).ok_or_else(|| {
                    UpstreamError::BadResponse(format!("unparsable Content-Range {cr:?}"))
                })?;
                let clamped = clamp_end
                    && got.start == range.start
                    && got.end < range.end
                    && got.end + 1 == total;
                if got != range && !clamped {
                    return Err(UpstreamError::BadResponse(format!(
                        "asked for bytes {range}, got Content-Range {cr:?}"
                    )));
                }
                if let Some(size) = known_size {
                    if total != size {
                        return Err(UpstreamError::BadResponse(format!(
                            "piece size is {size} but Content-Range says {total}"
                        )));
                    }
                }
                if let Some(len) = content_length(headers) {
                    if len != range.len() {
                        return Err(UpstreamError::BadResponse(format!(
                            "Content-Length {len} does not match the {} bytes of Content-Range {cr:?}",
                            range.len()
                        )));
                    }
                }
                metrics::UPSTREAM_REQUESTS
                    .with_label_values(&[kind.label(), "ok"])
                    .inc();
                Ok(UpstreamBody::new(resp, kind, 0, got.len(), total, false))
            }
            200 => {
                // The upstream ignored Range and sends the whole piece.
                let len = content_length(headers).or(known_size).ok_or_else(|| {
                    UpstreamError::BadResponse(
                        "200 without a Content-Length for a piece of unknown size".into(),
                    )
                })?;
                if let (Some(size), Some(cl)) = (known_size, content_length(headers)) {
                    if cl != size {
                        return Err(UpstreamError::BadResponse(format!(
                            "piece size is {size} but the whole-piece response has Content-Length {cl}"
                        )));
                    }
                }
                if range.start >= len {
                    return Err(UpstreamError::BadResponse(format!(
                        "asked for bytes {range} of a piece the response says has {len} bytes"
                    )));
                }
                let end = range.end.min(len - 1);
                if end != range.end && !clamp_end {
                    return Err(UpstreamError::BadResponse(format!(
                        "asked for bytes {range} of a piece the response says has {len} bytes"
                    )));
                }
                metrics::UPSTREAM_REQUESTS
                    .with_label_values(&[kind.label(), "ok_full_body"])
                    .inc();
                metrics::UPSTREAM_FULL_BODY.inc();
                Ok(UpstreamBody::new(
                    resp,
                    kind,
                    range.start,
                    end - range.start + 1,
                    len,
                    true,
                ))
            }
            404 => Err(UpstreamError::NotFound),
            402 => Err(UpstreamError::PaymentRequired),
            403 => Err(UpstreamError::Forbidden),
            416 => Err(UpstreamError::BadResponse(format!(
                "416 for bytes {range}: the upstream disagrees about the piece size"
            ))),
            other => Err(UpstreamError::Status(other)),
        }
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Parses `bytes START-END/TOTAL` (TOTAL must be known: `*` is rejected).
pub fn parse_content_range(value: &str) -> Option<(ByteRange, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total: u64 = total.trim().parse().ok()?;
    if end < start || end >= total {
        return None;
    }
    Some((ByteRange::new(start, end), total))
}

/// A checked upstream body: yields exactly the asked-for bytes, or an error.
#[derive(Debug)]
pub struct UpstreamBody {
    resp: Option<reqwest::Response>,
    kind: UpstreamKind,
    /// Bytes still to drop before the range starts (a 200 for a range).
    skip: u64,
    /// Bytes of the range still to deliver.
    remaining: u64,
    expected: u64,
    total: u64,
    whole: bool,
}

impl UpstreamBody {
    fn new(
        resp: reqwest::Response,
        kind: UpstreamKind,
        skip: u64,
        len: u64,
        total: u64,
        whole: bool,
    ) -> UpstreamBody {
        UpstreamBody {
            resp: Some(resp),
            kind,
            skip,
            remaining: len,
            expected: len,
            total,
            whole,
        }
    }

    /// True when the upstream ignored Range and is sending the whole piece
    /// (the bytes before the range are dropped unless [`Self::rewind_to_zero`]).
    pub fn whole_piece(&self) -> bool {
        self.whole
    }

    /// For a whole-piece response: deliver from byte 0 instead of dropping
    /// the bytes before the range (so they can be cached).
    pub fn rewind_to_zero(&mut self) {
        if self.whole {
            self.remaining += self.skip;
            self.expected += self.skip;
            self.skip = 0;
        }
    }

    /// The piece's total size, as the response stated it.
    pub fn facts(&self) -> PieceFacts {
        PieceFacts { size: self.total }
    }

    /// The next chunk of the range; `Ok(None)` once every byte was delivered
    /// (the connection is then released or dropped, never read further).
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        loop {
            if self.remaining == 0 {
                // Dropping an unfinished response closes its connection, which
                // is what stops a whole-piece 200 from being read any further.
                self.resp = None;
                return Ok(None);
            }
            let Some(resp) = self.resp.as_mut() else {
                return Ok(None);
            };
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    self.resp = None;
                    return Err(UpstreamError::ShortBody {
                        expected: self.expected,
                        got: self.expected - self.remaining,
                    });
                }
                Err(e) => {
                    self.resp = None;
                    return Err(UpstreamError::from_reqwest(&e));
                }
            };
            metrics::UPSTREAM_BYTES
                .with_label_values(&[self.kind.label()])
                .inc_by(chunk.len() as u64);
            let mut chunk = chunk;
            if self.skip > 0 {
                let drop = self.skip.min(chunk.len() as u64);
                self.skip -= drop;
                chunk = chunk.slice(drop as usize..);
                if chunk.is_empty() {
                    continue;
                }
            }
            if chunk.len() as u64 > self.remaining {
                chunk.truncate(self.remaining as usize);
            }
            self.remaining -= chunk.len() as u64;
            return Ok(Some(chunk));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses_strictly() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((ByteRange::new(0, 99), 1000))
        );
        assert_eq!(
            parse_content_range("bytes 999-999/1000"),
            Some((ByteRange::new(999, 999), 1000))
        );
        assert_eq!(parse_content_range("bytes 0-1000/1000"), None);
        assert_eq!(parse_content_range("bytes 5-1/1000"), None);
        assert_eq!(parse_content_range("bytes 0-99/*"), None);
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn errors_map_to_honest_statuses() {
        assert_eq!(UpstreamError::NotFound.client_status(), 404);
        assert_eq!(UpstreamError::PaymentRequired.client_status(), 402);
        assert_eq!(UpstreamError::Forbidden.client_status(), 403);
        assert_eq!(UpstreamError::Timeout("x".into()).client_status(), 504);
        assert_eq!(UpstreamError::Connect("x".into()).client_status(), 502);
        assert_eq!(UpstreamError::Status(500).client_status(), 502);
        assert_eq!(UpstreamError::BadResponse("x".into()).client_status(), 502);
        assert_eq!(
            UpstreamError::NotConfigured("x".into()).client_status(),
            503
        );
    }
}
