//! `upstream.*`: where piece bytes come from (Beam, storage providers, the
//! chain's provider resolution) and who a request may bill.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, HumanDuration, Percent};
use super::validate::{check_http_url, is_eth_address};
use super::{Config, Network};

/// `upstream.payers`: who a request may bill through `/beam/<payer>/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payers {
    /// Any well-formed 0x wallet (`any`).
    Any,
    /// Only these wallets (a YAML list; compared case-insensitively).
    Only(Vec<String>),
}

impl Payers {
    /// True when `payer` (a well-formed 0x address) may be billed.
    pub fn allows(&self, payer: &str) -> bool {
        match self {
            Payers::Any => true,
            Payers::Only(list) => list.iter().any(|p| p.eq_ignore_ascii_case(payer)),
        }
    }

    /// True when at least one payer may be billed.
    pub fn allows_some(&self) -> bool {
        match self {
            Payers::Any => true,
            Payers::Only(list) => !list.is_empty(),
        }
    }
}

impl Serialize for Payers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Payers::Any => s.serialize_str("any"),
            Payers::Only(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Payers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Payers, D::Error> {
        struct PayersVisitor;
        impl<'de> Visitor<'de> for PayersVisitor {
            type Value = Payers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`any` or a list of 0x wallet addresses")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Payers, E> {
                if v == "any" {
                    Ok(Payers::Any)
                } else {
                    Err(E::custom(format!(
                        "expected `any` or a list of 0x wallet addresses, got {v:?}"
                    )))
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Payers, A::Error> {
                let mut list = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    list.push(p);
                }
                Ok(Payers::Only(list))
            }
        }
        d.deserialize_any(PayersVisitor)
    }
}

/// `upstream.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Beam URL template with `{payer}`, `{network}`, `{network_domain}`.
    pub beam_url: String,
    /// The 0x payer wallet whose data sets have CDN on.
    pub payer: Option<String>,
    /// Which payers a request may name in `/beam/<payer>/…`; `None` derives
    /// it from `payer` (see [`Config::payer_policy`]).
    pub payers: Option<Payers>,
    /// mainnet or calibration.
    pub network: Network,
    /// Storage-provider service URLs serving `/piece/<cid>`.
    pub providers: Vec<String>,
    /// Connect (TCP + TLS) timeout.
    pub connect_timeout: HumanDuration,
    /// Longest wait for the response header or the next body bytes.
    pub read_timeout: HumanDuration,
    /// When Beam answers a range with the whole piece, use that body if the
    /// range starts within this many bytes of byte 0; otherwise drop it and
    /// ask a storage provider.
    pub max_skip: ByteSize,
    /// Retries of a failed upstream fetch (resuming at the first missing byte).
    pub retries: u32,
    /// Find the storage providers holding a piece from the chain (the
    /// payer's live data sets, the registry's service URLs, a HEAD probe),
    /// tried after `providers` when Beam fails: for `payer`'s pieces, and
    /// for each payer a `/beam/<payer>/…` request names. On by default; it
    /// does nothing while no payer is known.
    pub resolve_providers: bool,
    /// JSON-RPC endpoint for provider resolution; `None` uses
    /// `upload.rpc_url`, else the network's public endpoint.
    pub rpc_url: Option<String>,
    /// How long a resolution (the chain's provider list, a piece's holders)
    /// is used before it is refreshed in the background.
    pub resolve_ttl: HumanDuration,
    /// How long a provider that answered 429, failed a GET or sent wrong
    /// bytes is skipped.
    pub provider_backoff: HumanDuration,
    /// When Beam answers a range with the whole piece (the piece is cold in
    /// its CDN), let that one response run to completion, filling this
    /// cache as it streams, so Beam warms; other reads of the piece go to
    /// the warm-up or to storage providers meanwhile, never to Beam.
    pub beam_warm: bool,
    /// Largest piece (padded size) warmed that way; larger pieces' cold
    /// answers are used near byte 0 and dropped for deep ranges.
    pub beam_warm_max: ByteSize,
    /// Treat a piece whose state at Beam is unknown as warm: a play's first
    /// requests (the head, the tail guess, the content-type probe, a split
    /// window's head; not read-ahead) go at once instead of after Beam's
    /// first answer, a round trip sooner. On a piece cold
    /// after all, each gets a whole-piece answer: one is its warm-up, the
    /// others are hung up at their header (the worker's pull stops with
    /// them). `false`: a piece's first Beam request goes alone.
    pub beam_assume_warm: bool,
    /// What a Beam 402 "egress quota exhausted" leads to: `refuse` (answer
    /// 402) or `providers` (serve from the storage providers, which then
    /// carry the egress that Beam would have billed).
    pub on_quota_exhausted: OnQuotaExhausted,
    /// How long a Beam refusal (Bad Bits, sanctioned, no CDN, quota) of a
    /// payer's piece is answered again without asking Beam.
    pub refusal_ttl: HumanDuration,
    /// When a window's request to Beam has no answer this long, ask a
    /// storage provider for the same range too and use the first answer
    /// (`auto`: a high percentile of Beam's recent times to first byte;
    /// `off`; or a duration).
    pub hedge_after: HedgeAfter,
    /// Most extra requests hedging may spend, in percent of the requests
    /// it could hedge.
    pub hedge_budget: Percent,
}

