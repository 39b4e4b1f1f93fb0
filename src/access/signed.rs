//! Signed URLs: minting and checking links that carry an HMAC-SHA256 over
//! their path, their expiry and, optionally, the client address they were
//! issued to (the idea of nginx `secure_link`, CloudFront signed URLs and
//! Bunny token auth; the format is this project's own).
//!
//! A signed link is the path plus four query parameters:
//!
//! ```text
//! /piece/<cid>?exp=<unix seconds>&kid=<key id>&sig=<base64url HMAC>[&ip=<address>]
//! ```
//!
//! The MAC is HMAC-SHA256 under the key named by `kid`, over the bytes
//! `beam-edge-url-v1\n<path>\n<exp>\n<ip or empty>`, with `<path>` exactly
//! as the request line carries it (percent-encoded). Other query parameters
//! are ignored: they change nothing the edge serves. The signature is
//! compared in constant time (`hmac`'s `verify_slice`). What this is not:
//! where the check runs (the public service, before any upstream I/O) or
//! the keys' configuration ([`super::config`]).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::client_ip::canonical;
use crate::config::access::SignedUrlsConfig;

type HmacSha256 = Hmac<Sha256>;

/// Query parameter of the expiry (unix seconds).
pub const EXPIRES: &str = "exp";
/// Query parameter of the key id.
pub const KEY_ID: &str = "kid";
/// Query parameter of the signature (base64url, no padding).
pub const SIGNATURE: &str = "sig";
/// Query parameter of the client address a link is bound to.
pub const CLIENT_IP: &str = "ip";

const DOMAIN: &str = "beam-edge-url-v1";

/// Why a link was refused (the 403's reason and the metric label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// No `sig` parameter at all.
    Missing,
    /// A parameter is malformed or repeated.
    Malformed(String),
    /// `kid` names no configured key.
    UnknownKey(String),
    /// The MAC does not match the path, expiry and address.
    Mismatch,
    /// The link expired longer ago than the allowed clock skew.
    Expired {
        /// The link's expiry (unix seconds).
        expired_at: u64,
        /// Seconds since then.
        ago: u64,
    },
    /// The link is bound to another client address.
    WrongClient {
        /// The address in the link.
        bound: String,
        /// The address the request came from.
        from: String,
    },
}

impl SignatureRefusal {
    /// The `reason` label of `beam_edge_access_refusals_total`.
    pub fn label(&self) -> &'static str {
        match self {
            SignatureRefusal::Missing => "signature_missing",
            SignatureRefusal::Malformed(_) => "signature_malformed",
            SignatureRefusal::UnknownKey(_) => "signature_unknown_key",
            SignatureRefusal::Mismatch => "signature_mismatch",
            SignatureRefusal::Expired { .. } => "signature_expired",
            SignatureRefusal::WrongClient { .. } => "signature_wrong_client",
        }
    }

    /// Every label, for exporting each series at 0 from start-up.
    pub const LABELS: [&'static str; 6] = [
        "signature_missing",
        "signature_malformed",
        "signature_unknown_key",
        "signature_mismatch",
        "signature_expired",
        "signature_wrong_client",
    ];
}

impl std::fmt::Display for SignatureRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureRefusal::Missing => write!(
                f,
                "a signed link is required: this edge serves media only to links with exp, kid and sig parameters (beam-edge sign, or GET /admin/sign)"
            ),
            SignatureRefusal::Malformed(what) => write!(f, "malformed signed link: {what}"),
            SignatureRefusal::UnknownKey(kid) => {
                write!(f, "signed link names key id {kid:?}, which this edge does not have (rotated out?)")
            }
            SignatureRefusal::Mismatch => write!(
                f,
                "signature does not match this path, expiry and address: the link was altered or signed for another path"
            ),
            SignatureRefusal::Expired { expired_at, ago } => {
                write!(f, "signed link expired at {expired_at} (unix time), {ago} s ago")
            }
            SignatureRefusal::WrongClient { bound, from } => write!(
                f,
                "signed link is bound to client address {bound}, and this request comes from {from}"
            ),
        }
    }
}

/// Mints and checks signed links with the configured keys.
#[derive(Clone)]
pub struct UrlSigner {
    /// (id, secret); the first one signs.
    keys: Vec<(String, Vec<u8>)>,
    skew: Duration,
    max_ttl: Duration,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("UrlSigner")
            .field("key_ids", &ids)
            .field("skew", &self.skew)
            .finish()
    }
}

