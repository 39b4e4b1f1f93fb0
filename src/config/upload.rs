//! `upload.*`: uploads to storage providers (provider, RPC, key, piece size,
//! copies).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::units::ByteSize;
use super::validate::check_http_url;
use super::Config;

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

/// Most copies `upload.copies` allows: each is a data set and a set of fees.
pub const MAX_UPLOAD_COPIES: u32 = 4;

/// The checks of `upload.*`, in order.
pub(super) const CHECKS: &[super::validate::Check] = &[check_upload];

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
