//! Window ownership by rendezvous (highest random weight) hashing, as a
//! [`BackendSelection`] for `pingora-load-balancing`.
//!
//! Every member is scored against a key (`<cid>/<index>`) by a hash of its
//! stable *name* and the key; the highest score owns the key, the next ones
//! are the fallbacks in order. Names, not addresses: a restarted pod keeps
//! its StatefulSet name and its volume, so it owns the same windows and
//! comes back warm; and when a member leaves, only the keys it owned move
//! (Thaler and Ravishankar, "Using Name-Based Mappings to Increase Hit
//! Rates", 1998). The name rides in [`Backend::ext`] as a [`PeerName`].
//!
//! This is only the ordering: health, failure marks and "is it me" are
//! decided by [`super::Cluster`] through `LoadBalancer::select_with`.

use std::collections::BTreeSet;
use std::sync::Arc;

use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::Backend;

/// A member's stable name, carried in [`Backend::ext`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName(pub Arc<str>);

/// The name of `b`: its [`PeerName`], else its address (a backend added
/// without one still gets a stable, if address-bound, score).
pub fn name_of(b: &Backend) -> Arc<str> {
    b.ext
        .get::<PeerName>()
        .map(|n| n.0.clone())
        .unwrap_or_else(|| Arc::from(b.addr.to_string()))
}

/// The score of member `name` for `key`: FNV-1a over both, then a 64-bit
/// finaliser (splitmix64) so that names differing in one character still
/// spread evenly. Stable across processes and builds (no random seed),
/// which every replica's agreement depends on.
pub fn score(name: &str, key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes().iter().chain(&[0xff]).chain(key) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The members and their names, rebuilt by the balancer on every
/// membership change.
pub struct Rendezvous {
    members: Vec<(Backend, Arc<str>)>,
}

impl Rendezvous {
    /// Member names in score order for `key` (the owner first).
    pub fn order(&self, key: &[u8]) -> Vec<usize> {
        let mut scored: Vec<(u64, &str, usize)> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, (_, n))| (score(n, key), &**n, i))
            .collect();
        // Highest score first; the name breaks (astronomically rare) ties
        // the same way on every replica.
        scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.into_iter().map(|(_, _, i)| i).collect()
    }
}

impl BackendSelection for Rendezvous {
    type Iter = RendezvousIter;
    type Config = ();

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Rendezvous {
            members: backends.iter().map(|b| (b.clone(), name_of(b))).collect(),
        }
    }

    fn iter(self: &Arc<Self>, key: &[u8]) -> RendezvousIter {
        RendezvousIter {
            order: self.order(key),
            next: 0,
            selection: self.clone(),
        }
    }
}

/// Members for one key, owner first.
pub struct RendezvousIter {
    order: Vec<usize>,
    next: usize,
    selection: Arc<Rendezvous>,
}

impl BackendIter for RendezvousIter {
    fn next(&mut self) -> Option<&Backend> {
        let i = *self.order.get(self.next)?;
        self.next += 1;
        self.selection.members.get(i).map(|(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, port: u16) -> Backend {
        let mut b = Backend::new(&format!("127.0.0.1:{port}")).unwrap();
        b.ext.insert(PeerName(Arc::from(name)));
        b
    }

    fn owner(sel: &Arc<Rendezvous>, key: &str) -> String {
        let mut it = sel.iter(key.as_bytes());
        name_of(it.next().unwrap()).to_string()
    }

    #[test]
    fn ownership_is_by_name_balanced_and_moves_only_from_a_leaver() {
        let three: BTreeSet<Backend> = [member("a", 1), member("b", 2), member("c", 3)].into();
        let sel = Arc::new(Rendezvous::build(&three));
        // Same names at other addresses: the same owners.
        let moved: BTreeSet<Backend> = [member("a", 7), member("b", 8), member("c", 9)].into();
        let sel_moved = Arc::new(Rendezvous::build(&moved));
        let two: BTreeSet<Backend> = [member("a", 1), member("b", 2)].into();
        let sel_two = Arc::new(Rendezvous::build(&two));
        let mut counts = std::collections::HashMap::new();
        for i in 0..3000 {
            let key = format!("bafkzcibexample/{i}");
            let o = owner(&sel, &key);
            assert_eq!(o, owner(&sel_moved, &key));
            // Without c, a key keeps its owner unless c owned it.
            let o2 = owner(&sel_two, &key);
            if o != "c" {
                assert_eq!(o, o2);
            }
            *counts.entry(o).or_insert(0) += 1;
        }
        for n in ["a", "b", "c"] {
            let c = counts[n];
            assert!((800..1200).contains(&c), "{n} owns {c} of 3000");
        }
        // The iterator yields every member once, owner first.
        let mut it = sel.iter(b"k");
        let mut seen = BTreeSet::new();
        while let Some(b) = it.next() {
            assert!(seen.insert(name_of(b).to_string()));
        }
        assert_eq!(seen.len(), 3);
    }
}
