//! Planning a download: what the target names (a PieceCID, an asset id or a
//! URL), which pieces it is made of, their sizes, and where each is fetched.

use std::path::Path;

use super::transfer::{fetch_range, probe_size};
use super::GetError;
use super::GetOptions;
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::piece::commp::commp_of;
use crate::piece::{CidVersion, PieceCid};

/// One piece to fetch and check: where its bytes are and what they must hash to.
#[derive(Debug, Clone)]
pub(super) struct PiecePlan {
    pub(super) cid: PieceCid,
    pub(super) url: String,
    pub(super) size: u64,
}

/// How a URL for a piece is made from its CID: `prefix + cid + suffix`.
#[derive(Debug, Clone)]
pub(super) struct PieceUrls {
    pub(super) prefix: String,
    pub(super) suffix: String,
}

impl PieceUrls {
    pub(super) fn under(base: &str, path: &str) -> PieceUrls {
        PieceUrls {
            prefix: format!("{}{path}", base.trim_end_matches('/')),
            suffix: String::new(),
        }
    }

    pub(super) fn of(&self, cid: &PieceCid) -> String {
        format!("{}{cid}{}", self.prefix, self.suffix)
    }
}

/// A resolved target: the pieces in file order and the default file name.
pub(super) struct Plan {
    pub(super) pieces: Vec<PiecePlan>,
    pub(super) name: String,
    pub(super) what: String,
}

pub(super) fn parse_cid(s: &str) -> Result<PieceCid, GetError> {
    PieceCid::parse(s).map_err(|e| {
        GetError::BadTarget(format!(
            "invalid PieceCID or asset id \"{s}\": {e} (give a PieceCID bafkzcib…/baga6ea4seaq…, an asset id, or an http(s) URL)"
        ))
    })
}

/// Splits a URL target into where its pieces live, the CID it names, and
/// whether it names an asset (`…/asset/<id>`).
pub(super) fn parse_url_target(target: &str) -> Result<(PieceUrls, PieceCid, bool), GetError> {
    let url = url::Url::parse(target)
        .map_err(|e| GetError::BadTarget(format!("invalid URL \"{target}\": {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(GetError::BadTarget(format!(
            "invalid URL \"{target}\": only http:// and https:// URLs with a host are supported"
        )));
    }
    let segments: Vec<&str> = url.path().split('/').collect();
    // An edge's /asset/<id>: the pieces are at the same edge's /piece/<cid>.
    if let Some(i) = segments.iter().position(|s| *s == "asset") {
        if let Some(id) = segments.get(i + 1).filter(|s| !s.is_empty()) {
            let cid = parse_cid(id)?;
            let mut base = url.clone();
            base.set_path(&segments[..i].join("/"));
            base.set_query(None);
            let base = base.as_str().trim_end_matches('/').to_string();
            return Ok((PieceUrls::under(&base, "/piece/"), cid, true));
        }
    }
    // Otherwise the last segment that is a PieceCID (Beam ignores segments
    // after it, e.g. /<cid>/name.mp4).
    for (i, seg) in segments.iter().enumerate().rev() {
        if let Ok(cid) = PieceCid::parse(seg) {
            let prefix_path = format!("{}/", segments[..i].join("/"));
            let mut prefix = url.clone();
            prefix.set_path(&prefix_path);
            prefix.set_query(None);
            let rest = segments[i + 1..].join("/");
            let mut suffix = if rest.is_empty() {
                String::new()
            } else {
                format!("/{rest}")
            };
            if let Some(q) = url.query() {
                suffix.push('?');
                suffix.push_str(q);
            }
            return Ok((
                PieceUrls {
                    prefix: prefix.as_str().to_string(),
                    suffix,
                },
                cid,
                false,
            ));
        }
    }
    Err(GetError::BadTarget(format!(
        "URL \"{target}\" names no PieceCID (…/piece/<cid>, …/asset/<id> or Beam's …/<cid>): there would be nothing to verify the bytes against"
    )))
}

