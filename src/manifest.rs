//! The asset manifest: how a file larger than one piece is put back together.
//!
//! A manifest is a small JSON document stored as a piece of its own; its
//! PieceCID is the asset id. It lists the file's pieces in order with their
//! sizes and window-root layers (so each cached window can later be checked
//! against its piece), the total size, the content type and the file name:
//!
//! ```json
//! {"format":"beam-edge-asset","version":1,"size":2130706432,
//!  "content_type":"video/mp4","file_name":"movie.mp4","window":1048576,
//!  "pieces":[{"cid":"bafkzcib…","size":1065353216,"layer":"<hex>"}, …]}
//! ```
//!
//! [`Manifest::parse`] checks everything a reader relies on: the format and
//! version, v2 CIDs whose encoded size equals the stated size, sizes that
//! add up, and layers of the right length; a manifest that fails is refused
//! rather than served wrong.

use serde::{Deserialize, Serialize};

use crate::http::range::ByteRange;
use crate::piece::commp::Node;
use crate::piece::{CidVersion, PieceCid};

/// The `format` value of every manifest.
pub const FORMAT: &str = "beam-edge-asset";
/// The manifest version this build writes and reads.
pub const VERSION: u32 = 1;
/// Largest manifest accepted (a 1 TiB asset with 1 MiB windows lists about
/// 64 MiB of layer hex; layers beyond this cap are not read).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// One piece of an asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestPiece {
    /// The piece's v2 PieceCID.
    pub cid: String,
    /// Raw bytes of the file in this piece.
    pub size: u64,
    /// Window roots of the piece (32 bytes each, hex), possibly empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub layer: String,
}

impl ManifestPiece {
    /// The piece's CID and window roots, to check its windows with: `None`
    /// when the manifest carries no layer for it (a one-window piece);
    /// `Err` for a CID or layer that does not parse.
    pub fn layer_nodes(&self) -> Result<Option<(PieceCid, Vec<Node>)>, String> {
        if self.layer.is_empty() {
            return Ok(None);
        }
        let cid = PieceCid::parse(&self.cid).map_err(|e| e.to_string())?;
        let nodes =
            decode_layer(&self.layer).ok_or("the layer is not hex-encoded 32-byte roots")?;
        Ok(Some((cid, nodes)))
    }
}

/// An asset manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// Total size of the file.
    pub size: u64,
    /// Media type of the file.
    pub content_type: String,
    /// The file's name as uploaded (informational).
    #[serde(default)]
    pub file_name: String,
    /// Window size of the layers, in padded bytes.
    pub window: u64,
    /// The pieces in file order.
    pub pieces: Vec<ManifestPiece>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the manifest's shape.
    #[error("not an asset manifest: {0}")]
    NotAManifest(String),
    /// A field has a value that cannot be right.
    #[error("invalid asset manifest: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::NotAManifest(e.to_string()))?;
        if m.format != FORMAT {
            return Err(ManifestError::NotAManifest(format!(
                "format is {:?}, not {FORMAT:?}",
                m.format
            )));
        }
        if m.version != VERSION {
            return Err(ManifestError::Invalid(format!(
                "version {} is not supported (this build reads {VERSION})",
                m.version
            )));
        }
        if m.pieces.is_empty() {
            return Err(ManifestError::Invalid("no pieces".into()));
        }
        if !m.window.is_power_of_two() || m.window < 128 {
            return Err(ManifestError::Invalid(format!(
                "window {} is not a power of two ≥ 128",
                m.window
            )));
        }
        let mut total: u64 = 0;
        for (i, p) in m.pieces.iter().enumerate() {
            let cid = PieceCid::parse(&p.cid)
                .map_err(|e| ManifestError::Invalid(format!("piece {i}: {e}")))?;
            if cid.version() != CidVersion::V2 || cid.payload_size() != Some(p.size) {
                return Err(ManifestError::Invalid(format!(
                    "piece {i}: {} does not hold {} bytes",
                    p.cid, p.size
                )));
            }
            if !p.layer.is_empty() {
                let windows = p.size.div_ceil(m.window / 128 * 127);
                if p.layer.len() as u64 != windows * 64
                    || !p.layer.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(ManifestError::Invalid(format!(
                        "piece {i}: layer must be {windows} hex-encoded 32-byte roots"
                    )));
                }
            }
            total = total
                .checked_add(p.size)
                .ok_or_else(|| ManifestError::Invalid("sizes overflow".into()))?;
        }
        if total != m.size {
            return Err(ManifestError::Invalid(format!(
                "pieces hold {total} bytes but size says {}",
                m.size
            )));
        }
        Ok(m)
    }

    /// Bytes of the manifest the asset upload (`upload::pipeline`) will
    /// store for a file cut into pieces of `piece_sizes`, before any piece is
    /// hashed: CIDs and layers have lengths fixed by the piece sizes and
    /// `window`, so a manifest with placeholder roots is exactly as long as
    /// the real one. The upload pre-flight prices it. `None` for a size no
    /// piece can have.
    pub fn predicted_len(
        piece_sizes: &[u64],
        window: u64,
        content_type: &str,
        file_name: &str,
    ) -> Option<u64> {
        let mut pieces = Vec::with_capacity(piece_sizes.len());
        for &part in piece_sizes {
            let cid = PieceCid::from_root_v2([0; 32], part).ok()?;
            let windows = crate::piece::commp::layer_len(part, window).ok()?;
            pieces.push(ManifestPiece {
                cid: cid.to_string(),
                size: part,
                layer: "0".repeat(usize::try_from(windows).ok()? * 64),
            });
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            size: piece_sizes.iter().sum(),
            content_type: content_type.into(),
            file_name: file_name.into(),
            window,
            pieces,
        };
        Some(manifest.to_bytes().len() as u64)
    }

    /// The manifest as stored: compact JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The parts of `range` (of the whole file) in each piece: (piece index,
    /// range within that piece), in order.
    pub fn segments(&self, range: ByteRange) -> Vec<(usize, ByteRange)> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for (i, p) in self.pieces.iter().enumerate() {
            let end = start + p.size; // exclusive
            if p.size > 0 && range.start < end && range.end >= start {
                let a = range.start.max(start) - start;
                let b = range.end.min(end - 1) - start;
                out.push((i, ByteRange::new(a, b)));
            }
            start = end;
        }
        out
    }
}

