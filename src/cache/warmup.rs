//! Beam's one warm-up per cold piece. While a piece is cold in Beam's CDN,
//! the FilBeam worker answers every ranged request with 200 and the whole
//! body, pulls the whole piece from a storage provider for each, and fills
//! its CDN only when a response *completes*. Cutting such bodies at a
//! window boundary (and asking again for the next window) costs the payer
//! and the provider many times the piece and leaves Beam cold for ever.
//!
//! So the first whole-piece answer to a piece (per payer) is kept and read
//! to the end, in the background, and its windows fill this cache as they
//! stream past: a window neither cached nor in flight gets a fill that
//! readers join (single flight), a window a run planned but has no bytes
//! for yet is taken (see [`super::fill::Fill::take_feed`]: the run leaves
//! it), and a window a run already feeds is skipped.
//! Readers whose windows lie ahead of the stream hand their fills to it
//! ([`Inner::adopt`]) when they are near (within `max_skip`) or when no
//! storage provider can serve them; deep ranges go to the providers
//! meanwhile. Beam gets no other request for the piece until the warm-up
//! ends ([`crate::upstream::beam_state`] answers `Warming` instead). If the
//! stream breaks, the fills it held are fetched again by ordinary runs, and
//! no second warm-up is tried for a while.
//!
//! What it is not: the run that first met the cold answer (`providers`,
//! `run`) or the memory of Beam's state (`crate::upstream::beam_state`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::fill::{next_warmup_id, Fill};
use super::inflight::Admission;
use super::{Inner, Piece};
use crate::metrics;
use crate::upstream::beam_state::WarmupGuard;
use crate::upstream::{UpstreamBody, UpstreamError};

/// How long read-ahead (and the tail guess) leaves a reader to make a
/// piece's first Beam request before it makes it itself (see
/// [`Inner::after_first_contact`]).
pub const READ_AHEAD_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// (Beam base URL the piece is read from, PieceCID).
type WarmKey = (Option<Arc<str>>, Arc<str>);

