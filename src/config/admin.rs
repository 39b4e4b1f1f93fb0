//! `admin.*` (the admin listener and its token) and `metrics.*` (the
//! Prometheus listener), and the check that the listeners do not collide.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::units::addr;
use super::Config;

/// Environment variable that overrides `admin.token`.
pub const ADMIN_TOKEN_ENV: &str = "BEAM_EDGE_ADMIN_TOKEN";

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

/// The checks of `admin.*` and `metrics.*`, in order.
pub(super) const CHECKS: &[super::validate::Check] = &[check_listeners];

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
