//! Readers: a [`RangeReader`] yields one byte range of a piece window by
//! window, each from the memory tier, the disk tier (disk reads bounded per
//! core; a whole-window read is promoted to memory), a fill in flight
//! (joined: a coalesced waiter), or a new demand run; a checked window's
//! last byte is held until the window passed its check.
//!
//! What it is not: the tiers, the fills or their planning (`memory`,
//! `disk`, `fill`, `plan`); it only decides where each slice comes from.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::fill::{CacheError, Fill, FillReader, Interest};
use super::inflight::Admission;
use super::peers::fill_source;
use super::window::{WindowKey, WindowSlice};
use super::{Inner, Piece, Source};
use crate::metrics;

pub(super) enum Current {
    Ready(Bytes, Source),
    Filling {
        reader: FillReader,
        pos: u64,
        slice: WindowSlice,
    },
    /// The last byte of a slice read from a checked fill, handed out once
    /// the window passed its check.
    Tail {
        reader: FillReader,
        byte: Bytes,
        slice: WindowSlice,
    },
}

/// Reads one byte range of a piece, window by window.
pub struct RangeReader {
    pub(super) inner: Arc<Inner>,
    pub(super) piece: Piece,
    pub(super) slices: VecDeque<WindowSlice>,
    pub(super) current: Option<Current>,
    /// Liveness of this reader: read-ahead fills stay wanted while it lives.
    pub(super) token: Arc<()>,
    pub(super) interests: HashMap<u64, Interest>,
    pub(super) completed: bool,
    pub(super) restarts: u32,
    /// True until the first chunk: a new request may still be refused with
    /// [`CacheError::Busy`] when the in-flight budget and its queue are full;
    /// a response under way waits instead.
    pub(super) refusable: bool,
    /// How this reader's runs ask for in-flight room when not as a client's
    /// request (`New`, then `Continue`): a background guess
    /// ([`super::WindowCache::prefetch_tail`]) is read-ahead.
    pub(super) admission: Option<Admission>,
    /// The interest in the window the last chunk handed out came from, kept
    /// until the next call (the caller has written that chunk by then): the
    /// chunk pins its window's buffer, so the window's in-flight room stays
    /// taken while a slow client drains it.
    pub(super) held: Option<Interest>,
    /// The stream of that window, kept as long: a window being streamed
    /// keeps its room (see [`Fill::release_if_idle`]).
    pub(super) held_reader: Option<FillReader>,
    /// The window of a slice [`RangeReader::park`] cut after bytes of it
    /// went out: a failure of that window cuts the response rather than
    /// being asked again (what went out cannot be taken back), and it is
    /// read on from the same fill while that fill still has its bytes.
    pub(super) partly_sent: Option<u64>,
    /// Windows this reader reads from a fill started for another payer: see
    /// [`refused_to_another_payer`].
    pub(super) joined: HashSet<u64>,
    /// Serving another replica: windows come from this replica's tiers or
    /// Beam, never a peer, and no read-ahead starts.
    pub(super) local_only: bool,
    /// `verify.mode: strict`: a window read from a fill that is not checked
    /// as it streams (it started before the piece's layer was known) is held
    /// whole and checked here before any of it is handed out.
    pub(super) hold_unchecked: bool,
}

/// True for an upstream answer that may hold only for the payer whose request
/// started the fill (Beam's 402: no CDN data set of *that* payer holds the
/// piece, or its quota is used up; 403: that payer is blocked). A reader of
/// another payer that joined such a fill asks again as itself, so a request
/// naming a wrong payer cannot fail the readers of a right one.
fn refused_to_another_payer(e: &CacheError) -> bool {
    use crate::upstream::Refusal;
    matches!(
        e,
        CacheError::Upstream(e) if matches!(
            e.refusal(),
            Some(Refusal::NoCdn | Refusal::QuotaExhausted | Refusal::Sanctioned)
        )
    )
}

impl RangeReader {
    pub(super) fn new(
        inner: Arc<Inner>,
        piece: &Piece,
        range: crate::http::range::ByteRange,
        hold_unchecked: bool,
    ) -> RangeReader {
        let slices = inner.geometry.plan(range, piece.size);
        RangeReader {
            inner,
            piece: piece.clone(),
            slices: slices.into(),
            current: None,
            token: Arc::new(()),
            interests: HashMap::new(),
            completed: false,
            restarts: 0,
            refusable: true,
            admission: None,
            held: None,
            held_reader: None,
            partly_sent: None,
            joined: HashSet::new(),
            local_only: crate::cluster::serving_peer(),
            hold_unchecked,
        }
    }

