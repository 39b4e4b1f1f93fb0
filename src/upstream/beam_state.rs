//! What this process has learnt about each piece at Beam, per payer: Beam
//! refused it (remembered for `upstream.refusal_ttl`, so a refused play
//! costs Beam one request, not one per window), it is cold in Beam's CDN
//! (Beam answered a range with the whole piece) and perhaps being warmed
//! by the one whole-body response this process lets run to completion, or
//! it is warm (Beam answered a range with 206).
//!
//! Keys are `(Beam base URL, PieceCID)`: the base URL names the payer
//! (`https://<payer>.filbeam.io`), and Beam bills, quotas and refuses per
//! payer. Memory is bounded ([`MAX_ENTRIES`]) and every entry but a running
//! warm-up expires.
//!
//! What it is not: the HTTP client (`super`) or the warm-up stream itself
//! (`crate::cache`), which holds a [`WarmupGuard`] while it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::UpstreamError;

/// Most pieces remembered at once; past that, expired entries go first,
/// then everything but running warm-ups (each costs one request to relearn).
pub const MAX_ENTRIES: usize = 10_000;

/// How long a piece is remembered cold after its warm-up failed (no second
/// warm-up in that time: a body that breaks every time must not cost the
/// payer a whole piece per attempt), or warm.
const COLD_MEMORY: Duration = Duration::from_secs(600);

/// What is known about one piece at one payer's Beam.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeamPiece {
    /// Nothing (or the entry expired).
    Unknown,
    /// Beam answered a range with 206: its CDN holds the piece.
    Warm,
    /// This process's warm-up read a whole body to the end: Beam should
    /// hold the piece. A whole-piece answer now starts no second warm-up
    /// (Beam's CDN did not keep it: too large, or evicted).
    Warmed,
    /// Beam answered a range with the whole piece; no warm-up runs.
    Cold,
    /// A whole-body response is being read to completion: Beam gets no
    /// other request for this piece until it ends.
    Warming,
    /// A warm-up failed: Beam's whole-piece answers are used the old way
    /// (from byte 0 near the head, dropped for deep ranges) until it expires.
    WarmupFailed,
    /// Beam refused the piece for this payer; the error is answered again.
    Refused(UpstreamError),
}

#[derive(Debug, Clone)]
struct Entry {
    state: BeamPiece,
    /// `None`: does not expire (a running warm-up).
    until: Option<Instant>,
}

type Key = (String, String);

/// The per-payer, per-piece memory. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BeamState {
    map: Arc<Mutex<HashMap<Key, Entry>>>,
    refusal_ttl: Duration,
}

