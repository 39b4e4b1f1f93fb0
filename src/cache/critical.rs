//! Critical bytes first: a reader whose range starts deep inside a cold
//! window does not wait for the window's head to stream past. Its run asks
//! for the window from the reader's first byte on (the fill is split, see
//! `fill`), and the head, the bytes before the split, comes from a request
//! of its own started beside the run's. No byte is asked for twice; the part
//! that ends last finishes the window, which is then checked and stored as
//! any other (a checked window's last byte is still held until it passed).
//!
//! What it is not: the decision to split (`reader`: a reader at least
//! `cache.critical_first` into a window its own run plans, of a piece Beam
//! answers with ranges), or the run (`run`), which starts this fetch once
//! the window has its in-flight room.

use std::sync::Arc;

use super::fill::{CacheError, Fill};
use super::{Inner, Piece};
use crate::access::budget::Reservation;
use crate::http::range::ByteRange;
use crate::upstream::UpstreamError;

impl Inner {
    /// Splits the head of `fills` where its reader wished
    /// ([`Fill::wish_split`]) when the window's source answers ranges:
    /// Beam once it has answered the piece with one, or a peer that owns
    /// the window (or any window, with no Beam URL). A piece whose state at
    /// Beam is unknown (unless `upstream.beam_assume_warm` takes it as warm)
    /// or cold gets one request, for its one warm-up.
    pub(super) fn split_if_wished(&self, piece: &Piece, fills: &[Arc<Fill>], local_only: bool) {
        let Some(head) = fills.first() else {
            return;
        };
        let at = head.take_split_wish();
        if at > 0 && self.may_split(piece, head.key.index, local_only) {
            head.split_at(at);
        }
    }

    fn may_split(&self, piece: &Piece, index: u64, local_only: bool) -> bool {
        if !local_only && self.owned_elsewhere(piece, index) {
            return true;
        }
        let origin = piece.beam_origin();
        self.upstream.beam_base(&origin).is_none() || self.beam_taken_as_warm(piece)
    }

    /// Fetches the head (bytes `0..at`) of the split window `fill` in the
    /// background, as part of run `run` (the same feeder: whoever of the
    /// two opens its request first takes the window from a warm-up).
    pub(super) fn start_head_fetch(
        self: &Arc<Self>,
        piece: &Piece,
        fill: Arc<Fill>,
        at: u64,
        run: u64,
        local_only: bool,
    ) {
        let inner = self.clone();
        let piece = piece.clone();
        tokio::spawn(async move {
            inner.fetch_head(&piece, &fill, at, run, local_only).await;
        });
    }

    async fn fetch_head(
        self: &Arc<Self>,
        piece: &Piece,
        fill: &Arc<Fill>,
        at: u64,
        run: u64,
        local_only: bool,
    ) {
        let Some(span) = self.geometry.span(fill.key.index, piece.size) else {
            return;
        };
        let mut budget = self
            .settings
            .egress
            .clone()
            .map(|b| Reservation::new(b, piece.beam_url.clone()));
        let mut failures = 0u32;
        let fail = |e: CacheError| self.give_up(std::slice::from_ref(fill), e, run);
        loop {
            // The run failed the window, or a warm-up's stream feeds it.
            let have = fill.received();
            if fill.is_done() || fill.fed_by_other(run) || have >= at {
                return;
            }
            if let Some(r) = budget.as_mut() {
                r.release();
                if let Err(e) = r.take(at - have) {
                    fail(CacheError::Budget(e));
                    return;
                }
            }
            let range = ByteRange::new(span.start + have, span.start + at - 1);
            let (mut body, from_zero, holder) =
                match self.open_source(piece, range, local_only).await {
                    Ok(answer) => answer,
                    Err(UpstreamError::Warming) => {
                        // Beam warms the piece. Its stream takes the window
                        // only while neither part has bytes, and the reader's
                        // part may be a storage provider's already (it starts
                        // past `max_skip`): the head is asked of them too,
                        // whatever its distance. Without one, Beam is asked
                        // again once the warm-up ended.
                        match self.try_providers(piece, range, "warming").await {
                            Some((b, holder)) => (b, false, holder),
                            None => {
                                self.warmup_ended(piece).await;
                                failures += 1;
                                if failures > self.settings.retries + 2 {
                                    fail(CacheError::Upstream(UpstreamError::Warming));
                                    return;
                                }
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        if e.is_transient() && failures < self.settings.retries {
                            failures += 1;
                            super::run::backoff(failures).await;
                            continue;
                        }
                        fail(CacheError::Upstream(e));
                        return;
                    }
                };
            // The bytes are in hand: the head is this run's to feed, unless
            // a warm-up's stream took the window meanwhile.
            if !fill.take_feed(run) {
                return;
            }
            let from_peer = body.kind() == crate::upstream::UpstreamKind::Peer;
            fill.set_from_peer(from_peer);
            // A peer's bytes cost the payer nothing here (the owning replica
            // counts its own upstream fetches), as in `run`.
            if let Some(r) = budget.as_mut().filter(|_| from_peer) {
                r.release();
                budget = None;
            }
            // A whole-piece answer (Beam cold again, near the head): the
            // bytes before the head's are skipped.
            let mut skip = if from_zero { range.start } else { 0 };
            let mut got = have;
            let broke = loop {
                match body.next_chunk().await {
                    Ok(Some(mut chunk)) => {
                        if fill.is_done() {
                            return;
                        }
                        if skip > 0 {
                            let n = usize::try_from(skip.min(chunk.len() as u64)).unwrap_or(0);
                            drop(chunk.split_to(n));
                            if let Some(r) = budget.as_mut() {
                                r.charge_unplanned(n as u64);
                            }
                            skip -= n as u64;
                            if chunk.is_empty() {
                                continue;
                            }
                        }
                        let need = usize::try_from(at - got).unwrap_or(usize::MAX);
                        let part = chunk.split_to(need.min(chunk.len()));
                        if let Some(r) = budget.as_mut() {
                            r.received(part.len() as u64);
                        }
                        got += part.len() as u64;
                        if fill.push(part) {
                            self.finish_window(fill).await;
                            return;
                        }
                        if got == at {
                            return;
                        }
                    }
                    Ok(None) => {
                        break UpstreamError::ShortBody {
                            expected: range.len(),
                            got: got - have,
                        }
                    }
                    Err(e) => break e,
                }
            };
            // Cut short: ask again from the first missing byte.
            self.cut_short(piece, &holder);
            failures += 1;
            if !broke.is_transient() || failures > self.settings.retries {
                fail(CacheError::Upstream(broke));
                return;
            }
            super::run::backoff(failures).await;
        }
    }
}
