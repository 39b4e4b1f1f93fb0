//! Which piece or asset a public media path names, for whom, and under what
//! file name; and whether that payer may be billed through this edge.
//!
//! Paths (the name is optional everywhere and only labels the response):
//!
//! ```text
//! /piece/<cid>[/<name>]                       billed to upstream.payer
//! /asset/<id>[/<name>]
//! /beam/[<network>/]<payer>/<cid>[/<name>]     billed to <payer>
//! /beam/[<network>/]<payer>/asset/<id>[/<name>]
//! ```
//!
//! `<payer>` is the wallet in a Beam link (`https://<payer>.filbeam.io/<cid>`)
//! and `<network>` (`mainnet` or `calibration`, default `upstream.network`)
//! picks the Beam domain, so a calibration link plays on a mainnet edge and
//! the other way round. The payer only decides which Beam host a fill asks:
//! the cache key stays the CID, so one piece under two payers is one cache
//! entry. What this is not: the CID check (that is [`crate::piece`]) or the
//! serving (that is [`super::piece`]).

use std::sync::Arc;

use crate::config::{is_eth_address, Config, Network, Payers};
use crate::http::disposition::{percent_decode, sanitize_filename};
use crate::upstream::resolve::ChainPayer;

/// A piece or an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `/piece/…`: one piece.
    Piece,
    /// `/asset/…`: an upload's manifest and the pieces it lists.
    Asset,
}

/// The payer (and network) a `/beam/` path names, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeamPayer<'a> {
    /// The wallet, unchecked.
    pub payer: &'a str,
    /// The network, when the path names one.
    pub network: Option<Network>,
}

/// A parsed media path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPath<'a> {
    /// Piece or asset.
    pub kind: MediaKind,
    /// The CID text, unchecked.
    pub id: &'a str,
    /// The sanitised file name after the id, if any.
    pub name: Option<String>,
    /// The payer named in the path (`/beam/…`), if any.
    pub beam: Option<BeamPayer<'a>>,
}

/// How `/beam/` paths are written (in every error about one).
pub const BEAM_SHAPE: &str =
    "/beam/[mainnet|calibration/]<payer>/<PieceCID>[/<name>] or /beam/[<network>/]<payer>/asset/<id>[/<name>]";

/// Parses a media path. `None`: not a media path; `Some(Err)`: a malformed
/// one (400 with the reason).
pub fn parse_media_path(path: &str) -> Option<Result<MediaPath<'_>, String>> {
    if let Some(rest) = path.strip_prefix("/piece/") {
        return Some(Ok(id_and_name(MediaKind::Piece, rest, None)));
    }
    if let Some(rest) = path.strip_prefix("/asset/") {
        return Some(Ok(id_and_name(MediaKind::Asset, rest, None)));
    }
    if path == "/beam" {
        return Some(Err(format!(
            "missing payer and PieceCID: request {BEAM_SHAPE}"
        )));
    }
    let rest = path.strip_prefix("/beam/")?;
    Some(parse_beam(rest))
}

fn parse_beam(rest: &str) -> Result<MediaPath<'_>, String> {
    let (first, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (network, payer, rest) = match Network::parse(first) {
        Ok(n) => {
            let (payer, rest) = rest.split_once('/').unwrap_or((rest, ""));
            (Some(n), payer, rest)
        }
        Err(_) => (None, first, rest),
    };
    if payer.is_empty() {
        return Err(format!("missing payer: request {BEAM_SHAPE}"));
    }
    let beam = Some(BeamPayer { payer, network });
    let (kind, rest) = match rest.strip_prefix("asset/") {
        Some(r) => (MediaKind::Asset, r),
        None if rest == "asset" => (MediaKind::Asset, ""),
        None => (MediaKind::Piece, rest),
    };
    let parsed = id_and_name(kind, rest, beam);
    if parsed.id.is_empty() {
        let what = match kind {
            MediaKind::Piece => "PieceCID",
            MediaKind::Asset => "asset id",
        };
        return Err(format!(
            "missing {what} after the payer: request {BEAM_SHAPE}"
        ));
    }
    Ok(parsed)
}