    /// Marks this reader as part of a response already under way (a later
    /// part or segment): it waits for in-flight room instead of being refused.
    pub fn set_mid_response(&mut self) {
        self.refusable = false;
    }

    /// Lets go of the window being streamed (its stream, not this reader's
    /// interest in it), for a response that waits on something else before
    /// it reads on: meanwhile the finished window may give its in-flight
    /// room back (see `fill`). The next call reads on from the byte after
    /// the last one handed out (from the memory tier, the same fill, or a
    /// new one).
    pub fn park(&mut self) {
        self.held = None;
        self.held_reader = None;
        match self.current.take() {
            Some(Current::Filling { pos, slice, .. }) => {
                if pos > slice.from {
                    self.partly_sent = Some(slice.index);
                }
                self.slices.push_front(WindowSlice {
                    from: pos.max(slice.from),
                    ..slice
                });
            }
            other => self.current = other,
        }
    }

    /// The next chunk of the range and where it came from; `Ok(None)` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<(Bytes, Source)>, CacheError> {
        self.held = None;
        self.held_reader = None;
        let next = self.next_slice_chunk().await;
        if matches!(next, Ok(Some(_))) {
            self.refusable = false;
        }
        next
    }

    async fn next_slice_chunk(&mut self) -> Result<Option<(Bytes, Source)>, CacheError> {
        loop {
            match self.current.take() {
                Some(Current::Ready(bytes, source)) => return Ok(Some((bytes, source))),
                Some(Current::Tail {
                    mut reader,
                    byte,
                    slice,
                }) => loop {
                    match reader.next().await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            self.held = self.interests.remove(&slice.index);
                            let source = fill_source(&reader);
                            self.held_reader = Some(reader);
                            return Ok(Some((byte, source)));
                        }
                        // Part of the slice is out already: it cannot be
                        // served again from the start.
                        Err(e) => return Err(e),
                    }
                },
                Some(Current::Filling {
                    reader,
                    pos: 0,
                    slice,
                }) if self.hold_unchecked && !reader.is_checked() => {
                    if let Some(ready) = self.hold_and_check(reader, slice).await? {
                        self.current = Some(ready);
                    }
                }
                Some(Current::Filling {
                    mut reader,
                    pos,
                    slice,
                }) => match reader.next().await {
                    Ok(Some(chunk)) => {
                        let end = pos + chunk.len() as u64;
                        let done = end > slice.to;
                        let a = pos.max(slice.from);
                        let b = end.min(slice.to + 1);
                        let source = fill_source(&reader);
                        if done && reader.is_checked() {
                            // The window is checked: keep the slice's last
                            // byte until it passed, so no response completes
                            // with bytes that turn out wrong (the client sees
                            // a cut transfer instead). a < b: the slice ends
                            // inside this chunk.
                            let cut = usize::try_from(b - 1 - pos).unwrap_or(0);
                            let head = chunk.slice(usize::try_from(a - pos).unwrap_or(0)..cut);
                            let source = fill_source(&reader);
                            self.current = Some(Current::Tail {
                                reader,
                                byte: chunk.slice(cut..cut + 1),
                                slice,
                            });
                            if !head.is_empty() {
                                return Ok(Some((head, source)));
                            }
                            continue;
                        }
                        if !done {
                            self.current = Some(Current::Filling {
                                reader,
                                pos: end,
                                slice,
                            });
                        } else {
                            self.held = self.interests.remove(&slice.index);
                            self.held_reader = Some(reader);
                        }
                        if a < b {
                            let part = chunk.slice(
                                usize::try_from(a - pos).unwrap_or(0)
                                    ..usize::try_from(b - pos).unwrap_or(0),
                            );
                            return Ok(Some((part, source)));
                        }
                    }
                    // The window ended before the slice did (cannot happen for
                    // a correct fill), or the fill was cancelled: resolve the
                    // window again, unless part of the slice is out already
                    // (serving it again from its start would repeat bytes).
                    // (A slice parked after part of it went out is read on
                    // from elsewhere too, unless its window is checked:
                    // what went out was not checked yet, and is cut.)
                    Ok(None) | Err(CacheError::Cancelled)
                        if self.unsent(pos, &slice)
                            || (pos <= slice.from && !reader.is_checked()) =>
                    {
                        self.retry_slice(slice)?;
                    }
                    // A joined fill of a new request was refused room; a
                    // response under way asks again and waits its turn.
                    Err(CacheError::Busy) if self.unsent(pos, &slice) && !self.refusable => {
                        self.retry_slice(slice)?;
                    }
                    Ok(None) => return Err(CacheError::Cancelled),
                    // A window that failed its check: its holder is backed
                    // off, so asking again goes to another one.
                    Err(CacheError::Mismatch(_)) if self.unsent(pos, &slice) => {
                        self.retry_slice(slice)?;
                    }
                    Err(e)
                        if self.unsent(pos, &slice)
                            && refused_to_another_payer(&e)
                            && self.joined.remove(&slice.index) =>
                    {
                        self.retry_slice(slice)?;
                    }
                    Err(e) => return Err(e),
                },
                None => {
                    let Some(slice) = self.slices.pop_front() else {
                        self.completed = true;
                        return Ok(None);
                    };
                    let current = self.open(slice).await;
                    if matches!(current, Current::Ready(..)) {
                        // Served whole from a tier: this reader's interest
                        // in the window's fill (its own run's) ends with
                        // this chunk.
                        self.held = self.interests.remove(&slice.index);
                    }
                    self.current = Some(current);
                }
            }
        }
    }

    /// Under `strict`: reads a window from a fill that is not checked as it
    /// streams, whole, and checks it against the piece's layer before any
    /// byte of it goes out. A wrong window is purged and asked again (its
    /// holder is backed off); `Ok(None)`: the slice was queued again.
    async fn hold_and_check(
        &mut self,
        mut reader: FillReader,
        slice: WindowSlice,
    ) -> Result<Option<Current>, CacheError> {
        let source = fill_source(&reader);
        let mut buf =
            bytes::BytesMut::with_capacity(usize::try_from(slice.window_len).unwrap_or(0));
        loop {
            match reader.next().await {
                Ok(Some(c)) => buf.extend_from_slice(&c),
                Ok(None) => break,
                Err(CacheError::Cancelled | CacheError::Mismatch(_)) => {
                    self.retry_slice(slice)?;
                    return Ok(None);
                }
                // A joined fill of a new request was refused room; a
                // response under way asks again and waits its turn.
                Err(CacheError::Busy) if !self.refusable => {
                    self.retry_slice(slice)?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        self.held = self.interests.remove(&slice.index);
        let whole = buf.freeze();
        let Some(check) = self.inner.check_for(&self.piece) else {
            // Strict readers start only once the layer is held.
            return Err(CacheError::Cancelled);
        };
        let (bytes, window) = (whole.clone(), self.inner.settings.window_padded);
        let index = slice.index;
        let verdict = tokio::task::spawn_blocking(move || check.check(index, &bytes, window))
            .await
            .unwrap_or(Err(super::verify::Mismatch { index }));
        let key = WindowKey::new(self.piece.cid.clone(), slice.index);
        super::store::count_check(&key, &verdict);
        if verdict.is_err() {
            self.inner.purge_wrong_window(&key).await;
            self.retry_slice(slice)?;
            return Ok(None);
        }
        let part = whole.slice(
            usize::try_from(slice.from).unwrap_or(0)..usize::try_from(slice.to + 1).unwrap_or(0),
        );
        Ok(Some(Current::Ready(part, source)))
    }

    /// True while nothing of `slice` went out (the stream is at `pos`): a
    /// failed window may then be asked again.
    fn unsent(&self, pos: u64, slice: &WindowSlice) -> bool {
        pos <= slice.from && self.partly_sent != Some(slice.index)
    }

    fn retry_slice(&mut self, slice: WindowSlice) -> Result<(), CacheError> {
        self.interests.remove(&slice.index);
        // A guess (read-ahead admission) is not asked again: refused room
        // once, it would be refused again.
        if self.admission == Some(Admission::ReadAhead) {
            return Err(CacheError::Cancelled);
        }
        self.restarts += 1;
        if self.restarts > 8 {
            return Err(CacheError::Cancelled);
        }
        self.slices.push_front(slice);
        Ok(())
    }

    /// Opens one window slice from the fastest tier that has it, then lets
    /// a forward-moving reader (one that reads through the window) start
    /// read-ahead of the windows after it.
    async fn open(&mut self, slice: WindowSlice) -> Current {
        let current = self.locate(slice).await;
        // A run paused ahead of this reader may fetch the next window now.
        if let Some(i) = self.interests.get(&slice.index) {
            i.fill().mark_reached();
        }
        let key = WindowKey::new(self.piece.cid.clone(), slice.index);
        if let Some(f) = self.inner.lock_fills().get(&key) {
            f.mark_reached();
        }
        if slice.reaches_end() && !self.local_only {
            self.inner
                .prefetch_after(&self.piece, slice.index, &self.token);
        }
        current
    }

    /// Starts a demand run from window `from` over the windows this reader
    /// still needs that are neither cached nor in flight.
    fn plan_ahead(&mut self, from: u64) {
        let Some(last_needed) = self.slices.back().map(|s| s.index) else {
            return;
        };
        if from > last_needed || self.interests.contains_key(&from) {
            return;
        }
        let run = self.plan_demand_run(from, last_needed, false);
        self.inner
            .start_run(&self.piece, run, None, Admission::Continue, self.local_only);
    }

    /// Plans a demand run over windows `from..=last` (the first even if it
    /// looks cached, with `force_first`) and registers this reader's
    /// interest in each fill of it.
    fn plan_demand_run(&mut self, from: u64, last: u64, force_first: bool) -> Vec<Arc<Fill>> {
        let run = self.inner.plan_run(
            &self.piece,
            from,
            last,
            self.inner.run_limit(),
            force_first,
            false,
            self.local_only,
        );
        for f in &run {
            self.interests
                .entry(f.key.index)
                .or_insert_with(|| f.interest());
        }
        run
    }

    /// Reads `slice` from `fill`, which another reader or read-ahead started:
    /// a coalesced waiter. The rest of this reader's range gets a run of its own.
    fn join(&mut self, fill: Arc<Fill>, slice: WindowSlice) -> Current {
        metrics::COALESCED.inc();
        if fill.beam_url != self.piece.beam_url {
            self.joined.insert(slice.index);
        }
        self.inner.note_read(&fill.key);
        self.interests
            .entry(slice.index)
            .or_insert_with(|| fill.interest());
        self.plan_ahead(slice.index + 1);
        self.stream(&fill, slice)
    }

    /// Streams `slice` from `fill`, from the slice's first byte (from the
    /// window's, for a window held whole and checked here: see
    /// [`RangeReader::hold_and_check`]).
    fn stream(&self, fill: &Arc<Fill>, slice: WindowSlice) -> Current {
        let pos = if self.hold_unchecked { 0 } else { slice.from };
        Current::Filling {
            reader: fill.reader_at(pos),
            pos,
            slice,
        }
    }

    /// Whether a new fill of `slice`'s window is to split at the slice's
    /// first byte (critical bytes first, `cache.critical_first`): the slice
    /// starts that deep, and is not held whole for a check here. Its run
    /// decides (see [`Inner::split_if_wished`]).
    fn wants_split(&self, slice: &WindowSlice) -> bool {
        let at = self.inner.settings.critical_first;
        at > 0 && slice.from >= at && !self.hold_unchecked
    }

    async fn locate(&mut self, slice: WindowSlice) -> Current {
        let inner = self.inner.clone();
        let key = WindowKey::new(self.piece.cid.clone(), slice.index);
        let cut = |bytes: &Bytes| {
            bytes.slice(
                usize::try_from(slice.from).unwrap_or(0)
                    ..usize::try_from(slice.to + 1).unwrap_or(0),
            )
        };
        // A slice parked after some of it went out reads on from its fill,
        // as long as that fill has its bytes (then it passed its check).
        if self.partly_sent == Some(slice.index) {
            if let Some(fill) = self
                .interests
                .get(&slice.index)
                .map(|i| i.fill().clone())
                .filter(|f| !f.is_released())
            {
                return self.stream(&fill, slice);
            }
        }
        if let Some(bytes) = inner
            .memory
            .get(&key)
            .filter(|b| b.len() as u64 == slice.window_len)
        {
            metrics::WINDOW_LOOKUPS
                .with_label_values(&["memory", "hit"])
                .inc();
            inner.note_read(&key);
            return Current::Ready(cut(&bytes), Source::Memory);
        }
        metrics::WINDOW_LOOKUPS
            .with_label_values(&["memory", "miss"])
            .inc();
        // A window of this reader's own run: read it from the fill it holds,
        // even if the tiers have already evicted it.
        // (Unless it gave its bytes back, nobody streaming it: then the
        // memory tier had it, or it is fetched again.)
        if let Some(fill) = self.interests.get(&slice.index).map(|i| i.fill().clone()) {
            if !fill.is_released() {
                return self.stream(&fill, slice);
            }
            self.interests.remove(&slice.index);
        }
        let joined = inner.in_flight(&key);
        if let Some(fill) = joined {
            return self.join(fill, slice);
        }
        if let Some(d) = inner.disk.clone().filter(|d| d.contains(&key)) {
            // A slice of the whole window reads it all and promotes it to
            // memory; a part reads only the blocks it covers and is not
            // promoted (random ranges would otherwise read twice the bytes
            // and churn a memory tier too small for them).
            let k = key.clone();
            let len = slice.window_len;
            let whole = slice.from == 0 && slice.reaches_end();
            let permit = inner.disk_reads.clone().acquire_owned().await.ok();
            let got = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                if whole {
                    d.get(&k, len)
                } else {
                    d.get_range(&k, len, slice.from..slice.to + 1)
                }
            })
            .await
            .ok()
            .flatten();
            if let Some(bytes) = got {
                metrics::WINDOW_LOOKUPS
                    .with_label_values(&["disk", "hit"])
                    .inc();
                inner.note_read(&key);
                if !whole {
                    return Current::Ready(bytes, Source::Disk);
                }
                let evicted = inner.memory.put(key, bytes.clone());
                metrics::EVICTIONS
                    .with_label_values(&["memory"])
                    .inc_by(evicted.len() as u64);
                inner.publish_sizes();
                return Current::Ready(cut(&bytes), Source::Disk);
            }
        }
        if inner.disk.is_some() {
            metrics::WINDOW_LOOKUPS
                .with_label_values(&["disk", "miss"])
                .inc();
        }
        // Start a run over this and the following windows this reader needs.
        let last_needed = self.slices.back().map_or(slice.index, |s| s.index);
        let run = self.plan_demand_run(slice.index, last_needed, true);
        let fill = match run.first() {
            Some(f) => {
                if self.wants_split(&slice) {
                    f.wish_split(slice.from);
                }
                f.clone()
            }
            // (Looked up first: a guard in the match would be held through
            // `join`, which plans and takes the same lock: a deadlock.)
            None => match inner.in_flight(&key) {
                // Someone registered it between our look and the plan: join theirs.
                Some(f) => return self.join(f, slice),
                None => {
                    // Registered and finished between our look and the plan:
                    // look again.
                    let f = Fill::new(key.clone(), slice.window_len, false);
                    f.fail(CacheError::Cancelled);
                    f
                }
            },
        };
        let current = self.stream(&fill, slice);
        let next = run.last().map(|f| f.key.index + 1);
        let admission = match self.admission {
            Some(a) => a,
            None if self.refusable => Admission::New,
            None => Admission::Continue,
        };
        inner.start_run(&self.piece, run, None, admission, self.local_only);
        // Cluster mode: windows after this run belong to other owners; ask
        // them at once, so that owners work concurrently while the reader
        // streams in order.
        if let Some(next) = next.filter(|_| inner.cluster.is_some() && !self.local_only) {
            self.plan_ahead(next);
        }
        current
    }
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        // A reader that read its whole range keeps its read-ahead wanted a
        // little longer: players fetch consecutive ranges. One that was cut
        // off releases it at once.
        if self.completed && !self.inner.settings.prefetch_linger.is_zero() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                let token = self.token.clone();
                let linger = self.inner.settings.prefetch_linger;
                h.spawn(async move {
                    tokio::time::sleep(linger).await;
                    drop(token);
                });
            }
        }
    }
}