/// A layer as a manifest writes it: each 32-byte root as 64 lowercase hex
/// digits, concatenated.
pub fn encode_layer(nodes: &[Node]) -> String {
    let mut s = String::with_capacity(nodes.len() * 64);
    for node in nodes {
        for b in node {
            s.push_str(&format!("{b:02x}"));
        }
    }
    s
}

/// The roots of a manifest's layer; `None` unless it is whole roots of hex.
pub fn decode_layer(hex: &str) -> Option<Vec<Node>> {
    let bytes = hex.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(64) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    bytes
        .chunks(64)
        .map(|node| {
            let mut out = [0u8; 32];
            for (o, pair) in out.iter_mut().zip(node.chunks(2)) {
                *o = digit(pair[0])? << 4 | digit(pair[1])?;
            }
            Some(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::piece::commp::commp_of;

    fn manifest_of(parts: &[Vec<u8>]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            size: parts.iter().map(|p| p.len() as u64).sum(),
            content_type: "video/mp4".into(),
            file_name: "a.mp4".into(),
            window: 1 << 20,
            pieces: parts
                .iter()
                .map(|p| ManifestPiece {
                    cid: commp_of(p).unwrap().to_string(),
                    size: p.len() as u64,
                    layer: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_maps_ranges_across_pieces() {
        let m = manifest_of(&[vec![1u8; 1000], vec![2u8; 500], vec![3u8; 300]]);
        let parsed = Manifest::parse(&m.to_bytes()).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(
            m.segments(ByteRange::new(0, 99)),
            vec![(0, ByteRange::new(0, 99))]
        );
        assert_eq!(
            m.segments(ByteRange::new(900, 1600)),
            vec![
                (0, ByteRange::new(900, 999)),
                (1, ByteRange::new(0, 499)),
                (2, ByteRange::new(0, 100))
            ]
        );
        assert_eq!(
            m.segments(ByteRange::new(1799, 1799)),
            vec![(2, ByteRange::new(299, 299))]
        );
    }

    #[test]
    fn refuses_what_would_be_served_wrong() {
        let good = manifest_of(&[vec![1u8; 1000], vec![2u8; 500]]);
        let mut m = good.clone();
        m.size += 1;
        assert!(Manifest::parse(&m.to_bytes())
            .unwrap_err()
            .to_string()
            .contains("pieces hold 1500 bytes"));
        let mut m = good.clone();
        m.pieces[1].size = 499;
        assert!(Manifest::parse(&m.to_bytes())
            .unwrap_err()
            .to_string()
            .contains("does not hold"));
        let mut m = good.clone();
        m.format = "other".into();
        assert!(matches!(
            Manifest::parse(&m.to_bytes()),
            Err(ManifestError::NotAManifest(_))
        ));
        let mut m = good.clone();
        m.version = 9;
        assert!(Manifest::parse(&m.to_bytes())
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        let mut m = good;
        m.pieces[0].layer = "abcd".into();
        assert!(Manifest::parse(&m.to_bytes())
            .unwrap_err()
            .to_string()
            .contains("layer"));
        assert!(matches!(
            Manifest::parse(b"\x00\x01 not json"),
            Err(ManifestError::NotAManifest(_))
        ));
    }

    #[test]
    fn layers_round_trip_through_hex_exactly() {
        let nodes = vec![[0xab; 32], [0x01; 32]];
        assert_eq!(decode_layer(&encode_layer(&nodes)), Some(nodes));
        assert_eq!(encode_layer(&[[0xab; 32]]), "ab".repeat(32));
        assert_eq!(decode_layer(&"AB".repeat(32)), Some(vec![[0xab; 32]]));
        assert_eq!(decode_layer(&"ab".repeat(31)), None);
        assert_eq!(decode_layer(&"g0".repeat(32)), None);
        assert_eq!(decode_layer(""), None);
    }
}
