//! Completing fills: a window whose bytes are all in is checked against the
//! piece (when it can be), handed to its readers, and stored in the memory
//! and disk tiers (disk writes bounded by `DISK_WRITES`); a fill that cannot
//! finish fails its readers and is unregistered.
//!
//! What it is not: downloading (`run`), planning which windows to fetch
//! (`plan`), or serving readers (`reader`).

use std::sync::Arc;

use bytes::Bytes;

use super::fill::{CacheError, Fill};
use super::window::WindowKey;
use super::{spawn_blocking_detached, verify, Inner};
use crate::metrics;

impl Inner {
    /// Puts a complete window into both tiers; `then` runs once the window
    /// is on disk (or at once without a disk tier). A window of a `fill`
    /// that a purge marks, before or while it is stored, ends up in no tier.
    pub(super) fn store(
        self: &Arc<Self>,
        key: WindowKey,
        bytes: Bytes,
        fill: Option<Arc<Fill>>,
        then: impl FnOnce() + Send + 'static,
    ) {
        let purged = move || fill.as_ref().is_some_and(|f| f.is_purged());
        if purged() {
            then();
            return;
        }
        let evicted = self.memory.put(key.clone(), bytes.clone());
        // A purge marks fills before it empties the tiers: a mark seen only
        // now means the purge may have run before this put.
        if purged() {
            self.memory.remove(&key);
        }
        if !evicted.is_empty() {
            metrics::EVICTIONS
                .with_label_values(&["memory"])
                .inc_by(evicted.len() as u64);
            // Read-ahead that leaves memory unread, with no disk copy, was wasted.
            if self.disk.is_none() {
                let mut unread = self
                    .prefetched_unread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for k in &evicted {
                    if unread.remove(k) {
                        metrics::PREFETCH.with_label_values(&["wasted"]).inc();
                    }
                }
            }
        }
        if let Some(d) = self.disk.clone() {
            let inner = self.clone();
            spawn_blocking_detached(move || {
                let before = d.stats().evictions;
                if let Err(e) = d.put_unless(&key, &bytes, &purged) {
                    log::warn!(
                        "disk cache write of {} window {} failed: {e}",
                        key.cid,
                        key.index
                    );
                }
                let evicted = d.stats().evictions.saturating_sub(before);
                if evicted > 0 {
                    metrics::EVICTIONS
                        .with_label_values(&["disk"])
                        .inc_by(evicted);
                }
                inner.publish_sizes();
                then();
            });
        } else {
            self.publish_sizes();
            then();
        }
    }

    /// Removes `fill` from the in-flight map if it is still the registered one.
    pub(super) fn unregister(&self, fill: &Arc<Fill>) {
        let mut map = self.lock_fills();
        if map.get(&fill.key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(&fill.key);
        }
    }

    /// Checks a fill's window against the piece (when it can be checked):
    /// `None` when it cannot be (no layer yet), else whether it passed.
    async fn check(&self, fill: &Fill, whole: &Bytes) -> Option<bool> {
        // A fill that started before the piece's layer arrived is checked
        // against it now, before it is stored.
        let late = match &fill.check {
            Some(_) => None,
            None if self.checking() && !fill.is_from_peer() => self
                .layers
                .nodes_of(&fill.key.cid)
                .map(|(nodes, _)| verify::PieceCheck::Layer(nodes)),
            None => None,
        };
        let check = fill.check.as_ref().or(late.as_ref())?;
        let (c, bytes, window, index) = (
            check.clone(),
            whole.clone(),
            self.settings.window_padded,
            fill.key.index,
        );
        let verdict = tokio::task::spawn_blocking(move || c.check(index, &bytes, window))
            .await
            .unwrap_or(Err(verify::Mismatch { index }));
        count_check(&fill.key, &verdict);
        if verdict.is_err() {
            self.wrong_window(
                &fill.key,
                "fetched bytes do not hash to the PieceCID; not cached",
            );
        }
        Some(verdict.is_ok())
    }

