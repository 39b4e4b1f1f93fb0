//! `GET|HEAD|OPTIONS /piece/<PieceCID>` and `/asset/<id>` (and their
//! `/beam/<payer>/…` forms, see [`super::route`]): validate, normalise the
//! range, read the needed windows, and stream them. A file name after the
//! id becomes `Content-Disposition` (an asset without one uses its
//! manifest's file name); it never reaches the upstream.
//!
//! An asset (an upload's manifest piece, listing the file's pieces) is served
//! as one resource with every rule below; its ranges may cross pieces.
//!
//! Order of work, so that junk never causes upstream I/O and upstream
//! failures become honest statuses whenever possible:
//!
//! 1. method (OPTIONS preflight, 405 for anything but GET/HEAD), then the
//!    payer a `/beam/` path names (400 malformed, 403 not allowed), then the
//!    CID (400 with the parser's reason);
//! 2. `If-None-Match` → 304 (no upstream I/O: a piece never changes);
//! 3. the piece size: from a v2 CID, from metadata learnt earlier, or from a
//!    small probe of the first bytes (which also sniffs the content type);
//! 4. `Range` (dropped when `If-Range` does not match) → a [`RangePlan`]:
//!    200, 206, multipart 206, or 416;
//! 5. the first part's upstream response is checked *before* our header is
//!    written, so a 404/402/403/timeout is answered as such;
//! 6. header, then body chunks as they arrive; a later failure aborts.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::route::{MediaKind, MediaPath};
use super::{respond_text, EdgeState, RequestCtx};
use crate::cache::build::CheckKind;
use crate::cache::verify::bytes_match_cid;
use crate::cache::{CacheError, Piece, RangeReader, Source, WindowCache};
use crate::http::conditional::{if_none_match, if_range_allows, piece_etag};
use crate::http::range::{
    parse_range_header, plan_ranges, unsatisfied_content_range, ByteRange, MultipartLayout,
    ParsedRange, RangePlan,
};
use crate::http::sniff::{sniff_content_type, SNIFF_LEN};
use crate::manifest::{Manifest, FORMAT as MANIFEST_FORMAT, MAX_MANIFEST_BYTES};
use crate::metrics;
use crate::piece::PieceCid;
use crate::upstream::resolve::ChainPayer;
use crate::upstream::UpstreamError;

/// `Cache-Control` of every piece response: the bytes are content-addressed.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Headers a cross-origin player needs to read.
const EXPOSED: &str =
    "Content-Range, Content-Length, Accept-Ranges, ETag, Content-Type, X-Cache, X-Beam-Edge-Checked, Server-Timing, Content-Disposition";

/// How a response's bytes were checked against their PieceCID: `cid` (a
/// one-window piece, hashed whole), `layer` (every window against the
/// piece's layer) or `unchecked`.
pub const CHECKED_HEADER: &str = "X-Beam-Edge-Checked";

/// CORS headers of every `/piece` response (errors included, so that a
/// player on another origin can read the status and the reason).
pub fn cors_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Access-Control-Allow-Origin", "*".into()),
        ("Access-Control-Expose-Headers", EXPOSED.into()),
        ("Timing-Allow-Origin", "*".into()),
    ]
}

fn request_header(session: &Session, name: header::HeaderName) -> Option<&str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

async fn respond_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    reason: &str,
) -> Result<()> {
    let mut extra = cors_headers();
    extra.push(("Cache-Control", "no-store".into()));
    if status == 503 {
        // Busy (the in-flight budget and its queue are full) or a fill
        // cancelled under us: both pass within seconds.
        extra.push((
            "Retry-After",
            crate::cache::inflight::RETRY_AFTER_SECS.to_string(),
        ));
    }
    respond_text(session, ctx, status, &extra, &format!("{reason}\n")).await
}

/// Why a read the edge makes for itself (an asset's manifest, a piece's
/// first bytes for its content type) failed, as the client is answered.
#[derive(Debug, Clone)]
pub enum SelfReadError {
    /// Answered with this status and reason.
    Status(u16, String),
    /// The payer's egress budget is spent: 429 with `Retry-After`, counted
    /// as a refusal like any other miss over the budget.
    Budget(crate::access::budget::BudgetRefusal),
}

impl From<(u16, String)> for SelfReadError {
    fn from((status, reason): (u16, String)) -> Self {
        SelfReadError::Status(status, reason)
    }
}

impl From<CacheError> for SelfReadError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Budget(refusal) => SelfReadError::Budget(refusal),
            e => SelfReadError::Status(e.client_status(), e.to_string()),
        }
    }
}