/// `upstream.hedge_after`: `auto`, `off`, or a duration like `150ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeAfter {
    /// A high percentile of the upstream's recent times to first byte
    /// (see [`crate::upstream::hedge`]).
    Auto,
    /// Never hedge.
    Off,
    /// This long after the request.
    After(Duration),
}

impl Serialize for HedgeAfter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HedgeAfter::Auto => s.serialize_str("auto"),
            HedgeAfter::Off => s.serialize_str("off"),
            HedgeAfter::After(d) => s.collect_str(&humantime::format_duration(*d)),
        }
    }
}

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HedgeAfter, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HedgeAfter;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`auto`, `off` or a duration like 150ms")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HedgeAfter, E> {
                if v {
                    Ok(HedgeAfter::Auto)
                } else {
                    Ok(HedgeAfter::Off)
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HedgeAfter, E> {
                match v.trim() {
                    "auto" => Ok(HedgeAfter::Auto),
                    "off" => Ok(HedgeAfter::Off),
                    t => humantime::parse_duration(t)
                        .map(HedgeAfter::After)
                        .map_err(|e| {
                            E::custom(format!(
                                "expected `auto`, `off` or a duration like 150ms, got {v:?} ({e})"
                            ))
                        }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `upstream.on_quota_exhausted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnQuotaExhausted {
    /// Answer Beam's 402 to the client.
    Refuse,
    /// Serve the piece from the storage providers instead.
    Providers,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            beam_url: "https://{payer}.{network_domain}".into(),
            payer: None,
            payers: None,
            network: Network::Calibration,
            providers: Vec::new(),
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            read_timeout: HumanDuration(Duration::from_secs(30)),
            max_skip: ByteSize(8 << 20),
            retries: 2,
            resolve_providers: true,
            rpc_url: None,
            resolve_ttl: HumanDuration(Duration::from_secs(600)),
            provider_backoff: HumanDuration(Duration::from_secs(10)),
            beam_warm: true,
            beam_warm_max: ByteSize(1 << 30),
            beam_assume_warm: false,
            on_quota_exhausted: OnQuotaExhausted::Refuse,
            refusal_ttl: HumanDuration(Duration::from_secs(30)),
            hedge_after: HedgeAfter::Auto,
            hedge_budget: Percent(5.0),
        }
    }
}

/// The checks of `upstream.*`, in order.
pub(super) const CHECKS: &[super::validate::Check] = &[
    check_provider_resolution,
    check_payer,
    check_payers,
    check_upstream_urls,
    check_timeouts,
    check_beam_warm,
    check_hedging,
];

fn check_hedging(c: &Config) -> Result<(), (&'static str, String)> {
    let u = &c.upstream;
    if let HedgeAfter::After(d) = u.hedge_after {
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&d) {
            return Err((
                "upstream.hedge_after",
                "must be `auto`, `off` or 1ms to 60s".into(),
            ));
        }
    }
    if !(0.0..=100.0).contains(&u.hedge_budget.0) {
        return Err((
            "upstream.hedge_budget",
            format!("must be 0% to 100%, got {}%", u.hedge_budget.0),
        ));
    }
    Ok(())
}

fn check_provider_resolution(c: &Config) -> Result<(), (&'static str, String)> {
    let u = &c.upstream;
    if let Some(url) = &u.rpc_url {
        check_http_url(url).map_err(|r| ("upstream.rpc_url", r))?;
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&u.resolve_ttl.0) {
        return Err(("upstream.resolve_ttl", "must be 1s to 24h".into()));
    }
    if u.provider_backoff.0 > Duration::from_secs(3600) {
        return Err(("upstream.provider_backoff", "must be at most 1h".into()));
    }
    Ok(())
}

/// The JSON-RPC endpoint provider resolution reads: `upstream.rpc_url`,
/// else `upload.rpc_url` (one endpoint serves both when only one is set),
/// else the network's public endpoint.
pub fn resolve_rpc_url(c: &Config) -> String {
    c.upstream
        .rpc_url
        .clone()
        .or_else(|| c.upload.rpc_url.clone())
        .unwrap_or_else(|| c.upstream.network.default_rpc_url().to_string())
}

fn check_payer(c: &Config) -> Result<(), (&'static str, String)> {
    if let Some(p) = &c.upstream.payer {
        if !is_eth_address(p) {
            return Err((
                "upstream.payer",
                format!("invalid wallet address {p:?}: expected 0x followed by 40 hex digits"),
            ));
        }
    }
    Ok(())
}

fn check_payers(c: &Config) -> Result<(), (&'static str, String)> {
    if let Some(Payers::Only(list)) = &c.upstream.payers {
        for (i, p) in list.iter().enumerate() {
            if !is_eth_address(p) {
                return Err((
                    "upstream.payers",
                    format!(
                        "entry {i}: invalid wallet address {p:?}: expected 0x followed by 40 hex digits"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_upstream_urls(c: &Config) -> Result<(), (&'static str, String)> {
    let template = &c.upstream.beam_url;
    // Any `{...}` left after substituting the known placeholders is a typo.
    let probe = template
        .replace("{payer}", "0x0000000000000000000000000000000000000000")
        .replace("{network_domain}", c.upstream.network.beam_domain())
        .replace("{network}", c.upstream.network.as_str());
    if let Some(start) = probe.find('{') {
        let end = probe[start..]
            .find('}')
            .map(|e| start + e + 1)
            .unwrap_or(probe.len());
        return Err((
            "upstream.beam_url",
            format!(
                "unknown placeholder {} (use {{payer}}, {{network}} or {{network_domain}})",
                &probe[start..end]
            ),
        ));
    }
    check_http_url(&probe).map_err(|r| ("upstream.beam_url", r))?;
    for p in &c.upstream.providers {
        check_http_url(p).map_err(|r| ("upstream.providers", r))?;
    }
    Ok(())
}

fn check_beam_warm(c: &Config) -> Result<(), (&'static str, String)> {
    let max = c.upstream.beam_warm_max.0;
    if max == 0 || max > 64 << 30 {
        return Err((
            "upstream.beam_warm_max",
            format!("must be between 1 byte and 64GiB (the largest Filecoin piece is 1GiB padded), got {max}"),
        ));
    }
    if c.upstream.refusal_ttl.0 > Duration::from_secs(3600) {
        return Err((
            "upstream.refusal_ttl",
            "must be at most 1h: a payer who tops up or is cleared must not wait longer".into(),
        ));
    }
    Ok(())
}

fn check_timeouts(c: &Config) -> Result<(), (&'static str, String)> {
    if c.upstream.connect_timeout.0.is_zero() {
        return Err(("upstream.connect_timeout", "must be greater than 0".into()));
    }
    if c.upstream.read_timeout.0.is_zero() {
        return Err(("upstream.read_timeout", "must be greater than 0".into()));
    }
    if c.upstream.retries > 10 {
        return Err((
            "upstream.retries",
            format!("must be 0 to 10, got {}", c.upstream.retries),
        ));
    }
    Ok(())
}
