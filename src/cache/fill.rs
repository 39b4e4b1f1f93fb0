//! Single-flight window fills: one upstream download per window, however
//! many readers want it, with every reader streaming bytes as they arrive.
//!
//! A [`Fill`] is a window being downloaded. The fetch task [`Fill::push`]es
//! chunks in order and ends it with [`Fill::finish`] (the whole window, to be
//! cached) or [`Fill::fail`]. Readers take a [`FillReader`], which yields
//! every chunk from the first, waiting for the next one when it has caught up;
//! nobody waits for the whole window. A fill is *wanted* while a reader holds
//! an [`Interest`] in it or a prefetching reader is still alive; the fetch
//! task checks that at each window boundary and stops once nothing it has
//! left is wanted (the window in flight is always finished, so it can be
//! cached).
//!
//! A fill may be *split* ([`Fill::split_at`]) for a reader whose range starts
//! deep inside a cold window ("critical bytes first"): the run asks for the
//! window from that byte on ([`Fill::push_next`] fills the part *ahead*),
//! while a second request fetches the window's head ([`Fill::push`]); the
//! two parts join when the head reaches the split, and the window is then
//! finished as any other. Readers start at any offset ([`Fill::reader_at`]),
//! so the deep reader streams its bytes as soon as they come.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Notify};

use super::inflight::{Idle, Reservation};
use super::verify::PieceCheck;
use super::window::WindowKey;
use crate::upstream::UpstreamError;

/// Why a window could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The upstream failed (after retries and fallbacks).
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// The fill was stopped because nobody wanted it any more; a reader that
    /// still does starts a new one.
    #[error("window fill was cancelled")]
    Cancelled,
    /// The window's bytes do not hash to the PieceCID.
    #[error("{0}")]
    Mismatch(#[from] super::verify::Mismatch),
    /// The payer's egress budget (`access.egress_budget`) is spent.
    #[error("{0}")]
    Budget(crate::access::budget::BudgetRefusal),
    /// The in-flight budget (`cache.inflight`) and its queue are full: the
    /// client is asked to come back later (503 with `Retry-After`).
    #[error("busy: the in-flight budget is full, retry shortly")]
    Busy,
}

impl CacheError {
    /// The status to answer the client with, when no header was sent yet.
    pub fn client_status(&self) -> u16 {
        match self {
            CacheError::Upstream(e) => e.client_status(),
            CacheError::Cancelled => 503,
            CacheError::Mismatch(_) => 502,
            CacheError::Budget(_) => 429,
            CacheError::Busy => 503,
        }
    }
}

#[derive(Default)]
struct FillState {
    /// Chunks as they arrived, from the window's first byte, until the
    /// window is complete.
    chunks: Vec<Bytes>,
    /// Bytes in `chunks` (the window's bytes from 0 on, with no gap).
    received: u64,
    /// A split fill's part from the split on, until the head reaches it.
    ahead: Option<Ahead>,
    outcome: Option<Result<(), CacheError>>,
    /// The whole window once complete; `chunks` is then emptied, so a
    /// finished window is held once, not twice.
    whole: Option<Bytes>,
}

/// The part of a split window from its split on (see [`Fill::split_at`]).
struct Ahead {
    /// The split: the window offset of the part's first byte.
    at: u64,
    chunks: Vec<Bytes>,
    received: u64,
}

impl Ahead {
    fn end(&self) -> u64 {
        self.at + self.received
    }
}

/// The chunk of `chunks` (laid out from window offset `base`) holding
/// window offset `offset`, cut to start there.
fn chunk_at(chunks: &[Bytes], base: u64, offset: u64) -> Option<Bytes> {
    let mut at = base;
    for c in chunks {
        let end = at + c.len() as u64;
        if offset < end {
            let from = usize::try_from(offset.checked_sub(at)?).ok()?;
            return Some(c.slice(from..));
        }
        at = end;
    }
    None
}

