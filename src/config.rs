//! The YAML configuration: its model, defaults, overrides and validation.
//!
//! The file format is parsed (serde_yaml, unknown keys rejected) into
//! [`Config`]; every parse or validation failure is a [`ConfigError`] that
//! names the offending key's path (`upstream.connect_timeout`) and the reason.
//! The documented default file `config/beam-edge.yaml` is embedded in the
//! binary ([`DEFAULT_CONFIG_YAML`]), so `beam-edge serve` runs with no file.
//!
//! Use [`Config::load`] (file or embedded default), then
//! [`Config::apply_overrides`] for command-line flags, then
//! [`Config::validate`]; [`Config::from_yaml`] does parse + validate for one
//! string.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// The documented default configuration, embedded in the binary.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../config/beam-edge.yaml");

/// Environment variable that overrides `admin.token`.
pub const ADMIN_TOKEN_ENV: &str = "BEAM_EDGE_ADMIN_TOKEN";

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the configuration came from (a file path or "embedded default").
    pub source_name: String,
    /// Dotted key path, e.g. `upstream.connect_timeout`; empty for the document.
    pub path: String,
    /// One-line reason.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.source_name, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.source_name, self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A size in bytes, written in YAML as `1MiB`, `10GiB`, `512KB` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"<number>[ ]<unit>"`; units B, KiB, MiB, GiB, TiB (binary) and
    /// KB, MB, GB, TB (decimal), case-insensitive.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(format!(
                "invalid size {text:?}: expected a number of bytes with an optional unit, like 512MiB"
            ));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {text:?}: number too large"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" | "k" => 1 << 10,
            "mib" | "m" => 1 << 20,
            "gib" | "g" => 1 << 30,
            "tib" | "t" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "invalid size {text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {text:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{}", self.0 / size, name);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 512MiB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A duration, written in YAML as `30s`, `500ms`, `5m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like 30s or 500ms")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required, like {v}s or {v}ms"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(v.trim())
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid duration {v:?}: {e} (use e.g. 30s, 500ms, 5m)"
                        ))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

/// The Filecoin network whose Beam domain is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Filecoin mainnet (chain id 314): `filbeam.io`.
    Mainnet,
    /// The calibration testnet (chain id 314159): `calibration.filbeam.io`.
    #[default]
    Calibration,
}

impl Network {
    /// Beam's retrieval domain on this network.
    pub fn beam_domain(self) -> &'static str {
        match self {
            Network::Mainnet => "filbeam.io",
            Network::Calibration => "calibration.filbeam.io",
        }
    }

    /// The name used in config and in `{network}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Calibration => "calibration",
        }
    }

    /// Parses `mainnet` or `calibration`.
    pub fn parse(s: &str) -> Result<Network, String> {
        match s {
            "mainnet" => Ok(Network::Mainnet),
            "calibration" => Ok(Network::Calibration),
            other => Err(format!(
                "unknown network {other:?}: use mainnet or calibration"
            )),
        }
    }
}

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

/// The whole configuration. Every key is optional: a missing key takes the
/// value of the embedded default file (a golden test keeps the two equal).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The public listener and process settings.
    pub server: ServerConfig,
    /// Where piece bytes come from.
    pub upstream: UpstreamConfig,
    /// The window cache (memory and disk tiers).
    pub cache: CacheConfig,
    /// The admin listener.
    pub admin: AdminConfig,
    /// The Prometheus listener.
    pub metrics: MetricsConfig,
    /// Uploads to a storage provider.
    pub upload: UploadConfig,
    /// Cluster mode: several replicas acting as one cache.
    pub cluster: ClusterConfig,
    /// Who may read what.
    pub access: AccessConfig,
}

/// `access.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Files in the Bad Bits format (`//<hex sha256 of "<cid>/">` per
    /// line) listing pieces never served (451), read again on SIGHUP.
    pub denylist: Vec<PathBuf>,
}

/// `upload.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// ServiceProviderRegistry id of the storage provider.
    pub provider_id: Option<u64>,
    /// Service URL to use instead of the registry's.
    pub provider_url: Option<String>,
    /// JSON-RPC endpoint; `None` uses the network's public endpoint.
    pub rpc_url: Option<String>,
    /// Payer key file; `None` reads `BEAM_EDGE_PRIVATE_KEY`.
    pub key_file: Option<PathBuf>,
    /// Largest piece in raw bytes.
    pub piece_size: ByteSize,
    /// Largest upload accepted.
    pub max_size: ByteSize,
    /// Add to this data set instead of finding or creating one.
    pub data_set: Option<u64>,
    /// Write uploads through the admin listener into the cache, so that the
    /// first play is a hit.
    pub warm_cache: bool,
    /// Copies of every upload, each at its own provider in its own `withCDN`
    /// data set (the reference SDK's default is 2); 1 turns the second copy off.
    pub copies: u32,
    /// Providers (registry ids) to ask for the extra copies, tried in order;
    /// empty picks active PDP providers from the ServiceProviderRegistry.
    pub copy_provider_ids: Vec<u64>,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            provider_id: None,
            provider_url: None,
            rpc_url: None,
            key_file: None,
            piece_size: ByteSize(1_065_353_216),
            max_size: ByteSize(64 << 30),
            data_set: None,
            warm_cache: true,
            copies: 2,
            copy_provider_ids: Vec::new(),
        }
    }
}

