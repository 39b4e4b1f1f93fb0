//! Which address a request comes from: the connection's peer, unless that
//! peer is one of `server.trusted_proxies`; then the right-most address of
//! `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends
//! the address it saw, so entries left of the last untrusted one may be
//! forged by the client and are never believed).
//!
//! What it is not: what the address is used for (limits, bound links).

use std::net::IpAddr;

use ipnet::IpNet;

/// The trusted proxies and the rule above.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress {
    trusted: Vec<IpNet>,
}

impl ClientAddress {
    /// From parsed `server.trusted_proxies`.
    pub fn new(trusted: Vec<IpNet>) -> ClientAddress {
        ClientAddress { trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client of a connection from `peer` whose request carries the
    /// `X-Forwarded-For` values `forwarded` (every header line, in order).
    pub fn resolve<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = forwarded.flat_map(|line| line.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // A malformed entry ends the walk: nothing left of it is believed.
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port or brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let t = hop.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    t.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<IpAddr>().ok())
        .map(canonical)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let c = ClientAddress::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ]);
        // An untrusted peer: its header is ignored.
        assert_eq!(
            c.resolve(Some(ip("198.51.100.9")), ["1.2.3.4"].into_iter()),
            Some(ip("198.51.100.9"))
        );
        // A trusted peer: the right-most untrusted hop, past other proxies.
        assert_eq!(
            c.resolve(
                Some(ip("10.1.1.1")),
                ["6.6.6.6, 203.0.113.5", "10.2.2.2"].into_iter()
            ),
            Some(ip("203.0.113.5"))
        );
        // Mapped addresses and ports.
        assert_eq!(
            c.resolve(Some(ip("::ffff:127.0.0.1")), ["[2001:db8::1]"].into_iter()),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            c.resolve(Some(ip("127.0.0.1")), ["203.0.113.5:4711"].into_iter()),
            Some(ip("203.0.113.5"))
        );
        // No header, or junk: the proxy itself (or the last good hop).
        assert_eq!(
            c.resolve(Some(ip("10.1.1.1")), std::iter::empty()),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(
            c.resolve(
                Some(ip("10.1.1.1")),
                ["1.1.1.1, junk, 10.3.3.3"].into_iter()
            ),
            Some(ip("10.3.3.3"))
        );
    }
}