async fn respond_self_read_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: &SelfReadError,
) -> Result<()> {
    match e {
        SelfReadError::Status(status, reason) => respond_error(session, ctx, *status, reason).await,
        SelfReadError::Budget(refusal) => respond_budget(session, ctx, refusal).await,
    }
}

/// 429 for a payer whose egress budget is spent, with `Retry-After`.
async fn respond_budget(
    session: &mut Session,
    ctx: &mut RequestCtx,
    refusal: &crate::access::budget::BudgetRefusal,
) -> Result<()> {
    crate::access::count_refusal(refusal.label());
    let mut extra = cors_headers();
    extra.push(("Cache-Control", "no-store".into()));
    extra.push(("Retry-After", refusal.retry_after_secs().to_string()));
    respond_text(session, ctx, 429, &extra, &format!("{refusal}\n")).await
}

async fn respond_cache_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: &CacheError,
) -> Result<()> {
    if let CacheError::Budget(refusal) = e {
        return respond_budget(session, ctx, refusal).await;
    }
    log::warn!(
        "piece read failed for {}: {e}",
        session.req_header().uri.path()
    );
    if let CacheError::Upstream(u) = e {
        count_refusal(u);
    }
    respond_error(session, ctx, e.client_status(), &e.to_string()).await
}

async fn respond_upstream_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: &UpstreamError,
) -> Result<()> {
    log::warn!(
        "upstream error for {}: {e}",
        session.req_header().uri.path()
    );
    count_refusal(e);
    respond_error(session, ctx, e.client_status(), &e.to_string()).await
}

/// Answers a piece `access.denylist` lists: 451, before any upstream I/O.
async fn respond_denied(session: &mut Session, ctx: &mut RequestCtx, cid: &str) -> Result<()> {
    let e = UpstreamError::refused(crate::upstream::Refusal::Denylist);
    count_refusal(&e);
    respond_error(session, ctx, e.client_status(), &format!("{cid}: {e}")).await
}

/// Counts a refused request by reason (`beam_edge_refusals_total`). The
/// answer itself is `no-store` like every error ([`respond_error`]), so no
/// cache keeps a refusal that a payer's top-up may lift.
fn count_refusal(e: &UpstreamError) {
    if let Some(reason) = e.refusal() {
        metrics::REFUSALS.with_label_values(&[reason.label()]).inc();
    }
}

/// What a request reads: one piece, or an asset whose bytes span pieces.
pub(crate) struct Resource {
    /// `"<cid>"`.
    etag: String,
    /// Total bytes.
    size: u64,
    /// Media type, when known before reading.
    content_type: Option<String>,
    /// The sanitised file name to announce, if any.
    file_name: Option<String>,
    /// The pieces, in order, and where the resource's bytes lie in them.
    target: Target,
}

enum Target {
    Piece(Piece),
    Asset(Arc<Manifest>, Vec<Piece>),
}

impl Resource {
    /// The Beam base URL of the payer this resource bills (`None`: `upstream.payer`).
    fn beam_url(&self) -> Option<&str> {
        match &self.target {
            Target::Piece(p) => p.beam_url.as_deref(),
            Target::Asset(_, pieces) => pieces.first().and_then(|p| p.beam_url.as_deref()),
        }
    }

    /// (piece, range within the piece) for each part of `range`.
    fn segments(&self, range: ByteRange) -> VecDeque<(Piece, ByteRange)> {
        match &self.target {
            Target::Piece(p) => VecDeque::from([(p.clone(), range)]),
            Target::Asset(m, pieces) => m
                .segments(range)
                .into_iter()
                .filter_map(|(i, r)| pieces.get(i).map(|p| (p.clone(), r)))
                .collect(),
        }
    }

    fn reader(&self, state: &EdgeState, range: ByteRange) -> ResourceReader {
        ResourceReader {
            cache: state.cache.clone(),
            segments: self.segments(range),
            current: None,
            mid_response: false,
        }
    }

    /// The pieces the `ranges` touch, each once.
    fn pieces_in(&self, ranges: &[ByteRange]) -> Vec<Piece> {
        let mut out: Vec<Piece> = Vec::new();
        for r in ranges {
            for (p, _) in self.segments(*r) {
                if !out.iter().any(|q| q.cid == p.cid) {
                    out.push(p);
                }
            }
        }
        out
    }

    fn coverage(&self, state: &EdgeState, ranges: &[ByteRange]) -> (u64, u64) {
        let mut cached = 0;
        let mut total = 0;
        for r in ranges {
            for (piece, pr) in self.segments(*r) {
                let (c, t) = state.cache.coverage(&piece, &[pr]);
                cached += c;
                total += t;
            }
        }
        (cached, total)
    }
}