/// `server.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener address (`IP:port`).
    pub listen: SocketAddr,
    /// Worker threads of the public listener.
    pub threads: usize,
    /// How long in-flight requests may finish after SIGTERM.
    pub grace_period: HumanDuration,
    /// How long a kept-alive client connection may sit idle between requests.
    pub keepalive_timeout: HumanDuration,
    /// How long one response write may wait for a client that does not read.
    pub send_timeout: HumanDuration,
    /// TLS on the public listener (HTTP/2 and HTTP/1.1 by ALPN); null for plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Accept cleartext HTTP/2 (prior knowledge) on a plain listener.
    pub h2c: bool,
    /// Unix socket over which a new process (`serve --upgrade`) takes the listening sockets.
    pub upgrade_sock: PathBuf,
    /// File the serving process writes its pid to (for `kill -QUIT`); null for none.
    pub pid_file: Option<PathBuf>,
}

/// `server.tls.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key: PathBuf,
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
    /// tried after `providers` when Beam fails.
    pub resolve_providers: bool,
    /// JSON-RPC endpoint for provider resolution; `None` uses
    /// `upload.rpc_url`, else the network's public endpoint.
    pub rpc_url: Option<String>,
    /// How long a resolution (the chain's provider list, a piece's holders)
    /// is used before it is refreshed in the background.
    pub resolve_ttl: HumanDuration,
    /// How long a provider that answered 429 is skipped.
    pub provider_backoff: HumanDuration,
    /// When Beam answers a range with the whole piece (the piece is cold in
    /// its CDN), let that one response run to completion, filling this
    /// cache as it streams, so Beam warms; other reads of the piece go to
    /// the warm-up or to storage providers meanwhile, never to Beam.
    pub beam_warm: bool,
    /// Largest piece (padded size) warmed that way; larger pieces' cold
    /// answers are used near byte 0 and dropped for deep ranges.
    pub beam_warm_max: ByteSize,
    /// What a Beam 402 "egress quota exhausted" leads to: `refuse` (answer
    /// 402) or `providers` (serve from the storage providers, which bill
    /// nothing per byte here but carry the load).
    pub on_quota_exhausted: OnQuotaExhausted,
    /// How long a Beam refusal (Bad Bits, sanctioned, no CDN, quota) of a
    /// payer's piece is answered again without asking Beam.
    pub refusal_ttl: HumanDuration,
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

/// `cache.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Window size in padded bytes (power of two, 128KiB..=64MiB).
    pub window: ByteSize,
    /// Memory tier budget.
    pub memory: ByteSize,
    /// Windows read ahead of a forward-moving reader (0: no read-ahead).
    pub prefetch: u64,
    /// Most read-ahead fills running at once, process-wide.
    pub prefetch_concurrency: usize,
    /// Most windows one upstream request covers.
    pub run_windows: u64,
    /// Hash fetched windows and compare them with the PieceCID (or the
    /// piece's layer) before they are served whole or cached.
    pub check_windows: bool,
    /// Disk tier.
    pub disk: DiskConfig,
}

/// `cache.disk.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Directory of the disk tier.
    pub path: PathBuf,
    /// Budget; 0 disables the disk tier.
    pub size: ByteSize,
}

/// `admin.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Admin listener address.
    pub listen: SocketAddr,
    /// Bearer token; required when `listen` is not loopback.
    pub token: Option<String>,
}

/// `metrics.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus listener address.
    pub listen: SocketAddr,
}

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

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: addr("0.0.0.0:8080"),
            threads: 2,
            grace_period: HumanDuration(Duration::from_secs(10)),
            keepalive_timeout: HumanDuration(crate::edge::limits::KEEPALIVE_IDLE),
            send_timeout: HumanDuration(crate::edge::limits::SEND_TIMEOUT),
            tls: None,
            h2c: false,
            upgrade_sock: PathBuf::from("/tmp/beam-edge-upgrade.sock"),
            pid_file: None,
        }
    }
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
            resolve_providers: false,
            rpc_url: None,
            resolve_ttl: HumanDuration(Duration::from_secs(600)),
            provider_backoff: HumanDuration(Duration::from_secs(10)),
            beam_warm: true,
            beam_warm_max: ByteSize(1 << 30),
            on_quota_exhausted: OnQuotaExhausted::Refuse,
            refusal_ttl: HumanDuration(Duration::from_secs(30)),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            window: ByteSize(1 << 20),
            memory: ByteSize(256 << 20),
            prefetch: 4,
            prefetch_concurrency: 16,
            run_windows: 8,
            check_windows: true,
            disk: DiskConfig::default(),
        }
    }
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            path: PathBuf::from("./beam-edge-cache"),
            size: ByteSize(10 << 30),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: addr("127.0.0.1:8081"),
            token: None,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: addr("127.0.0.1:9464"),
        }
    }
}

