//! Cluster mode: N replicas act as one window cache.
//!
//! Every window `(cid, index)` has one owner among the members, chosen by
//! rendezvous hashing over their stable names ([`hrw`]). Membership comes
//! from a static list or from the DNS SRV records of a headless Service
//! ([`srv`]), kept current by `pingora-load-balancing`'s [`LoadBalancer`]
//! running as a background service, which also health-checks each member's
//! `GET /readyz` on its peer listener. Nothing here is a membership
//! protocol of its own.
//!
//! The window cache asks [`Cluster::route`] where a window comes from: this
//! replica (its tiers, then Beam with its single-flight) or the owner, over
//! the peer listener, with [`crate::upstream::PEER_HEADER`] set. A replica
//! serving a peer never forwards ([`serving_peer`]), so a request makes at
//! most one hop even when two replicas disagree about membership. An owner
//! that refuses, times out or answers badly is skipped for
//! `cluster.fail_for` and the next member in hash order is asked, finally
//! Beam itself: a client never sees an error because a peer died.
//!
//! Windows fetched from a peer are not stored on this replica's disk (one
//! copy per cluster), but a window read often here is kept in memory
//! ([`Cluster::note_peer_window`]), bounded by `cluster.hot_share`.

pub mod hrw;
pub mod srv;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pingora::http::RequestHeader;
use pingora::lb::discovery::{ServiceDiscovery, Static};
use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::{Backend, Backends, LoadBalancer};

use crate::config::Config;
use crate::http::range::ByteRange;
use crate::metrics;
use crate::piece::WindowKey;
use crate::upstream::{Origin, Upstream, UpstreamBody, UpstreamError, UpstreamSettings};
use hrw::{name_of, PeerName, Rendezvous};

tokio::task_local! {
    static SERVING_PEER: bool;
}

/// True inside [`serve_for_peer`]: the request came from another replica,
/// so its windows come from this replica's tiers or Beam, never a peer,
/// and it starts no read-ahead (the asking replica does its own).
pub fn serving_peer() -> bool {
    SERVING_PEER.try_with(|v| *v).unwrap_or(false)
}

/// Runs `f` (a request handler) as serving a peer (see [`serving_peer`]).
pub async fn serve_for_peer<F: Future>(f: F) -> F::Output {
    SERVING_PEER.scope(true, f).await
}

/// A member to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRef {
    /// Its stable name.
    pub name: Arc<str>,
    /// Its peer listener.
    pub addr: SocketAddr,
}

/// Where a window comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This replica: its tiers, then Beam.
    Local,
    /// The owner (or, after failures, the next member in hash order).
    Peer(PeerRef),
}

/// Windows of other owners kept in memory here, and how often each was read.
#[derive(Default)]
struct HotWindows {
    reads: HashMap<WindowKey, u32>,
    kept: VecDeque<WindowKey>,
    kept_set: HashSet<WindowKey>,
}

/// One member as `GET /admin/cluster` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberStatus {
    /// Stable name.
    pub name: String,
    /// Peer listener address.
    pub addr: String,
    /// True for this replica.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// `ready` (its `/readyz` answers 200), `failed` (a fetch failed
    /// recently: skipped for `cluster.fail_for`) or `unready`.
    pub state: &'static str,
    /// Share of the key space it owns now, 0..1 (from a sample of keys).
    pub share: f64,
}

/// `GET /admin/cluster`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    /// This replica's name.
    #[serde(rename = "self")]
    pub self_name: String,
    /// Share of the key space this replica owns now, 0..1.
    pub share: f64,
    /// Every member known now, in name order.
    pub members: Vec<MemberStatus>,
}

/// Keys sampled to estimate each member's share of the key space.
const SHARE_SAMPLE: u32 = 4096;

/// The cluster as this replica sees it.
pub struct Cluster {
    me: Arc<str>,
    balancer: Arc<LoadBalancer<Rendezvous>>,
    failed: Mutex<HashMap<SocketAddr, Instant>>,
    fail_for: Duration,
    client: Upstream,
    hot: Mutex<HotWindows>,
    hot_after: u32,
    hot_limit: usize,
}

