//! The in-flight budget (`cache.inflight`): one process-wide bound on the
//! window bytes held outside the memory tier's own budget: windows being
//! assembled by fills, read-ahead, windows waiting for slow clients and
//! windows on their way to the disk tier.
//!
//! A fill reserves its whole window before its first byte arrives and holds
//! the [`Reservation`] for as long as the fill lives (its run, its readers
//! and a pending disk write all keep it alive), so the reserved bytes are an
//! upper bound of what fills hold. A finished window that no reader is
//! streaming is [`Idle`]: once someone waits for room it gives its room and its
//! bytes back (the memory tier keeps a copy), since the readers that still
//! want it are behind and may be waiting for room themselves; holding it
//! for them deadlocked 1,000 slow readers. Who waits when the budget is full:
//!
//! - read-ahead never waits: it is refused once half the budget is taken
//!   ([`Admission::ReadAhead`]), so demand always has room to grow into;
//!   the container-aware guesses (the tail window, the index a head points
//!   at) are read-ahead too, while an operator's warm-up waits like a
//!   response under way;
//! - the next window of a response already under way waits its turn
//!   ([`Admission::Continue`]): it holds nothing while it waits, and the
//!   windows ahead of it are freed as their clients read them;
//! - the first window of a new request waits in a bounded queue
//!   ([`Admission::New`]); past `cache.inflight_queue` waiters, or after
//!   [`QUEUE_WAIT`], it is refused and the client gets 503 with
//!   `Retry-After`, never an out-of-memory kill.
//!
//! Waiters are served in arrival order (a tokio semaphore of 64 KiB units).
//! What it is not: the memory tier's budget (`memory`), or the rule that a
//! run pauses ahead of a slow reader (`run`), which uses
//! [`InflightBudget::under_pressure`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics;

/// Reservation unit: a window of 1,040,384 bytes takes 16 units.
const UNIT: u64 = 64 << 10;

/// Longest wait of a new request in the queue before it is refused with a 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(30);

/// What `Retry-After` says to a refused client, in seconds.
pub const RETRY_AFTER_SECS: u64 = 2;

/// How a fill asks for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Read-ahead: room now and under half the budget, or nothing.
    ReadAhead,
    /// The next window of a response under way: waits for room.
    Continue,
    /// The first window of a new request: waits in the bounded queue.
    New,
}

/// The budget was full and the queue too (or the wait too long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// A finished window that nobody streams: its room can be taken back.
pub trait Idle: Send + Sync {
    /// Gives the room (and the bytes) back if still idle; `true`: done.
    fn release(&self) -> bool;
}

/// The process-wide in-flight budget.
pub struct InflightBudget {
    limit: u64,
    /// Finished windows nobody streams, listed while nobody waited; taken
    /// back once someone waits for room.
    idle: std::sync::Mutex<Vec<std::sync::Weak<dyn Idle>>>,
    units: Arc<Semaphore>,
    used: AtomicU64,
    queued: AtomicUsize,
    queue_limit: usize,
    /// Reservations waiting for room now (responses under way and queued
    /// new requests).
    waiting: AtomicUsize,
}

/// Bytes reserved in the budget, given back when dropped.
pub struct Reservation {
    budget: Arc<InflightBudget>,
    bytes: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let now = self.budget.used.fetch_sub(self.bytes, Ordering::SeqCst) - self.bytes;
        metrics::INFLIGHT_BYTES.set(i64::try_from(now).unwrap_or(i64::MAX));
    }
}

impl Reservation {
    /// The budget these bytes are reserved in.
    pub fn budget(&self) -> &Arc<InflightBudget> {
        &self.budget
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({} bytes)", self.bytes)
    }
}