/// Command-line overrides of config keys (`serve` flags).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` → `server.listen`.
    pub listen: Option<String>,
    /// `--upstream-url` → `upstream.beam_url`.
    pub upstream_url: Option<String>,
    /// `--payer` → `upstream.payer`.
    pub payer: Option<String>,
    /// `--network` → `upstream.network`.
    pub network: Option<String>,
}

/// Smallest and largest window, in padded bytes.
pub const MIN_WINDOW: u64 = 128 << 10;
/// Largest window, in padded bytes.
pub const MAX_WINDOW: u64 = 64 << 20;

impl Config {
    /// The embedded default configuration.
    pub fn embedded_default() -> Config {
        // The embedded file is covered by a golden test; failing here is a build defect.
        #[allow(clippy::expect_used)]
        Config::parse_yaml(DEFAULT_CONFIG_YAML, "embedded default")
            .expect("embedded default config parses")
    }

    /// Reads `path`, or the embedded default when `None`. Parses only:
    /// call [`Config::validate`] after applying overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::parse_yaml(DEFAULT_CONFIG_YAML, "embedded default"),
            Some(p) => {
                let name = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                    source_name: name.clone(),
                    path: String::new(),
                    reason: format!("cannot read the file: {e}"),
                })?;
                Config::parse_yaml(&text, &name)
            }
        }
    }

    /// Parses and validates one YAML document.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let cfg = Config::parse_yaml(text, source_name)?;
        cfg.validate(source_name)?;
        Ok(cfg)
    }

    /// Parses one YAML document into the model, without validation.
    pub fn parse_yaml(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut reason = inner.to_string();
            // serde_yaml may already prefix the path; say it once.
            if let Some((head, rest)) = reason.split_once(": ") {
                if !head.is_empty() && path.starts_with(head) {
                    reason = rest.to_string();
                }
            }
            // serde_yaml appends " at line L column C"; keep it, it helps.
            if reason.starts_with("missing field") || reason.starts_with("unknown field") {
                reason = reason.replace('`', "'");
            }
            ConfigError {
                source_name: source_name.to_string(),
                path: if path == "." { String::new() } else { path },
                reason,
            }
        })
    }

    /// Applies command-line overrides; a bad flag value is an error naming the key.
    pub fn apply_overrides(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        let err = |path: &str, reason: String| ConfigError {
            source_name: "command line".into(),
            path: path.into(),
            reason,
        };
        if let Some(l) = &o.listen {
            self.server.listen = l.parse().map_err(|_| {
                err(
                    "server.listen",
                    format!("invalid address {l:?}: expected IP:port, like 0.0.0.0:8080"),
                )
            })?;
        }
        if let Some(u) = &o.upstream_url {
            self.upstream.beam_url = u.clone();
        }
        if let Some(p) = &o.payer {
            self.upstream.payer = Some(p.clone());
        }
        if let Some(n) = &o.network {
            self.upstream.network = Network::parse(n).map_err(|r| err("upstream.network", r))?;
        }
        if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV) {
            if !token.is_empty() {
                self.admin.token = Some(token);
            }
        }
        Ok(())
    }

    /// Checks every value; the first failure names its key.
    pub fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let checks: &[Check] = &[
            check_upload,
            check_provider_resolution,
            check_tls,
            check_upgrade,
            check_threads,
            check_grace_period,
            check_connection_timeouts,
            check_payer,
            check_payers,
            check_upstream_urls,
            check_timeouts,
            check_cache,
            check_listeners,
            check_access,
        ];
        for check in checks {
            check(self).map_err(|(path, reason)| ConfigError {
                source_name: source_name.to_string(),
                path: path.to_string(),
                reason,
            })?;
        }
        check_cluster(self).map_err(|(path, reason)| ConfigError {
            source_name: source_name.to_string(),
            path,
            reason,
        })?;
        Ok(())
    }

    /// Non-fatal remarks an operator should see (printed by `check-config` and at start-up).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.cluster.enabled && self.cluster.resolved_self().is_none() {
            w.push(format!(
                "cluster.self is not set and {POD_NAME_ENV} is empty: `serve` will not start in cluster mode"
            ));
        }
        if self.upstream.payer.is_none() && self.upstream.beam_url.contains("{payer}") {
            w.push(
                "upstream.payer is not set: /piece/<cid> answers 503 until it is (set it in the file or with --payer); /beam/<payer>/<cid> names the payer per request"
                    .to_string(),
            );
        }
        w
    }

    /// The payer as it goes into URLs (lowercase), if set.
    pub fn payer(&self) -> Option<String> {
        self.upstream.payer.as_ref().map(|p| p.to_ascii_lowercase())
    }

    /// The Beam base URL with its placeholders filled in, or `None` when it
    /// needs `{payer}` and no payer is set.
    pub fn beam_base_url(&self) -> Option<String> {
        let u = &self.upstream;
        let needs_payer = u.beam_url.contains("{payer}");
        let payer = self.payer();
        if needs_payer && payer.is_none() {
            return None;
        }
        let filled = u
            .beam_url
            .replace("{payer}", payer.as_deref().unwrap_or(""))
            .replace("{network_domain}", u.network.beam_domain())
            .replace("{network}", u.network.as_str());
        Some(filled.trim_end_matches('/').to_string())
    }

    /// Who a request may bill through `/beam/<payer>/…`: `upstream.payers`
    /// when set, else anyone while `upstream.payer` is unset (so an edge
    /// with no config plays any public Beam link), else only that payer.
    pub fn payer_policy(&self) -> Payers {
        match (&self.upstream.payers, &self.upstream.payer) {
            (Some(p), _) => p.clone(),
            (None, None) => Payers::Any,
            (None, Some(p)) => Payers::Only(vec![p.clone()]),
        }
    }

    /// The Beam base URL for `payer` (a checked 0x address) on `network`,
    /// or `None` when `upstream.beam_url` has no `{payer}` (the request's
    /// payer could not reach Beam, so it must not be pretended to).
    pub fn beam_base_url_for(&self, payer: &str, network: Network) -> Option<String> {
        let template = &self.upstream.beam_url;
        if !template.contains("{payer}") {
            return None;
        }
        let filled = template
            .replace("{payer}", &payer.to_ascii_lowercase())
            .replace("{network_domain}", network.beam_domain())
            .replace("{network}", network.as_str());
        Some(filled.trim_end_matches('/').to_string())
    }

    /// True when `upstream.beam_url` varies with the network, so a request
    /// may name a network other than `upstream.network`.
    pub fn beam_url_names_network(&self) -> bool {
        let t = &self.upstream.beam_url;
        t.contains("{network}") || t.contains("{network_domain}")
    }

    /// Window size in raw (unpadded) bytes: 127/128 of `cache.window`.
    pub fn window_raw_bytes(&self) -> u64 {
        self.cache.window.0 / 128 * 127
    }
}