/// Reads a range of a resource, piece segment after piece segment.
pub(crate) struct ResourceReader {
    cache: WindowCache,
    segments: VecDeque<(Piece, ByteRange)>,
    current: Option<RangeReader>,
    /// Set once a byte of the response is out (or its header): from then
    /// on a full in-flight budget makes reads wait, never fail with 503.
    mid_response: bool,
}

impl ResourceReader {
    /// This reader belongs to a response whose header is out.
    fn mid_response(mut self) -> Self {
        self.mid_response = true;
        self
    }

    /// Lets go of the window being streamed while the response waits on
    /// something else (see [`crate::cache::RangeReader::park`]).
    fn park(&mut self) {
        if let Some(r) = self.current.as_mut() {
            r.park();
        }
    }

    async fn next_chunk(&mut self) -> std::result::Result<Option<(Bytes, Source)>, CacheError> {
        loop {
            if let Some(r) = self.current.as_mut() {
                match r.next_chunk().await? {
                    Some(c) => {
                        self.mid_response = true;
                        return Ok(Some(c));
                    }
                    None => self.current = None,
                }
            }
            let Some((piece, range)) = self.segments.pop_front() else {
                return Ok(None);
            };
            let mut reader = self.cache.reader(&piece, range);
            if self.mid_response {
                reader.set_mid_response();
            }
            self.current = Some(reader);
        }
    }
}

/// Validates a request's method, answering OPTIONS and refusing others.
/// Returns `false` when the request has been answered.
async fn method_allowed(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let method = session.req_header().method.clone();
    if method == http::Method::OPTIONS {
        preflight(session, ctx).await?;
        return Ok(false);
    }
    if method != http::Method::GET && method != http::Method::HEAD {
        let mut extra = cors_headers();
        extra.push(("Allow", "GET, HEAD, OPTIONS".into()));
        let body = format!("method {method} not allowed: use GET or HEAD\n");
        respond_text(session, ctx, 405, &extra, &body).await?;
        return Ok(false);
    }
    Ok(true)
}

/// What every `/piece` and `/asset` request goes through first: the method
/// (OPTIONS answered, others refused), the id (400 naming `what` is wrong),
/// and `If-None-Match` (304). `None` when the request has been answered.
async fn prologue(
    state: &EdgeState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    media: &MediaPath<'_>,
    what: &str,
) -> Result<Option<(PieceCid, String, Option<Arc<str>>, ChainPayer)>> {
    if !method_allowed(session, ctx).await? {
        return Ok(None);
    }
    let beam_url = match &media.beam {
        None => None,
        Some(who) => match state.payer_routes.beam_url(who) {
            Ok(url) => Some(url),
            Err((status, reason)) => {
                respond_error(session, ctx, status, &reason).await?;
                return Ok(None);
            }
        },
    };
    let cid_text = media.id;
    let cid = match PieceCid::parse(cid_text) {
        Ok(c) => c,
        Err(e) => {
            let shown: String = cid_text.chars().take(100).collect();
            respond_error(session, ctx, 400, &format!("invalid {what} {shown:?}: {e}")).await?;
            return Ok(None);
        }
    };
    if state.denylist.denies(&cid) {
        return respond_denied(session, ctx, &cid.to_string())
            .await
            .map(|()| None);
    }
    let etag = piece_etag(&cid.to_string());
    if !not_modified_check(session, ctx, &etag).await? {
        return Ok(None);
    }
    let chain_payer = state.payer_routes.chain_payer(media.beam.as_ref());
    Ok(Some((cid, etag, beam_url, chain_payer)))
}

/// Serves one parsed media path.
pub async fn serve_media(
    state: &EdgeState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    media: &MediaPath<'_>,
) -> Result<()> {
    match media.kind {
        MediaKind::Piece => serve_piece(state, session, ctx, media).await,
        MediaKind::Asset => serve_asset(state, session, ctx, media).await,
    }
}

/// Answers `If-None-Match` with 304 when it matches; returns `false` then.
async fn not_modified_check(
    session: &mut Session,
    ctx: &mut RequestCtx,
    etag: &str,
) -> Result<bool> {
    if let Some(inm) = request_header(session, header::IF_NONE_MATCH) {
        if if_none_match(inm, etag) {
            not_modified(session, ctx, etag).await?;
            return Ok(false);
        }
    }
    Ok(true)
}

