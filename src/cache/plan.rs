//! Planning fills: registering single-flight fills for a run of
//! consecutive windows that are neither cached nor in flight, starting the
//! run, and read-ahead after a forward-moving reader (bounded process-wide,
//! with used/wasted accounting).
//!
//! What it is not: the download of a run (`run`) or a reader's choice of
//! tier (`reader`).

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::fill::Fill;
use super::inflight::Admission;
use super::window::WindowKey;
use super::{Inner, Piece};
use crate::metrics;

/// [`Inner::run_limit`]'s run length under pressure.
const PRESSED_RUN_WINDOWS: u64 = 8;

impl Inner {
    /// Registers fills for consecutive windows from `first` that are neither
    /// cached nor in flight, up to `limit` windows and `last`. With
    /// `force_first`, the first window is planned even if a tier claims it
    /// (the caller just failed to read it from there). In cluster mode
    /// (unless `local_only`) a run stops where the windows' owner changes:
    /// one run, one source.
    // One flag more than clippy's limit: cluster routing.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_run(
        &self,
        piece: &Piece,
        first: u64,
        last: u64,
        limit: u64,
        force_first: bool,
        prefetch: bool,
        local_only: bool,
    ) -> Vec<Arc<Fill>> {
        let mut run = Vec::new();
        let check = self.check_for(piece);
        let routed = self.cluster.as_ref().filter(|_| !local_only);
        let first_route = routed.map(|c| c.route(&piece.cid, first));
        let mut map = self.lock_fills();
        let mut i = first;
        while i <= last && (run.len() as u64) < limit {
            if let (true, Some(c), Some(r)) = (i > first, routed, &first_route) {
                if c.route(&piece.cid, i) != *r {
                    break;
                }
            }
            let key = WindowKey::new(piece.cid.clone(), i);
            let forced = force_first && i == first;
            // (A released fill gave its bytes back: it is replaced.)
            let in_flight = map.get(&key).is_some_and(|f| !f.is_released());
            if in_flight || (!forced && self.is_cached(&key)) {
                break;
            }
            let len = self.geometry.len_of(i, piece.size);
            if len == 0 {
                break;
            }
            let fill = Fill::with_check_for(
                key.clone(),
                len,
                prefetch,
                check.clone(),
                piece.beam_url.clone(),
            );
            map.insert(key, fill.clone());
            run.push(fill);
            i += 1;
        }
        run
    }

    /// The most windows a new run asks for: `cache.run_windows`, and at
    /// least [`PRESSED_RUN_WINDOWS`] while the in-flight budget is under
    /// pressure (short runs help a play's first reads go in parallel; under
    /// pressure read-ahead is skipped anyway, and each extra request costs
    /// a connection's buffers and a place in the queue).
    pub(super) fn run_limit(&self) -> u64 {
        if self.inflight.under_pressure() {
            self.settings.run_windows.max(PRESSED_RUN_WINDOWS)
        } else {
            self.settings.run_windows
        }
    }

    pub(super) fn start_run(
        self: &Arc<Self>,
        piece: &Piece,
        run: Vec<Arc<Fill>>,
        permit: Option<OwnedSemaphorePermit>,
        admission: Admission,
        local_only: bool,
    ) {
        if run.is_empty() {
            return;
        }
        let inner = self.clone();
        let piece = piece.clone();
        tokio::spawn(async move {
            inner.run_fill(&piece, run, admission, local_only).await;
            drop(permit);
        });
    }

    /// Read-ahead of the windows after `index`, kept wanted while `owner` lives.
    pub(super) fn prefetch_after(self: &Arc<Self>, piece: &Piece, index: u64, owner: &Arc<()>) {
        let n = self.settings.prefetch;
        if n == 0 {
            return;
        }
        let last = self.geometry.count(piece.size).saturating_sub(1);
        let mut i = index + 1;
        let end = (index + n).min(last);
        if i <= end && self.inflight.under_pressure() {
            // Read-ahead is the first to go when the in-flight budget fills.
            let skipped = end - i + 1;
            metrics::PREFETCH
                .with_label_values(&["skipped"])
                .inc_by(skipped);
            metrics::INFLIGHT_EVENTS
                .with_label_values(&["readahead_skipped"])
                .inc_by(skipped);
            return;
        }
        while i <= end {
            let key = WindowKey::new(piece.cid.clone(), i);
            let in_flight = self.lock_fills().get(&key).cloned();
            if let Some(f) = in_flight {
                f.add_owner(Arc::downgrade(owner));
                i += 1;
                continue;
            }
            if self.is_cached(&key) {
                i += 1;
                continue;
            }
            let Ok(permit) = self.prefetch_slots.clone().try_acquire_owned() else {
                metrics::PREFETCH
                    .with_label_values(&["skipped"])
                    .inc_by(end - i + 1);
                return;
            };
            let run = self.plan_run(piece, i, end, self.run_limit(), false, true, false);
            if run.is_empty() {
                i += 1;
                continue;
            }
            i += run.len() as u64;
            {
                let mut unread = self
                    .prefetched_unread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if unread.len() > 100_000 {
                    unread.clear();
                }
                for f in &run {
                    f.add_owner(Arc::downgrade(owner));
                    unread.insert(f.key.clone());
                }
            }
            metrics::PREFETCH
                .with_label_values(&["issued"])
                .inc_by(run.len() as u64);
            self.start_run(piece, run, Some(permit), Admission::ReadAhead, false);
        }
    }

    pub(super) fn note_read(&self, key: &WindowKey) {
        let mut unread = self
            .prefetched_unread
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if unread.remove(key) {
            metrics::PREFETCH.with_label_values(&["used"]).inc();
        }
    }
}