/// Resolves the target into pieces. A v2 CID small enough to be a manifest
/// whose first byte is `{` is fetched whole, hashed against its CID and
/// parsed: an asset manifest makes the target an asset.
pub(super) async fn plan(client: &reqwest::Client, o: &GetOptions) -> Result<Plan, GetError> {
    let target = o.target.trim();
    let (urls, cid, asset_url) = if target.starts_with("http://") || target.starts_with("https://")
    {
        parse_url_target(target)?
    } else if target.contains("://") {
        return Err(GetError::BadTarget(format!(
            "invalid URL \"{target}\": only http:// and https:// are supported"
        )));
    } else {
        let cid = parse_cid(target)?;
        let urls = if let Some(edge) = &o.edge {
            PieceUrls::under(edge, "/piece/")
        } else if let Some(p) = &o.provider {
            PieceUrls::under(p, "/piece/")
        } else if let Some(b) = &o.beam {
            PieceUrls::under(b, "/")
        } else {
            return Err(GetError::NoSource(cid.to_string()));
        };
        (urls, cid, false)
    };
    let manifest_candidate = !o.piece_only
        && cid.version() == CidVersion::V2
        && cid.payload_size().is_some_and(|s| s <= MAX_MANIFEST_BYTES);
    let url = urls.of(&cid);
    if asset_url && !manifest_candidate {
        return Err(GetError::Manifest {
            id: cid.to_string(),
            reason: "an asset id is the v2 PieceCID of a manifest of at most 64 MiB".into(),
        });
    }
    if manifest_candidate {
        let size = cid.payload_size().unwrap_or(0);
        let first = fetch_range(client, &url, 0, 0, Some(size), None).await?;
        if first.first() == Some(&b'{') {
            let bytes = fetch_range(client, &url, 0, size - 1, Some(size), None).await?;
            let got = commp_of(&bytes).map_err(|e| GetError::Other(e.to_string()))?;
            if got != cid {
                return Err(GetError::Manifest {
                    id: cid.to_string(),
                    reason: format!(
                        "its bytes hash to {got}, not to the id: the source sent wrong bytes"
                    ),
                });
            }
            match Manifest::parse(&bytes) {
                Ok(m) => return asset_plan(&urls, &cid, &m),
                Err(e) if asset_url => {
                    return Err(GetError::Manifest {
                        id: cid.to_string(),
                        reason: e.to_string(),
                    })
                }
                Err(_) => {} // a JSON file that is no manifest: a piece
            }
        } else if asset_url {
            return Err(GetError::Manifest {
                id: cid.to_string(),
                reason: "this piece is not an asset manifest".into(),
            });
        }
    }
    let size = match cid.payload_size() {
        Some(s) => s,
        None => probe_size(client, &url).await?,
    };
    Ok(Plan {
        pieces: vec![PiecePlan {
            cid: cid.clone(),
            url,
            size,
        }],
        name: cid.to_string(),
        what: format!("piece {cid}"),
    })
}

pub(super) fn asset_plan(urls: &PieceUrls, id: &PieceCid, m: &Manifest) -> Result<Plan, GetError> {
    let mut pieces = Vec::with_capacity(m.pieces.len());
    for p in &m.pieces {
        let cid = PieceCid::parse(&p.cid).map_err(|e| GetError::Manifest {
            id: id.to_string(),
            reason: format!("piece {}: {e}", p.cid),
        })?;
        pieces.push(PiecePlan {
            url: urls.of(&cid),
            cid,
            size: p.size,
        });
    }
    // Only the last path component of the uploader's name, and never a
    // hidden or empty one: the name comes from the network.
    let name = Path::new(&m.file_name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .unwrap_or_else(|| id.to_string());
    Ok(Plan {
        what: format!("asset {id} ({} pieces)", pieces.len()),
        pieces,
        name,
    })
}
