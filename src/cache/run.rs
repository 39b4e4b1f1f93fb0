//! Upstream runs: one request for a run of consecutive windows, its stream
//! split into the run's fills, retried on transient failures (with backoff)
//! from the first missing byte, stopped at a window boundary once nothing
//! left is wanted.
//!
//! A run whose windows Beam's warm-up stream will reach soon hands them to
//! it (`warmup`) instead of asking anyone.
//!
//! Each window takes its room in the in-flight budget before its first byte
//! (see `inflight`), and a finished window is let go at once: the run holds
//! only the window it is filling. While the budget is under pressure, a run
//! does not fill a window until a reader will drain it without waiting for
//! room of its own (a reader is at it, or at the window before it and that
//! one has its bytes or its room), so a slow client pins at most two
//! windows (the one it reads and the next), and no room is ever held for a
//! reader that itself waits for room; meanwhile the run closes its upstream
//! request rather than idle on it, and asks again once the reader is there.
//!
//! What it is not: the choice of upstream (`providers`), the caching of the
//! windows before a range carried by a whole-piece body (`beam_prefix`), or
//! what happens to a finished window (`store`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;

use super::fill::{next_run_id, CacheError, Fill};
use super::inflight::Admission;
use super::{Inner, Piece};
use crate::access::budget::Reservation;
use crate::http::range::ByteRange;
use crate::metrics;
use crate::upstream::UpstreamError;