    /// Completes a window whose bytes are all in. A checked window is hashed
    /// beside the download (at most one check per core at once, which also
    /// bounds the windows held for it), so hashing does not stall the stream;
    /// one that fails its check fails its readers and is not stored.
    pub(super) async fn finish_window(self: &Arc<Self>, fill: &Arc<Fill>) {
        if fill.check.is_none() {
            self.complete(fill).await;
            return;
        }
        let permit = self.check_slots.clone().acquire_owned().await.ok();
        let unfinished = Unfinished {
            inner: self.clone(),
            fill: fill.clone(),
        };
        tokio::spawn(async move {
            let Unfinished { inner, fill } = &unfinished;
            if !inner.complete(fill).await {
                let e = verify::Mismatch {
                    index: fill.key.index,
                };
                inner.abandon(std::slice::from_ref(fill), CacheError::Mismatch(e));
            }
            drop(permit);
        });
    }

    /// Finishes a fill whose bytes are all in: checks them, then hands the
    /// window to its readers and the tiers. `false`: the check failed, and
    /// nothing was finished or stored.
    async fn complete(self: &Arc<Self>, fill: &Arc<Fill>) -> bool {
        let whole = fill.assemble();
        let verdict = self.check(fill, &whole).await;
        if verdict.is_none() {
            // Stored unchecked: a layer build of the piece that already
            // hashed this window (another copy of it) must not vouch for it.
            self.builds.stored_unchecked(&fill.key);
        }
        if verdict == Some(false) {
            if fill.check.is_none() {
                // Checked late (the layer arrived mid-fill): its readers got
                // the bytes unchecked; it fails them now and is not stored.
                self.abandon(
                    std::slice::from_ref(fill),
                    CacheError::Mismatch(verify::Mismatch {
                        index: fill.key.index,
                    }),
                );
            }
            return false;
        }
        // Readers get the window now; the disk waits below only hold the
        // fill's registration (and, unchecked, the download) back.
        fill.finish_with(whole.clone());
        if fill.is_from_peer() {
            self.keep_peer_window(fill, whole);
            fill.mark_stored();
            metrics::WINDOW_FILLS
                .with_label_values(&[fill_kind(fill), "ok"])
                .inc();
            return true;
        }
        // At most DISK_WRITES windows wait for the disk at once: a fill that
        // outruns the disk waits here, so queued writes cannot pile up in memory.
        let permit = match &self.disk {
            Some(_) => self.disk_slots.clone().acquire_owned().await.ok(),
            None => None,
        };
        let bytes = whole;
        // The fill stays registered (readers join it and get the finished
        // window) until the disk write lands: otherwise a window refused by
        // the memory tier would be in no tier and not in flight meanwhile,
        // and be fetched again.
        let inner = self.clone();
        let done = fill.clone();
        self.store(fill.key.clone(), bytes, Some(fill.clone()), move || {
            inner.unregister(&done);
            drop(permit);
        });
        // In the memory tier now: its in-flight room may go once nobody
        // streams it and someone waits for room.
        fill.mark_stored();
        metrics::WINDOW_FILLS
            .with_label_values(&[fill_kind(fill), "ok"])
            .inc();
        true
    }

    pub(super) fn abandon(&self, fills: &[Arc<Fill>], e: CacheError) {
        let outcome = if e == CacheError::Cancelled {
            "cancelled"
        } else {
            "failed"
        };
        for f in fills {
            // Unregistered first: a reader woken by the failure that plans
            // the window again must not find (and join) this failed fill.
            self.unregister(f);
            f.fail(e.clone());
            metrics::WINDOW_FILLS
                .with_label_values(&[fill_kind(f), outcome])
                .inc();
            if f.prefetch {
                let mut unread = self
                    .prefetched_unread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if unread.remove(&f.key) {
                    metrics::PREFETCH.with_label_values(&["wasted"]).inc();
                }
            }
        }
    }
}

/// Fails a fill whose completion task ended without finishing it (a panic):
/// its readers get an error instead of waiting for ever.
struct Unfinished {
    inner: Arc<Inner>,
    fill: Arc<Fill>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.fill.is_done() {
            self.inner
                .abandon(std::slice::from_ref(&self.fill), CacheError::Cancelled);
        }
    }
}

/// Counts a window check, and says which piece failed.
pub(super) fn count_check(key: &WindowKey, verdict: &Result<(), verify::Mismatch>) {
    let result = match verdict {
        Ok(()) => "ok",
        Err(e) => {
            log::warn!("{}: {e}; not cached, the transfer is cut", key.cid);
            "mismatch"
        }
    };
    metrics::WINDOW_CHECKS.with_label_values(&[result]).inc();
}

fn fill_kind(f: &Fill) -> &'static str {
    if f.prefetch {
        "prefetch"
    } else {
        "demand"
    }
}
