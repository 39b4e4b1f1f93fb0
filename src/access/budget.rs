//! Per-payer egress budgets (`access.egress_budget`): how many upstream
//! bytes (Beam or storage-provider fetches for cache misses) one payer may
//! cost per hour and per day. Counted with `pingora-limits` [`Rate`]s of one
//! hour and one day, keyed by the payer's Beam base URL (one key per payer
//! and network).
//!
//! The cache reserves each window's bytes before it reads them from an
//! upstream ([`EgressBudget::reserve`]) and gives back what it did not
//! read, so concurrent fills for one payer can never together pass the
//! budget by more than the window each is in; the public service refuses a
//! request that needs the upstream while a payer's budget is spent
//! ([`EgressBudget::check`]) with 429 and `Retry-After`, before any
//! upstream I/O. Hits cost nothing and are always served.
//!
//! What it is not: a bill. The windows start with the process (a restart
//! starts them afresh) and each replica of a cluster counts its own.

use std::sync::Arc;
use std::time::Duration;

use pingora_limits::rate::Rate;

use crate::config::access::EgressBudgetConfig;

/// Why a payer's upstream fetch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRefusal {
    /// `hour` or `day`.
    pub window: &'static str,
    /// The budget of that window, in bytes.
    pub limit: u64,
    /// Until that window starts afresh.
    pub retry_after: Duration,
}

impl BudgetRefusal {
    /// The `reason` label of `beam_edge_access_refusals_total`.
    pub fn label(&self) -> &'static str {
        match self.window {
            "hour" => "egress_budget_hour",
            _ => "egress_budget_day",
        }
    }

    /// `Retry-After` in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl std::fmt::Display for BudgetRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this payer's egress budget of {} bytes per {} (access.egress_budget.per_{}) is spent: cached bytes are still served, others again in {} s",
            self.limit,
            self.window,
            self.window,
            self.retry_after_secs()
        )
    }
}

struct Window {
    name: &'static str,
    rate: Rate,
    limit: isize,
}

impl std::fmt::Debug for EgressBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.windows.iter().map(|w| w.name).collect();
        f.debug_struct("EgressBudget")
            .field("windows", &names)
            .finish()
    }
}

/// The budgets in force; `None` from [`EgressBudget::new`] when there are none.
pub struct EgressBudget {
    windows: Vec<Window>,
    /// The key of requests that name no payer (`upstream.payer`'s Beam URL).
    default_key: Arc<str>,
}

impl EgressBudget {
    /// From `access.egress_budget`; `default_key` names the payer of
    /// `/piece` and `/asset` (its Beam base URL). `None` when both are 0.
    pub fn new(c: &EgressBudgetConfig, default_key: &str) -> Option<Arc<EgressBudget>> {
        let mut windows = Vec::new();
        for (name, secs, bytes) in [("hour", 3600, c.per_hour.0), ("day", 86_400, c.per_day.0)] {
            if bytes > 0 {
                windows.push(Window {
                    name,
                    rate: Rate::new(Duration::from_secs(secs)),
                    limit: isize::try_from(bytes).unwrap_or(isize::MAX),
                });
            }
        }
        (!windows.is_empty()).then(|| {
            Arc::new(EgressBudget {
                windows,
                default_key: Arc::from(default_key),
            })
        })
    }

    fn key<'a>(&'a self, beam_url: Option<&'a str>) -> &'a str {
        beam_url.unwrap_or(&self.default_key)
    }

    fn used(w: &Window, key: &str) -> isize {
        w.rate.rate_with(&key, |c| c.curr_samples)
    }

    fn refusal(w: &Window, key: &str) -> BudgetRefusal {
        let retry_after = w.rate.rate_with(&key, |c| {
            c.interval
                .mul_f64((1.0 - c.current_interval_fraction).clamp(0.0, 1.0))
        });
        BudgetRefusal {
            window: w.name,
            limit: w.limit.unsigned_abs() as u64,
            retry_after,
        }
    }

    /// `Err` when the payer (its Beam base URL; `None`: `upstream.payer`)
    /// has spent a budget: a request that needs the upstream is refused.
    pub fn check(&self, beam_url: Option<&str>) -> Result<(), BudgetRefusal> {
        let key = self.key(beam_url);
        match self.windows.iter().find(|w| Self::used(w, key) >= w.limit) {
            Some(w) => Err(Self::refusal(w, key)),
            None => Ok(()),
        }
    }