/// A reservation waiting for room, counted while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Waiting<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waiting in the queue; leaving it (served, refused or dropped) frees the place.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl InflightBudget {
    /// A budget of `limit` bytes whose queue of new requests holds `queue_limit`.
    pub fn new(limit: u64, queue_limit: usize) -> Arc<InflightBudget> {
        let units = usize::try_from((limit / UNIT).max(1)).unwrap_or(usize::MAX >> 4);
        metrics::INFLIGHT_BUDGET_BYTES.set(i64::try_from(limit).unwrap_or(i64::MAX));
        Arc::new(InflightBudget {
            limit,
            idle: std::sync::Mutex::new(Vec::new()),
            units: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            used: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            queue_limit,
            waiting: AtomicUsize::new(0),
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// True once more than half the budget is reserved: read-ahead stops and
    /// runs wait for their slow readers (see `run`).
    pub fn under_pressure(&self) -> bool {
        self.used().saturating_mul(2) > self.limit
    }

    fn units_of(&self, bytes: u64) -> u32 {
        let total = u64::try_from(self.units_total()).unwrap_or(u64::MAX);
        u32::try_from(bytes.div_ceil(UNIT).clamp(1, total.max(1))).unwrap_or(u32::MAX)
    }

    fn units_total(&self) -> usize {
        usize::try_from((self.limit / UNIT).max(1)).unwrap_or(usize::MAX >> 4)
    }

    fn granted(self: &Arc<Self>, bytes: u64, permit: OwnedSemaphorePermit) -> Reservation {
        let now = self.used.fetch_add(bytes, Ordering::SeqCst) + bytes;
        metrics::INFLIGHT_BYTES.set(i64::try_from(now).unwrap_or(i64::MAX));
        Reservation {
            budget: self.clone(),
            bytes,
            _permit: permit,
        }
    }

    /// True while a reservation waits for room.
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Lists a finished window nobody streams (see [`Idle`]).
    pub fn note_idle(&self, w: std::sync::Weak<dyn Idle>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= 64 && idle.len().is_power_of_two() {
            idle.retain(|w| w.strong_count() > 0);
        }
        idle.push(w);
    }

    /// Takes back the room of every listed idle window (someone waits).
    fn take_idle_back(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for w in idle {
            if let Some(f) = w.upgrade() {
                f.release();
            }
        }
    }

    fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let permit = self
            .units
            .clone()
            .try_acquire_many_owned(self.units_of(bytes))
            .ok()?;
        Some(self.granted(bytes, permit))
    }

    /// Reserves `bytes` at once if there is room for a window admitted as
    /// `how` (read-ahead: under half the budget), without waiting.
    pub fn try_now(self: &Arc<Self>, bytes: u64, how: Admission) -> Option<Reservation> {
        if how == Admission::ReadAhead
            && self.used().saturating_add(bytes).saturating_mul(2) > self.limit
        {
            return None;
        }
        self.try_reserve(bytes)
    }

    /// Reserves `bytes` for a window admitted as `how` (see the module doc).
    pub async fn reserve(
        self: &Arc<Self>,
        bytes: u64,
        how: Admission,
    ) -> Result<Reservation, Refused> {
        match how {
            Admission::ReadAhead => {
                if self.used().saturating_add(bytes).saturating_mul(2) > self.limit {
                    return Err(Refused);
                }
                self.try_reserve(bytes).ok_or(Refused)
            }
            Admission::Continue | Admission::New => {
                if let Some(r) = self.try_reserve(bytes) {
                    return Ok(r);
                }
                // From here on this reservation waits: idle windows give
                // their room back first.
                let _waiting = Waiting::new(&self.waiting);
                self.take_idle_back();
                if let Some(r) = self.try_reserve(bytes) {
                    return Ok(r);
                }
                if how == Admission::Continue {
                    let permit = self
                        .units
                        .clone()
                        .acquire_many_owned(self.units_of(bytes))
                        .await
                        .map_err(|_| Refused)?;
                    return Ok(self.granted(bytes, permit));
                }
                if self.queued.fetch_add(1, Ordering::SeqCst) >= self.queue_limit {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    metrics::INFLIGHT_EVENTS
                        .with_label_values(&["rejected"])
                        .inc();
                    return Err(Refused);
                }
                let _place = QueuePlace(&self.queued);
                metrics::INFLIGHT_EVENTS
                    .with_label_values(&["queued"])
                    .inc();
                let wait = self.units.clone().acquire_many_owned(self.units_of(bytes));
                match tokio::time::timeout(QUEUE_WAIT, wait).await {
                    Ok(Ok(permit)) => Ok(self.granted(bytes, permit)),
                    _ => {
                        metrics::INFLIGHT_EVENTS
                            .with_label_values(&["rejected"])
                            .inc();
                        Err(Refused)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[tokio::test]
    async fn reservations_are_given_back_when_dropped() {
        let b = InflightBudget::new(4 * MIB, 1);
        let r = b.reserve(MIB, Admission::Continue).await.unwrap();
        assert_eq!(b.used(), MIB);
        drop(r);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn read_ahead_is_refused_past_half_the_budget() {
        let b = InflightBudget::new(4 * MIB, 1);
        let _r = b.reserve(MIB, Admission::ReadAhead).await.unwrap();
        assert!(b.reserve(2 * MIB, Admission::ReadAhead).await.is_err());
        assert!(!b.under_pressure());
        let _d = b.reserve(2 * MIB, Admission::Continue).await.unwrap();
        assert!(b.under_pressure());
    }

    #[tokio::test]
    async fn new_requests_queue_then_are_refused_past_the_queue() {
        let b = InflightBudget::new(2 * MIB, 1);
        let full = b.reserve(2 * MIB, Admission::Continue).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.reserve(MIB, Admission::New).await.is_ok() });
        // Wait for the waiter to take its place in the queue.
        while b.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.reserve(MIB, Admission::New).await.err(), Some(Refused));
        drop(full);
        assert!(waiter.await.unwrap());
    }
}