/// One named validation: the failing key's path and the reason.
type Check = fn(&Config) -> Result<(), (&'static str, String)>;

fn check_threads(c: &Config) -> Result<(), (&'static str, String)> {
    if !(1..=256).contains(&c.server.threads) {
        return Err((
            "server.threads",
            format!("must be 1 to 256, got {}", c.server.threads),
        ));
    }
    Ok(())
}

fn check_tls(c: &Config) -> Result<(), (&'static str, String)> {
    if let Some(tls) = &c.server.tls {
        crate::tls::load_certified_key(&tls.cert, &tls.key).map_err(|e| (e.key, e.reason))?;
    }
    Ok(())
}

fn check_upgrade(c: &Config) -> Result<(), (&'static str, String)> {
    if c.server.upgrade_sock.as_os_str().is_empty() {
        return Err(("server.upgrade_sock", "must not be empty".into()));
    }
    // sun_path holds 108 bytes on Linux, including the terminating NUL.
    if c.server.upgrade_sock.as_os_str().len() > 107 {
        return Err((
            "server.upgrade_sock",
            "must be at most 107 bytes (a Unix socket path)".into(),
        ));
    }
    if c.server
        .pid_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return Err((
            "server.pid_file",
            "must not be empty (null for none)".into(),
        ));
    }
    Ok(())
}

fn check_grace_period(c: &Config) -> Result<(), (&'static str, String)> {
    if c.server.grace_period.0 > Duration::from_secs(3600) {
        return Err(("server.grace_period", "must be at most 1h".into()));
    }
    Ok(())
}

/// Pingora keeps keep-alive timeouts in whole seconds (0 would mean "no
/// limit"), so both are 1 s to 1 h.
fn check_connection_timeouts(c: &Config) -> Result<(), (&'static str, String)> {
    for (key, value) in [
        ("server.keepalive_timeout", c.server.keepalive_timeout.0),
        ("server.send_timeout", c.server.send_timeout.0),
    ] {
        if value < Duration::from_secs(1) || value > Duration::from_secs(3600) {
            return Err((key, format!("must be 1s to 1h, got {value:?}")));
        }
    }
    Ok(())
}

/// True for `0x` followed by exactly 40 hex digits.
pub fn is_eth_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
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

fn check_http_url(text: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!(
            "invalid URL {text:?}: scheme must be http or https"
        ));
    }
    if u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(format!("invalid URL {text:?}: no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "invalid URL {text:?}: must not have a query or fragment"
        ));
    }
    Ok(u)
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

