//! `cluster.*`: N replicas as one cache (membership, the peer listener,
//! peer timeouts, hot windows). Checked only while cluster mode is on.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{addr, HumanDuration};
use super::Config;

/// Environment variable naming this replica when `cluster.self` is null
/// (the StatefulSet pod name, from the Kubernetes downward API).
pub const POD_NAME_ENV: &str = "POD_NAME";

/// `cluster.*`: N replicas as one cache (see [`crate::cluster`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Cluster mode on or off.
    pub enabled: bool,
    /// This replica's stable name (a member of `peers`, or the name its SRV
    /// target starts with); `null` reads `POD_NAME`.
    #[serde(rename = "self")]
    pub self_name: Option<String>,
    /// Internal peer listener: peers fetch windows and check `/readyz` here.
    pub peer_listen: SocketAddr,
    /// Static membership: every replica, this one included.
    pub peers: Vec<PeerConfig>,
    /// Membership from DNS SRV records of this name (the headless Service's
    /// `_peer._tcp.<service>.<namespace>.svc.cluster.local`).
    pub dns_srv: Option<String>,
    /// DNS server for `dns_srv` (`IP:port`); `null` uses `/etc/resolv.conf`.
    pub nameserver: Option<SocketAddr>,
    /// How often membership is re-resolved and peers' `/readyz` checked.
    pub refresh: HumanDuration,
    /// Connect and first-byte limit of a peer fetch.
    pub peer_timeout: HumanDuration,
    /// How long a peer that failed a fetch is skipped.
    pub fail_for: HumanDuration,
    /// Reads of a window on a replica that does not own it before it is
    /// also kept in that replica's memory tier (0: never).
    pub hot_after: u32,
    /// Most of the memory budget such hot windows may take, in percent.
    pub hot_share: u8,
}

/// One entry of `cluster.peers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Stable name (the pod name): ownership hashes it, never the address.
    pub name: String,
    /// The peer listener of that replica (`IP:port`).
    pub addr: SocketAddr,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            enabled: false,
            self_name: None,
            peer_listen: addr("0.0.0.0:8082"),
            peers: Vec::new(),
            dns_srv: None,
            nameserver: None,
            refresh: HumanDuration(Duration::from_secs(5)),
            peer_timeout: HumanDuration(Duration::from_secs(2)),
            fail_for: HumanDuration(Duration::from_secs(10)),
            hot_after: 4,
            hot_share: 25,
        }
    }
}

impl ClusterConfig {
    /// This replica's name: `cluster.self`, else `POD_NAME`.
    pub fn resolved_self(&self) -> Option<String> {
        self.self_name
            .clone()
            .or_else(|| std::env::var(POD_NAME_ENV).ok())
            .filter(|n| !n.trim().is_empty())
    }
}

/// `cluster.*`, checked only while cluster mode is on. Paths name the
/// offending list entry (`cluster.peers[2].name`).
pub(super) fn check_cluster(c: &Config) -> Result<(), (String, String)> {
    let k = &c.cluster;
    if !k.enabled {
        return Ok(());
    }
    let err = |path: &str, reason: String| Err((path.to_string(), reason));
    // Unset here is fine (check-config runs outside the pod); `serve`
    // refuses to start without a name (see `crate::cluster`).
    let me = k.resolved_self();
    match (k.peers.is_empty(), &k.dns_srv) {
        (true, None) => {
            return err(
                "cluster.peers",
                "cluster mode needs members: list cluster.peers or set cluster.dns_srv".into(),
            )
        }
        (false, Some(_)) => {
            return err(
                "cluster.dns_srv",
                "set either cluster.peers or cluster.dns_srv, not both".into(),
            )
        }
        _ => {}
    }
    if let Some(name) = &k.dns_srv {
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            return err("cluster.dns_srv", format!("invalid DNS name {name:?}"));
        }
    } else if k.nameserver.is_some() {
        return err(
            "cluster.nameserver",
            "only used with cluster.dns_srv".into(),
        );
    }
    let mut names = std::collections::HashSet::new();
    let mut addrs = std::collections::HashSet::new();
    for (i, p) in k.peers.iter().enumerate() {
        if p.name.trim().is_empty() || p.name.contains(char::is_whitespace) {
            return err(
                &format!("cluster.peers[{i}].name"),
                format!(
                    "invalid name {:?}: must be non-empty, without spaces",
                    p.name
                ),
            );
        }
        if !names.insert(p.name.as_str()) {
            return err(
                &format!("cluster.peers[{i}].name"),
                format!("{:?} is listed twice", p.name),
            );
        }
        if !addrs.insert(p.addr) {
            return err(
                &format!("cluster.peers[{i}].addr"),
                format!("{} is listed twice", p.addr),
            );
        }
    }
    if let Some(me) = me.filter(|m| !k.peers.is_empty() && !names.contains(m.as_str())) {
        return err(
            "cluster.self",
            format!("{me:?} is not one of cluster.peers' names"),
        );
    }
    let port = k.peer_listen.port();
    for (key, other) in [
        ("server.listen", c.server.listen),
        ("admin.listen", c.admin.listen),
        ("metrics.listen", c.metrics.listen),
    ] {
        if other.port() == port {
            return err(
                "cluster.peer_listen",
                format!("must not share port {port} with {key}"),
            );
        }
    }
    if k.refresh.0.is_zero() {
        return err("cluster.refresh", "must be greater than 0".into());
    }
    if k.peer_timeout.0.is_zero() {
        return err("cluster.peer_timeout", "must be greater than 0".into());
    }
    if k.hot_share > 100 {
        return err(
            "cluster.hot_share",
            format!("must be 0 to 100 (percent), got {}", k.hot_share),
        );
    }
    Ok(())
}
