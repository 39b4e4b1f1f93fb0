//! Per-client limits (`access.limits`): requests per second, refused past
//! the limit, and response bytes per second, paced at write time. Both are
//! counted with Pingora's own `pingora-limits` [`Rate`]: a count-min sketch
//! per one-second interval, so memory stays fixed however many addresses
//! come (an estimate can only be too high, never too low: a collision can
//! slow a client, never let one past its limit).
//!
//! What it is not: the choice of the client address ([`super::client_ip`])
//! or the writing itself (the public service awaits [`ClientLimits::pace`]
//! before each body write).

use std::net::IpAddr;
use std::time::Duration;

use pingora_limits::rate::Rate;

use crate::config::access::ClientLimitsConfig;
use crate::metrics;

const INTERVAL: Duration = Duration::from_secs(1);

/// The per-client limits in force.
pub struct ClientLimits {
    requests: Option<(Rate, isize)>,
    bytes: Option<(Rate, isize)>,
}

impl ClientLimits {
    /// From `access.limits`; a 0 turns that limit off.
    pub fn new(c: &ClientLimitsConfig) -> ClientLimits {
        let limit = |n: u64| isize::try_from(n).unwrap_or(isize::MAX);
        ClientLimits {
            requests: (c.requests_per_second > 0)
                .then(|| (Rate::new(INTERVAL), limit(c.requests_per_second))),
            bytes: (c.bytes_per_second.0 > 0)
                .then(|| (Rate::new(INTERVAL), limit(c.bytes_per_second.0))),
        }
    }

    /// True when a response's writes go through [`Self::pace`].
    pub fn paces(&self) -> bool {
        self.bytes.is_some()
    }

    /// Counts one request of `ip`; `Err(retry_after)` when it is over
    /// `requests_per_second` in this interval.
    pub fn admit_request(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some((rate, limit)) = &self.requests else {
            return Ok(());
        };
        if rate.observe(&ip, 1) <= *limit {
            return Ok(());
        }
        Err(until_next_interval(rate, &ip))
    }

    /// The largest write that [`Self::pace`] should be given at once: a
    /// tenth of a second's bytes (at least 4 KiB), so one large chunk does
    /// not take a whole interval's allowance in one go.
    pub fn write_slice(&self) -> usize {
        self.bytes.as_ref().map_or(usize::MAX, |(_, limit)| {
            usize::try_from(*limit / 10).unwrap_or(usize::MAX).max(4096)
        })
    }

    /// Waits until `n` more bytes may be written to `ip` (returns at once
    /// while under `bytes_per_second`). Bytes that do not fit this interval
    /// are taken back and wait for the next one, so the limit is never
    /// exceeded by more than one slice.
    pub async fn pace(&self, ip: IpAddr, n: usize) {
        let Some((rate, limit)) = &self.bytes else {
            return;
        };
        let n = isize::try_from(n).unwrap_or(isize::MAX);
        loop {
            let used = rate.observe(&ip, n);
            // A slice larger than the limit still goes out, alone in its interval.
            if used <= *limit || used == n {
                return;
            }
            rate.observe(&ip, -n);
            // Counted per wait: a response that needs k more intervals than
            // the first waits at least k times.
            metrics::PACED_WRITES.inc();
            let wait = until_next_interval(rate, &ip).max(Duration::from_millis(1));
            tokio::time::sleep(wait).await;
        }
    }
}

/// Time left in `rate`'s current interval.
fn until_next_interval(rate: &Rate, ip: &IpAddr) -> Duration {
    rate.rate_with(ip, |c| {
        c.interval
            .mul_f64((1.0 - c.current_interval_fraction).clamp(0.0, 1.0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    #[test]
    fn requests_past_the_limit_are_refused_per_address() {
        let l = ClientLimits::new(&ClientLimitsConfig {
            requests_per_second: 3,
            bytes_per_second: ByteSize(0),
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        // 7 calls span at most two 1 s intervals, so one holds 4 or more.
        let results: Vec<bool> = (0..7).map(|_| l.admit_request(a).is_ok()).collect();
        assert!(results[0], "{results:?}");
        assert!(results.iter().any(|ok| !ok), "{results:?}");
        let refused = results.iter().filter(|ok| !**ok).count();
        assert!(refused <= 4, "{results:?}");
        assert!(l.admit_request(b).is_ok());
        let off = ClientLimits::new(&ClientLimitsConfig::default());
        assert!((0..1000).all(|_| off.admit_request(a).is_ok()));
        assert!(!off.paces());
    }
}