/// Serves one `/piece/<cid>` request.
async fn serve_piece(
    state: &EdgeState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    media: &MediaPath<'_>,
) -> Result<()> {
    let Some((cid, etag, beam_url, chain_payer)) =
        prologue(state, session, ctx, media, "PieceCID").await?
    else {
        return Ok(());
    };
    let origin = match &beam_url {
        Some(url) => crate::upstream::Origin::BeamAt(url),
        None => crate::upstream::Origin::Beam,
    };
    let cid_str = cid.to_string();
    // The piece size: from the CID, from what was learnt before, or from a
    // probe of its first bytes (which also gives the content type).
    let known = state.meta.get(&cid_str);
    let mut content_type = known.content_type;
    let size = match cid.payload_size().or(known.size) {
        Some(s) => s,
        None => {
            // The probe is upstream I/O billed to the payer.
            if let Some(refusal) = budget_spent(state, beam_url.as_deref()) {
                return respond_budget(session, ctx, &refusal).await;
            }
            match state
                .upstream
                .probe_from(origin, &cid_str, None, SNIFF_LEN as u64)
                .await
            {
                Ok((size, head)) => {
                    let ct = sniff_content_type(&head);
                    state.learn(&cid_str, size, ct);
                    content_type = Some(ct);
                    size
                }
                // Beam is cold (a chunked whole-piece answer carries no size)
                // or failed: a storage provider's HEAD gives the size.
                Err(e) if e.refusal().is_none() => {
                    match state.cache.provider_size(&chain_payer, &cid_str).await {
                        Some(size) => {
                            log::info!("size of {cid_str} from a storage provider: {size} ({e})");
                            state.meta.update(&cid_str, Some(size), None);
                            size
                        }
                        None => return respond_upstream_error(session, ctx, &e).await,
                    }
                }
                Err(e) => return respond_upstream_error(session, ctx, &e).await,
            }
        }
    };
    let piece = Piece {
        cid: Arc::from(cid_str.as_str()),
        size,
        beam_url,
        chain_payer,
    };
    let resource = Resource {
        etag,
        size,
        content_type: content_type.map(str::to_string),
        file_name: media.name.clone(),
        target: Target::Piece(piece),
    };
    serve_resource(state, session, ctx, resource).await
}

/// Serves one `/asset/<manifest cid>` request: the file an upload produced,
/// as one resource over its pieces.
async fn serve_asset(
    state: &EdgeState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    media: &MediaPath<'_>,
) -> Result<()> {
    let Some((cid, etag, beam_url, chain_payer)) =
        prologue(state, session, ctx, media, "asset id").await?
    else {
        return Ok(());
    };
    let manifest = match load_manifest(state, &cid, &beam_url, &chain_payer).await {
        Ok(m) => m,
        Err(e) => return respond_self_read_error(session, ctx, &e).await,
    };
    if let Some(p) = manifest
        .pieces
        .iter()
        .find(|p| state.denylist.denies_text(&p.cid))
    {
        return respond_denied(session, ctx, &p.cid).await;
    }
    let pieces = manifest
        .pieces
        .iter()
        .map(|p| Piece {
            cid: Arc::from(p.cid.as_str()),
            size: p.size,
            beam_url: beam_url.clone(),
            chain_payer: chain_payer.clone(),
        })
        .collect();
    // A name in the URL wins; else the name the file was uploaded under.
    let file_name = media
        .name
        .clone()
        .or_else(|| crate::http::disposition::sanitize_filename(&manifest.file_name));
    let resource = Resource {
        etag,
        size: manifest.size,
        content_type: Some(manifest.content_type.clone()),
        file_name,
        target: Target::Asset(manifest, pieces),
    };
    serve_resource(state, session, ctx, resource).await
}