/// A window being downloaded.
pub struct Fill {
    /// Which window.
    pub key: WindowKey,
    /// Its full length in bytes.
    pub len: u64,
    /// True when the fill was started by read-ahead rather than a reader.
    pub prefetch: bool,
    /// How the window is checked once complete (decided once, when the
    /// fill starts, so its run and its readers agree).
    pub check: Option<PieceCheck>,
    /// The Beam base URL (payer) the fill fetches from; `None`: the
    /// configured payer's. Readers of other payers may join it.
    pub beam_url: Option<std::sync::Arc<str>>,
    state: Mutex<FillState>,
    progress: watch::Sender<u64>,
    interest: AtomicUsize,
    owners: Mutex<Vec<Weak<()>>>,
    /// Set by a purge of the piece: the bytes still reach the readers of
    /// this fill, but are not stored in any tier.
    purged: AtomicBool,
    /// Set when the bytes come from another replica (cluster mode): served
    /// as `peer`, and not stored on this replica's disk.
    from_peer: AtomicBool,
    /// The fill's room in the in-flight budget, held while the fill lives.
    inflight: Mutex<Option<Reservation>>,
    /// Set once a reader opened this window (see [`Fill::mark_reached`]).
    reached: AtomicBool,
    /// Woken when a reader reaches this window, withdraws its interest, or
    /// the window gets its in-flight room.
    stirred: Notify,
    /// This fill, for the budget's list of idle windows.
    me: Weak<Fill>,
    /// Readers streaming this fill now ([`FillReader`]s alive).
    readers: AtomicUsize,
    /// Set once the finished window is in the memory tier (or was not to be
    /// stored): only then may it give its room back.
    stored: AtomicBool,
    /// Set once a finished window nobody was reading gave its in-flight
    /// room and its bytes back (see [`Fill::release_if_idle`]); its bytes
    /// are in the memory tier, or fetched again.
    released: AtomicBool,
    /// Who pushes this fill's bytes: nobody yet ([`NO_FEEDER`]), the run or
    /// the Beam warm-up of that id ([`next_run_id`], [`next_warmup_id`]).
    /// Taken once the bytes are in hand (see [`Fill::take_feed`]), so a
    /// window is never fed twice, and a window a run planned but has not
    /// opened a request for can be taken by a warm-up stream passing it.
    feeder: AtomicU64,
    /// Set once the head of a split fill has a fetch of its own.
    head_fetched: AtomicBool,
    /// Where a reader deep in the window would have it split (0: nowhere);
    /// the run splits it there when it starts, if Beam answers the piece
    /// with ranges by then (see [`Fill::wish_split`]).
    split_wish: AtomicU64,
}

/// [`Fill::feeder`]: nobody feeds the fill yet.
pub const NO_FEEDER: u64 = 0;

static NEXT_FEEDER: AtomicU64 = AtomicU64::new(1);

/// A new id for a run's [`Fill::take_feed`] (never [`NO_FEEDER`]).
pub fn next_run_id() -> u64 {
    NEXT_FEEDER.fetch_add(1, Ordering::Relaxed)
}

/// A new id for a Beam warm-up's [`Fill::take_feed`]: each warm-up has its
/// own (two payers' warm-ups of one piece may run at once, over the same
/// windows).
pub fn next_warmup_id() -> u64 {
    next_run_id()
}

impl Fill {
    /// A new, empty fill of window `key` of `len` bytes.
    pub fn new(key: WindowKey, len: u64, prefetch: bool) -> Arc<Fill> {
        Fill::with_check(key, len, prefetch, None)
    }

    /// A new, empty fill whose window is checked by `check` once complete.
    pub fn with_check(
        key: WindowKey,
        len: u64,
        prefetch: bool,
        check: Option<PieceCheck>,
    ) -> Arc<Fill> {
        Fill::with_check_for(key, len, prefetch, check, None)
    }

    /// [`Fill::with_check`] for a fill that fetches from `beam_url`.
    pub fn with_check_for(
        key: WindowKey,
        len: u64,
        prefetch: bool,
        check: Option<PieceCheck>,
        beam_url: Option<std::sync::Arc<str>>,
    ) -> Arc<Fill> {
        Arc::new_cyclic(|me| Fill {
            me: me.clone(),
            key,
            len,
            prefetch,
            check,
            beam_url,
            state: Mutex::new(FillState::default()),
            progress: watch::Sender::new(0),
            interest: AtomicUsize::new(0),
            owners: Mutex::new(Vec::new()),
            purged: AtomicBool::new(false),
            from_peer: AtomicBool::new(false),
            inflight: Mutex::new(None),
            reached: AtomicBool::new(false),
            stirred: Notify::new(),
            readers: AtomicUsize::new(0),
            stored: AtomicBool::new(false),
            released: AtomicBool::new(false),
            feeder: AtomicU64::new(NO_FEEDER),
            head_fetched: AtomicBool::new(false),
            split_wish: AtomicU64::new(0),
        })
    }

