//! `access.*`: who may make the edge spend, and on what. The section is
//! empty until access controls are configured here.

use serde::{Deserialize, Serialize};

/// `access.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {}

/// The checks of `access.*`, in order.
pub(super) const CHECKS: &[super::validate::Check] = &[];
