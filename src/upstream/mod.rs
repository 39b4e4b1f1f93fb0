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
//! Non-2xx answers become [`UpstreamError`]s that say what Beam meant: 404
//! unknown or not yet indexed; a [`Refusal`] read from Beam's status *and*
//! body text (the Bad Bits 404, the sanctioned-wallet 403, the no-CDN and
//! quota 402s of filbeam/worker), which [`beam_state`] remembers per payer
//! and piece so it is answered again without asking. Timeouts and
//! connection failures are told apart, so `edge` can answer
//! 404/402/403/451/504/502 honestly. Nothing here knows about the client side.
//!
//! Beam's cold answers are remembered too ([`beam_state`]): while the one
//! warm-up of a piece runs, a Beam request for it fails at once with
//! [`UpstreamError::Warming`] instead of going out.
//!
//! Requests never carry the client's `Authorization` or `Cookie` (they are
//! built from scratch), and ask for `Accept-Encoding: identity` so offsets
//! are byte-exact.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header;

use crate::http::range::ByteRange;
use crate::metrics;

pub mod beam_state;
pub mod hedge;
pub mod resolve;

use beam_state::{BeamPiece, BeamState};

/// Why Beam (or this edge's own denylist) refuses a piece. A refusal is
/// never a reason to ask a storage provider instead (except an exhausted
/// quota with `upstream.on_quota_exhausted: providers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Beam's 404 "flagged by the Bad Bits Denylist", or a 451.
    BadBits,
    /// Beam's 403: the payer's wallet is sanctioned.
    Sanctioned,
    /// Beam's 402: no FWSS data set of this payer holds the piece, or its
    /// `withCDN` is off.
    NoCdn,
    /// Beam's 402: the data set's CDN or cache-miss egress quota is used up.
    QuotaExhausted,
    /// `access.denylist` lists the piece.
    Denylist,
}

impl Refusal {
    /// Every reason, for the metric's start-up zeros.
    pub const ALL: [Refusal; 5] = [
        Refusal::BadBits,
        Refusal::Sanctioned,
        Refusal::NoCdn,
        Refusal::QuotaExhausted,
        Refusal::Denylist,
    ];

    /// The `reason` label of `beam_edge_refusals_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadBits => "bad_bits",
            Refusal::Sanctioned => "sanctioned",
            Refusal::NoCdn => "no_cdn",
            Refusal::QuotaExhausted => "quota_exhausted",
            Refusal::Denylist => "denylist",
        }
    }

    /// The status the client gets: 451 for a denylisted piece (RFC 7725:
    /// the piece exists but is withheld, which a 404 would hide and a
    /// player would retry as a fresh upload), 403 and 402 as Beam answers.
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadBits | Refusal::Denylist => 451,
            Refusal::Sanctioned => 403,
            Refusal::NoCdn | Refusal::QuotaExhausted => 402,
        }
    }

    /// Reads Beam's refusal from a non-2xx status and its body text
    /// (filbeam/worker `piece-retriever`); `None` for answers that are not
    /// refusals (an unknown piece's 404, 5xx).
    pub fn from_beam(status: u16, body: &str) -> Option<Refusal> {
        match status {
            404 if body.contains("Bad Bits") => Some(Refusal::BadBits),
            451 => Some(Refusal::BadBits),
            403 => Some(Refusal::Sanctioned),
            402 if body.contains("egress quota exhausted") => Some(Refusal::QuotaExhausted),
            // "no Filecoin Warm Storage Service deal for payer", "withCDN=false",
            // and any 402 whose text is unknown: the payer does not pay for CDN.
            402 => Some(Refusal::NoCdn),
            _ => None,
        }
    }
}

/// Which upstream a request went to (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// The Beam CDN.
    Beam,
    /// A storage provider's `/piece/` endpoint.
    Provider,
    /// Another replica's peer listener (cluster mode).
    Peer,
}

impl UpstreamKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamKind::Beam => "beam",
            UpstreamKind::Provider => "provider",
            UpstreamKind::Peer => "peer",
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
    /// Beam refused the piece for this payer (or the local denylist did);
    /// `detail` is Beam's own text, trimmed.
    #[error("{}", refusal_text(*reason, detail))]
    Refused {
        /// Why.
        reason: Refusal,
        /// Beam's body text (at most 300 characters), or empty.
        detail: String,
    },
    /// The piece's one Beam warm-up is running: Beam gets no other request
    /// for it until that ends (the caller reads from the warm-up or a
    /// storage provider).
    #[error("Beam is warming this piece: its first whole-piece response is still streaming")]
    Warming,
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
    /// A whole-piece 200 without `Content-Length` (Beam while cold streams
    /// chunked) for a piece whose size the CID does not carry (v1).
    #[error("the upstream sent the whole piece without a Content-Length (Beam while the piece is cold in its CDN), and a v1 PieceCID does not carry the size: no storage provider gave it either (set upstream.providers, or upstream.payer for chain resolution), retry once Beam is warm")]
    SizeUnknown,
    /// The body ended before the promised bytes arrived.
    #[error("upstream body ended early: expected {expected} bytes, got {got}")]
    ShortBody {
        /// Bytes the range needed.
        expected: u64,
        /// Bytes that arrived.
        got: u64,
    },
}

