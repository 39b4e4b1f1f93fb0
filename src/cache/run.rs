//! Upstream runs: one request for a run of consecutive windows, its stream
//! split into the run's fills, retried on transient failures (with backoff)
//! from the first missing byte, stopped at a window boundary once nothing
//! left is wanted.
//!
//! A run whose windows Beam's warm-up stream will reach soon hands them to
//! it (`warmup`) instead of asking anyone.
//!
//! What it is not: the choice of upstream (`providers`), the caching of the
//! windows before a range carried by a whole-piece body (`beam_prefix`), or
//! what happens to a finished window (`store`).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::fill::{CacheError, Fill};
use super::{Inner, Piece};
use crate::access::budget::Reservation;
use crate::http::range::ByteRange;
use crate::upstream::UpstreamError;

impl Inner {
    /// Downloads `fills` (consecutive windows) with as few upstream requests
    /// as the upstream allows.
    pub(super) async fn run_fill(
        self: &Arc<Self>,
        piece: &Piece,
        fills: &[Arc<Fill>],
        local_only: bool,
    ) {
        let g = self.geometry;
        let mut cur = 0usize;
        let mut failures = 0u32;
        // The payer's egress budget: the windows a request asks the
        // upstream for are reserved first, and the request asks for no more
        // than could be reserved, so no upstream ever sends bytes past the
        // budget; what was not read is given back (the reservation's drop).
        let mut budget = self
            .settings
            .egress
            .clone()
            .map(|b| Reservation::new(b, piece.beam_url.clone()));
        loop {
            if cur == fills.len() {
                return;
            }
            if !fills[cur..].iter().any(|f| f.is_wanted()) {
                self.abandon(&fills[cur..], CacheError::Cancelled);
                return;
            }
            // This request's windows: fills[cur..end].
            let mut end = fills.len();
            if let Some(r) = budget.as_mut() {
                r.release();
                end = cur;
                let mut refused = None;
                for f in &fills[cur..] {
                    match r.take(f.len - f.received()) {
                        Ok(()) => end += 1,
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                }
                if let (true, Some(e)) = (end == cur, refused) {
                    self.abandon(&fills[cur..], CacheError::Budget(e));
                    return;
                }
            }
            let (Some(first), Some(last)) = (
                g.span(fills[cur].key.index, piece.size),
                g.span(fills[end - 1].key.index, piece.size),
            ) else {
                self.abandon(&fills[cur..], CacheError::Cancelled);
                return;
            };
            // Beam is warming this piece and its stream will be here soon:
            // read from it rather than from anywhere else.
            if self.adopt(piece, &fills[cur..], false) {
                return;
            }
            let start = first.start + fills[cur].received();
            let range = ByteRange::new(start, last.end);
            let result = self.open_source(piece, range, local_only).await;
            let mut charging = true;
            let (mut body, from_zero, holder) = match result {
                Ok((body, from_zero, holder)) => {
                    let from_peer = body.kind() == crate::upstream::UpstreamKind::Peer;
                    for f in &fills[cur..] {
                        f.set_from_peer(from_peer);
                    }
                    // A peer's bytes cost the payer nothing here: the
                    // owning replica counts its own upstream fetches.
                    if let Some(r) = budget.as_mut().filter(|_| from_peer) {
                        r.release();
                        charging = false;
                    }
                    // Who sent which window, for backing off a holder whose
                    // window turns out wrong.
                    self.builds
                        .note_holder(fills[cur..].iter().map(|f| f.key.clone()), &holder);
                    (body, from_zero, holder)
                }
                Err(UpstreamError::Warming) => {
                    // No provider serves the range: the warm-up will, unless
                    // its stream has passed these windows; then Beam is asked
                    // once it ends (warm by then).
                    if self.adopt(piece, &fills[cur..], true) {
                        return;
                    }
                    self.warmup_ended(piece).await;
                    failures += 1;
                    if failures > self.settings.retries + 2 {
                        self.abandon(&fills[cur..], CacheError::Upstream(UpstreamError::Warming));
                        return;
                    }
                    if !self.warming(piece) {
                        continue;
                    }
                    backoff(failures).await;
                    continue;
                }
                Err(e) => {
                    if e.is_transient() && failures < self.settings.retries {
                        failures += 1;
                        backoff(failures).await;
                        continue;
                    }
                    self.abandon(&fills[cur..], CacheError::Upstream(e));
                    return;
                }
            };
            // A whole-piece body used from byte 0: cache the windows before
            // the run as they pass, and drop what this run already has.
            let mut offset = if from_zero { 0 } else { start };
            let mut prefix = BytesMut::new();
            loop {
                match body.next_chunk().await {
                    Ok(Some(mut chunk)) => {
                        if offset < start {
                            let skip = usize::try_from((start - offset).min(chunk.len() as u64))
                                .unwrap_or(0);
                            let head = chunk.split_to(skip);
                            if let Some(r) = budget.as_mut().filter(|_| charging) {
                                r.charge_unplanned(head.len() as u64);
                            }
                            let check = fills[0].check.as_ref();
                            self.cache_prefix(
                                piece,
                                check,
                                offset,
                                &head,
                                first.start,
                                &mut prefix,
                            );
                            offset += skip as u64;
                            if chunk.is_empty() {
                                continue;
                            }
                        }
                        offset += chunk.len() as u64;
                        while !chunk.is_empty() {
                            let f = &fills[cur];
                            let need = usize::try_from(f.len - f.received()).unwrap_or(usize::MAX);
                            let part = chunk.split_to(need.min(chunk.len()));
                            if let Some(r) = budget.as_mut().filter(|_| charging) {
                                r.received(part.len() as u64);
                            }
                            f.push(part);
                            if f.received() == f.len {
                                self.finish_window(f).await;
                                cur += 1;
                                if cur == fills.len() {
                                    return;
                                }
                                if !fills[cur..].iter().any(|f| f.is_wanted()) {
                                    self.abandon(&fills[cur..], CacheError::Cancelled);
                                    return;
                                }
                            }
                        }
                    }
                    Ok(None) => {
                        // The body ended exactly where asked; anything left
                        // of this request's windows is short (windows past
                        // `end` were not asked for: the budget is asked again).
                        if cur < end {
                            self.cut_short(piece, &holder);
                            failures += 1;
                            if failures > self.settings.retries {
                                let e = UpstreamError::ShortBody {
                                    expected: range.len(),
                                    got: offset - start,
                                };
                                self.abandon(&fills[cur..], CacheError::Upstream(e));
                                return;
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        // Mid-body: the header promised more than came.
                        self.cut_short(piece, &holder);
                        failures += 1;
                        if !e.is_transient() || failures > self.settings.retries {
                            self.abandon(&fills[cur..], CacheError::Upstream(e));
                            return;
                        }
                        log::info!("retrying {} from byte {} after: {e}", piece.cid, offset);
                        backoff(failures).await;
                        break;
                    }
                }
            }
        }
    }
}

impl Inner {
    /// A holder that cut a window short (its body ended or broke before the
    /// length its header promised) is backed off while checking is on (a
    /// storage provider; Beam only for this piece), so the retry asks
    /// another one.
    fn cut_short(&self, piece: &Piece, holder: &str) {
        if self.checking() && !holder.starts_with("peer:") {
            self.back_off(&piece.cid, holder, "cut a window short");
        }
    }
}

async fn backoff(attempt: u32) {
    let ms = 100u64 << (2 * attempt.saturating_sub(1)).min(8);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
