//! `GET|HEAD|OPTIONS /piece/<PieceCID>`: validate, normalise the range, fetch
//! exactly the needed bytes, and stream them.
//!
//! Order of work, so that junk never causes upstream I/O and upstream
//! failures become honest statuses whenever possible:
//!
//! 1. method (OPTIONS preflight, 405 for anything but GET/HEAD), then the
//!    CID (400 with the parser's reason);
//! 2. `If-None-Match` → 304 (no upstream I/O: a piece never changes);
//! 3. the piece size: from a v2 CID, from metadata learnt earlier, or from a
//!    small probe of the first bytes (which also sniffs the content type);
//! 4. `Range` (dropped when `If-Range` does not match) → a [`RangePlan`]:
//!    200, 206, multipart 206, or 416;
//! 5. the first part's upstream response is checked *before* our header is
//!    written, so a 404/402/403/timeout is answered as such;
//! 6. header, then body chunks as they arrive; a later failure aborts.

use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{respond_text, EdgeState, RequestCtx};
use crate::http::conditional::{if_none_match, if_range_allows, piece_etag};
use crate::http::range::{
    parse_range_header, plan_ranges, unsatisfied_content_range, ByteRange, MultipartLayout,
    ParsedRange, RangePlan,
};
use crate::http::sniff::{sniff_content_type, SNIFF_LEN};
use crate::metrics;
use crate::piece::PieceCid;
use crate::upstream::{UpstreamBody, UpstreamError};

/// `Cache-Control` of every piece response: the bytes are content-addressed.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Headers a cross-origin player needs to read.
const EXPOSED: &str = "Content-Range, Content-Length, Accept-Ranges, ETag, Content-Type";

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
    respond_text(session, ctx, status, &extra, &format!("{reason}\n")).await
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
    respond_error(session, ctx, e.client_status(), &e.to_string()).await
}