fn refusal_text(reason: Refusal, detail: &str) -> String {
    let what = match reason {
        Refusal::BadBits => {
            "the piece is flagged by the Bad Bits denylist (https://badbits.dwebops.pub)"
        }
        Refusal::Sanctioned => "Beam refused this payer's wallet (403: sanctioned)",
        Refusal::NoCdn => "no CDN-enabled FWSS data set of this payer holds the piece (Beam's 402)",
        Refusal::QuotaExhausted => {
            "the payer's Beam egress quota is exhausted (Beam's 402): top it up"
        }
        Refusal::Denylist => "the piece is on this edge's denylist (access.denylist)",
    };
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what}; Beam said: {detail}")
    }
}

impl UpstreamError {
    /// A refusal with no upstream text.
    pub fn refused(reason: Refusal) -> UpstreamError {
        UpstreamError::Refused {
            reason,
            detail: String::new(),
        }
    }

    /// The refusal, if this is one.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            UpstreamError::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }

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
            UpstreamError::Refused { reason, .. } => reason.status(),
            UpstreamError::Warming => 503,
            UpstreamError::Timeout(_) => 504,
            UpstreamError::Status(_)
            | UpstreamError::Connect(_)
            | UpstreamError::SizeUnknown
            | UpstreamError::BadResponse(_)
            | UpstreamError::ShortBody { .. } => 502,
        }
    }

    /// The `outcome` label of `beam_edge_upstream_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            UpstreamError::NotConfigured(_) => "not_configured",
            UpstreamError::NotFound => "not_found",
            // The labels these answers had before refusals were read from
            // Beam's text (beam_edge_refusals_total has the reason).
            UpstreamError::Refused { reason, .. } => match reason {
                Refusal::NoCdn | Refusal::QuotaExhausted => "payment_required",
                Refusal::Sanctioned => "forbidden",
                Refusal::BadBits | Refusal::Denylist => "not_found",
            },
            UpstreamError::Warming => "warming",
            UpstreamError::Status(_) => "error_status",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Connect(_) => "connect_error",
            UpstreamError::BadResponse(_) | UpstreamError::SizeUnknown => "bad_response",
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
    /// How long a Beam refusal is answered again without asking.
    pub refusal_ttl: Duration,
}

/// A client for the Beam CDN.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    settings: UpstreamSettings,
    beam: BeamState,
}