    /// Takes `bytes` from every budget of the payer, or nothing and `Err`
    /// when one of them would pass its limit.
    pub fn reserve(&self, beam_url: Option<&str>, bytes: u64) -> Result<(), BudgetRefusal> {
        let key = self.key(beam_url);
        let n = isize::try_from(bytes).unwrap_or(isize::MAX);
        for (i, w) in self.windows.iter().enumerate() {
            if w.rate.observe(&key, n) > w.limit {
                for taken in &self.windows[..=i] {
                    taken.rate.observe(&key, -n);
                }
                return Err(Self::refusal(w, key));
            }
        }
        Ok(())
    }

    /// Counts `bytes` that arrived unplanned (the head of a whole-piece
    /// answer), whatever the budget says: they were paid for.
    pub fn charge(&self, beam_url: Option<&str>, bytes: u64) {
        let key = self.key(beam_url);
        let n = isize::try_from(bytes).unwrap_or(isize::MAX);
        for w in &self.windows {
            w.rate.observe(&key, n);
        }
    }

    /// Gives back reserved bytes that were not read.
    pub fn refund(&self, beam_url: Option<&str>, bytes: u64) {
        if bytes > 0 {
            let key = self.key(beam_url);
            let n = isize::try_from(bytes).unwrap_or(isize::MAX);
            for w in &self.windows {
                w.rate.observe(&key, -n);
            }
        }
    }
}

/// Bytes reserved for a window being read, given back when dropped unread.
pub struct Reservation {
    budget: Arc<EgressBudget>,
    beam_url: Option<Arc<str>>,
    /// Reserved and not yet received.
    pub outstanding: u64,
}

impl Reservation {
    /// An empty reservation for one payer.
    pub fn new(budget: Arc<EgressBudget>, beam_url: Option<Arc<str>>) -> Reservation {
        Reservation {
            budget,
            beam_url,
            outstanding: 0,
        }
    }

    /// Reserves `bytes` more; nothing when that would pass a budget.
    pub fn take(&mut self, bytes: u64) -> Result<(), BudgetRefusal> {
        self.budget.reserve(self.beam_url.as_deref(), bytes)?;
        self.outstanding += bytes;
        Ok(())
    }

    /// Gives back everything reserved and not yet received.
    pub fn release(&mut self) {
        self.budget
            .refund(self.beam_url.as_deref(), self.outstanding);
        self.outstanding = 0;
    }

    /// Counts bytes that arrived outside any reservation (the head of a
    /// whole-piece answer): they were paid for, whatever the budget says.
    pub fn charge_unplanned(&mut self, bytes: u64) {
        self.budget.charge(self.beam_url.as_deref(), bytes);
    }

    /// `bytes` arrived: from the reservation as far as it goes, the rest charged.
    pub fn received(&mut self, bytes: u64) {
        let covered = bytes.min(self.outstanding);
        self.outstanding -= covered;
        if bytes > covered {
            self.budget
                .charge(self.beam_url.as_deref(), bytes - covered);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget
            .refund(self.beam_url.as_deref(), self.outstanding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    #[test]
    fn reservations_stop_at_the_budget_and_give_back_what_was_not_read() {
        let b = EgressBudget::new(
            &EgressBudgetConfig {
                per_hour: ByteSize(1000),
                per_day: ByteSize(0),
            },
            "https://a",
        )
        .unwrap();
        assert!(b.reserve(None, 600).is_ok());
        let e = b.reserve(None, 600).unwrap_err();
        assert_eq!((e.window, e.limit), ("hour", 1000));
        assert!(e.retry_after_secs() >= 1 && e.retry_after_secs() <= 3600);
        // Another payer has its own budget.
        assert!(b.reserve(Some("https://b"), 600).is_ok());
        assert!(b.check(None).is_ok());
        {
            let mut r = Reservation::new(b.clone(), None);
            r.take(400).unwrap();
            r.received(100);
            // 300 unread are given back on drop.
        }
        assert!(b.reserve(None, 300).is_ok());
        assert_eq!(b.check(None).unwrap_err().window, "hour");
        assert!(EgressBudget::new(&EgressBudgetConfig::default(), "x").is_none());
    }
}
