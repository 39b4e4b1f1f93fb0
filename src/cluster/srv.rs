//! Membership from DNS SRV records: a [`ServiceDiscovery`] for
//! `pingora-load-balancing` over a Kubernetes headless Service.
//!
//! A headless Service with a named port `peer` publishes one SRV record per
//! *ready* pod under `_peer._tcp.<service>.<namespace>.svc.cluster.local`,
//! whose target is `<pod>.<service>.<namespace>.svc.cluster.local` (the
//! Kubernetes DNS specification, "Records for a Headless Service"). The
//! target's first label is the pod's stable name, which ownership hashes;
//! its A/AAAA records give the address. The balancer calls
//! [`SrvDiscovery::discover`] every `cluster.refresh`.
//!
//! A failed lookup keeps the last known members (a DNS hiccup must not
//! empty the cluster and send every window to Beam); an answer with no
//! usable record is an error too, for the same reason. This is not a
//! membership protocol: DNS (and the readiness that feeds it) is the truth.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::Backend;

use super::hrw::PeerName;
use crate::metrics;

/// Discovers members from the SRV records of one name.
pub struct SrvDiscovery {
    name: String,
    resolver: TokioResolver,
    last: Mutex<Option<BTreeSet<Backend>>>,
}

impl SrvDiscovery {
    /// Resolves `name` with `nameserver` (UDP, then TCP), or with
    /// `/etc/resolv.conf` when `None`. Answers are never cached here: each
    /// refresh asks the server.
    pub fn new(name: &str, nameserver: Option<SocketAddr>) -> Result<SrvDiscovery, String> {
        let mut opts = ResolverOpts::default();
        opts.cache_size = 0;
        opts.attempts = 1;
        opts.timeout = std::time::Duration::from_secs(2);
        let resolver = match nameserver {
            Some(ns) => {
                let mut config = ResolverConfig::new();
                config.add_name_server(NameServerConfig::new(ns, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(ns, Protocol::Tcp));
                opts.use_hosts_file = ResolveHosts::Never;
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                    .with_options(opts)
                    .build()
            }
            None => {
                let mut b = TokioResolver::builder_tokio()
                    .map_err(|e| format!("cluster.dns_srv: cannot read /etc/resolv.conf: {e}"))?;
                let system = b.options_mut();
                system.cache_size = 0;
                b.build()
            }
        };
        // Not made absolute: in a pod, a short name (`_peer._tcp.<service>`)
        // goes through resolv.conf's search list to the pod's namespace.
        Ok(SrvDiscovery {
            name: name.to_string(),
            resolver,
            last: Mutex::new(None),
        })
    }

    /// One lookup: every SRV target with an address, named by its first label.
    async fn lookup(&self) -> Result<BTreeSet<Backend>, String> {
        let srv = self
            .resolver
            .srv_lookup(self.name.as_str())
            .await
            .map_err(|e| format!("SRV lookup of {} failed: {e}", self.name))?;
        let mut members = BTreeSet::new();
        for record in srv.iter() {
            let target = record.target().to_ascii();
            let Some(name) = target.split('.').next().filter(|n| !n.is_empty()) else {
                continue;
            };
            let ips = match self.resolver.lookup_ip(target.as_str()).await {
                Ok(ips) => ips,
                Err(e) => {
                    log::warn!("cluster: no address for SRV target {target}: {e}");
                    continue;
                }
            };
            if let Some(ip) = ips.iter().next() {
                let addr = SocketAddr::new(ip, record.port());
                let mut b = Backend::new(&addr.to_string())
                    .map_err(|e| format!("bad address {addr}: {e}"))?;
                b.ext.insert(PeerName(Arc::from(name)));
                members.insert(b);
            }
        }
        if members.is_empty() {
            return Err(format!(
                "SRV records of {} name no reachable member",
                self.name
            ));
        }
        Ok(members)
    }
}

#[async_trait]
impl ServiceDiscovery for SrvDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        match self.lookup().await {
            Ok(members) => {
                metrics::CLUSTER_DISCOVERY.with_label_values(&["ok"]).inc();
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(members.clone());
                Ok((members, HashMap::new()))
            }
            Err(e) => {
                metrics::CLUSTER_DISCOVERY
                    .with_label_values(&["error"])
                    .inc();
                let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match last {
                    Some(members) => {
                        log::warn!("cluster: {e}; keeping the last {} members", members.len());
                        Ok((members, HashMap::new()))
                    }
                    None => {
                        log::warn!("cluster: {e}; no members known yet");
                        Ok((BTreeSet::new(), HashMap::new()))
                    }
                }
            }
        }
    }
}