/// Where a piece request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// The Beam CDN (`upstream.beam_url`) for the configured `upstream.payer`.
    Beam,
    /// The Beam CDN at this base URL: the host of the payer a request named
    /// (`/beam/<payer>/…`), so that payer's data sets are read and billed.
    BeamAt(&'a str),
    /// A storage provider's service URL (`upstream.providers`), serving `/piece/<cid>`.
    Provider(&'a str),
    /// Another replica's peer listener (`cluster.peer_listen`), serving
    /// `/piece/<cid>` from its own tiers; the request carries
    /// [`PEER_HEADER`] so that it is never forwarded again.
    Peer(std::net::SocketAddr),
}

/// Marks a request as coming from a peer replica: it is served from the
/// local tiers or Beam, never forwarded to another peer (no loops, even
/// when replicas disagree about membership).
pub const PEER_HEADER: &str = "x-beam-edge-peer";

/// On a peer's `GET /layer/<cid>` answer: the window size, in padded bytes,
/// that the roots in the body are for.
pub const LAYER_WINDOW_HEADER: &str = "x-beam-edge-layer-window";

/// Largest layer taken from a peer: the roots of a 64 GiB piece at 512 KiB
/// windows, far above any piece the FOC stack stores.
const MAX_PEER_LAYER_BYTES: u64 = 4 << 20;

impl Origin<'_> {
    fn kind(&self) -> UpstreamKind {
        match self {
            Origin::Beam | Origin::BeamAt(_) => UpstreamKind::Beam,
            Origin::Provider(_) => UpstreamKind::Provider,
            Origin::Peer(_) => UpstreamKind::Peer,
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
        let beam = BeamState::new(settings.refusal_ttl);
        Ok(Upstream {
            client,
            settings,
            beam,
        })
    }

    /// What is known about pieces at Beam, per payer.
    pub fn beam_state(&self) -> &BeamState {
        &self.beam
    }

    /// The Beam base URL (the payer's host) `origin` reads, `None` for
    /// storage providers and peers, or when no payer is configured.
    pub fn beam_base<'a>(&'a self, origin: &Origin<'a>) -> Option<&'a str> {
        match origin {
            Origin::Beam => self.settings.beam_base_url.as_deref(),
            Origin::BeamAt(base) => Some(base.trim_end_matches('/')),
            Origin::Provider(_) | Origin::Peer(_) => None,
        }
    }

    /// The answer Beam gets no request for: a refusal remembered for this
    /// payer and piece, or [`UpstreamError::Warming`] while its warm-up runs.
    fn remembered(&self, origin: &Origin<'_>, cid: &str) -> Option<UpstreamError> {
        let base = self.beam_base(origin)?;
        match self.beam.get(base, cid) {
            BeamPiece::Refused(e) => Some(e),
            BeamPiece::Warming => Some(UpstreamError::Warming),
            _ => None,
        }
    }

    /// The piece's size from a storage provider's `HEAD /piece/<cid>`
    /// `Content-Length` (how a v1 CID's size is learnt while Beam is cold and
    /// streams without one): the first provider of `providers` that answers
    /// 2xx with a length.
    pub async fn provider_size(&self, providers: &[String], cid: &str) -> Option<u64> {
        for p in providers {
            let url = format!("{}/piece/{cid}", p.trim_end_matches('/'));
            let resp = self
                .client
                .head(&url)
                .header(header::ACCEPT_ENCODING, "identity")
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    if let Some(len) = content_length(r.headers()) {
                        return Some(len);
                    }
                    log::warn!("provider {p}: HEAD {cid} has no Content-Length");
                }
                Ok(r) => log::info!("provider {p}: HEAD {cid} answered {}", r.status()),
                Err(e) => log::info!("provider {p}: HEAD {cid} failed: {e}"),
            }
        }
        None
    }

    /// The URL of a piece on Beam.
    pub fn piece_url(&self, cid: &str) -> Result<String, UpstreamError> {
        match &self.settings.beam_base_url {
            Some(base) => Ok(format!("{base}/{cid}")),
            None => Err(UpstreamError::NotConfigured(
                "upstream.payer is not set, so /piece/<cid> does not know whose Beam data sets to read: request /beam/<payer>/<cid> (the wallet of a Beam link https://<payer>.filbeam.io/<cid>), or set upstream.payer or --payer".into(),
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
        if let Some(e) = self.remembered(&origin, cid) {
            return Err(e);
        }
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

    /// The layer of piece `cid` held by the replica whose peer listener is
    /// `addr` (`GET /layer/<cid>`): the window size it is for, in padded
    /// bytes, and the roots, 32 bytes each. `Ok(None)` when that replica
    /// holds none. The caller checks the roots against the PieceCID: a
    /// peer's layer is trusted no more than any other.
    pub async fn peer_layer(
        &self,
        addr: std::net::SocketAddr,
        cid: &str,
    ) -> Result<Option<(u64, Bytes)>, UpstreamError> {
        let resp = self
            .client
            .get(format!("http://{addr}/layer/{cid}"))
            .header(PEER_HEADER, "1")
            .header(header::ACCEPT_ENCODING, "identity")
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(&e))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => return Err(UpstreamError::Status(s)),
        }
        let window = resp
            .headers()
            .get(LAYER_WINDOW_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                UpstreamError::BadResponse(format!("a layer without {LAYER_WINDOW_HEADER}"))
            })?;
        if content_length(resp.headers()).is_some_and(|n| n > MAX_PEER_LAYER_BYTES) {
            return Err(UpstreamError::BadResponse("a layer over 4 MiB".into()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| UpstreamError::from_reqwest(&e))?;
        if body.len() as u64 > MAX_PEER_LAYER_BYTES || body.len() % 32 != 0 {
            return Err(UpstreamError::BadResponse(format!(
                "a layer of {} bytes is not whole 32-byte roots",
                body.len()
            )));
        }
        Ok(Some((window, body)))
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
        self.probe_from(Origin::Beam, cid, known_size, want).await
    }

    /// [`Upstream::probe`] from a chosen Beam origin.
    pub async fn probe_from(
        &self,
        origin: Origin<'_>,
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
        if let Some(e) = self.remembered(&origin, cid) {
            return Err(e);
        }
        let kind = origin.kind();
        let result = self
            .fetch_inner(origin, cid, ByteRange::new(0, end), known_size, true)
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
            Origin::BeamAt(base) => format!("{}/{cid}", base.trim_end_matches('/')),
            Origin::Provider(base) => format!("{}/piece/{cid}", base.trim_end_matches('/')),
            Origin::Peer(addr) => format!("http://{addr}/piece/{cid}"),
        };
        let beam_base = self.beam_base(&origin).map(str::to_string);
        let started = Instant::now();
        let mut request = self.client.get(&url);
        if kind == UpstreamKind::Peer {
            request = request.header(PEER_HEADER, "1");
        }
        let resp = request
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
                if let Some(base) = &beam_base {
                    self.beam.warm(base, cid);
                }
                Ok(UpstreamBody::new(resp, kind, 0, got.len(), total, false))
            }
            200 => {
                // The upstream ignored Range and sends the whole piece (Beam
                // while the piece is cold in its CDN: chunked, no length).
                if let Some(base) = &beam_base {
                    self.beam.cold(base, cid);
                }
                let len = content_length(headers)
                    .or(known_size)
                    .ok_or(UpstreamError::SizeUnknown)?;
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
            402..=404 | 451 => {
                // Beam's reason is in its text/plain body (a few hundred bytes).
                let text = read_short_text(resp).await;
                match Refusal::from_beam(status, &text) {
                    Some(reason) => {
                        let e = UpstreamError::Refused {
                            reason,
                            detail: text,
                        };
                        if let Some(base) = &beam_base {
                            self.beam.refused(base, cid, &e);
                        }
                        Err(e)
                    }
                    None if status == 404 => Err(UpstreamError::NotFound),
                    None => Err(UpstreamError::Status(status)),
                }
            }
            416 => Err(UpstreamError::BadResponse(format!(
                "416 for bytes {range}: the upstream disagrees about the piece size"
            ))),
            other => Err(UpstreamError::Status(other)),
        }
    }
}

