//! `access.*`: who may make the edge spend, and on what. Signed URLs
//! (`access.signed_urls`), per-client limits (`access.limits`) and per-payer
//! egress budgets (`access.egress_budget`): their model, defaults and checks,
//! with `server.trusted_proxies` (which decides who the client is) and the
//! warning an open edge gets. What enforces them is `crate::access`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, HumanDuration};
use super::upstream::Payers;
use super::Config;

/// `access.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Signed links to media paths.
    pub signed_urls: SignedUrlsConfig,
    /// Per-client request and byte rates.
    pub limits: ClientLimitsConfig,
    /// Per-payer budgets of upstream miss bytes.
    pub egress_budget: EgressBudgetConfig,
    /// Files in the Bad Bits format (`//<hex sha256 of "<cid>/">` per
    /// line) listing pieces never served (451), read again on SIGHUP.
    pub denylist: Vec<std::path::PathBuf>,
}

/// The checks of `access.*` with a fixed key path, in order (the checks of
/// list entries, whose paths carry an index, are [`check_lists`]).
pub(super) const CHECKS: &[super::validate::Check] = &[check_denylist];

fn check_denylist(c: &Config) -> Result<(), (&'static str, String)> {
    for f in &c.access.denylist {
        if let Err(e) = std::fs::File::open(f) {
            return Err((
                "access.denylist",
                format!("cannot read {}: {e}", f.display()),
            ));
        }
    }
    Ok(())
}

/// Shortest secret of a signing key, in bytes: HMAC-SHA256 gains nothing
/// past 32 and a shorter one is guessable offline from any signed link.
pub const MIN_SECRET_LEN: usize = 32;

/// `access.signed_urls.*`: links to `/piece`, `/asset` and `/beam` that
/// carry an HMAC-SHA256 over their path, expiry and (optionally) the
/// client's address.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignedUrlsConfig {
    /// Refuse (403, with the reason) every `/piece`, `/asset` and `/beam`
    /// request that has no valid signature. Off: signatures are not checked.
    pub required: bool,
    /// Signing keys, each with an id that links carry (`kid`), so a key can
    /// be rotated in while the old one still verifies. The first key signs
    /// new links (`beam-edge sign`, `GET /admin/sign`); every key verifies.
    pub keys: Vec<SigningKeyConfig>,
    /// How long after its expiry a link is still accepted, for clocks that
    /// differ between whoever signs and this edge.
    pub clock_skew: HumanDuration,
    /// Longest lifetime `beam-edge sign` and `/admin/sign` give a link.
    pub max_ttl: HumanDuration,
}

impl Default for SignedUrlsConfig {
    fn default() -> Self {
        SignedUrlsConfig {
            required: false,
            keys: Vec::new(),
            clock_skew: HumanDuration(Duration::from_secs(30)),
            max_ttl: HumanDuration(Duration::from_secs(7 * 86_400)),
        }
    }
}

/// One signing key: `{ id: k1, secret: "…" }` or `{ id: k1, secret_file: /path }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// Key id, carried in links as `kid` (1-32 of `A-Z a-z 0-9 _ -`).
    pub id: String,
    /// The secret itself (at least 32 bytes); prefer `secret_file`.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the secret (surrounding whitespace ignored), e.g. a
    /// mounted Kubernetes Secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

impl SigningKeyConfig {
    /// The secret's bytes: from `secret`, or read from `secret_file`.
    pub fn secret_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.secret, &self.secret_file) {
            (Some(s), None) => Ok(s.as_bytes().to_vec()),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map(|s| s.trim().as_bytes().to_vec())
                .map_err(|e| format!("cannot read secret_file {}: {e}", p.display())),
            (Some(_), Some(_)) => Err("set secret or secret_file, not both".into()),
            (None, None) => Err("needs a secret or a secret_file".into()),
        }
    }
}

/// `access.limits.*`: what one client address may take (the address is the
/// connection's peer, or the `X-Forwarded-For` client when the peer is in
/// `server.trusted_proxies`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimitsConfig {
    /// Requests per second one client address may make to `/piece`,
    /// `/asset` and `/beam`; more get 429 with `Retry-After`. 0: no limit.
    pub requests_per_second: u64,
    /// Response bytes per second written to one client address, all its
    /// connections together; writes past it wait (paced, never refused).
    /// 0: no limit.
    pub bytes_per_second: ByteSize,
}