fn check_upload(c: &Config) -> Result<(), (&'static str, String)> {
    let u = &c.upload;
    if !(254..=1_065_353_216).contains(&u.piece_size.0) {
        return Err((
            "upload.piece_size",
            format!(
                "must be 254 to 1065353216 bytes (a piece's capacity), got {}",
                u.piece_size.0
            ),
        ));
    }
    if u.max_size.0 < 127 {
        return Err(("upload.max_size", "must be at least 127 bytes".into()));
    }
    if let Some(url) = &u.provider_url {
        check_http_url(url).map_err(|r| ("upload.provider_url", r))?;
    }
    if let Some(url) = &u.rpc_url {
        check_http_url(url).map_err(|r| ("upload.rpc_url", r))?;
    }
    if !(1..=MAX_UPLOAD_COPIES).contains(&u.copies) {
        return Err((
            "upload.copies",
            format!(
                "must be 1 to {MAX_UPLOAD_COPIES} (1 turns extra copies off), got {}",
                u.copies
            ),
        ));
    }
    if let Some(id) = u
        .copy_provider_ids
        .iter()
        .find(|id| Some(**id) == u.provider_id)
    {
        return Err((
            "upload.copy_provider_ids",
            format!("{id} is upload.provider_id: a copy must be at another provider"),
        ));
    }
    Ok(())
}

/// Most copies `upload.copies` allows: each is a data set and a set of fees.
pub const MAX_UPLOAD_COPIES: u32 = 4;

