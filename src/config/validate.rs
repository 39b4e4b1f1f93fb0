//! Validation: every section's checks, run in a fixed order; the first
//! failure names its key. Also the value checks sections share.

use super::{access, admin, cache, cluster, server, upload, upstream, verify};
use super::{Config, ConfigError, POD_NAME_ENV};

/// One named validation: the failing key's path and the reason.
pub(super) type Check = fn(&Config) -> Result<(), (&'static str, String)>;

impl Config {
    /// Checks every value; the first failure names its key.
    pub fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let sections: [&[Check]; 7] = [
            upload::CHECKS,
            upstream::CHECKS,
            server::CHECKS,
            cache::CHECKS,
            admin::CHECKS,
            access::CHECKS,
            verify::CHECKS,
        ];
        for check in sections.into_iter().flatten() {
            check(self).map_err(|(path, reason)| ConfigError {
                source_name: source_name.to_string(),
                path: path.to_string(),
                reason,
            })?;
        }
        cluster::check_cluster(self).map_err(|(path, reason)| ConfigError {
            source_name: source_name.to_string(),
            path,
            reason,
        })?;
        access::check_lists(self).map_err(|(path, reason)| ConfigError {
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
        w.extend(access::warnings(self));
        w
    }
}

/// True for `0x` followed by exactly 40 hex digits.
pub fn is_eth_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn check_http_url(text: &str) -> Result<url::Url, String> {
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