/// `access.egress_budget.*`: upstream bytes (Beam or storage-provider
/// fetches for cache misses) that requests may cost one payer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EgressBudgetConfig {
    /// Miss bytes per payer per hour; past it, requests that need the
    /// upstream get 429 with `Retry-After` (hits are still served). 0: none.
    pub per_hour: ByteSize,
    /// Miss bytes per payer per day, likewise. 0: none.
    pub per_day: ByteSize,
}

/// Parses one `server.trusted_proxies` entry: an address or a CIDR block.
pub fn parse_proxy(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    t.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("invalid address {t:?}: expected an IP address or a CIDR block like 10.0.0.0/8")
    })
}

fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks the keys of `access.*` and `server.trusted_proxies`; the error
/// names the key's path (with the index of a list entry).
pub(super) fn check_lists(c: &Config) -> Result<(), (String, String)> {
    for (i, p) in c.server.trusted_proxies.iter().enumerate() {
        parse_proxy(p).map_err(|e| (format!("server.trusted_proxies[{i}]"), e))?;
    }
    let s = &c.access.signed_urls;
    let mut seen = std::collections::HashSet::new();
    for (i, k) in s.keys.iter().enumerate() {
        let path = format!("access.signed_urls.keys[{i}]");
        if !valid_key_id(&k.id) {
            return Err((
                format!("{path}.id"),
                format!(
                    "invalid key id {:?}: 1 to 32 of A-Z, a-z, 0-9, _ and -",
                    k.id
                ),
            ));
        }
        if !seen.insert(k.id.as_str()) {
            return Err((
                format!("{path}.id"),
                format!("key id {:?} is listed twice", k.id),
            ));
        }
        let secret = k.secret_bytes().map_err(|e| (path.clone(), e))?;
        if secret.len() < MIN_SECRET_LEN {
            return Err((
                path,
                format!(
                    "the secret of key {:?} is {} bytes; at least {MIN_SECRET_LEN} are needed (e.g. `openssl rand -base64 33`)",
                    k.id,
                    secret.len()
                ),
            ));
        }
    }
    if s.required && s.keys.is_empty() {
        return Err((
            "access.signed_urls.keys".into(),
            "access.signed_urls.required is on but no key is listed: no link could ever verify"
                .into(),
        ));
    }
    if s.clock_skew.0 > Duration::from_secs(3600) {
        return Err((
            "access.signed_urls.clock_skew".into(),
            "must be at most 1h".into(),
        ));
    }
    if s.max_ttl.0 < Duration::from_secs(1) || s.max_ttl.0 > Duration::from_secs(366 * 86_400) {
        return Err((
            "access.signed_urls.max_ttl".into(),
            "must be 1s to 366d".into(),
        ));
    }
    let b = &c.access.egress_budget;
    if b.per_hour.0 > 0 && b.per_day.0 > 0 && b.per_day.0 < b.per_hour.0 {
        return Err((
            "access.egress_budget.per_day".into(),
            format!(
                "{} is less than per_hour ({}): the hourly budget could never be used",
                b.per_day, b.per_hour
            ),
        ));
    }
    if c.access.limits.bytes_per_second.0 > 0 && c.access.limits.bytes_per_second.0 < 1024 {
        return Err((
            "access.limits.bytes_per_second".into(),
            "must be 0 (no limit) or at least 1KiB".into(),
        ));
    }
    Ok(())
}

/// The warning an open edge gets at start-up and from `check-config`:
/// any payer may be billed, from anywhere, with nothing checked.
pub(super) fn warnings(c: &Config) -> Vec<String> {
    let open_to_all = matches!(c.payer_policy(), Payers::Any);
    let public = !c.server.listen.ip().is_loopback();
    if open_to_all && public && !c.access.signed_urls.required {
        vec![format!(
            "upstream.payers allows any payer and server.listen ({}) is not a loopback address, with access.signed_urls.required off: \
             anyone who can reach this edge can make it fetch any payer's pieces from Beam through /beam/<payer>/…, billed to that payer's egress and CDN quota. \
             Set upstream.payers to the wallets you pay for, or access.signed_urls.required: true",
            c.server.listen
        )]
    } else {
        Vec::new()
    }
}