/// Reads and checks an asset manifest (remembered once parsed).
async fn load_manifest(
    state: &EdgeState,
    cid: &PieceCid,
    beam_url: &Option<Arc<str>>,
    chain_payer: &ChainPayer,
) -> std::result::Result<Arc<Manifest>, SelfReadError> {
    let cid_str = cid.to_string();
    if let Some(m) = state.manifests.get(&cid_str) {
        return Ok(m);
    }
    let Some(size) = cid.payload_size() else {
        return Err((400, "an asset id is a v2 PieceCID (bafkzcib…)".to_string()).into());
    };
    if size > MAX_MANIFEST_BYTES {
        return Err((
            404,
            format!("no asset {cid_str}: the piece is {size} bytes, too large for a manifest"),
        )
            .into());
    }
    let piece = Piece {
        cid: Arc::from(cid_str.as_str()),
        size,
        beam_url: beam_url.clone(),
        chain_payer: chain_payer.clone(),
    };
    // Look at the head first, so a media piece is not read whole to find
    // out it is not a manifest.
    let head = read_all(state, &piece, ByteRange::new(0, size.clamp(1, 64) - 1)).await?;
    if !String::from_utf8_lossy(&head).contains(MANIFEST_FORMAT) {
        return Err((
            404,
            format!("no asset {cid_str}: the piece is not an asset manifest"),
        )
            .into());
    }
    let bytes = read_all(state, &piece, ByteRange::new(0, size.max(1) - 1)).await?;
    // The manifest says which bytes the asset is, so it is checked whole
    // against its id (a one-window manifest was checked as it was fetched;
    // a larger one only can be here). Hashing runs off the async threads.
    let (check, cache, id) = (
        state.cache.checks_enabled(),
        state.cache.clone(),
        cid.clone(),
    );
    let manifest = tokio::task::spawn_blocking(move || {
        if check && !bytes_match_cid(&bytes, &id) {
            return Err((
                502,
                format!("asset {id}: the manifest does not hash to its id (the upstream sent wrong bytes)"),
            ));
        }
        let manifest =
            Manifest::parse(&bytes).map_err(|e| (404, format!("no asset {id}: {e}")))?;
        // From now on each fetched window of the asset's pieces is checked
        // against its layer (the layer itself is checked against the CID).
        for p in manifest.pieces.iter().filter(|_| check) {
            let added = p.layer_nodes().and_then(|layer| match layer {
                Some((c, nodes)) => cache
                    .add_layer(
                        &c,
                        manifest.window,
                        &nodes,
                        crate::cache::layers::LayerSource::Manifest,
                    )
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            });
            if let Err(e) = added {
                log::warn!(
                    "asset {id}: piece {}: {e}; its windows are checked only by length",
                    p.cid
                );
            }
        }
        Ok(manifest)
    })
    .await
    .map_err(|e| (500, format!("reading asset {cid_str}: {e}")))?;
    let manifest = match manifest {
        Ok(m) => m,
        Err((502, reason)) => {
            // Windows of a manifest larger than one window were cached
            // unchecked: drop them, so the next request fetches again.
            state.cache.purge(&cid_str, Some(size)).await;
            return Err((502, reason).into());
        }
        Err(e) => return Err(e.into()),
    };
    let manifest = Arc::new(manifest);
    state.manifests.insert(&cid_str, manifest.clone());
    Ok(manifest)
}