/// A link minted by [`UrlSigner::sign`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedLink {
    /// The path and query to request.
    pub path_and_query: String,
    /// Expiry, unix seconds.
    pub expires: u64,
    /// The key that signed it.
    pub key_id: String,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl UrlSigner {
    /// The signer a validated config describes; `None` when it lists no key.
    pub fn from_config(c: &SignedUrlsConfig) -> Result<Option<UrlSigner>, String> {
        if c.keys.is_empty() {
            return Ok(None);
        }
        let keys = c
            .keys
            .iter()
            .map(|k| {
                k.secret_bytes()
                    .map(|s| (k.id.clone(), s))
                    .map_err(|e| format!("access.signed_urls.keys ({}): {e}", k.id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(UrlSigner {
            keys,
            skew: c.clock_skew.0,
            max_ttl: c.max_ttl.0,
        }))
    }

    /// The longest lifetime a minted link may have.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    fn mac(secret: &[u8], path: &str, expires: &str, ip: &str) -> HmacSha256 {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        for part in [DOMAIN, path, expires, ip] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// Signs `path` (percent-encoded as it will be requested) until
    /// `expires` (unix seconds), bound to `ip` when given, with the first key.
    pub fn sign(&self, path: &str, expires: u64, ip: Option<IpAddr>) -> SignedLink {
        let (kid, secret) = &self.keys[0];
        let ip_text = ip.map(|a| a.to_string()).unwrap_or_default();
        let exp = expires.to_string();
        let tag = Self::mac(secret, path, &exp, &ip_text)
            .finalize()
            .into_bytes();
        let sig = data_encoding::BASE64URL_NOPAD.encode(&tag);
        let mut q = format!("{EXPIRES}={exp}&{KEY_ID}={kid}&{SIGNATURE}={sig}");
        if !ip_text.is_empty() {
            let enc: String = url::form_urlencoded::byte_serialize(ip_text.as_bytes()).collect();
            q.push_str(&format!("&{CLIENT_IP}={enc}"));
        }
        SignedLink {
            path_and_query: format!("{path}?{q}"),
            expires,
            key_id: kid.clone(),
        }
    }

    /// Checks a request's path and query at `now` (unix seconds), from
    /// `client`. Order: the parameters, the key, the MAC (so an altered
    /// expiry is a mismatch, not "expired"), the expiry, the address.
    pub fn verify(
        &self,
        path: &str,
        query: Option<&str>,
        client: Option<IpAddr>,
        now: u64,
    ) -> Result<(), SignatureRefusal> {
        let (mut exp, mut kid, mut sig, mut ip) = (None, None, None, None);
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                EXPIRES => &mut exp,
                KEY_ID => &mut kid,
                SIGNATURE => &mut sig,
                CLIENT_IP => &mut ip,
                _ => continue,
            };
            if slot.is_some() {
                return Err(SignatureRefusal::Malformed(format!("{k} is given twice")));
            }
            *slot = Some(v.into_owned());
        }
        let Some(sig) = sig else {
            return Err(SignatureRefusal::Missing);
        };
        let exp = exp.ok_or_else(|| SignatureRefusal::Malformed(format!("no {EXPIRES}")))?;
        let kid = kid.ok_or_else(|| SignatureRefusal::Malformed(format!("no {KEY_ID}")))?;
        let expires: u64 = exp
            .parse()
            .ok()
            .filter(|_| exp.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                SignatureRefusal::Malformed(format!("{EXPIRES} is not unix seconds: {exp:?}"))
            })?;
        let tag = data_encoding::BASE64URL_NOPAD
            .decode(sig.as_bytes())
            .map_err(|_| SignatureRefusal::Malformed(format!("{SIGNATURE} is not base64url")))?;
        let Some((_, secret)) = self.keys.iter().find(|(id, _)| *id == kid) else {
            let shown: String = kid.chars().take(40).collect();
            return Err(SignatureRefusal::UnknownKey(shown));
        };
        let ip_text = ip.as_deref().unwrap_or("");
        Self::mac(secret, path, &exp, ip_text)
            .verify_slice(&tag)
            .map_err(|_| SignatureRefusal::Mismatch)?;
        let deadline = expires.saturating_add(self.skew.as_secs());
        if now > deadline {
            return Err(SignatureRefusal::Expired {
                expired_at: expires,
                ago: now - expires,
            });
        }
        if let Some(bound) = ip {
            let same = match (bound.parse::<IpAddr>(), client) {
                (Ok(b), Some(c)) => canonical(b) == canonical(c),
                _ => false,
            };
            if !same {
                return Err(SignatureRefusal::WrongClient {
                    bound,
                    from: client.map_or_else(|| "an unknown address".into(), |c| c.to_string()),
                });
            }
        }
        Ok(())
    }
}