impl Inner {
    /// Downloads `fills` (consecutive windows) with as few upstream requests
    /// as the upstream allows; the first window is admitted to the in-flight
    /// budget as `admission`, the others as `Continue` (read-ahead stays
    /// read-ahead). Finished windows are dropped from the front of `fills`
    /// as the run passes them, so the run keeps no finished window alive.
    pub(super) async fn run_fill(
        self: &Arc<Self>,
        piece: &Piece,
        mut fills: Vec<Arc<Fill>>,
        admission: Admission,
        local_only: bool,
    ) {
        let g = self.geometry;
        // A reader makes a piece's first Beam request, not read-ahead
        // (unless the windows belong to a peer in cluster mode: the peer asks
        // Beam, and the first-request rule is this process's own). With
        // `upstream.beam_assume_warm` the tail guess (read-ahead of the last
        // window, before Beam's state is known) goes beside the reader's.
        let from_peer = !local_only
            && fills
                .first()
                .is_some_and(|f| self.owned_elsewhere(piece, f.key.index));
        // (Asked only of read-ahead: every run starts here.)
        let tail_guess = || {
            fills
                .first()
                .is_some_and(|f| f.key.index + 1 == g.count(piece.size))
                && self.beam_taken_as_warm(piece)
        };
        if admission == Admission::ReadAhead && !from_peer && !tail_guess() {
            self.after_first_contact(piece).await;
        }
        // Critical bytes first, for a reader deep inside the first window.
        self.split_if_wished(piece, &fills, local_only);
        let check = fills.first().and_then(|f| f.check.clone());
        // This run's id: a window is fed by the run that took it once its
        // request was open (or by the warm-up stream that passed it first).
        let me = next_run_id();
        let mut failures = 0u32;
        let mut how = admission;
        // The window before the head of `fills`, once the run passed it.
        let mut before: Option<Weak<Fill>> = None;
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
            // Windows the warm-up's stream took as it passed (or that a run
            // of a warm-up's leftovers took) are not this run's.
            while fills.first().is_some_and(|f| f.fed_by_other(me)) {
                fills.remove(0);
            }
            if fills.is_empty() {
                return;
            }
            if !fills.iter().any(|f| f.is_wanted()) {
                self.give_up(&fills, CacheError::Cancelled, me);
                return;
            }
            // Beam is warming this piece and its stream will be here soon:
            // read from it rather than from anywhere else (the warm-up
            // streams anyway: no in-flight room is taken for it).
            if self.adopt(piece, &fills, false, me) {
                return;
            }
            // Room in the in-flight budget before the first byte (and,
            // under pressure, a reader at the window before): waiting here
            // holds no egress reservation and no upstream connection.
            if !self.admit(&fills, before.as_ref(), how, me).await {
                return;
            }
            // The warm-up's stream may have taken the head while the run
            // waited for room: look again before asking anyone.
            if fills[0].fed_by_other(me) {
                continue;
            }
            // Critical bytes first: a window split for a reader deep inside
            // it gets its head from a request of its own, beside this one.
            if let Some(at) = fills[0].take_head_fetch() {
                self.start_head_fetch(piece, fills[0].clone(), at, me, local_only);
            }
            // This request's windows: fills[..ask].
            let mut ask = fills.len();
            if let Some(r) = budget.as_mut() {
                r.release();
                ask = 0;
                let mut refused = None;
                for f in &fills {
                    match r.take(f.len - f.fill_point()) {
                        Ok(()) => ask += 1,
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                }
                if let (0, Some(e)) = (ask, refused) {
                    self.give_up(&fills, CacheError::Budget(e), me);
                    return;
                }
            }
            let (Some(first), Some(last)) = (
                g.span(fills[0].key.index, piece.size),
                g.span(fills[ask - 1].key.index, piece.size),
            ) else {
                self.give_up(&fills, CacheError::Cancelled, me);
                return;
            };
            let start = first.start + fills[0].fill_point();
            let range = ByteRange::new(start, last.end);
            let result = self.open_source(piece, range, local_only).await;
            let mut charging = true;
            let (mut body, from_zero, holder) = match result {
                Ok((body, from_zero, holder)) => {
                    // The bytes are in hand: this run feeds its windows from
                    // here, up to one the warm-up's stream took meanwhile
                    // (that one and those after it are handed on).
                    let mine = fills[..ask].iter().take_while(|f| f.take_feed(me)).count();
                    if mine < ask {
                        let rest = fills.split_off(mine);
                        self.hand_on(piece, rest, me, local_only);
                        if mine == 0 {
                            continue;
                        }
                        ask = mine;
                    }
                    // A warm-up that ended may have fed the head part way
                    // (and handed it back) while this request was opening:
                    // ask again from where the window is now.
                    if fills[0].fill_point() != start - first.start {
                        continue;
                    }
                    let from_peer = body.kind() == crate::upstream::UpstreamKind::Peer;
                    for f in &fills {
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
                        .note_holder(fills.iter().map(|f| f.key.clone()), &holder);
                    (body, from_zero, holder)
                }
                Err(UpstreamError::Warming) => {
                    // No provider serves the range: the warm-up will, unless
                    // its stream has passed these windows; then Beam is asked
                    // once it ends (warm by then).
                    if self.adopt(piece, &fills, true, me) {
                        return;
                    }
                    self.warmup_ended(piece).await;
                    failures += 1;
                    if failures > self.settings.retries + 2 {
                        self.give_up(&fills, CacheError::Upstream(UpstreamError::Warming), me);
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
                    self.give_up(&fills, CacheError::Upstream(e), me);
                    return;
                }
            };
            // A whole-piece body used from byte 0: cache the windows before
            // the run as they pass, and drop what this run already has.
            let mut offset = if from_zero { 0 } else { start };
            let mut prefix = BytesMut::new();
            'body: loop {
                match body.next_chunk().await {
                    Ok(Some(mut chunk)) => {
                        if offset < start {
                            let skip = usize::try_from((start - offset).min(chunk.len() as u64))
                                .unwrap_or(0);
                            let head = chunk.split_to(skip);
                            if let Some(r) = budget.as_mut().filter(|_| charging) {
                                r.charge_unplanned(head.len() as u64);
                            }
                            self.cache_prefix(
                                piece,
                                check.as_ref(),
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
                            let f = &fills[0];
                            let need =
                                usize::try_from(f.len - f.fill_point()).unwrap_or(usize::MAX);
                            let part = chunk.split_to(need.min(chunk.len()));
                            if let Some(r) = budget.as_mut().filter(|_| charging) {
                                r.received(part.len() as u64);
                            }
                            let complete = f.push_next(part);
                            if f.fill_point() == f.len {
                                let done = fills.remove(0);
                                ask = ask.saturating_sub(1);
                                // (A split window whose head is still on
                                // its way is finished by the head's fetch.)
                                if complete {
                                    self.finish_window(&done).await;
                                }
                                before = Some(Arc::downgrade(&done));
                                drop(done);
                                if fills.is_empty() {
                                    return;
                                }
                                if !fills.iter().any(|f| f.is_wanted()) {
                                    self.give_up(&fills, CacheError::Cancelled, me);
                                    return;
                                }
                                if how == Admission::New {
                                    how = Admission::Continue;
                                }
                                if !self.admit_now(&fills, before.as_ref(), how) {
                                    // No room, or a slow reader to wait for:
                                    // close this request rather than hold an
                                    // idle connection and its read buffer
                                    // (some 400 KiB each) while waiting; the
                                    // run asks again from the next window
                                    // (an egress reservation gives back what
                                    // was not read).
                                    break 'body;
                                }
                            }
                        }
                    }
                    Ok(None) => {
                        // The body ended exactly where asked; anything left
                        // of this request's windows is short (windows past
                        // `ask` were not asked for: the budget is asked again).
                        if ask > 0 {
                            self.cut_short(piece, &holder);
                            failures += 1;
                            if failures > self.settings.retries {
                                let e = UpstreamError::ShortBody {
                                    expected: range.len(),
                                    got: offset - start,
                                };
                                self.give_up(&fills, CacheError::Upstream(e), me);
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
                            self.give_up(&fills, CacheError::Upstream(e), me);
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
    /// Fails the windows of `fills` run `me` may feed (its own, and those
    /// nobody feeds yet); the warm-up's stream or another run feeds the
    /// others on.
    pub(super) fn give_up(&self, fills: &[Arc<Fill>], e: CacheError, me: u64) {
        let mine: Vec<Arc<Fill>> = fills.iter().filter(|f| f.take_feed(me)).cloned().collect();
        self.abandon(&mine, e);
    }

    /// `rest`, the windows of a run from one the warm-up's stream took on
    /// (the run keeps those before it): the stream's are left to it, the
    /// others are handed to the warm-up when it will reach them, else to a
    /// run of their own.
    fn hand_on(self: &Arc<Self>, piece: &Piece, rest: Vec<Arc<Fill>>, me: u64, local_only: bool) {
        let rest: Vec<Arc<Fill>> = rest
            .into_iter()
            .skip_while(|f| f.fed_by_other(me))
            .collect();
        if rest.is_empty() || self.adopt(piece, &rest, true, me) {
            return;
        }
        self.start_run(piece, rest, None, Admission::Continue, local_only);
    }

    /// A holder that cut a window short (its body ended or broke before the
    /// length its header promised) is backed off while checking is on (a
    /// storage provider; Beam only for this piece), so the retry asks
    /// another one.
    pub(super) fn cut_short(&self, piece: &Piece, holder: &str) {
        if self.checking() && !holder.starts_with("peer:") {
            self.back_off(&piece.cid, holder, "cut a window short");
        }
    }
}

impl Inner {
    /// Gives the head of `fills` its room in the in-flight budget (once),
    /// first waiting, under pressure, until a reader can drain it (see
    /// [`Inner::may_take_room`]). `false`: the run is over (nobody wants
    /// it, or no room), and its fills were abandoned.
    async fn admit(
        &self,
        fills: &[Arc<Fill>],
        before: Option<&Weak<Fill>>,
        how: Admission,
        me: u64,
    ) -> bool {
        let Some(head) = fills.first() else {
            return false;
        };
        if head.is_charged() {
            return true;
        }
        // Read-ahead is refused under pressure anyway: it never waits.
        if how != Admission::ReadAhead && !self.wait_for_reader(fills, before).await {
            self.give_up(fills, CacheError::Cancelled, me);
            return false;
        }
        match self.inflight.reserve(head.len, how).await {
            Ok(r) => {
                head.charge(r);
                true
            }
            Err(_) if how == Admission::ReadAhead => {
                let n = fills.len() as u64;
                metrics::INFLIGHT_EVENTS
                    .with_label_values(&["readahead_skipped"])
                    .inc_by(n);
                metrics::PREFETCH.with_label_values(&["skipped"]).inc_by(n);
                self.give_up(fills, CacheError::Cancelled, me);
                false
            }
            Err(_) => {
                self.give_up(fills, CacheError::Busy, me);
                false
            }
        }
    }

    /// [`Inner::admit`] without waiting: `true` when the head holds its room.
    fn admit_now(&self, fills: &[Arc<Fill>], before: Option<&Weak<Fill>>, how: Admission) -> bool {
        let Some(head) = fills.first() else {
            return false;
        };
        if head.is_charged() {
            return true;
        }
        if !self.may_take_room(fills, before) {
            return false;
        }
        match self.inflight.try_now(head.len, how) {
            Some(r) => {
                head.charge(r);
                true
            }
            None => false,
        }
    }

    /// The window before `head`: the run's own previous one, or the one in
    /// flight (another run's); not one that gave its bytes back.
    fn window_before(&self, head: &Fill, before: Option<&Weak<Fill>>) -> Option<Arc<Fill>> {
        if let Some(prev) = before.and_then(Weak::upgrade).filter(|p| !p.is_released()) {
            return Some(prev);
        }
        let index = head.key.index.checked_sub(1)?;
        let key = super::window::WindowKey::new(head.key.cid.clone(), index);
        self.lock_fills()
            .get(&key)
            .filter(|p| !p.is_released())
            .cloned()
    }

    /// Whether the head of `fills` may take in-flight room now. Always
    /// while the budget is not under pressure; under pressure only when a
    /// reader will drain it without waiting for room of its own: a reader
    /// is at a window of the run, or at the window before the head and that
    /// window has its bytes or its room (or no window before it is in
    /// flight at all). Together with idle windows giving their room back
    /// (`fill`), no room is held for a reader that itself waits for room
    /// (1,000 slow readers deadlocked on exactly that before).
    fn may_take_room(&self, fills: &[Arc<Fill>], before: Option<&Weak<Fill>>) -> bool {
        let Some(head) = fills.first() else {
            return false;
        };
        if !self.inflight.under_pressure() || fills.iter().any(|f| f.is_reached()) {
            return true;
        }
        match self.window_before(head, before) {
            Some(prev) => prev.is_reached() && (prev.is_charged() || prev.is_done()),
            None => true,
        }
    }

    /// While [`Inner::may_take_room`] says no, waits for a reader to reach
    /// the run's head or the window before it (or for the pressure to
    /// ease). `false`: nothing the run has left is wanted.
    async fn wait_for_reader(&self, fills: &[Arc<Fill>], before: Option<&Weak<Fill>>) -> bool {
        let Some(head) = fills.first() else {
            return false;
        };
        let mut paused = false;
        loop {
            let prev = self.window_before(head, before);
            let at_head = head.stirred().notified();
            tokio::pin!(at_head);
            at_head.as_mut().enable();
            let at_prev = prev.as_ref().map(|p| p.stirred().notified());
            let mut at_prev = std::pin::pin!(at_prev);
            if let Some(n) = at_prev.as_mut().as_pin_mut() {
                n.enable();
            }
            if self.may_take_room(fills, before) {
                return true;
            }
            if !fills.iter().any(|f| f.is_wanted()) {
                return false;
            }
            if !paused {
                paused = true;
                metrics::INFLIGHT_EVENTS
                    .with_label_values(&["paused"])
                    .inc();
            }
            // Woken by a reader reaching either window, the window before
            // getting its room, or an interest withdrawn; the timeout
            // notices pressure easing and read-ahead owners leaving.
            let prev_stirred = async {
                match at_prev.as_mut().as_pin_mut() {
                    Some(n) => n.await,
                    None => std::future::pending().await,
                }
            };
            let _ = tokio::time::timeout(PAUSE_RECHECK, async {
                tokio::select! {
                    () = at_head.as_mut() => {}
                    () = prev_stirred => {}
                }
            })
            .await;
        }
    }
}

/// How often a paused run looks again without being woken.
const PAUSE_RECHECK: Duration = Duration::from_millis(250);

pub(super) async fn backoff(attempt: u32) {
    let ms = 100u64 << (2 * attempt.saturating_sub(1)).min(8);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