fn check_provider_resolution(c: &Config) -> Result<(), (&'static str, String)> {
    let u = &c.upstream;
    if let Some(url) = &u.rpc_url {
        check_http_url(url).map_err(|r| ("upstream.rpc_url", r))?;
    }
    if u.resolve_providers && u.payer.is_none() {
        return Err((
            "upstream.resolve_providers",
            "needs upstream.payer: the payer's data sets say which providers hold its pieces"
                .into(),
        ));
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
        .unwrap_or_else(|| {
            crate::upload::publish::chain_network(c)
                .default_rpc_url()
                .to_string()
        })
}

fn check_timeouts(c: &Config) -> Result<(), (&'static str, String)> {
    if c.upstream.connect_timeout.0.is_zero() {
        return Err(("upstream.connect_timeout", "must be greater than 0".into()));
    }
    if c.upstream.read_timeout.0.is_zero() {
        return Err(("upstream.read_timeout", "must be greater than 0".into()));
    }
    check_beam_warm(c)
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

fn check_cache(c: &Config) -> Result<(), (&'static str, String)> {
    if !(1..=64).contains(&c.cache.run_windows) {
        return Err((
            "cache.run_windows",
            format!("must be 1 to 64, got {}", c.cache.run_windows),
        ));
    }
    if c.cache.prefetch > 64 {
        return Err((
            "cache.prefetch",
            format!("must be 0 to 64, got {}", c.cache.prefetch),
        ));
    }
    if c.cache.prefetch > 0 && c.cache.prefetch_concurrency == 0 {
        return Err((
            "cache.prefetch_concurrency",
            "must be at least 1 while cache.prefetch is on".into(),
        ));
    }
    if c.upstream.retries > 10 {
        return Err((
            "upstream.retries",
            format!("must be 0 to 10, got {}", c.upstream.retries),
        ));
    }
    let w = c.cache.window.0;
    if !w.is_power_of_two() || !(MIN_WINDOW..=MAX_WINDOW).contains(&w) {
        return Err((
            "cache.window",
            format!(
                "must be a power of two from 128KiB to 64MiB, got {}",
                c.cache.window
            ),
        ));
    }
    if c.cache.memory.0 < w {
        return Err((
            "cache.memory",
            format!(
                "must hold at least one window ({}), got {}",
                c.cache.window, c.cache.memory
            ),
        ));
    }
    if c.cache.disk.size.0 != 0 && c.cache.disk.size.0 < w {
        return Err((
            "cache.disk.size",
            format!(
                "must be 0 (off) or at least one window ({}), got {}",
                c.cache.window, c.cache.disk.size
            ),
        ));
    }
    if c.cache.disk.size.0 != 0 && c.cache.disk.path.as_os_str().is_empty() {
        return Err((
            "cache.disk.path",
            "must not be empty while cache.disk.size is not 0".into(),
        ));
    }
    Ok(())
}

fn check_access(c: &Config) -> Result<(), (&'static str, String)> {
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

fn check_listeners(c: &Config) -> Result<(), (&'static str, String)> {
    if c.admin.listen.port() == c.server.listen.port() {
        return Err((
            "admin.listen",
            format!(
                "must not share port {} with server.listen",
                c.admin.listen.port()
            ),
        ));
    }
    if c.metrics.listen.port() == c.server.listen.port() {
        return Err((
            "metrics.listen",
            format!(
                "must not share port {} with server.listen",
                c.metrics.listen.port()
            ),
        ));
    }
    if c.metrics.listen.port() == c.admin.listen.port() {
        return Err((
            "metrics.listen",
            format!(
                "must not share port {} with admin.listen",
                c.metrics.listen.port()
            ),
        ));
    }
    if let Some(t) = &c.admin.token {
        if t.len() < 16 {
            return Err(("admin.token", "must be at least 16 characters".into()));
        }
    }
    if !c.admin.listen.ip().is_loopback() && c.admin.token.is_none() {
        return Err((
            "admin.token",
            format!(
                "required because admin.listen ({}) is not a loopback address (or set {ADMIN_TOKEN_ENV})",
                c.admin.listen
            ),
        ));
    }
    Ok(())
}

/// `cluster.*`, checked only while cluster mode is on. Paths name the
/// offending list entry (`cluster.peers[2].name`).
fn check_cluster(c: &Config) -> Result<(), (String, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("1MiB"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("10GiB"), Ok(ByteSize(10 << 30)));
        assert_eq!(ByteSize::parse("512 KiB"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("2MB"), Ok(ByteSize(2_000_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("MiB")
            .unwrap_err()
            .contains("expected a number"));
        assert!(ByteSize::parse("3 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(ByteSize::parse("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn embedded_default_is_valid_and_matches_the_contract() {
        let c = Config::from_yaml(DEFAULT_CONFIG_YAML, "embedded").unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.server.threads, 2);
        assert_eq!(c.server.grace_period.0, Duration::from_secs(10));
        assert_eq!(c.server.keepalive_timeout.0, Duration::from_secs(60));
        assert_eq!(c.server.send_timeout.0, Duration::from_secs(60));
        assert_eq!(c.upstream.beam_url, "https://{payer}.{network_domain}");
        assert_eq!(c.upstream.payer, None);
        assert_eq!(c.upstream.network, Network::Calibration);
        assert!(c.upstream.providers.is_empty());
        assert_eq!(c.upstream.connect_timeout.0, Duration::from_secs(5));
        assert_eq!(c.upstream.read_timeout.0, Duration::from_secs(30));
        assert_eq!(c.cache.window, ByteSize(1 << 20));
        assert_eq!(c.cache.memory, ByteSize(256 << 20));
        assert_eq!(c.cache.disk.path, PathBuf::from("./beam-edge-cache"));
        assert_eq!(c.cache.disk.size, ByteSize(10 << 30));
        assert_eq!(c.admin.listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.admin.token, None);
        assert_eq!(c.metrics.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(c.window_raw_bytes(), 1_040_384);
        assert_eq!(c.beam_base_url(), None);
        assert_eq!(c.warnings().len(), 1);
        // Missing keys take these same values.
        assert_eq!(c, Config::default());
        assert_eq!(Config::from_yaml("", "empty").unwrap(), c);
        let partial = Config::from_yaml("upstream:\n  network: mainnet\n", "partial").unwrap();
        assert_eq!(partial.upstream.network, Network::Mainnet);
        assert_eq!(partial.upstream.read_timeout, c.upstream.read_timeout);
        assert_eq!(partial.server, c.server);
    }

    #[test]
    fn payer_policy_defaults_to_any_without_a_payer() {
        let mut c = Config::embedded_default();
        assert_eq!(c.upstream.payers, None);
        assert_eq!(c.payer_policy(), Payers::Any);
        let mine = "0x00000000000000000000000000000000000000AA";
        c.upstream.payer = Some(mine.into());
        assert_eq!(c.payer_policy(), Payers::Only(vec![mine.into()]));
        assert!(c.payer_policy().allows(&mine.to_ascii_lowercase()));
        assert!(!c
            .payer_policy()
            .allows("0x00000000000000000000000000000000000000bb"));
        let parsed = Config::from_yaml("upstream:\n  payers: any\n", "t").unwrap();
        assert_eq!(parsed.upstream.payers, Some(Payers::Any));
        let parsed = Config::from_yaml("upstream:\n  payers: []\n", "t").unwrap();
        assert!(!parsed.payer_policy().allows_some());
        assert_eq!(
            c.beam_base_url_for(mine, Network::Mainnet).unwrap(),
            "https://0x00000000000000000000000000000000000000aa.filbeam.io"
        );
        c.upstream.beam_url = "http://127.0.0.1:9/".into();
        assert_eq!(c.beam_base_url_for(mine, Network::Mainnet), None);
    }

    #[test]
    fn connection_timeouts_are_bounded_and_named() {
        for (yaml, key) in [
            (
                "server:\n  keepalive_timeout: 0s\n",
                "server.keepalive_timeout",
            ),
            ("server:\n  send_timeout: 2h\n", "server.send_timeout"),
            ("server:\n  send_timeout: 500ms\n", "server.send_timeout"),
        ] {
            let e = Config::from_yaml(yaml, "t.yaml").unwrap_err();
            assert_eq!(e.path, key, "{yaml}");
            assert!(e.reason.contains("1s to 1h"), "{}", e.reason);
        }
        let c = Config::from_yaml("server:\n  keepalive_timeout: 2s\n", "t.yaml").unwrap();
        assert_eq!(c.server.keepalive_timeout.0, Duration::from_secs(2));
    }

    #[test]
    fn beam_url_placeholders_are_filled() {
        let mut c = Config::embedded_default();
        c.upstream.payer = Some("0xAbCdEf0123456789abcdef0123456789ABCDEF01".into());
        assert_eq!(
            c.beam_base_url().unwrap(),
            "https://0xabcdef0123456789abcdef0123456789abcdef01.calibration.filbeam.io"
        );
        c.upstream.network = Network::Mainnet;
        assert_eq!(
            c.beam_base_url().unwrap(),
            "https://0xabcdef0123456789abcdef0123456789abcdef01.filbeam.io"
        );
        c.upstream.beam_url = "http://127.0.0.1:9/{network}/".into();
        assert_eq!(c.beam_base_url().unwrap(), "http://127.0.0.1:9/mainnet");
    }

    fn with(from: &str, to: &str) -> Result<Config, ConfigError> {
        assert!(
            DEFAULT_CONFIG_YAML.contains(from),
            "fixture {from:?} not in default config"
        );
        Config::from_yaml(&DEFAULT_CONFIG_YAML.replacen(from, to, 1), "test.yaml")
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = with("connect_timeout: 5s", "connect_timeout: 5x").unwrap_err();
        assert_eq!(e.path, "upstream.connect_timeout");
        assert!(
            e.to_string()
                .starts_with("test.yaml: upstream.connect_timeout: invalid duration"),
            "{e}"
        );

        let e = with("  threads: 2", "  threads: 2\n  thread: 3").unwrap_err();
        assert_eq!(e.path, "server.thread");
        assert!(e.reason.contains("unknown field 'thread'"), "{e}");

        let e = with("window: 1MiB", "window: 3MiB").unwrap_err();
        assert_eq!(e.path, "cache.window");

        let e = with("size: 10GiB", "size: lots").unwrap_err();
        assert_eq!(e.path, "cache.disk.size");

        let e = with("listen: \"0.0.0.0:8080\"", "listen: \"localhost\"").unwrap_err();
        assert_eq!(e.path, "server.listen");

        let e = with("network: calibration", "network: testnet").unwrap_err();
        assert_eq!(e.path, "upstream.network");

        let e = with("payer: null", "payer: \"0x12\"").unwrap_err();
        assert_eq!(e.path, "upstream.payer");

        let e = with(
            "payers: null",
            "payers: [\"0x00000000000000000000000000000000000000aa\", \"0xzz\"]",
        )
        .unwrap_err();
        assert_eq!(e.path, "upstream.payers");
        assert!(
            e.reason.contains("entry 1") && e.reason.contains("0xzz"),
            "{e}"
        );

        let e = with("payers: null", "payers: everyone").unwrap_err();
        assert_eq!(e.path, "upstream.payers");
        assert!(e.reason.contains("`any`"), "{e}");

        let e = with("{network_domain}\"", "{netwrok}\"").unwrap_err();
        assert_eq!(e.path, "upstream.beam_url");
        assert!(e.reason.contains("{netwrok}"), "{e}");

        let e = with("providers: []", "providers: [\"ftp://x\"]").unwrap_err();
        assert_eq!(e.path, "upstream.providers");

        let e = with("listen: \"127.0.0.1:8081\"", "listen: \"0.0.0.0:8081\"").unwrap_err();
        assert_eq!(e.path, "admin.token");

        let e = with("listen: \"127.0.0.1:9464\"", "listen: \"127.0.0.1:8081\"").unwrap_err();
        assert_eq!(e.path, "metrics.listen");

        let e = with("read_timeout: 30s", "read_timeout: 0s").unwrap_err();
        assert_eq!(e.path, "upstream.read_timeout");
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let mut c = Config::embedded_default();
        c.apply_overrides(&Overrides {
            listen: Some("127.0.0.1:1234".into()),
            upstream_url: Some("http://127.0.0.1:9/{payer}".into()),
            payer: Some("0x00000000000000000000000000000000000000aa".into()),
            network: Some("mainnet".into()),
        })
        .unwrap();
        c.validate("x").unwrap();
        assert_eq!(c.server.listen.port(), 1234);
        assert_eq!(c.upstream.network, Network::Mainnet);
        assert_eq!(
            c.beam_base_url().unwrap(),
            "http://127.0.0.1:9/0x00000000000000000000000000000000000000aa"
        );
        let e = c
            .apply_overrides(&Overrides {
                network: Some("moon".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.path, "upstream.network");
        assert_eq!(e.source_name, "command line");
    }

    #[test]
    fn provider_resolution_keys_are_checked_and_name_their_key() {
        let c = Config::from_yaml(DEFAULT_CONFIG_YAML, "embedded").unwrap();
        assert!(!c.upstream.resolve_providers);
        assert_eq!(c.upstream.rpc_url, None);
        assert_eq!(c.upstream.resolve_ttl.0, Duration::from_secs(600));
        assert_eq!(c.upstream.provider_backoff.0, Duration::from_secs(10));
        // One endpoint for both when only upload.rpc_url is set.
        assert_eq!(
            resolve_rpc_url(&c),
            "https://api.calibration.node.glif.io/rpc/v1"
        );
        let mut u = c.clone();
        u.upload.rpc_url = Some("http://127.0.0.1:1/rpc".into());
        assert_eq!(resolve_rpc_url(&u), "http://127.0.0.1:1/rpc");
        u.upstream.rpc_url = Some("http://127.0.0.1:2/rpc".into());
        assert_eq!(resolve_rpc_url(&u), "http://127.0.0.1:2/rpc");

        let bad = |yaml: &str| {
            Config::from_yaml(yaml, "t")
                .and_then(|c| c.validate("t").map(|_| c))
                .unwrap_err()
                .path
        };
        assert_eq!(
            bad("upstream:\n  resolve_providers: true\n"),
            "upstream.resolve_providers"
        );
        assert_eq!(
            bad("upstream:\n  rpc_url: \"ftp://x\"\n"),
            "upstream.rpc_url"
        );
        assert_eq!(
            bad("upstream:\n  resolve_ttl: 0s\n"),
            "upstream.resolve_ttl"
        );
        assert_eq!(
            bad("upstream:\n  provider_backoff: 2h\n"),
            "upstream.provider_backoff"
        );
        let ok = Config::from_yaml(
            "upstream:\n  payer: \"0x00000000000000000000000000000000000000aa\"\n  resolve_providers: true\n",
            "t",
        )
        .unwrap();
        assert!(ok.validate("t").is_ok());
    }

    fn cluster_yaml(extra: &str) -> String {
        format!("cluster:\n  enabled: true\n  self: a\n  peer_listen: \"127.0.0.1:7000\"\n{extra}")
    }

    #[test]
    fn cluster_config_is_checked_when_enabled() {
        let peers = "  peers:\n    - { name: a, addr: \"127.0.0.2:7000\" }\n    - { name: b, addr: \"127.0.0.3:7000\" }\n";
        let c = Config::from_yaml(&cluster_yaml(peers), "x").unwrap();
        assert_eq!(c.cluster.peers.len(), 2);
        assert_eq!(c.cluster.resolved_self().as_deref(), Some("a"));
        let e = Config::from_yaml(&cluster_yaml(""), "x").unwrap_err();
        assert_eq!(e.path, "cluster.peers");
        let dup = "  peers:\n    - { name: a, addr: \"127.0.0.2:7000\" }\n    - { name: a, addr: \"127.0.0.3:7000\" }\n";
        let e = Config::from_yaml(&cluster_yaml(dup), "x").unwrap_err();
        assert_eq!(e.path, "cluster.peers[1].name");
        let stranger = "  peers:\n    - { name: b, addr: \"127.0.0.2:7000\" }\n";
        let e = Config::from_yaml(&cluster_yaml(stranger), "x").unwrap_err();
        assert_eq!(e.path, "cluster.self");
        let both =
            "  peers:\n    - { name: a, addr: \"127.0.0.2:7000\" }\n  dns_srv: _peer._tcp.x\n";
        let e = Config::from_yaml(&cluster_yaml(both), "x").unwrap_err();
        assert_eq!(e.path, "cluster.dns_srv");
        let srv = "  dns_srv: _peer._tcp.edge.default.svc.cluster.local\n  nameserver: \"127.0.0.1:5353\"\n";
        Config::from_yaml(&cluster_yaml(srv), "x").unwrap();
        let clash = "  dns_srv: x.y\n  peer_listen: \"127.0.0.1:8080\"\n";
        let e = Config::from_yaml(
            &format!("cluster:\n  enabled: true\n  self: a\n{clash}"),
            "x",
        )
        .unwrap_err();
        assert_eq!(e.path, "cluster.peer_listen");
        let e = Config::from_yaml(&cluster_yaml("  dns_srv: x.y\n  hot_share: 101\n"), "x")
            .unwrap_err();
        assert_eq!(e.path, "cluster.hot_share");
        let e = Config::from_yaml("cluster:\n  enabeld: true\n", "x").unwrap_err();
        assert!(e.path.starts_with("cluster"), "{e}");
        // Off: nothing else is required.
        Config::from_yaml("cluster:\n  enabled: false\n", "x").unwrap();
    }
}