/// The first 300 characters of an error body, on one line (at most 4 KiB read).
async fn read_short_text(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < 4096 {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(300).collect()
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

    /// For a whole-piece response: deliver the whole piece, from byte 0 to
    /// its end, whatever range was asked (Beam's warm-up reads it all).
    pub fn deliver_whole_piece(&mut self) {
        if self.whole {
            let delivered = self.expected - self.remaining;
            self.skip = 0;
            self.expected = self.total;
            self.remaining = self.total - delivered;
        }
    }

    /// Which kind of upstream sends this body.
    pub fn kind(&self) -> UpstreamKind {
        self.kind
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
                if self.expected == self.total {
                    // The whole piece was delivered: read the body's end (a
                    // chunked body's last chunk), so the upstream sees a
                    // completed response (Beam fills its CDN only then) and
                    // the connection can be reused.
                    if let Some(mut resp) = self.resp.take() {
                        if let Ok(Some(extra)) = resp.chunk().await {
                            log::warn!(
                                "upstream sent {} bytes past the piece's {}: dropped",
                                extra.len(),
                                self.total
                            );
                        }
                    }
                }
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
    fn every_refusal_reason_is_exported_from_start_up() {
        let labels: Vec<&str> = Refusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels, crate::metrics::REFUSAL_REASONS);
    }

    #[test]
    fn refusals_are_read_from_beams_texts() {
        // The texts of filbeam/worker piece-retriever (lib/store.js, bin/piece-retriever.js).
        let cases = [
            (404, "The requested CID was flagged by the Bad Bits Denylist at https://badbits.dwebops.pub", Some(Refusal::BadBits)),
            (404, "Piece_cid 'bafk' does not exist or may not have been indexed yet.", None),
            (403, "Wallet '0xaa' is sanctioned and cannot retrieve piece_cid 'bafk'.", Some(Refusal::Sanctioned)),
            (402, "There is no Filecoin Warm Storage Service deal for payer '0xaa' and piece_cid 'bafk'.", Some(Refusal::NoCdn)),
            (402, "The Filecoin Warm Storage Service deal for payer '0xaa' and piece_cid 'bafk' has withCDN=false.", Some(Refusal::NoCdn)),
            (402, "CDN egress quota exhausted for payer '0xaa' and data set '1'. Please top up your CDN egress quota.", Some(Refusal::QuotaExhausted)),
            (402, "Cache miss egress quota exhausted for payer '0xaa' and data set '1'. Please top up your cache miss egress quota.", Some(Refusal::QuotaExhausted)),
            (500, "Service provider lookup failed", None),
        ];
        for (status, text, want) in cases {
            assert_eq!(Refusal::from_beam(status, text), want, "{status} {text}");
        }
    }

    #[test]
    fn errors_map_to_honest_statuses() {
        assert_eq!(UpstreamError::NotFound.client_status(), 404);
        assert_eq!(UpstreamError::refused(Refusal::NoCdn).client_status(), 402);
        assert_eq!(
            UpstreamError::refused(Refusal::Sanctioned).client_status(),
            403
        );
        assert_eq!(
            UpstreamError::refused(Refusal::BadBits).client_status(),
            451
        );
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