impl BeamState {
    /// An empty memory; refusals are kept for `refusal_ttl` (zero: not kept).
    pub fn new(refusal_ttl: Duration) -> BeamState {
        BeamState {
            map: Arc::default(),
            refusal_ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(base: &str, cid: &str) -> Key {
        (base.to_string(), cid.to_string())
    }

    /// What is known about `cid` at the Beam of `base`.
    pub fn get(&self, base: &str, cid: &str) -> BeamPiece {
        let mut map = self.lock();
        let key = Self::key(base, cid);
        match map.get(&key) {
            Some(e) if e.until.is_none_or(|t| t > Instant::now()) => e.state.clone(),
            Some(_) => {
                map.remove(&key);
                BeamPiece::Unknown
            }
            None => BeamPiece::Unknown,
        }
    }

    fn set(&self, base: &str, cid: &str, state: BeamPiece, ttl: Option<Duration>) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            let now = Instant::now();
            map.retain(|_, e| e.until.is_none_or(|t| t > now));
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, e| e.until.is_none());
            }
        }
        let until = ttl.map(|d| Instant::now() + d);
        map.insert(Self::key(base, cid), Entry { state, until });
    }

    /// Records a refusal (a no-op when `refusal_ttl` is zero).
    pub fn refused(&self, base: &str, cid: &str, e: &UpstreamError) {
        if !self.refusal_ttl.is_zero() {
            self.set(
                base,
                cid,
                BeamPiece::Refused(e.clone()),
                Some(self.refusal_ttl),
            );
        }
    }

    /// True when Beam is expected to answer ranges with 206.
    pub fn is_warm(&self, base: &str, cid: &str) -> bool {
        matches!(self.get(base, cid), BeamPiece::Warm | BeamPiece::Warmed)
    }

    /// Records that Beam answered a range with 206.
    pub fn warm(&self, base: &str, cid: &str) {
        if !matches!(self.get(base, cid), BeamPiece::Warming) {
            self.set(base, cid, BeamPiece::Warm, Some(COLD_MEMORY));
        }
    }

    /// Records that Beam answered a range with the whole piece.
    pub fn cold(&self, base: &str, cid: &str) {
        if matches!(self.get(base, cid), BeamPiece::Unknown | BeamPiece::Warm) {
            self.set(base, cid, BeamPiece::Cold, Some(COLD_MEMORY));
        }
    }

    /// Claims the one warm-up of `cid` at `base`: `None` when one runs
    /// already or one failed recently. Dropping the guard without
    /// [`WarmupGuard::completed`] records a failure.
    pub fn begin_warmup(&self, base: &str, cid: &str) -> Option<WarmupGuard> {
        let mut map = self.lock();
        let key = Self::key(base, cid);
        let now = Instant::now();
        if let Some(e) = map.get(&key) {
            let live = e.until.is_none_or(|t| t > now);
            let busy = matches!(
                e.state,
                BeamPiece::Warming | BeamPiece::WarmupFailed | BeamPiece::Warmed
            );
            if live && busy {
                return None;
            }
        }
        map.insert(
            key.clone(),
            Entry {
                state: BeamPiece::Warming,
                until: None,
            },
        );
        Some(WarmupGuard {
            state: self.clone(),
            key,
            completed: false,
        })
    }
}

/// Held by the one running warm-up of a piece.
#[derive(Debug)]
pub struct WarmupGuard {
    state: BeamState,
    key: Key,
    completed: bool,
}

impl WarmupGuard {
    /// The whole body arrived: Beam's CDN holds the piece now.
    pub fn completed(mut self) {
        self.completed = true;
    }
}

impl Drop for WarmupGuard {
    fn drop(&mut self) {
        let next = if self.completed {
            BeamPiece::Warmed
        } else {
            BeamPiece::WarmupFailed
        };
        let (base, cid) = &self.key;
        self.state.set(base, cid, next, Some(COLD_MEMORY));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warmup_at_a_time_and_none_right_after_a_failure() {
        let s = BeamState::new(Duration::from_secs(30));
        assert_eq!(s.get("b", "c"), BeamPiece::Unknown);
        s.cold("b", "c");
        assert_eq!(s.get("b", "c"), BeamPiece::Cold);
        let g = s.begin_warmup("b", "c").unwrap();
        assert!(s.begin_warmup("b", "c").is_none());
        // Another payer's Beam is another key.
        assert!(s.begin_warmup("b2", "c").is_some());
        assert_eq!(s.get("b", "c"), BeamPiece::Warming);
        s.warm("b", "c");
        assert_eq!(s.get("b", "c"), BeamPiece::Warming);
        drop(g);
        assert_eq!(s.get("b", "c"), BeamPiece::WarmupFailed);
        assert!(s.begin_warmup("b", "c").is_none());
        let s2 = BeamState::new(Duration::ZERO);
        s2.begin_warmup("b", "c").unwrap().completed();
        assert_eq!(s2.get("b", "c"), BeamPiece::Warmed);
        assert!(s2.is_warm("b", "c"));
        // Beam did not keep it: no second warm-up for a while.
        assert!(s2.begin_warmup("b", "c").is_none());
        s2.refused("b", "c", &UpstreamError::NotFound);
        assert_eq!(s2.get("b", "c"), BeamPiece::Warmed);
    }

    #[test]
    fn refusals_expire() {
        let s = BeamState::new(Duration::from_millis(1));
        s.refused("b", "c", &UpstreamError::NotFound);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.get("b", "c"), BeamPiece::Unknown);
    }
}