    /// Makes `feeder` the one that pushes this fill's bytes, unless another
    /// is: `true` when `feeder` is it (now or already).
    pub fn take_feed(&self, feeder: u64) -> bool {
        match self
            .feeder
            .compare_exchange(NO_FEEDER, feeder, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(current) => current == feeder,
        }
    }

    /// [`Fill::take_feed`] for a feeder that pushes the whole window from
    /// its first byte (a warm-up's stream): a split fill nobody fed yet
    /// (so neither part has a byte) is made whole again, and its head gets
    /// no fetch of its own.
    pub fn take_feed_whole(&self, feeder: u64) -> bool {
        let mut st = self.lock();
        if !self.take_feed(feeder) {
            return false;
        }
        if st.received == 0 && st.ahead.as_ref().is_some_and(|a| a.received == 0) {
            st.ahead = None;
            self.head_fetched.store(true, Ordering::SeqCst);
        }
        true
    }

    /// Hands the fill from `from` (or from nobody) to `to`: `false` when
    /// another feeds it.
    pub fn hand_feed(&self, from: u64, to: u64) -> bool {
        if self.take_feed(to) {
            return true;
        }
        self.feeder
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// True when someone other than `feeder` pushes this fill's bytes.
    pub fn fed_by_other(&self, feeder: u64) -> bool {
        let current = self.feeder.load(Ordering::Acquire);
        current != NO_FEEDER && current != feeder
    }

    /// True when `feeder` pushes this fill's bytes.
    pub fn is_fed_by(&self, feeder: u64) -> bool {
        self.feeder.load(Ordering::Acquire) == feeder
    }

    /// Leaves the fill to whoever takes it next (a warm-up that ended hands
    /// what it did not fill to new runs).
    pub fn drop_feed(&self) {
        self.feeder.store(NO_FEEDER, Ordering::Release);
    }

    /// Records whether the bytes come from another replica.
    pub fn set_from_peer(&self, yes: bool) {
        self.from_peer.store(yes, Ordering::SeqCst);
    }

    /// True when the bytes come from another replica.
    pub fn is_from_peer(&self) -> bool {
        self.from_peer.load(Ordering::SeqCst)
    }

    /// Holds `r` (the window's room in the in-flight budget) until the fill is dropped.
    pub fn charge(&self, r: Reservation) {
        *self.inflight.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        // A run waiting to fill the next window may go on (see `run`).
        self.stirred.notify_waiters();
    }

    /// True once the fill holds its room in the in-flight budget.
    pub fn is_charged(&self) -> bool {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Records that a reader opened this window: a run paused ahead of a
    /// slow reader may fetch the next one.
    pub fn mark_reached(&self) {
        if !self.reached.swap(true, Ordering::SeqCst) {
            self.stirred.notify_waiters();
        }
    }

    /// True once a reader opened this window.
    pub fn is_reached(&self) -> bool {
        self.reached.load(Ordering::SeqCst)
    }

    /// Woken by [`Fill::mark_reached`], a withdrawn [`Interest`] and [`Fill::charge`].
    pub fn stirred(&self) -> &Notify {
        &self.stirred
    }

    /// True once the finished window gave its room and bytes back: a reader
    /// that reaches it reads the tiers, or fetches it again.
    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    /// A finished window that no reader is streaming holds in-flight room
    /// for bytes nobody is sending: readers that want it later are behind,
    /// and may themselves be waiting for room. While someone waits for
    /// room it gives the room back at once,
    /// with its bytes (the memory tier keeps its own copy); otherwise it is
    /// listed with the budget, which takes it back the same way once
    /// someone waits. `true`: released.
    pub fn release_if_idle(&self) -> bool {
        let budget = {
            let held = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match held.as_ref() {
                Some(r) => r.budget().clone(),
                None => return false,
            }
        };
        if !budget.has_waiters() {
            if self.is_idle() {
                budget.note_idle(self.me.clone() as Weak<dyn Idle>);
            }
            return false;
        }
        self.release()
    }

    /// Records that the finished window is in the memory tier (its room
    /// may go now: a reader that comes later finds it there).
    pub fn mark_stored(&self) {
        self.stored.store(true, Ordering::SeqCst);
        if self.readers.load(Ordering::SeqCst) == 0 {
            self.release_if_idle();
        }
    }

    /// Gives the room and the bytes back if the window is finished and
    /// nobody streams it (checked under the state lock, which
    /// [`Fill::reader`] takes too).
    fn release(&self) -> bool {
        let room = {
            let mut st = self.lock();
            if !self.idle_in(&st) {
                return false;
            }
            st.whole = None;
            self.released.store(true, Ordering::SeqCst);
            self.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        };
        drop(room);
        crate::metrics::INFLIGHT_EVENTS
            .with_label_values(&["idle_released"])
            .inc();
        true
    }

    fn is_idle(&self) -> bool {
        self.idle_in(&self.lock())
    }

    /// Finished, in the memory tier, and streamed by nobody (`st`: this
    /// fill's state, locked).
    fn idle_in(&self, st: &FillState) -> bool {
        st.whole.is_some()
            && self.stored.load(Ordering::SeqCst)
            && self.readers.load(Ordering::SeqCst) == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FillState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.progress.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Bytes received so far from the window's first byte on, with no gap
    /// (a split fill's part ahead is not counted until the head reaches it).
    pub fn received(&self) -> u64 {
        self.lock().received
    }

    /// Where the run fetching this window goes on: the end of the part
    /// ahead of a split fill, else [`Fill::received`].
    pub fn fill_point(&self) -> u64 {
        let st = self.lock();
        st.ahead.as_ref().map_or(st.received, Ahead::end)
    }

    /// Records that the reader that planned this fill starts at window
    /// offset `at`: its run splits the fill there ([`Fill::split_at`]) when
    /// it starts, if the upstream answers ranges by then (a read-ahead run
    /// starts once Beam has answered the piece's first request).
    pub fn wish_split(&self, at: u64) {
        self.split_wish.store(at, Ordering::SeqCst);
    }

    /// [`Fill::wish_split`]'s offset, once (0: none).
    pub fn take_split_wish(&self) -> u64 {
        self.split_wish.swap(0, Ordering::SeqCst)
    }

    /// Splits an empty fill at window offset `at` (0 < `at` < `len`): the
    /// run fetches from `at` on ([`Fill::push_next`]), and the head, bytes
    /// `0..at`, comes apart ([`Fill::push`], started by
    /// [`Fill::take_head_fetch`]). `false`: not split (already begun, or
    /// `at` out of range, or a feeder, such as a warm-up's stream, has it).
    pub fn split_at(&self, at: u64) -> bool {
        let mut st = self.lock();
        // (The feeder is read under the state lock, as `take_feed_whole`
        // takes it.)
        if at == 0
            || at >= self.len
            || st.received > 0
            || st.ahead.is_some()
            || st.outcome.is_some()
            || self.feeder.load(Ordering::Acquire) != NO_FEEDER
        {
            return false;
        }
        st.ahead = Some(Ahead {
            at,
            chunks: Vec::new(),
            received: 0,
        });
        true
    }

    /// The split of a split fill whose head still has to be fetched (once:
    /// `Some` only for the first caller).
    pub fn take_head_fetch(&self) -> Option<u64> {
        let at = self.lock().ahead.as_ref().map(|a| a.at)?;
        (!self.head_fetched.swap(true, Ordering::SeqCst)).then_some(at)
    }

    /// True while a split fill's head has not reached its split.
    pub fn is_split(&self) -> bool {
        self.lock().ahead.is_some()
    }

    /// Appends the next chunk of the window from its first byte (never
    /// past `len`, nor past a split: the caller splits). `true` when this
    /// chunk completed the window.
    pub fn push(&self, chunk: Bytes) -> bool {
        if chunk.is_empty() {
            return false;
        }
        let complete = self.append(&mut self.lock(), chunk);
        self.bump();
        complete
    }

    /// [`Fill::push`] under the state lock `st`.
    fn append(&self, st: &mut FillState, chunk: Bytes) -> bool {
        debug_assert!(
            st.received + chunk.len() as u64 <= st.ahead.as_ref().map_or(self.len, |a| a.at)
        );
        st.received += chunk.len() as u64;
        st.chunks.push(chunk);
        Self::join_ahead(st);
        st.received == self.len
    }

    /// Appends the next chunk where the run goes on ([`Fill::fill_point`]):
    /// to the part ahead of a split fill, else as [`Fill::push`]. `true`
    /// when this chunk completed the window.
    pub fn push_next(&self, chunk: Bytes) -> bool {
        if chunk.is_empty() {
            return false;
        }
        let complete = {
            let mut st = self.lock();
            match st.ahead.as_mut() {
                Some(a) => {
                    debug_assert!(a.end() + chunk.len() as u64 <= self.len);
                    a.received += chunk.len() as u64;
                    a.chunks.push(chunk);
                    false
                }
                None => self.append(&mut st, chunk),
            }
        };
        self.bump();
        complete
    }

    /// Once the head reaches the split, the part ahead joins it.
    fn join_ahead(st: &mut FillState) {
        if st.ahead.as_ref().is_some_and(|a| a.at == st.received) {
            if let Some(a) = st.ahead.take() {
                st.received += a.received;
                st.chunks.extend(a.chunks);
            }
        }
    }

    /// The bytes received so far in one buffer (a copy; the fill is unchanged).
    pub fn assemble(&self) -> Bytes {
        let st = self.lock();
        let mut buf = BytesMut::with_capacity(usize::try_from(st.received).unwrap_or(0));
        for c in &st.chunks {
            buf.extend_from_slice(c);
        }
        buf.freeze()
    }

    /// Marks the fill complete with `whole` (from [`Fill::assemble`]); the
    /// chunks are released, so the window is held once.
    pub fn finish_with(&self, whole: Bytes) {
        {
            let mut st = self.lock();
            debug_assert_eq!(whole.len() as u64, st.received);
            st.chunks = Vec::new();
            st.whole = Some(whole);
            st.outcome = Some(Ok(()));
        }
        self.bump();
    }

    /// Ends the fill with an error; readers see it after the chunks they have not read yet.
    pub fn fail(&self, e: CacheError) {
        {
            let mut st = self.lock();
            if st.outcome.is_none() {
                st.outcome = Some(Err(e));
            }
        }
        self.bump();
    }

    /// Marks the window as purged: it is not to be stored once complete.
    pub fn mark_purged(&self) {
        self.purged.store(true, Ordering::SeqCst);
    }

    /// True once a purge of the piece has seen this fill.
    pub fn is_purged(&self) -> bool {
        self.purged.load(Ordering::SeqCst)
    }

    /// True once finished or failed.
    pub fn is_done(&self) -> bool {
        self.lock().outcome.is_some()
    }

    /// True while a reader or a live prefetching reader wants this window.
    pub fn is_wanted(&self) -> bool {
        if self.interest.load(Ordering::SeqCst) > 0 {
            return true;
        }
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners.retain(|w| w.strong_count() > 0);
        !owners.is_empty()
    }

    /// Declares that a reader will read this window; dropping the guard withdraws it.
    pub fn interest(self: &Arc<Self>) -> Interest {
        self.interest.fetch_add(1, Ordering::SeqCst);
        Interest { fill: self.clone() }
    }

    /// Keeps the fill wanted while `owner` (a reader's liveness token) lives.
    pub fn add_owner(&self, owner: Weak<()>) {
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(owner);
    }

    /// A reader of this fill's bytes, from the first chunk.
    pub fn reader(self: &Arc<Self>) -> FillReader {
        self.reader_at(0)
    }

    /// A reader of this fill's bytes from window offset `offset` on.
    pub fn reader_at(self: &Arc<Self>, offset: u64) -> FillReader {
        {
            let _st = self.lock();
            self.readers.fetch_add(1, Ordering::SeqCst);
        }
        FillReader {
            fill: self.clone(),
            next: 0,
            next_at: 0,
            offset,
            rx: self.progress.subscribe(),
        }
    }
}

impl Idle for Fill {
    fn release(&self) -> bool {
        Fill::release(self)
    }
}

/// A reader's declared interest in a fill.
pub struct Interest {
    fill: Arc<Fill>,
}

impl Interest {
    /// The fill this interest is in (it keeps the fill's bytes alive).
    pub fn fill(&self) -> &Arc<Fill> {
        &self.fill
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        self.fill.interest.fetch_sub(1, Ordering::SeqCst);
        self.fill.stirred.notify_waiters();
    }
}

impl Drop for FillReader {
    fn drop(&mut self) {
        if self.fill.readers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.fill.release_if_idle();
        }
    }
}

/// Streams a fill's chunks in order as they arrive.
pub struct FillReader {
    fill: Arc<Fill>,
    /// Index of the chunk from the window's first byte to look at next,
    /// while the fill is in progress, and the window offset it starts at.
    next: usize,
    next_at: u64,
    /// The window offset of the next byte to deliver.
    offset: u64,
    rx: watch::Receiver<u64>,
}

impl FillReader {
    /// True when the fill's bytes come from another replica.
    pub fn from_peer(&self) -> bool {
        self.fill.is_from_peer()
    }

    /// True when the window is checked before it is finished: readers keep
    /// their last byte until then.
    pub fn is_checked(&self) -> bool {
        self.fill.check.is_some()
    }

    /// The next chunk; `Ok(None)` once the window is complete.
    pub async fn next(&mut self) -> Result<Option<Bytes>, CacheError> {
        loop {
            // Mark the current progress as seen *before* looking, so a push
            // between the look and the wait is never missed.
            self.rx.borrow_and_update();
            {
                let st = self.fill.lock();
                if let Some(whole) = &st.whole {
                    // Complete: the rest in one slice.
                    let from = usize::try_from(self.offset)
                        .unwrap_or(usize::MAX)
                        .min(whole.len());
                    self.offset = whole.len() as u64;
                    return Ok((from < whole.len()).then(|| whole.slice(from..)));
                }
                if self.offset < st.received {
                    // From the window's first byte on: go on from the
                    // chunk looked at last (chunks are only ever added).
                    if self.next_at > self.offset {
                        (self.next, self.next_at) = (0, 0);
                    }
                    while let Some(c) = st.chunks.get(self.next) {
                        let end = self.next_at + c.len() as u64;
                        if self.offset < end {
                            let from = usize::try_from(self.offset - self.next_at).unwrap_or(0);
                            let part = c.slice(from..);
                            self.offset = end;
                            self.next += 1;
                            self.next_at = end;
                            return Ok(Some(part));
                        }
                        self.next += 1;
                        self.next_at = end;
                    }
                }
                if let Some(a) = st.ahead.as_ref().filter(|a| self.offset >= a.at) {
                    if let Some(part) = chunk_at(&a.chunks, a.at, self.offset) {
                        self.offset += part.len() as u64;
                        return Ok(Some(part));
                    }
                }
                if self.fill.is_released() {
                    // Gave its bytes back before this reader came: read
                    // the window again (the tiers or a new fill).
                    return Err(CacheError::Cancelled);
                }
                if let Some(outcome) = &st.outcome {
                    return outcome.clone().map(|()| None);
                }
            }
            if self.rx.changed().await.is_err() {
                return Err(CacheError::Cancelled);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> WindowKey {
        WindowKey::new("bafkzcibtest", 0)
    }

    /// Completes `f` as the cache does, returning the window.
    fn finish(f: &Fill) -> Bytes {
        let whole = f.assemble();
        f.finish_with(whole.clone());
        whole
    }

    #[tokio::test]
    async fn readers_stream_chunks_as_they_arrive() {
        let f = Fill::new(key(), 6, false);
        let mut early = f.reader();
        f.push(Bytes::from_static(b"abc"));
        assert_eq!(early.next().await.unwrap().unwrap(), "abc");
        let f2 = f.clone();
        let pusher = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            f2.push(Bytes::from_static(b"def"));
            finish(&f2)
        });
        assert_eq!(early.next().await.unwrap().unwrap(), "def");
        assert_eq!(pusher.await.unwrap(), "abcdef");
        assert_eq!(early.next().await.unwrap(), None);
        // A late reader gets the finished window from the start, in one slice.
        let mut late = f.reader();
        assert_eq!(late.next().await.unwrap().unwrap(), "abcdef");
        assert_eq!(late.next().await.unwrap(), None);
        // A reader that had some chunks gets the rest of the window.
        let mut mid = Fill::new(key(), 6, false).reader();
        let g = mid.fill.clone();
        g.push(Bytes::from_static(b"ab"));
        assert_eq!(mid.next().await.unwrap().unwrap(), "ab");
        g.push(Bytes::from_static(b"cdef"));
        finish(&g);
        assert_eq!(mid.next().await.unwrap().unwrap(), "cdef");
        assert_eq!(mid.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn failures_reach_readers_after_the_bytes_they_can_use() {
        let f = Fill::new(key(), 10, false);
        let mut r = f.reader();
        f.push(Bytes::from_static(b"ab"));
        f.fail(CacheError::Upstream(UpstreamError::NotFound));
        assert_eq!(r.next().await.unwrap().unwrap(), "ab");
        assert_eq!(
            r.next().await,
            Err(CacheError::Upstream(UpstreamError::NotFound))
        );
    }

    #[tokio::test]
    async fn a_split_fill_serves_its_deep_reader_before_the_head() {
        let f = Fill::new(key(), 10, false);
        assert!(f.split_at(6));
        assert!(!f.split_at(3), "split once");
        assert_eq!(f.take_head_fetch(), Some(6));
        assert_eq!(f.take_head_fetch(), None, "one head fetch");
        let mut deep = f.reader_at(7);
        let mut head = f.reader();
        // The run's part comes first: the deep reader has its bytes at once.
        assert_eq!(f.fill_point(), 6);
        assert!(!f.push_next(Bytes::from_static(b"ghi")));
        assert_eq!(deep.next().await.unwrap().unwrap(), "hi");
        assert_eq!((f.received(), f.fill_point()), (0, 9));
        // A reader from byte 0 waits for the head.
        assert!(futures_util::FutureExt::now_or_never(head.next()).is_none());
        assert!(!f.push(Bytes::from_static(b"abc")));
        assert_eq!(head.next().await.unwrap().unwrap(), "abc");
        // The head reaches the split: the two parts join.
        assert!(!f.push(Bytes::from_static(b"def")));
        assert!(!f.is_split());
        assert_eq!((f.received(), f.fill_point()), (9, 9));
        assert_eq!(head.next().await.unwrap().unwrap(), "def");
        assert_eq!(head.next().await.unwrap().unwrap(), "ghi");
        // The run's last byte completes the window: it says so, once.
        assert!(f.push_next(Bytes::from_static(b"j")));
        assert_eq!(deep.next().await.unwrap().unwrap(), "j");
        assert_eq!(finish(&f), "abcdefghij");
        assert_eq!(deep.next().await.unwrap(), None);
        assert_eq!(head.next().await.unwrap().unwrap(), "j");

        // The run's part ends first: the head's last byte completes it.
        let f = Fill::new(key(), 4, false);
        assert!(f.split_at(2));
        assert!(!f.push_next(Bytes::from_static(b"cd")));
        assert_eq!(f.fill_point(), 4);
        assert!(!f.push(Bytes::from_static(b"a")));
        assert!(f.push(Bytes::from_static(b"b")));
        assert_eq!(finish(&f), "abcd");
        // A warm-up's stream that takes a split fill nobody feeds yet makes
        // it whole again; once a part is fed, it cannot take it.
        let f = Fill::new(key(), 4, false);
        assert!(f.split_at(2));
        assert!(f.take_feed_whole(7));
        assert!(!f.is_split());
        assert_eq!(f.take_head_fetch(), None);
        assert!(!f.push(Bytes::from_static(b"abc")));
        assert!(f.push(Bytes::from_static(b"d")));
        let f = Fill::new(key(), 4, false);
        assert!(f.split_at(2));
        assert!(f.take_feed(8));
        assert!(!f.take_feed_whole(7));
        assert!(f.is_split());
        // Nor once a feeder (a warm-up's stream) has the window.
        let f = Fill::new(key(), 4, false);
        assert!(f.take_feed(8));
        assert!(!f.split_at(2));
        // Nothing to split: at 0, at the end, or once begun.
        let f = Fill::new(key(), 4, false);
        assert!(!f.split_at(0) && !f.split_at(4));
        f.push(Bytes::from_static(b"a"));
        assert!(!f.split_at(2));
        assert_eq!(f.take_head_fetch(), None);
    }

    #[test]
    fn wanted_while_interest_or_a_live_owner() {
        let f = Fill::new(key(), 10, true);
        assert!(!f.is_wanted());
        let i = f.interest();
        assert!(f.is_wanted());
        drop(i);
        assert!(!f.is_wanted());
        let token = Arc::new(());
        f.add_owner(Arc::downgrade(&token));
        assert!(f.is_wanted());
        drop(token);
        assert!(!f.is_wanted());
    }
}