fn id_and_name<'a>(kind: MediaKind, rest: &'a str, beam: Option<BeamPayer<'a>>) -> MediaPath<'a> {
    let (id, name) = match rest.split_once('/') {
        Some((id, name)) => (id, sanitize_filename(&percent_decode(name))),
        None => (rest, None),
    };
    MediaPath {
        kind,
        id,
        name,
        beam,
    }
}

/// Who may be billed through this edge, and the Beam host of each payer.
#[derive(Debug, Clone)]
pub struct PayerRoutes {
    config: Config,
    policy: Payers,
}

impl PayerRoutes {
    /// From a validated config.
    pub fn new(config: &Config) -> PayerRoutes {
        PayerRoutes {
            config: config.clone(),
            policy: config.payer_policy(),
        }
    }

    /// True when some `/beam/<payer>/…` request can reach Beam.
    pub fn any_usable(&self) -> bool {
        self.policy.allows_some() && self.config.upstream.beam_url.contains("{payer}")
    }

    /// The Beam base URL that a request for `who` fetches from, or the status
    /// and reason to refuse it with: 400 for a malformed payer, 403 for one
    /// not in `upstream.payers`, 400 for a network this edge cannot reach,
    /// 503 when `upstream.beam_url` cannot carry a payer.
    pub fn beam_url(&self, who: &BeamPayer<'_>) -> Result<Arc<str>, (u16, String)> {
        let payer = who.payer;
        if !is_eth_address(payer) {
            let shown: String = percent_decode(payer).chars().take(100).collect();
            return Err((
                400,
                format!("invalid payer {shown:?}: expected a wallet address, 0x followed by 40 hex digits ({BEAM_SHAPE})"),
            ));
        }
        if !self.policy.allows(payer) {
            return Err((
                403,
                format!(
                    "payer {payer} may not be billed through this edge (not in upstream.payers)"
                ),
            ));
        }
        let network = who.network.unwrap_or(self.config.upstream.network);
        if network != self.config.upstream.network && !self.config.beam_url_names_network() {
            return Err((
                400,
                format!(
                    "this edge reaches Beam on {} only (upstream.beam_url has no {{network_domain}}), not on {}",
                    self.config.upstream.network.as_str(),
                    network.as_str()
                ),
            ));
        }
        match self.config.beam_base_url_for(payer, network) {
            Some(url) => Ok(Arc::from(url)),
            None => Err((
                503,
                "upstream.beam_url has no {payer}, so this edge cannot bill the payer a request names; use /piece/<PieceCID>".into(),
            )),
        }
    }

