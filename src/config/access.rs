//! `access.*`: who may make the edge spend, and on what.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Config;

/// `access.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Files in the Bad Bits format (`//<hex sha256 of "<cid>/">` per
    /// line) listing pieces never served (451), read again on SIGHUP.
    pub denylist: Vec<PathBuf>,
}

/// The checks of `access.*`, in order.
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