impl Cluster {
    /// The cluster of a validated config, or `None` when cluster mode is
    /// off. `window_raw` and `memory_budget` bound the hot windows.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Cluster>>, String> {
        let k = &config.cluster;
        if !k.enabled {
            return Ok(None);
        }
        let me: Arc<str> = Arc::from(
            k.resolved_self()
                .ok_or_else(|| "cluster.self: not set and POD_NAME is empty".to_string())?,
        );
        let discovery: Box<dyn ServiceDiscovery + Send + Sync> = match &k.dns_srv {
            Some(name) => Box::new(srv::SrvDiscovery::new(name, k.nameserver)?),
            None => {
                let mut set = std::collections::BTreeSet::new();
                for p in &k.peers {
                    let mut b = Backend::new(&p.addr.to_string())
                        .map_err(|e| format!("cluster.peers: {}: {e}", p.addr))?;
                    b.ext.insert(PeerName(Arc::from(p.name.as_str())));
                    set.insert(b);
                }
                Static::new(set)
            }
        };
        let mut balancer = LoadBalancer::<Rendezvous>::from_backends(Backends::new(discovery));
        let mut check = HttpHealthCheck::new("beam-edge-peer", false);
        let mut req = RequestHeader::build("GET", b"/readyz", None)
            .map_err(|e| format!("cluster: health check request: {e}"))?;
        req.insert_header("Host", "beam-edge-peer")
            .map_err(|e| format!("cluster: health check request: {e}"))?;
        req.insert_header(crate::upstream::PEER_HEADER, "1")
            .map_err(|e| format!("cluster: health check request: {e}"))?;
        check.req = req;
        check.peer_template.options.connection_timeout = Some(k.peer_timeout.0);
        check.peer_template.options.read_timeout = Some(k.peer_timeout.0);
        balancer.set_health_check(Box::new(check));
        balancer.health_check_frequency = Some(k.refresh.0);
        balancer.update_frequency = Some(k.refresh.0);
        balancer.parallel_health_check = true;
        let client = Upstream::new(UpstreamSettings {
            beam_base_url: None,
            connect_timeout: k.peer_timeout.0,
            read_timeout: k.peer_timeout.0,
            // Peers are not Beam: nothing is remembered about their answers.
            refusal_ttl: std::time::Duration::ZERO,
        })?;
        let window_raw = config.window_raw_bytes().max(1);
        let hot_limit =
            usize::try_from(config.cache.memory.0 / 100 * u64::from(k.hot_share) / window_raw)
                .unwrap_or(usize::MAX);
        Ok(Some(Arc::new(Cluster {
            me,
            balancer: Arc::new(balancer),
            failed: Mutex::new(HashMap::new()),
            fail_for: k.fail_for.0,
            client,
            hot: Mutex::new(HotWindows::default()),
            hot_after: k.hot_after,
            hot_limit,
        })))
    }

    /// The balancer, to run as a background service (discovery and health
    /// checks every `cluster.refresh`).
    pub fn balancer(&self) -> Arc<LoadBalancer<Rendezvous>> {
        self.balancer.clone()
    }

    /// This replica's name.
    pub fn self_name(&self) -> &str {
        &self.me
    }

    fn is_failed(&self, addr: &SocketAddr) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match failed.get(addr) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                failed.remove(addr);
                false
            }
            None => false,
        }
    }

    fn member_count(&self) -> usize {
        self.balancer.backends().get_backend().len()
    }

    fn route_key(&self, key: &[u8]) -> Route {
        let pick = self
            .balancer
            .select_with(key, self.member_count() + 1, |b, healthy| {
                let pingora::protocols::l4::socket::SocketAddr::Inet(addr) = b.addr else {
                    return false;
                };
                *name_of(b) == *self.me || (healthy && !self.is_failed(&addr))
            });
        match pick {
            Some(b) => {
                let name = name_of(&b);
                match b.addr {
                    pingora::protocols::l4::socket::SocketAddr::Inet(addr) if *name != *self.me => {
                        Route::Peer(PeerRef { name, addr })
                    }
                    _ => Route::Local,
                }
            }
            None => Route::Local,
        }
    }

    /// Where window `index` of `cid` comes from now: the first member in
    /// hash order that is this replica, or ready and not marked failed.
    pub fn route(&self, cid: &str, index: u64) -> Route {
        self.route_key(window_key_bytes(cid, index).as_bytes())
    }

    /// The other members to ask for a piece's layer: ready and not marked
    /// failed, in hash order of the piece (so every replica asks the same
    /// one first), at most `n`.
    pub fn layer_peers(&self, cid: &str, n: usize) -> Vec<PeerRef> {
        let backends = self.balancer.backends();
        let mut peers: Vec<(u64, PeerRef)> = backends
            .get_backend()
            .iter()
            .filter_map(|b| {
                let name = name_of(b);
                let pingora::protocols::l4::socket::SocketAddr::Inet(addr) = b.addr else {
                    return None;
                };
                (*name != *self.me && backends.ready(b) && !self.is_failed(&addr)).then(|| {
                    (
                        hrw::score(&name, format!("layer/{cid}").as_bytes()),
                        PeerRef { name, addr },
                    )
                })
            })
            .collect();
        peers.sort_by_key(|p| std::cmp::Reverse(p.0));
        peers.into_iter().take(n).map(|(_, p)| p).collect()
    }

    /// The layer of `cid` held by `peer`: see [`Upstream::peer_layer`].
    pub async fn fetch_layer(
        &self,
        peer: &PeerRef,
        cid: &str,
    ) -> Result<Option<(u64, bytes::Bytes)>, UpstreamError> {
        self.client.peer_layer(peer.addr, cid).await
    }

    /// Marks `peer` failed for `cluster.fail_for`: routes skip it meanwhile.
    pub fn peer_failed(&self, peer: &PeerRef) {
        log::warn!(
            "cluster: peer {} ({}) failed; skipping it for {:?}",
            peer.name,
            peer.addr,
            self.fail_for
        );
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.addr, Instant::now() + self.fail_for);
    }

    /// Fetches `range` of piece `cid` from `peer`'s peer listener, checked
    /// like any upstream answer (status, `Content-Range`, length; the
    /// window check runs in the cache as for Beam's bytes).
    pub async fn fetch(
        &self,
        peer: &PeerRef,
        cid: &str,
        range: ByteRange,
        size: u64,
    ) -> Result<UpstreamBody, UpstreamError> {
        let r = self
            .client
            .fetch_from(Origin::Peer(peer.addr), cid, range, Some(size))
            .await;
        let outcome = match &r {
            Ok(b) if b.whole_piece() && range.start != 0 => {
                metrics::PEER_FETCHES.with_label_values(&["failed"]).inc();
                return Err(UpstreamError::BadResponse(format!(
                    "peer {} answered a range with the whole piece",
                    peer.name
                )));
            }
            Ok(_) => "ok",
            Err(_) => "failed",
        };
        metrics::PEER_FETCHES.with_label_values(&[outcome]).inc();
        r
    }

    /// Counts a read of `key`, which came from a peer; returns whether to
    /// keep it in memory now, and the hot windows to drop to stay within
    /// `cluster.hot_share`.
    pub fn note_peer_window(&self, key: &WindowKey) -> (bool, Vec<WindowKey>) {
        if self.hot_after == 0 || self.hot_limit == 0 {
            return (false, Vec::new());
        }
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        if hot.reads.len() > 100_000 {
            hot.reads.clear();
        }
        let reads = hot.reads.entry(key.clone()).or_insert(0);
        *reads += 1;
        if *reads < self.hot_after || hot.kept_set.contains(key) {
            return (false, Vec::new());
        }
        hot.reads.remove(key);
        hot.kept.push_back(key.clone());
        hot.kept_set.insert(key.clone());
        metrics::HOT_WINDOWS.with_label_values(&["admitted"]).inc();
        let mut dropped = Vec::new();
        while hot.kept.len() > self.hot_limit {
            if let Some(old) = hot.kept.pop_front() {
                hot.kept_set.remove(&old);
                metrics::HOT_WINDOWS.with_label_values(&["dropped"]).inc();
                dropped.push(old);
            }
        }
        (true, dropped)
    }

    /// Members, their state and shares of the key space.
    pub fn status(&self) -> ClusterStatus {
        let members = self.balancer.backends().get_backend();
        let mut owned: HashMap<Arc<str>, u32> = HashMap::new();
        for i in 0..SHARE_SAMPLE {
            let key = format!("share-sample/{i}");
            let name = match self.route_key(key.as_bytes()) {
                Route::Local => self.me.clone(),
                Route::Peer(p) => p.name,
            };
            *owned.entry(name).or_insert(0) += 1;
        }
        let share_of =
            |n: &str| f64::from(owned.get(n).copied().unwrap_or(0)) / f64::from(SHARE_SAMPLE);
        let mut list: Vec<MemberStatus> = members
            .iter()
            .map(|b| {
                let name = name_of(b);
                let is_self = *name == *self.me;
                let failed = match b.addr {
                    pingora::protocols::l4::socket::SocketAddr::Inet(a) => self.is_failed(&a),
                    _ => false,
                };
                let state = if failed {
                    "failed"
                } else if is_self || self.balancer.backends().ready(b) {
                    "ready"
                } else {
                    "unready"
                };
                MemberStatus {
                    share: share_of(&name),
                    name: name.to_string(),
                    addr: b.addr.to_string(),
                    is_self,
                    state,
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        ClusterStatus {
            self_name: self.me.to_string(),
            share: share_of(&self.me),
            members: list,
        }
    }
}

/// The hash key of a window: the same bytes on every replica.
pub fn window_key_bytes(cid: &str, index: u64) -> String {
    format!("{cid}/{index}")
}