/// The warm-ups running, by piece and payer.
#[derive(Default)]
pub(super) struct Warmups {
    map: Mutex<HashMap<WarmKey, Arc<Warmup>>>,
    /// Pieces whose first Beam request is in flight (state unknown).
    first: Mutex<HashMap<WarmKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl Warmups {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WarmKey, Arc<Warmup>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Held by the first Beam request of a piece until its answer is recorded.
pub(super) struct FirstContact {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// One running warm-up.
pub(super) struct Warmup {
    /// Its feeder id (see [`Fill::take_feed`]).
    id: u64,
    state: Mutex<WarmupState>,
    ended: watch::Sender<bool>,
}

#[derive(Default)]
struct WarmupState {
    /// The window whose bytes are streaming now (its target is decided).
    at: Option<u64>,
    /// Bytes of the piece streamed so far.
    pos: u64,
    /// Fills handed over by runs, filled when the stream reaches them.
    adopted: BTreeMap<u64, Arc<Fill>>,
    /// Set when the stream ended: nothing more is adopted.
    closed: bool,
}

impl Warmup {
    fn lock(&self) -> std::sync::MutexGuard<'_, WarmupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn warm_key(piece: &Piece) -> WarmKey {
    (piece.beam_url.clone(), piece.cid.clone())
}

/// The padded size of a piece of `raw` bytes (Fr32: 127 raw bytes per 128).
fn padded_size(raw: u64) -> u64 {
    raw.div_ceil(127).saturating_mul(128)
}

impl Inner {
    /// Starts the warm-up of `piece` with Beam's whole-piece `body`, unless
    /// warm-ups are off, the piece is larger than `beam_warm_max`, or one
    /// failed recently: the body is then given back (`Some`). While one
    /// runs, the body is dropped (`None`, as when this one started).
    pub(super) fn start_warmup(
        self: &Arc<Self>,
        piece: &Piece,
        mut body: UpstreamBody,
    ) -> Option<UpstreamBody> {
        // (A payer's egress budget is reserved window by window as a run
        // asks for them; a warm-up's whole piece could not be (follow-up:
        // reserve the piece up front). With a budget, no warm-up.)
        if !self.may_warm(piece) {
            return Some(body);
        }
        let origin = piece.beam_origin();
        let Some(base) = self.upstream.beam_base(&origin) else {
            return Some(body);
        };
        let warmup = {
            // Under the map's lock: Beam's state says Warming only once the
            // warm-up can be found to adopt fills.
            let mut map = self.warmups.lock();
            let Some(guard) = self.upstream.beam_state().begin_warmup(base, &piece.cid) else {
                if map.contains_key(&warm_key(piece)) {
                    // Another request's whole-piece answer is the warm-up
                    // (both went before Beam's first answer: with
                    // `upstream.beam_assume_warm`, or for a piece remembered
                    // warm that Beam has evicted since): this one is hung up
                    // at once, and its range is the warm-up's or a
                    // provider's.
                    drop(body);
                    return None;
                }
                return Some(body);
            };
            let w = Arc::new(Warmup {
                id: next_warmup_id(),
                state: Mutex::new(WarmupState::default()),
                ended: watch::Sender::new(false),
            });
            map.insert(warm_key(piece), w.clone());
            (w, guard)
        };
        body.deliver_whole_piece();
        metrics::BEAM_WARMUPS.with_label_values(&["started"]).inc();
        log::info!(
            "Beam is cold for {}: reading its whole-piece answer to the end to warm it",
            piece.cid
        );
        let inner = self.clone();
        let piece = piece.clone();
        tokio::spawn(async move {
            let (w, guard) = warmup;
            inner.run_warmup(&piece, &w, body, guard).await;
        });
        None
    }

    /// Waits for the first Beam request of `piece` when one is in flight
    /// and Beam's state for it is unknown; returns the guard to hold while
    /// this request is the first. `None` once the state is known. With
    /// `upstream.beam_assume_warm` a request does not wait: it takes the
    /// turn if it is free (read-ahead then waits for its answer) and goes.
    pub(super) async fn first_contact(&self, piece: &Piece) -> Option<FirstContact> {
        let origin = piece.beam_origin();
        let base = self.upstream.beam_base(&origin)?;
        let unknown = || self.awaits_first_answer(piece, base);
        if !unknown() {
            return None;
        }
        let lock = {
            let mut first = self.warmups.first.lock().unwrap_or_else(|p| p.into_inner());
            if first.len() > 10_000 {
                first.retain(|_, l| Arc::strong_count(l) > 1);
            }
            first.entry(warm_key(piece)).or_default().clone()
        };
        if self.beam_taken_as_warm(piece) {
            let guard = lock.try_lock_owned().ok()?;
            return Some(FirstContact { _guard: guard });
        }
        let guard = lock.lock_owned().await;
        // The request before this one had its answer: unless it left the
        // state unknown (it failed), this one is not a first contact, and
        // goes at once instead of holding the others back a round trip.
        if !unknown() {
            return None;
        }
        Some(FirstContact { _guard: guard })
    }

    /// Read-ahead's turn at a piece's first Beam request: returns once
    /// Beam's state for `piece` is known, or once a first request in flight
    /// has had its answer, or after [`READ_AHEAD_GRACE`] with none in
    /// flight. A piece's first request goes alone, and read-ahead (the tail
    /// guess, the windows after a reader's) is started a moment before the
    /// reader's own request: made first, it held the player's head read back
    /// by a round trip, and on a piece cold at Beam the whole-body answer
    /// came for a deep range. Waiting for the answer here, before any
    /// in-flight room is taken, lets read-ahead hand its windows to a warm-up
    /// that answer started while the stream is still before them.
    pub(super) async fn after_first_contact(&self, piece: &Piece) {
        let origin = piece.beam_origin();
        let Some(base) = self.upstream.beam_base(&origin) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + READ_AHEAD_GRACE;
        loop {
            if !self.awaits_first_answer(piece, base) || tokio::time::Instant::now() >= deadline {
                return;
            }
            if let Some(lock) = self.first_contact_in_flight(piece) {
                // Its answer: the lock is free once it is recorded.
                drop(lock.lock_owned().await);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// True while the next Beam request of `piece` is to go alone: Beam's
    /// state for it is unknown (but see `upstream.beam_assume_warm` in
    /// [`Inner::first_contact`]), or Beam answered it cold and no warm-up has
    /// been tried yet though one may start (a size probe of a v1 piece
    /// meets Beam cold and records it, but starts no warm-up: without this,
    /// the head and the tail guess then went at once, and each got a
    /// whole-piece answer).
    fn awaits_first_answer(&self, piece: &Piece, base: &str) -> bool {
        use crate::upstream::beam_state::BeamPiece;
        match self.upstream.beam_state().get(base, &piece.cid) {
            BeamPiece::Unknown => true,
            BeamPiece::Cold => self.may_warm(piece),
            _ => false,
        }
    }

    /// True when `upstream.beam_assume_warm` lets the requests of `piece`
    /// go before Beam's first answer: only while a whole-piece answer would
    /// start a warm-up, which then hangs up the others (without one, a
    /// whole-piece answer near the head is read from byte 0).
    pub(super) fn assumes_warm(&self, piece: &Piece) -> bool {
        self.settings.beam_assume_warm && self.may_warm(piece)
    }

    /// True when a whole-piece answer for `piece` would start its warm-up
    /// (see [`Inner::start_warmup`]).
    fn may_warm(&self, piece: &Piece) -> bool {
        self.settings.beam_warm
            && padded_size(piece.size) <= self.settings.beam_warm_max
            && self.settings.egress.is_none()
    }

    /// The turn of the request of `piece` that makes its first Beam
    /// contact, while one does.
    fn first_contact_in_flight(&self, piece: &Piece) -> Option<Arc<tokio::sync::Mutex<()>>> {
        let first = self.warmups.first.lock().unwrap_or_else(|p| p.into_inner());
        first
            .get(&warm_key(piece))
            .filter(|l| l.try_lock().is_err())
            .cloned()
    }

    /// Hands `fills` (consecutive windows of `piece`, planned by run `run`)
    /// to its running warm-up, which fills them when its stream reaches
    /// them. Only when the stream has not passed the first the warm-up does
    /// not feed yet, and (unless `any_distance`) that one starts within
    /// `max_skip` of where the stream is. Fills the stream already took as
    /// it passed are the warm-up's anyway. `false`: the caller keeps what
    /// the warm-up did not take.
    pub(super) fn adopt(
        &self,
        piece: &Piece,
        fills: &[Arc<Fill>],
        any_distance: bool,
        run: u64,
    ) -> bool {
        let map = self.warmups.lock();
        let Some(w) = map.get(&warm_key(piece)) else {
            return false;
        };
        let mut st = w.lock();
        if st.closed {
            return false;
        }
        // (A split window's head has a request of its own: the run keeps it.)
        if fills.is_empty()
            || fills
                .iter()
                .any(|f| (f.fed_by_other(run) && !f.is_fed_by(w.id)) || f.is_split())
        {
            return false;
        }
        // The ones the stream did not take as it passed.
        let ahead: Vec<&Arc<Fill>> = fills.iter().filter(|f| !f.is_fed_by(w.id)).collect();
        let Some(first) = ahead.first() else {
            return true;
        };
        if st.at.is_some_and(|at| first.key.index <= at) {
            return false;
        }
        let start = self
            .geometry
            .span(first.key.index, piece.size)
            .map_or(u64::MAX, |s| s.start);
        if !any_distance && start.saturating_sub(st.pos) > self.settings.max_skip {
            return false;
        }
        let mut all = true;
        for f in ahead {
            // (Under the warm-up's lock the stream cannot take it meanwhile;
            // another run can, and then keeps it.)
            if f.hand_feed(run, w.id) {
                st.adopted.insert(f.key.index, f.clone());
                metrics::BEAM_WARMUP_ADOPTED.inc();
            } else {
                all = false;
            }
        }
        all
    }

    /// True while a warm-up of `piece` runs.
    pub(super) fn warming(&self, piece: &Piece) -> bool {
        self.warmups.lock().contains_key(&warm_key(piece))
    }

    /// Waits until the warm-up of `piece` (if one runs) has ended.
    pub(super) async fn warmup_ended(&self, piece: &Piece) {
        let w = self.warmups.lock().get(&warm_key(piece)).cloned();
        if let Some(w) = w {
            let mut rx = w.ended.subscribe();
            let _ = rx.wait_for(|ended| *ended).await;
        }
    }

    /// Where the bytes of window `index` go: an adopted fill, a fill a run
    /// planned but feeds no bytes to yet (it waited for this answer, or its
    /// request is still opening: the run finds it taken and leaves it), a
    /// new fill (readers join it), or nowhere (cached, or a run feeds it).
    fn warmup_target(&self, piece: &Piece, w: &Warmup, index: u64, pos: u64) -> Option<Arc<Fill>> {
        // Held throughout: a run's `adopt` sees where the stream is and what
        // it took together.
        let mut st = w.lock();
        st.at = Some(index);
        st.pos = pos;
        if let Some(f) = st.adopted.remove(&index) {
            return Some(f);
        }
        // Cluster mode: windows other replicas own stay theirs (one copy
        // per cluster); their bytes only pass by.
        if self.owned_elsewhere(piece, index) {
            return None;
        }
        let key = super::window::WindowKey::new(piece.cid.clone(), index);
        // (Twice: a reader may plan the window between the two looks.)
        for _ in 0..2 {
            if let Some(f) = self.in_flight(&key) {
                if !f.take_feed_whole(w.id) {
                    return None;
                }
                metrics::BEAM_WARMUP_ADOPTED.inc();
                return Some(f);
            }
            if let Some(f) = self
                .plan_run(piece, index, index, 1, false, true, true)
                .into_iter()
                .next()
            {
                f.take_feed(w.id);
                return Some(f);
            }
            if self.is_cached(&key) {
                return None;
            }
        }
        None
    }

    async fn run_warmup(
        self: &Arc<Self>,
        piece: &Piece,
        w: &Arc<Warmup>,
        mut body: UpstreamBody,
        guard: WarmupGuard,
    ) {
        let g = self.geometry;
        let mut pos = 0u64;
        // The window streaming now: its first byte, last byte and target.
        let mut window: Option<(u64, u64, Option<Arc<Fill>>)> = None;
        let result: Result<(), UpstreamError> = loop {
            let mut chunk = match body.next_chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            while !chunk.is_empty() {
                let (start, end, target) = match window.take() {
                    Some(w) => w,
                    None => {
                        let index = g.index_of(pos);
                        let Some(span) = g.span(index, piece.size) else {
                            chunk.clear();
                            break;
                        };
                        (
                            span.start,
                            span.end,
                            self.warmup_target(piece, w, index, pos),
                        )
                    }
                };
                let take = usize::try_from((end + 1 - pos).min(chunk.len() as u64)).unwrap_or(0);
                let part = chunk.split_to(take);
                if let Some(f) = &target {
                    // An adopted fill may hold the window's first bytes already.
                    let have = f.received();
                    let offset = pos - start;
                    let part_end = offset + part.len() as u64;
                    if part_end > have {
                        let from = usize::try_from(have.saturating_sub(offset)).unwrap_or(0);
                        f.push(part.slice(from..));
                    }
                }
                pos += take as u64;
                if pos == end + 1 {
                    if let Some(f) = &target {
                        if f.received() == f.len {
                            self.finish_window(f).await;
                        }
                    }
                } else {
                    window = Some((start, end, target));
                }
            }
        };
        let complete = result.is_ok() && pos == piece.size;
        if complete {
            guard.completed();
            metrics::BEAM_WARMUPS
                .with_label_values(&["completed"])
                .inc();
            log::info!("Beam warm-up of {} complete ({pos} bytes)", piece.cid);
        } else {
            drop(guard);
            metrics::BEAM_WARMUPS.with_label_values(&["failed"]).inc();
            match &result {
                Err(e) => log::warn!("Beam warm-up of {} failed at byte {pos}: {e}", piece.cid),
                Ok(()) => log::warn!(
                    "Beam warm-up of {} ended at byte {pos} of {}",
                    piece.cid,
                    piece.size
                ),
            }
        }
        // Close: no more adoptions; what the stream did not fill is fetched
        // by ordinary runs (Beam is warm now, or the warm-up failed).
        let mut leftovers: Vec<Arc<Fill>> = {
            let mut map = self.warmups.lock();
            if map.get(&warm_key(piece)).is_some_and(|x| Arc::ptr_eq(x, w)) {
                map.remove(&warm_key(piece));
            }
            let mut st = w.lock();
            st.closed = true;
            std::mem::take(&mut st.adopted).into_values().collect()
        };
        if let Some((_, _, Some(f))) = window {
            if !f.is_done() {
                leftovers.push(f);
            }
        }
        leftovers.sort_by_key(|f| f.key.index);
        leftovers.dedup_by_key(|f| f.key.index);
        for f in &leftovers {
            if f.is_fed_by(w.id) {
                f.drop_feed();
            }
        }
        let mut group: Vec<Arc<Fill>> = Vec::new();
        for f in leftovers {
            if group.last().is_some_and(|l| l.key.index + 1 != f.key.index) {
                self.start_run(
                    piece,
                    std::mem::take(&mut group),
                    None,
                    Admission::Continue,
                    false,
                );
            }
            group.push(f);
        }
        self.start_run(piece, group, None, Admission::Continue, false);
        w.ended.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::padded_size;

    #[test]
    fn padded_sizes_follow_fr32() {
        assert_eq!(padded_size(127), 128);
        assert_eq!(padded_size(1_065_353_216), 1 << 30);
        assert!(padded_size(1_065_353_217) > 1 << 30);
    }
}
