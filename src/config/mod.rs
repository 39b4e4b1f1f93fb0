//! The YAML configuration: its model, loading and command-line overrides.
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
//!
//! Rooms: one file per section, each owning its model, defaults and checks
//! ([`server`], [`upstream`], [`cache`], [`cluster`], [`upload`], [`admin`]
//! for `admin.*` and `metrics.*`, [`access`]); [`units`] holds sizes and
//! durations; [`validate`] runs every section's checks in order. This module
//! imports nothing from the modules that read the configuration.

pub mod access;
pub mod admin;
pub mod cache;
pub mod cluster;
pub mod server;
pub mod units;
pub mod upload;
pub mod upstream;
mod validate;
pub mod verify;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::chain::Network;
pub use access::AccessConfig;
pub use admin::{AdminConfig, MetricsConfig, ADMIN_TOKEN_ENV};
pub use cache::{CacheConfig, DiskConfig, MAX_WINDOW, MIN_WINDOW};
pub use cluster::{ClusterConfig, PeerConfig, POD_NAME_ENV};
pub use server::{ServerConfig, TlsConfig};
pub use units::{ByteSize, HumanDuration};
pub use upload::{UploadConfig, MAX_UPLOAD_COPIES};
pub use upstream::{resolve_rpc_url, HedgeAfter, OnQuotaExhausted, Payers, UpstreamConfig};
pub use validate::is_eth_address;
pub use verify::{VerifyConfig, VerifyMode};

/// The documented default configuration, embedded in the binary.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../config/beam-edge.yaml");

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
    /// Who may make the edge spend: access control and limits.
    pub access: AccessConfig,
    /// How served bytes are checked against their PieceCID.
    pub verify: VerifyConfig,
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

#[cfg(test)]
mod tests;
