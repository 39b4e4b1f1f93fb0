//! `verify.*`: how much of what is served must be checked against the
//! PieceCID (`mode`), and the layer builds that make it possible (largest
//! piece built, concurrency, hourly byte budget, delay, the strict wait).
//! What it is not: the checking itself (`crate::cache::build`, `layers`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{ByteSize, HumanDuration};
use super::Config;

pub(super) const CHECKS: &[super::validate::Check] = &[check_verify];

/// `verify.mode`: how much of what is served must be checked against the
/// PieceCID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// No unchecked byte is ever served: a read of a piece whose layer is not
    /// known waits for it to be built.
    Strict,
    /// Unchecked windows are served while the layer is built; then every
    /// window is checked, and wrong ones purged.
    #[default]
    Background,
    /// No layer is built and nothing is checked beyond status and length.
    Off,
}

/// `verify.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// `strict`, `background` or `off`.
    pub mode: VerifyMode,
    /// Largest piece (padded size) whose layer is built by reading it whole.
    pub build_max: ByteSize,
    /// Most layer builds running at once.
    pub build_concurrency: usize,
    /// Most bytes layer builds fetch from upstreams per hour (0: no builds).
    pub build_budget_per_hour: ByteSize,
    /// How long a read waits for a layer under `strict` before it is refused.
    pub strict_wait: HumanDuration,
    /// Under `background`, how long after the read that asked for it a
    /// layer build starts (so it never competes with a player's cold start).
    pub build_delay: HumanDuration,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            mode: VerifyMode::Background,
            build_max: ByteSize(1 << 30),
            build_concurrency: 2,
            build_budget_per_hour: ByteSize(100 << 30),
            strict_wait: HumanDuration(Duration::from_secs(300)),
            build_delay: HumanDuration(Duration::from_secs(30)),
        }
    }
}

fn check_verify(c: &Config) -> Result<(), (&'static str, String)> {
    let v = &c.verify;
    if v.build_max.0 > 64 << 30 {
        return Err((
            "verify.build_max",
            format!(
                "must be at most 64GiB (the largest piece), got {}",
                v.build_max.0
            ),
        ));
    }
    if !(1..=64).contains(&v.build_concurrency) {
        return Err((
            "verify.build_concurrency",
            format!("must be 1 to 64, got {}", v.build_concurrency),
        ));
    }
    if v.strict_wait.0.is_zero() {
        return Err((
            "verify.strict_wait",
            "must be more than 0 (a strict read waits this long for a layer)".into(),
        ));
    }
    if v.build_delay.0 > Duration::from_secs(3600) {
        return Err((
            "verify.build_delay",
            "must be at most 1h (a read's layer would wait too long)".into(),
        ));
    }
    if v.mode == VerifyMode::Strict && !c.cache.check_windows {
        return Err((
            "verify.mode",
            "strict needs cache.check_windows: true (nothing could be checked)".into(),
        ));
    }
    Ok(())
}