/// Serves one `/piece/<cid_text>` request.
pub async fn serve_piece(
    state: &EdgeState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    cid_text: &str,
) -> Result<()> {
    let method = session.req_header().method.clone();
    if method == http::Method::OPTIONS {
        return preflight(session, ctx).await;
    }
    if method != http::Method::GET && method != http::Method::HEAD {
        let mut extra = cors_headers();
        extra.push(("Allow", "GET, HEAD, OPTIONS".into()));
        return respond_text(
            session,
            ctx,
            405,
            &extra,
            &format!("method {method} not allowed: use GET or HEAD\n"),
        )
        .await;
    }
    let cid = match PieceCid::parse(cid_text) {
        Ok(c) => c,
        Err(e) => {
            let shown: String = cid_text.chars().take(100).collect();
            return respond_error(
                session,
                ctx,
                400,
                &format!("invalid PieceCID {shown:?}: {e}"),
            )
            .await;
        }
    };
    let cid_str = cid.to_string();
    let etag = piece_etag(&cid_str);
    if let Some(inm) = request_header(session, header::IF_NONE_MATCH) {
        if if_none_match(inm, &etag) {
            return not_modified(session, ctx, &etag).await;
        }
    }

    // The piece size, and possibly its head (which gives the content type).
    let known = state.meta.get(&cid_str);
    let mut content_type = known.content_type;
    let size = match cid.payload_size().or(known.size) {
        Some(s) => s,
        None => match state.upstream.probe(&cid_str, None, SNIFF_LEN as u64).await {
            Ok((size, head)) => {
                let ct = sniff_content_type(&head);
                state.meta.update(&cid_str, Some(size), Some(ct));
                content_type = Some(ct);
                size
            }
            Err(e) => return respond_upstream_error(session, ctx, &e).await,
        },
    };

    let plan = range_plan(state, session, &etag, size);
    let ranges: Vec<ByteRange> = match &plan {
        RangePlan::Unsatisfiable => {
            return respond_416(
                session,
                ctx,
                size,
                &format!("range not satisfiable: the piece has {size} bytes"),
            )
            .await
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

    // Open the first part before writing anything, so that upstream
    // failures are answered with their own status.
    let mut first: Option<(UpstreamBody, Vec<Bytes>)> = None;
    // Sniff from the first part only when it holds the piece's head; else probe.
    let head_len = (SNIFF_LEN as u64).min(size);
    if content_type.is_none()
        && ranges
            .first()
            .is_some_and(|r0| is_head || r0.start > 0 || r0.len() < head_len)
    {
        match state
            .upstream
            .probe(&cid_str, Some(size), SNIFF_LEN as u64)
            .await
        {
            Ok((_, head)) => {
                let ct = sniff_content_type(&head);
                state.meta.update(&cid_str, Some(size), Some(ct));
                content_type = Some(ct);
            }
            Err(e) => return respond_upstream_error(session, ctx, &e).await,
        }
    }
    if let Some(r0) = ranges.first().copied().filter(|_| !is_head) {
        let mut body = match state.upstream.fetch(&cid_str, r0, Some(size)).await {
            Ok(b) => b,
            Err(e) => return respond_upstream_error(session, ctx, &e).await,
        };
        // The part starts at byte 0: sniff the type from its first bytes.
        let mut peeked = Vec::new();
        if content_type.is_none() {
            let need = SNIFF_LEN.min(usize::try_from(r0.len()).unwrap_or(SNIFF_LEN));
            let mut head = Vec::with_capacity(need);
            while head.len() < need {
                match body.next_chunk().await {
                    Ok(Some(c)) => {
                        head.extend_from_slice(&c[..c.len().min(need - head.len())]);
                        peeked.push(c);
                    }
                    Ok(None) => break,
                    Err(e) => return respond_upstream_error(session, ctx, &e).await,
                }
            }
            let ct = sniff_content_type(&head);
            state.meta.update(&cid_str, Some(size), Some(ct));
            content_type = Some(ct);
        }
        first = Some((body, peeked));
    }
    let content_type = content_type.unwrap_or(crate::http::sniff::OCTET_STREAM);

    let multipart = match &plan {
        RangePlan::Multi(rs) => Some(MultipartLayout::new(rs, size, content_type, &boundary())),
        _ => None,
    };
    let status: u16 = if matches!(plan, RangePlan::Full) {
        200
    } else {
        206
    };
    let mut h = ResponseHeader::build(status, Some(12))?;
    h.insert_header("Accept-Ranges", "bytes")?;
    h.insert_header("ETag", etag.as_str())?;
    h.insert_header("Cache-Control", IMMUTABLE)?;
    for (k, v) in cors_headers() {
        h.insert_header(k, v)?;
    }
    match (&plan, &multipart) {
        (_, Some(layout)) => {
            h.insert_header("Content-Type", layout.content_type())?;
            h.insert_header("Content-Length", layout.content_length.to_string())?;
        }
        (RangePlan::Single(r), None) => {
            h.insert_header("Content-Type", content_type)?;
            h.insert_header("Content-Range", r.content_range(size))?;
            h.insert_header("Content-Length", r.len().to_string())?;
        }
        _ => {
            h.insert_header("Content-Type", content_type)?;
            h.insert_header("Content-Length", size.to_string())?;
        }
    }
    session
        .write_response_header(Box::new(h), is_head || ranges.is_empty())
        .await?;
    ctx.header_written(status);
    if is_head || ranges.is_empty() {
        return Ok(());
    }

    match multipart {
        None => {
            let (body, peeked) = take_first(&mut first, state, &cid_str, ranges[0], size).await?;
            stream_part(session, ctx, body, peeked).await?;
        }
        Some(layout) => {
            for (i, (head, r)) in layout.parts.iter().enumerate() {
                write(session, ctx, Bytes::copy_from_slice(head.as_bytes())).await?;
                let (body, peeked) = if i == 0 {
                    take_first(&mut first, state, &cid_str, *r, size).await?
                } else {
                    open_later(state, &cid_str, *r, size).await?
                };
                stream_part(session, ctx, body, peeked).await?;
            }
            write(
                session,
                ctx,
                Bytes::copy_from_slice(layout.closing.as_bytes()),
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

async fn take_first(
    first: &mut Option<(UpstreamBody, Vec<Bytes>)>,
    state: &EdgeState,
    cid: &str,
    r: ByteRange,
    size: u64,
) -> Result<(UpstreamBody, Vec<Bytes>)> {
    match first.take() {
        Some(f) => Ok(f),
        None => open_later(state, cid, r, size).await,
    }
}

/// Opens a part after the header went out: a failure now can only abort.
async fn open_later(
    state: &EdgeState,
    cid: &str,
    r: ByteRange,
    size: u64,
) -> Result<(UpstreamBody, Vec<Bytes>)> {
    match state.upstream.fetch(cid, r, Some(size)).await {
        Ok(b) => Ok((b, Vec::new())),
        Err(e) => Err(abort_upstream(&e)),
    }
}

fn abort_upstream(e: &UpstreamError) -> Box<Error> {
    metrics::ABORTS.with_label_values(&["upstream"]).inc();
    log::warn!("aborting a response mid-body: {e}");
    Error::explain(
        ErrorType::ReadError,
        format!("upstream failed mid-body: {e}"),
    )
    .into_up()
}

async fn write(session: &mut Session, ctx: &mut RequestCtx, data: Bytes) -> Result<()> {
    let n = data.len() as u64;
    if let Err(e) = session.write_response_body(Some(data), false).await {
        metrics::ABORTS.with_label_values(&["client"]).inc();
        return Err(e);
    }
    ctx.body_bytes += n;
    Ok(())
}

async fn stream_part(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut body: UpstreamBody,
    peeked: Vec<Bytes>,
) -> Result<()> {
    for chunk in peeked {
        write(session, ctx, chunk).await?;
    }
    loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => write(session, ctx, chunk).await?,
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