    /// Whose data sets name the holders of a piece read for `who` (`None`:
    /// a `/piece/…` request, `upstream.payer`'s): the payer a `/beam/…`
    /// request names, unless it is on another network than
    /// `upstream.network`, whose chain this edge does not read.
    pub fn chain_payer(&self, who: Option<&BeamPayer<'_>>) -> ChainPayer {
        match who {
            None => ChainPayer::Configured,
            Some(w) if w.network.is_none_or(|n| n == self.config.upstream.network) => {
                ChainPayer::Named(Arc::from(w.payer.to_ascii_lowercase()))
            }
            Some(_) => ChainPayer::Nobody,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYER: &str = "0x00000000000000000000000000000000000000aa";
    const CID: &str = "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy";

    fn parse(path: &str) -> MediaPath<'_> {
        parse_media_path(path).unwrap().unwrap()
    }

    #[test]
    fn piece_and_asset_paths_take_an_optional_name() {
        let p = parse("/piece/abc");
        assert_eq!(
            (p.kind, p.id, p.name, p.beam),
            (MediaKind::Piece, "abc", None, None)
        );
        let p = parse("/piece/abc/My%20Clip.mp4");
        assert_eq!(p.name.as_deref(), Some("My Clip.mp4"));
        let p = parse("/asset/abc/a/../b.mp4");
        assert_eq!(
            (p.kind, p.name.as_deref()),
            (MediaKind::Asset, Some("a_.._b.mp4"))
        );
        assert_eq!(parse("/piece/abc/").name, None);
        assert!(parse_media_path("/pieces/abc").is_none());
        assert!(parse_media_path("/").is_none());
    }

    #[test]
    fn beam_paths_name_payer_network_kind_and_name() {
        let path = format!("/beam/{PAYER}/{CID}");
        let p = parse(&path);
        assert_eq!(p.kind, MediaKind::Piece);
        assert_eq!(p.id, CID);
        assert_eq!(
            p.beam,
            Some(BeamPayer {
                payer: PAYER,
                network: None
            })
        );
        let path = format!("/beam/calibration/{PAYER}/asset/{CID}/film.mkv");
        let p = parse(&path);
        assert_eq!(p.kind, MediaKind::Asset);
        assert_eq!(p.id, CID);
        assert_eq!(p.name.as_deref(), Some("film.mkv"));
        assert_eq!(p.beam.unwrap().network, Some(Network::Calibration));
        for bad in [
            "/beam",
            "/beam/",
            "/beam/mainnet",
            "/beam/mainnet/",
            &format!("/beam/{PAYER}"),
            &format!("/beam/{PAYER}/asset"),
        ] {
            let e = parse_media_path(bad).unwrap().unwrap_err();
            assert!(e.contains("/beam/"), "{bad}: {e}");
        }
    }

    #[test]
    fn payers_are_checked_and_routed_to_their_host() {
        let mut c = Config::embedded_default();
        let routes = PayerRoutes::new(&c);
        assert!(routes.any_usable());
        let who = |payer, network| BeamPayer { payer, network };
        let url = routes.beam_url(&who(PAYER, None)).unwrap();
        assert_eq!(&*url, format!("https://{PAYER}.calibration.filbeam.io"));
        let url = routes
            .beam_url(&who(PAYER, Some(Network::Mainnet)))
            .unwrap();
        assert_eq!(&*url, format!("https://{PAYER}.filbeam.io"));
        let (status, reason) = routes.beam_url(&who("0xnope", None)).unwrap_err();
        assert_eq!(status, 400);
        assert!(reason.contains("\"0xnope\""), "{reason}");

        c.upstream.payers = Some(Payers::Only(vec![PAYER
            .to_ascii_uppercase()
            .replace("0X", "0x")]));
        let routes = PayerRoutes::new(&c);
        assert!(routes.beam_url(&who(PAYER, None)).is_ok());
        let other = "0x00000000000000000000000000000000000000bb";
        let (status, reason) = routes.beam_url(&who(other, None)).unwrap_err();
        assert_eq!(status, 403);
        assert!(reason.contains(other), "{reason}");

        c.upstream.payers = Some(Payers::Only(vec![]));
        assert!(!PayerRoutes::new(&c).any_usable());

        c.upstream.payers = None;
        c.upstream.beam_url = "http://127.0.0.1:9/{payer}".into();
        let routes = PayerRoutes::new(&c);
        let (status, reason) = routes
            .beam_url(&who(PAYER, Some(Network::Mainnet)))
            .unwrap_err();
        assert_eq!(status, 400);
        assert!(reason.contains("mainnet"), "{reason}");
        assert_eq!(
            &*routes
                .beam_url(&who(PAYER, Some(Network::Calibration)))
                .unwrap(),
            format!("http://127.0.0.1:9/{PAYER}")
        );
        c.upstream.beam_url = "http://127.0.0.1:9/".into();
        assert!(!PayerRoutes::new(&c).any_usable());
        assert_eq!(
            PayerRoutes::new(&c)
                .beam_url(&who(PAYER, None))
                .unwrap_err()
                .0,
            503
        );
    }
}