/// Every byte of `range` of `piece`, through the cache.
async fn read_all(
    state: &EdgeState,
    piece: &Piece,
    range: ByteRange,
) -> std::result::Result<Vec<u8>, SelfReadError> {
    let mut bytes = Vec::with_capacity(usize::try_from(range.len()).unwrap_or(0));
    if piece.size == 0 {
        return Ok(bytes);
    }
    let mut reader = state.cache.reader(piece, range);
    loop {
        match reader.next_chunk().await {
            Ok(Some((c, _))) => bytes.extend_from_slice(&c),
            Ok(None) => return Ok(bytes),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Ranges, headers and body of a resource.
async fn serve_resource(
    state: &EdgeState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    resource: Resource,
) -> Result<()> {
    let size = resource.size;
    let method = session.req_header().method.clone();
    let plan = range_plan(state, session, &resource.etag, size);
    let ranges: Vec<ByteRange> = match &plan {
        RangePlan::Unsatisfiable => {
            let reason = format!("range not satisfiable: the resource has {size} bytes");
            return respond_416(session, ctx, size, &reason).await;
        }
        RangePlan::Rejected(reason) => {
            return respond_416(session, ctx, size, &format!("range rejected: {reason}")).await
        }
        RangePlan::Full if size == 0 => Vec::new(),
        RangePlan::Full => vec![ByteRange::new(0, size - 1)],
        RangePlan::Single(r) => vec![*r],
        RangePlan::Multi(rs) => rs.clone(),
    };
    let is_head = method == http::Method::HEAD;
    let (cached, total) = resource.coverage(state, &ranges);
    let x_cache = match (cached, total) {
        (_, 0) => "HIT",
        (c, t) if c == t => "HIT",
        (0, _) => "MISS",
        _ => "PARTIAL",
    };
    // A request that needs the upstream while its payer's budget is spent
    // is refused before any upstream I/O; a hit costs nothing and is served.
    if x_cache != "HIT" && !is_head {
        if let Some(refusal) = budget_spent(state, resource.beam_url()) {
            return respond_budget(session, ctx, &refusal).await;
        }
    }

    // A piece's content type comes from its first bytes: read through the
    // cache when the request starts in window 0 (a player reads it first
    // anyway), else with a small probe that runs beside the request's own
    // first read, so a cold deep seek costs no extra window and no extra
    // round trip.
    let waited_since = Instant::now();
    let sniff_piece = match (&resource.content_type, &resource.target) {
        // A peer asking for windows needs no Content-Type (it sniffs its
        // own): a sniff here could cost a Beam request for bytes 0-511.
        (None, Target::Piece(piece)) if size > 0 && !crate::cluster::serving_peer() => {
            Some(piece.clone())
        }
        _ => None,
    };
    let in_window_zero = ranges
        .first()
        .is_some_and(|r| r.start < state.cache.geometry().raw && !is_head);
    let from_byte_zero = in_window_zero && ranges.first().is_some_and(|r| r.start == 0);
    let sniff = async {
        let Some(piece) = &sniff_piece else {
            return Ok(None);
        };
        // One sniff per piece at a time, however many requests want it; per
        // payer too, so a payer Beam refuses cannot fail another's sniff.
        let sniff_key = match &piece.beam_url {
            Some(url) => format!("{} {url}", piece.cid),
            None => piece.cid.to_string(),
        };
        let cell = state.sniffs.cell(&sniff_key);
        let result = cell
            .get_or_init(|| async {
                // Learnt by another request since this one looked.
                if let Some(ct) = state.meta.get(&piece.cid).content_type {
                    return Ok(ct);
                }
                let head_range = ByteRange::new(0, (SNIFF_LEN as u64).min(size) - 1);
                if from_byte_zero {
                    // A player's first read: its next is the index, which
                    // ffmpeg puts in the last window.
                    state.cache.prefetch_tail(piece);
                }
                let head = if in_window_zero {
                    read_all(state, piece, head_range).await?
                } else {
                    match state
                        .upstream
                        .probe_from(
                            piece.beam_origin(),
                            &piece.cid,
                            Some(size),
                            SNIFF_LEN as u64,
                        )
                        .await
                    {
                        Ok((_, head)) => head.to_vec(),
                        // Beam failed: read the head through the cache, which
                        // falls back to the storage providers.
                        Err(e) => {
                            log::info!(
                                "sniff probe of {} failed ({e}): reading through the cache",
                                piece.cid
                            );
                            read_all(state, piece, head_range).await?
                        }
                    }
                };
                let ct = sniff_content_type(&head);
                state.learn(&piece.cid, size, ct);
                if let crate::media::IndexPlace::Beyond(index) = crate::media::index_of(&head, size)
                {
                    state.cache.prefetch_index(piece, index);
                }
                Ok(ct)
            })
            .await
            .clone();
        state.sniffs.done(&sniff_key, &cell);
        result.map(|ct| Some(ct.to_string()))
    };
    // How the bytes are checked (`verify.mode`): under strict, wait until
    // every piece read can be checked (or refuse); under background, start
    // what each piece needs (a layer build or a sweep) beside this read.
    let touched = resource.pieces_in(&ranges);
    if !is_head && !crate::cluster::serving_peer() {
        let strict = state.cache.verify_mode() == crate::config::VerifyMode::Strict
            && state.cache.checks_enabled();
        for piece in &touched {
            if !strict {
                state.cache.want_layer(piece);
            } else if let Err(why) = state.cache.until_checkable(piece).await {
                let reason = format!(
                    "piece {} cannot be checked against its PieceCID, and verify.mode is strict: {why}",
                    piece.cid
                );
                log::warn!("{reason}");
                return respond_error(session, ctx, 503, &reason).await;
            }
        }
    }
    let checked = touched
        .iter()
        .map(|p| state.cache.check_kind(p))
        .reduce(CheckKind::min)
        .unwrap_or(CheckKind::Cid);
    ctx.checked = Some(checked.label());

    // Open the first part before writing anything, so that upstream
    // failures are answered with their own status. A request that then
    // waits for the sniff (another request's read of the head, which may
    // itself wait for in-flight room) parks its reader meanwhile when room
    // is short: waiting on another request never holds room (60
    // overlapping slow readers deadlocked on exactly that).
    let sniff_known = sniff_piece
        .as_ref()
        .is_none_or(|p| state.meta.get(&p.cid).content_type.is_some());
    let sniff_done = std::sync::atomic::AtomicBool::new(sniff_known);
    let open_first = async {
        match ranges.first().copied().filter(|_| !is_head) {
            Some(r0) => {
                let mut reader = resource.reader(state, r0);
                let chunk = reader.next_chunk().await?;
                // (Only while room is short; and a read in window 0 waits on
                // a sniff of the same window: it holds no room the sniff
                // needs, and parks nothing.)
                if !in_window_zero
                    && !sniff_done.load(std::sync::atomic::Ordering::SeqCst)
                    && state.cache.inflight_under_pressure()
                {
                    reader.park();
                }
                Ok(Some((reader, chunk)))
            }
            None => Ok(None),
        }
    };
    // A probe of the head beside a deep first read would be a second Beam
    // request for a piece Beam may be cold for (a second whole-piece
    // answer): unless Beam is known (or, with `upstream.beam_assume_warm`,
    // taken to be) warm, the sniff waits for the first read, which has
    // learnt Beam's state (a warm-up's stream then serves the head).
    let beam_warm = match &resource.target {
        Target::Piece(p) => state.cache.beam_taken_as_warm(p),
        Target::Asset(..) => true,
    };
    let sniff = async {
        let sniffed = sniff.await;
        sniff_done.store(true, std::sync::atomic::Ordering::SeqCst);
        sniffed
    };
    let (sniffed, opened) = if in_window_zero || beam_warm {
        tokio::join!(sniff, open_first)
    } else {
        let opened = open_first.await;
        (sniff.await, opened)
    };
    let mut first: Option<(ResourceReader, Option<(Bytes, Source)>)> = match opened {
        Ok(f) => f,
        Err(e) => return respond_cache_error(session, ctx, &e).await,
    };
    let content_type = match sniffed {
        Ok(Some(ct)) => ct,
        Ok(None) => resource
            .content_type
            .clone()
            .unwrap_or_else(|| crate::http::sniff::OCTET_STREAM.to_string()),
        Err(e) => return respond_self_read_error(session, ctx, &e).await,
    };
    let upstream_wait = if x_cache == "HIT" {
        Duration::ZERO
    } else {
        waited_since.elapsed()
    };

    let multipart = match &plan {
        RangePlan::Multi(rs) => Some(MultipartLayout::new(rs, size, &content_type, &boundary())),
        _ => None,
    };
    let status: u16 = if matches!(plan, RangePlan::Full) {
        200
    } else {
        206
    };
    let mut h = ResponseHeader::build(status, Some(15))?;
    h.insert_header("Accept-Ranges", "bytes")?;
    if let Some(name) = &resource.file_name {
        h.insert_header(
            "Content-Disposition",
            crate::http::disposition::content_disposition(name),
        )?;
    }
    h.insert_header("ETag", resource.etag.as_str())?;
    h.insert_header("Cache-Control", IMMUTABLE)?;
    h.insert_header("X-Cache", x_cache)?;
    h.insert_header(CHECKED_HEADER, checked.label())?;
    h.insert_header(
        "Server-Timing",
        format!(
            "upstream;dur={:.1};desc=\"waiting on the upstream\"",
            upstream_wait.as_secs_f64() * 1000.0
        ),
    )?;
    for (k, v) in cors_headers() {
        h.insert_header(k, v)?;
    }
    match (&plan, &multipart) {
        (_, Some(layout)) => {
            h.insert_header("Content-Type", layout.content_type())?;
            h.insert_header("Content-Length", layout.content_length.to_string())?;
        }
        (RangePlan::Single(r), None) => {
            h.insert_header("Content-Type", content_type.as_str())?;
            h.insert_header("Content-Range", r.content_range(size))?;
            h.insert_header("Content-Length", r.len().to_string())?;
        }
        _ => {
            h.insert_header("Content-Type", content_type.as_str())?;
            h.insert_header("Content-Length", size.to_string())?;
        }
    }
    session
        .write_response_header(Box::new(h), is_head || ranges.is_empty())
        .await?;
    ctx.header_written(status);
    if ranges.first().is_some_and(|r| r.start > 0) {
        metrics::SEEK_TTFB
            .with_label_values(&[x_cache])
            .observe(waited_since.elapsed().as_secs_f64());
    }
    if is_head || ranges.is_empty() {
        return Ok(());
    }

    match multipart {
        None => {
            let (reader, chunk) = take_first(&mut first, state, &resource, ranges[0]);
            stream_part(session, ctx, reader, chunk).await?;
        }
        Some(layout) => {
            for (i, (head, r)) in layout.parts.iter().enumerate() {
                write(session, ctx, Bytes::copy_from_slice(head.as_bytes()), None).await?;
                let (reader, chunk) = if i == 0 {
                    take_first(&mut first, state, &resource, *r)
                } else {
                    (resource.reader(state, *r).mid_response(), None)
                };
                stream_part(session, ctx, reader, chunk).await?;
            }
            write(
                session,
                ctx,
                Bytes::copy_from_slice(layout.closing.as_bytes()),
                None,
            )
            .await?;
        }
    }
    session.write_response_body(None, true).await?;
    Ok(())
}

fn range_plan(state: &EdgeState, session: &Session, etag: &str, size: u64) -> RangePlan {
    let Some(range) = session.req_header().headers.get(header::RANGE) else {
        return RangePlan::Full;
    };
    if let Some(if_range) = request_header(session, header::IF_RANGE) {
        if !if_range_allows(if_range, etag) {
            return RangePlan::Full;
        }
    }
    match parse_range_header(range.as_bytes(), &state.range_limits) {
        ParsedRange::Invalid => RangePlan::Full,
        ParsedRange::TooMany(n) => RangePlan::Rejected(format!(
            "too many ranges ({n}; at most {} are accepted)",
            state.range_limits.max_specs
        )),
        ParsedRange::Specs(specs) => plan_ranges(&specs, size, &state.range_limits),
    }
}

fn take_first(
    first: &mut Option<(ResourceReader, Option<(Bytes, Source)>)>,
    state: &EdgeState,
    resource: &Resource,
    r: ByteRange,
) -> (ResourceReader, Option<(Bytes, Source)>) {
    first
        .take()
        .unwrap_or_else(|| (resource.reader(state, r).mid_response(), None))
}

/// The payer's budget refusal, when `access.egress_budget` is set and spent.
fn budget_spent(
    state: &EdgeState,
    beam_url: Option<&str>,
) -> Option<crate::access::budget::BudgetRefusal> {
    state.access.egress.as_ref()?.check(beam_url).err()
}

fn abort_upstream(e: &CacheError) -> Box<Error> {
    if let CacheError::Budget(refusal) = e {
        crate::access::count_refusal(refusal.label());
    }
    metrics::ABORTS.with_label_values(&["upstream"]).inc();
    log::warn!("aborting a response mid-body: {e}");
    Error::explain(
        ErrorType::ReadError,
        format!("upstream failed mid-body: {e}"),
    )
    .into_up()
}

/// Writes body bytes; with `access.limits.bytes_per_second` on, in slices,
/// each once the client's pace allows it.
async fn write(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut data: Bytes,
    source: Option<Source>,
) -> Result<()> {
    let Some((access, ip)) = ctx.pacer.clone() else {
        return write_now(session, ctx, data, source).await;
    };
    let step = access.limits.write_slice();
    while !data.is_empty() {
        let part = data.split_to(step.min(data.len()));
        access.limits.pace(ip, part.len()).await;
        write_now(session, ctx, part, source).await?;
    }
    Ok(())
}

async fn write_now(
    session: &mut Session,
    ctx: &mut RequestCtx,
    data: Bytes,
    source: Option<Source>,
) -> Result<()> {
    let n = data.len() as u64;
    if let Err(e) = session.write_response_body(Some(data), false).await {
        metrics::ABORTS.with_label_values(&["client"]).inc();
        return Err(e);
    }
    ctx.body_bytes += n;
    if let Some(s) = source {
        metrics::SERVED_BYTES
            .with_label_values(&[s.label()])
            .inc_by(n);
        if let Some(check) = ctx.checked {
            metrics::SERVED_CHECK_BYTES
                .with_label_values(&[check])
                .inc_by(n);
        }
    }
    Ok(())
}

async fn stream_part(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut reader: ResourceReader,
    first: Option<(Bytes, Source)>,
) -> Result<()> {
    if let Some((chunk, source)) = first {
        write(session, ctx, chunk, Some(source)).await?;
    }
    loop {
        match reader.next_chunk().await {
            Ok(Some((chunk, source))) => write(session, ctx, chunk, Some(source)).await?,
            Ok(None) => return Ok(()),
            Err(e) => return Err(abort_upstream(&e)),
        }
    }
}

async fn preflight(session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
    let allow_headers = request_header(session, header::ACCESS_CONTROL_REQUEST_HEADERS)
        .map(str::to_string)
        .unwrap_or_else(|| "Range, If-Range, If-None-Match".into());
    let mut h = ResponseHeader::build(204, Some(6))?;
    h.insert_header("Access-Control-Allow-Origin", "*")?;
    h.insert_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")?;
    h.insert_header("Access-Control-Allow-Headers", allow_headers)?;
    h.insert_header("Access-Control-Max-Age", "86400")?;
    h.insert_header("Content-Length", "0")?;
    session.write_response_header(Box::new(h), true).await?;
    ctx.header_written(204);
    Ok(())
}

async fn not_modified(session: &mut Session, ctx: &mut RequestCtx, etag: &str) -> Result<()> {
    let mut h = ResponseHeader::build(304, Some(6))?;
    h.insert_header("ETag", etag)?;
    h.insert_header("Cache-Control", IMMUTABLE)?;
    for (k, v) in cors_headers() {
        h.insert_header(k, v)?;
    }
    session.write_response_header(Box::new(h), true).await?;
    ctx.header_written(304);
    Ok(())
}

async fn respond_416(
    session: &mut Session,
    ctx: &mut RequestCtx,
    size: u64,
    reason: &str,
) -> Result<()> {
    let mut extra = cors_headers();
    extra.push(("Content-Range", unsatisfied_content_range(size)));
    extra.push(("Accept-Ranges", "bytes".into()));
    extra.push(("Cache-Control", "no-store".into()));
    respond_text(session, ctx, 416, &extra, &format!("{reason}\n")).await
}

/// A multipart boundary that no piece can be expected to contain.
fn boundary() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    format!("beam-edge-{:016x}", h.finish())
}
