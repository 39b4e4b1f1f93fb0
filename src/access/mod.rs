//! Who may make this edge spend whose money: signed URLs ([`signed`]),
//! per-client limits ([`limits`]), per-payer egress budgets ([`budget`]),
//! and the client address behind trusted proxies ([`client_ip`]). Their
//! keys are `crate::config::access`.
//!
//! [`Access`] holds what the public service checks on every media request,
//! in this order, all before any upstream I/O: the client's request rate
//! (429), the link's signature (403), then, once the request is known to
//! need the upstream, the payer's budget (429). Every refusal is counted in
//! `beam_edge_access_refusals_total` by reason. What it is not: the
//! `access.denylist` of pieces (another module) or the payer allow-list
//! (`upstream.payers`, checked by the routes).

pub mod budget;
pub mod client_ip;
pub mod limits;
pub mod signed;

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics;

/// The access checks of the public service, built once from the config.
pub struct Access {
    /// Signed-URL keys (`None`: no key configured).
    pub signer: Option<signed::UrlSigner>,
    /// Refuse media requests without a valid signature.
    pub signatures_required: bool,
    /// Per-client request and byte rates.
    pub limits: limits::ClientLimits,
    /// Per-payer egress budgets (`None`: no budget); shared with the cache.
    pub egress: Option<Arc<budget::EgressBudget>>,
    /// How the client address is found.
    pub client_address: client_ip::ClientAddress,
}

impl Access {
    /// From a validated config.
    pub fn new(c: &Config) -> Result<Access, String> {
        let trusted = c
            .server
            .trusted_proxies
            .iter()
            .map(|p| crate::config::access::parse_proxy(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("server.trusted_proxies: {e}"))?;
        Ok(Access {
            signer: signed::UrlSigner::from_config(&c.access.signed_urls)?,
            signatures_required: c.access.signed_urls.required,
            limits: limits::ClientLimits::new(&c.access.limits),
            egress: budget::EgressBudget::new(
                &c.access.egress_budget,
                &c.beam_base_url().unwrap_or_default(),
            ),
            client_address: client_ip::ClientAddress::new(trusted),
        })
    }

    /// Checks a media request's signature when signatures are required.
    pub fn check_signature(
        &self,
        path: &str,
        query: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(), signed::SignatureRefusal> {
        if !self.signatures_required {
            return Ok(());
        }
        match &self.signer {
            Some(s) => s.verify(path, query, client, signed::unix_now()),
            // Config validation refuses `required` without keys.
            None => Err(signed::SignatureRefusal::Missing),
        }
    }
}

/// Counts one refusal by its reason label.
pub fn count_refusal(reason: &str) {
    metrics::ACCESS_REFUSALS.with_label_values(&[reason]).inc();
}

#[cfg(test)]
mod tests {
    /// The reasons `metrics::init` exports at 0 are the ones refusals use.
    #[test]
    fn every_refusal_reason_is_exported_from_start_up() {
        let mut used = super::signed::SignatureRefusal::LABELS.to_vec();
        used.extend([
            "client_request_rate",
            "egress_budget_hour",
            "egress_budget_day",
        ]);
        assert_eq!(used, crate::metrics::ACCESS_REFUSAL_REASONS.to_vec());
    }
}

/// Mints a signed link to `path` valid for `ttl`, bound to `ip` when
/// given, for `beam-edge sign` and `GET /admin/sign`. The path is
/// percent-encoded as a client will send it, and must be a media path.
pub fn mint(
    signer: Option<&signed::UrlSigner>,
    path: &str,
    ttl: std::time::Duration,
    ip: Option<IpAddr>,
) -> Result<signed::SignedLink, String> {
    let signer =
        signer.ok_or("no signing key: list one under access.signed_urls.keys in the config")?;
    let path = signed::encode_path(path.trim());
    let media = ["/piece/", "/asset/", "/beam/"];
    if !media.iter().any(|p| path.starts_with(p)) {
        return Err(format!(
            "cannot sign {path:?}: only /piece/…, /asset/… and /beam/… paths are checked (the query, if any, is not part of the path)"
        ));
    }
    if ttl.as_secs() == 0 {
        return Err("the lifetime must be at least 1s".into());
    }
    if ttl > signer.max_ttl() {
        return Err(format!(
            "a lifetime of {} is longer than access.signed_urls.max_ttl ({})",
            humantime::format_duration(ttl),
            humantime::format_duration(signer.max_ttl())
        ));
    }
    Ok(signer.sign(&path, signed::unix_now() + ttl.as_secs(), ip))
}
