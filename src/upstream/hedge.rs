//! When to hedge a window's request, and how many hedges are left
//! (`upstream.hedge_after`, `upstream.hedge_budget`).
//!
//! A hedge is a second request for the same range to the next holder, sent
//! when the first has had no answer for a while; the first answer is used
//! and the other request dropped ("The Tail at Scale", Dean and Barroso,
//! 2013: defer the second request until the first has been outstanding past
//! a high percentile of its expected latency).
//!
//! - `auto` waits for the 95th percentile of the upstream's last
//!   [`SAMPLES`] times to first byte, and at least twice their median, so
//!   the ordinary spread of a tight distribution (loopback, one region) is
//!   not hedged and the budget goes to the outliers. Until [`MIN_SAMPLES`]
//!   answers are known nothing is hedged.
//! - The budget is a ratio: hedges sent never pass `hedge_budget` of the
//!   requests that could have been hedged (counted since start, halved
//!   together every [`BUDGET_HORIZON`] requests so old traffic fades).
//!
//! What it is not: the race itself, which lives with the fill path
//! (`crate::cache`, `open_upstream`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::HedgeAfter;

/// Times to first byte kept per upstream.
pub const SAMPLES: usize = 64;
/// Answers needed before `auto` hedges.
pub const MIN_SAMPLES: usize = 16;
/// The shortest `auto` delay.
pub const MIN_AUTO_DELAY: Duration = Duration::from_millis(10);
/// Requests after which the budget's counts are halved.
pub const BUDGET_HORIZON: u64 = 10_000;
/// Upstreams whose samples are kept (`/beam/<payer>/…` has one per payer).
const MAX_UPSTREAMS: usize = 1_024;

/// Hedging's state: recent times to first byte by upstream, and the budget.
pub struct Hedging {
    after: HedgeAfter,
    /// `hedge_budget` as a fraction.
    budget: f64,
    ttfb: Mutex<HashMap<String, VecDeque<Duration>>>,
    /// (requests that could be hedged, hedges sent).
    counts: Mutex<(u64, u64)>,
}

impl Hedging {
    /// `budget_percent` is `upstream.hedge_budget` (0 to 100).
    pub fn new(after: HedgeAfter, budget_percent: f64) -> Hedging {
        Hedging {
            after,
            budget: (budget_percent / 100.0).clamp(0.0, 1.0),
            ttfb: Mutex::new(HashMap::new()),
            counts: Mutex::new((0, 0)),
        }
    }

    /// False when `upstream.hedge_after: off` or the budget is 0.
    pub fn enabled(&self) -> bool {
        self.after != HedgeAfter::Off && self.budget > 0.0
    }

    /// Notes an answer's time to first byte (the response header) from
    /// `upstream`.
    pub fn note_ttfb(&self, upstream: &str, took: Duration) {
        let mut map = self.ttfb.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_UPSTREAMS && !map.contains_key(upstream) {
            map.clear();
        }
        let ring = map.entry(upstream.to_string()).or_default();
        if ring.len() == SAMPLES {
            ring.pop_front();
        }
        ring.push_back(took);
    }

    /// How long a request to `upstream` may go unanswered before it is
    /// hedged; `None`: not hedged (off, or too few answers known for
    /// `auto`).
    pub fn delay(&self, upstream: &str) -> Option<Duration> {
        match self.after {
            HedgeAfter::Off => None,
            HedgeAfter::After(d) => Some(d),
            HedgeAfter::Auto => {
                let map = self.ttfb.lock().unwrap_or_else(|p| p.into_inner());
                auto_delay(map.get(upstream)?.iter().copied().collect())
            }
        }
    }

    /// Counts a request that could be hedged (the budget's base).
    pub fn note_request(&self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.0 += 1;
        if c.0 >= BUDGET_HORIZON {
            c.0 /= 2;
            c.1 /= 2;
        }
    }

    /// Takes one hedge from the budget: false when one more would pass
    /// `hedge_budget` of the requests counted.
    pub fn try_hedge(&self) -> bool {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if (c.1 + 1) as f64 <= self.budget * c.0 as f64 {
            c.1 += 1;
            true
        } else {
            false
        }
    }
}

/// `auto`'s delay for these samples: their 95th percentile, at least twice
/// their median and [`MIN_AUTO_DELAY`]; `None` under [`MIN_SAMPLES`].
fn auto_delay(mut samples: Vec<Duration>) -> Option<Duration> {
    if samples.len() < MIN_SAMPLES {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Some(at(0.95).max(at(0.5) * 2).max(MIN_AUTO_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn auto_waits_for_the_95th_percentile_and_twice_the_median() {
        // A heavy tail: the 95th percentile is past twice the median.
        let mut s: Vec<Duration> = (0..60).map(|_| ms(100)).collect();
        s.extend([ms(400), ms(450), ms(500), ms(900)]);
        assert_eq!(auto_delay(s), Some(ms(400)));
        // A tight distribution: twice the median.
        let s: Vec<Duration> = (0..64).map(|i| ms(40 + i % 5)).collect();
        assert_eq!(auto_delay(s), Some(ms(84)));
        // Loopback: the floor.
        let s: Vec<Duration> = (0..64).map(|_| Duration::from_micros(300)).collect();
        assert_eq!(auto_delay(s), Some(MIN_AUTO_DELAY));
        // Too few answers: no hedging yet.
        assert_eq!(auto_delay(vec![ms(40); MIN_SAMPLES - 1]), None);
    }

    #[test]
    fn auto_follows_each_upstream_and_forgets_old_answers() {
        let h = Hedging::new(HedgeAfter::Auto, 5.0);
        for _ in 0..SAMPLES {
            h.note_ttfb("a", ms(1_000));
            h.note_ttfb("b", ms(20));
        }
        assert_eq!(h.delay("a"), Some(ms(2_000)));
        assert_eq!(h.delay("b"), Some(ms(40)));
        assert_eq!(h.delay("c"), None);
        for _ in 0..SAMPLES {
            h.note_ttfb("a", ms(30));
        }
        assert_eq!(h.delay("a"), Some(ms(60)));
    }

    #[test]
    fn hedges_never_pass_the_budget() {
        let h = Hedging::new(HedgeAfter::After(ms(50)), 5.0);
        assert_eq!(h.delay("any"), Some(ms(50)));
        let mut sent = 0u64;
        for i in 1..=1_000u64 {
            h.note_request();
            // Every request is late: hedging is bounded by the budget alone.
            if h.try_hedge() {
                sent += 1;
            }
            assert!(sent * 20 <= i, "{sent} hedges after {i} requests");
        }
        assert_eq!(sent, 50);
        // A 20th request after a quiet spell may be hedged.
        let h = Hedging::new(HedgeAfter::Auto, 5.0);
        for _ in 0..19 {
            h.note_request();
        }
        assert!(!h.try_hedge());
        h.note_request();
        assert!(h.try_hedge());
        assert!(!h.try_hedge());
    }

    #[test]
    fn off_or_a_zero_budget_never_hedges() {
        assert!(!Hedging::new(HedgeAfter::Off, 5.0).enabled());
        assert_eq!(Hedging::new(HedgeAfter::Off, 5.0).delay("a"), None);
        let h = Hedging::new(HedgeAfter::After(ms(1)), 0.0);
        assert!(!h.enabled());
        h.note_request();
        assert!(!h.try_hedge());
    }
}