/// Percent-encodes what a URL path may not carry literally (spaces, `?`,
/// `#`, non-ASCII…), leaving `/` and existing `%XX` escapes, so the path
/// signed is the path a client will send.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::access::SigningKeyConfig;

    const PATH: &str = "/piece/bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy";

    fn signer(ids: &[&str]) -> UrlSigner {
        let c = SignedUrlsConfig {
            required: true,
            keys: ids
                .iter()
                .map(|id| SigningKeyConfig {
                    id: id.to_string(),
                    secret: Some(format!("{id}-0123456789abcdef0123456789abcdef")),
                    secret_file: None,
                })
                .collect(),
            ..SignedUrlsConfig::default()
        };
        UrlSigner::from_config(&c).unwrap().unwrap()
    }

    fn split(link: &SignedLink) -> (&str, &str) {
        link.path_and_query.split_once('?').unwrap()
    }

    #[test]
    fn a_link_verifies_on_its_path_until_it_expires() {
        let s = signer(&["k1"]);
        let link = s.sign(PATH, 1000, None);
        let (path, q) = split(&link);
        assert_eq!(path, PATH);
        assert!(q.starts_with("exp=1000&kid=k1&sig="), "{q}");
        assert_eq!(s.verify(path, Some(q), None, 999), Ok(()));
        // Within the 30 s default skew, then past it.
        assert_eq!(s.verify(path, Some(q), None, 1030), Ok(()));
        assert_eq!(
            s.verify(path, Some(q), None, 1031),
            Err(SignatureRefusal::Expired {
                expired_at: 1000,
                ago: 31
            })
        );
        // Another path, a longer expiry, no signature.
        assert_eq!(
            s.verify(&format!("{PATH}/name.mp4"), Some(q), None, 0),
            Err(SignatureRefusal::Mismatch)
        );
        let longer = q.replace("exp=1000", "exp=2000");
        assert_eq!(
            s.verify(path, Some(&longer), None, 0),
            Err(SignatureRefusal::Mismatch)
        );
        assert_eq!(
            s.verify(path, Some("exp=1"), None, 0),
            Err(SignatureRefusal::Missing)
        );
        assert_eq!(
            s.verify(path, None, None, 0),
            Err(SignatureRefusal::Missing)
        );
    }

    #[test]
    fn rotation_unknown_keys_and_bound_addresses() {
        let old = signer(&["old"]);
        let both = signer(&["new", "old"]);
        let link = old.sign(PATH, 1000, None);
        let (path, q) = split(&link);
        assert_eq!(both.verify(path, Some(q), None, 0), Ok(()));
        assert_eq!(both.sign(PATH, 1000, None).key_id, "new");
        let only_new = signer(&["new"]);
        assert_eq!(
            only_new.verify(path, Some(q), None, 0),
            Err(SignatureRefusal::UnknownKey("old".into()))
        );
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let bound = both.sign(PATH, 1000, Some(ip));
        let (path, q) = split(&bound);
        assert_eq!(both.verify(path, Some(q), Some(ip), 0), Ok(()));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(both.verify(path, Some(q), Some(mapped), 0), Ok(()));
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        assert!(matches!(
            both.verify(path, Some(q), Some(other), 0),
            Err(SignatureRefusal::WrongClient { .. })
        ));
        // Dropping the address from the link breaks the MAC.
        let unbound = q.split("&ip=").next().unwrap();
        assert_eq!(
            both.verify(path, Some(unbound), Some(other), 0),
            Err(SignatureRefusal::Mismatch)
        );
        assert!(matches!(
            both.verify(path, Some(&format!("{q}&sig=x")), Some(ip), 0),
            Err(SignatureRefusal::Malformed(_))
        ));
    }

    #[test]
    fn paths_are_signed_as_requested() {
        assert_eq!(
            encode_path("/piece/a/My Clip.mp4"),
            "/piece/a/My%20Clip.mp4"
        );
        assert_eq!(encode_path("/piece/a/b%20c?#"), "/piece/a/b%20c%3F%23");
    }
}
