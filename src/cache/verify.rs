//! Checking fetched windows against the PieceCID.
//!
//! A window is one subtree of the piece's CommP tree, so its bytes can be
//! hashed and compared with the node the tree has for it:
//!
//! - a piece that fits in one window is checked against the CID itself (the
//!   CommP of the window's bytes is the piece's root);
//! - a larger piece is checked against its *layer*, the roots of all its
//!   windows (held by `layers`). A layer is accepted only if it hashes up
//!   to the PieceCID's root, so whoever gave it cannot vouch for wrong bytes.
//!
//! Windows that fail are never cached, and a reader never hands out the last
//! byte of a checkable window before the check passed: a client gets either
//! the right bytes or a visibly failed transfer.

use std::sync::Arc;

use crate::piece::commp::{self, Node};
use crate::piece::PieceCid;

/// How the windows of one piece are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceCheck {
    /// The piece is one window: its bytes must hash to this CID.
    Whole(PieceCid),
    /// The root of each window, in order.
    Layer(Arc<[Node]>),
}

/// Why a window failed its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window {index} does not hash to its PieceCID (the upstream sent wrong bytes)")]
pub struct Mismatch {
    /// The window.
    pub index: u64,
}

impl PieceCheck {
    /// Checks window `index` of `window_padded` windows.
    pub fn check(&self, index: u64, bytes: &[u8], window_padded: u64) -> Result<(), Mismatch> {
        let ok = match self {
            PieceCheck::Whole(cid) => index == 0 && bytes_match_cid(bytes, cid),
            PieceCheck::Layer(nodes) => usize::try_from(index)
                .ok()
                .and_then(|i| nodes.get(i))
                .is_some_and(|want| {
                    commp::window_root(bytes, window_padded).is_ok_and(|got| &got == want)
                }),
        };
        if ok {
            Ok(())
        } else {
            Err(Mismatch { index })
        }
    }
}

/// True when `bytes` are the whole payload of `cid`: their CommP root,
/// raised to the height the CID was committed at (v2), or to any height
/// (v1, which does not say), is the CID's root. Trees taller than the
/// smallest that holds the payload are valid pieces, so they are accepted.
pub fn bytes_match_cid(bytes: &[u8], cid: &PieceCid) -> bool {
    if cid.payload_size().is_some_and(|p| p != bytes.len() as u64) {
        return false;
    }
    let Ok(min) = commp::commp_of(bytes) else {
        return false;
    };
    let Some(from) = min.height() else {
        return false;
    };
    let raised = |to| commp::raise_root(min.root(), from, to);
    match cid.height() {
        Some(to) => raised(to).is_some_and(|r| &r == cid.root()),
        None => (from..=u8::MAX).map_while(raised).any(|r| &r == cid.root()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::layers::{coarsen, LayerError, LayerSource, Layers};
    use super::*;
    use crate::piece::commp::CommP;

    const W128K: u64 = 128 << 10;
    const RAW_128K: usize = 130_048;

    /// Bytes with no period (so no two windows are alike).
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn cid_and_layer(bytes: &[u8], window: u64) -> (PieceCid, Vec<Node>) {
        let mut h = CommP::with_layer(window).unwrap();
        h.update(bytes);
        h.finish_with_layer().unwrap()
    }

    #[test]
    fn a_layer_checks_every_window_and_catches_one_flipped_byte() {
        let bytes = data(5 * RAW_128K + 1000, 1);
        let (cid, layer) = cid_and_layer(&bytes, W128K);
        let layers = Layers::new(W128K);
        layers
            .add(&cid, W128K, &layer, LayerSource::Manifest)
            .unwrap();
        let check = layers
            .check_for(&cid.to_string(), bytes.len() as u64, 6)
            .unwrap();
        for (i, w) in bytes.chunks(RAW_128K).enumerate() {
            check.check(i as u64, w, W128K).unwrap();
        }
        let mut bad = bytes[RAW_128K..2 * RAW_128K].to_vec();
        bad[77] ^= 1;
        assert_eq!(check.check(1, &bad, W128K), Err(Mismatch { index: 1 }));
        // A window checked at the wrong index fails too.
        assert!(check
            .check(2, &bytes[RAW_128K..2 * RAW_128K], W128K)
            .is_err());
        assert!(check.check(9, &bytes[..RAW_128K], W128K).is_err());
    }

    #[test]
    fn a_finer_layer_is_coarsened_to_the_cache_window() {
        let bytes = data(9 * RAW_128K + 5, 2);
        let (cid, fine) = cid_and_layer(&bytes, W128K);
        let (_, coarse) = cid_and_layer(&bytes, 4 * W128K);
        assert_eq!(coarsen(&fine, W128K, 4 * W128K).unwrap(), coarse);
        let layers = Layers::new(4 * W128K);
        layers
            .add(&cid, W128K, &fine, LayerSource::Manifest)
            .unwrap();
        let check = layers
            .check_for(&cid.to_string(), bytes.len() as u64, 3)
            .unwrap();
        for (i, w) in bytes.chunks(4 * RAW_128K).enumerate() {
            check.check(i as u64, w, 4 * W128K).unwrap();
        }
        // A coarser layer cannot check smaller windows.
        let small = Layers::new(W128K);
        assert!(matches!(
            small.add(&cid, 4 * W128K, &coarse, LayerSource::Manifest),
            Err(LayerError::Coarser { .. })
        ));
    }

    #[test]
    fn a_layer_that_does_not_hash_to_the_cid_is_refused() {
        let bytes = data(3 * RAW_128K, 3);
        let (cid, mut layer) = cid_and_layer(&bytes, W128K);
        layer[1][0] ^= 1;
        let layers = Layers::new(W128K);
        assert!(matches!(
            layers.add(&cid, W128K, &layer, LayerSource::Manifest),
            Err(LayerError::Wrong(_))
        ));
        // A layer of the wrong length (bad hex is refused by the manifest).
        assert!(matches!(
            layers.add(&cid, W128K, &layer[..2], LayerSource::Manifest),
            Err(LayerError::Wrong(_))
        ));
        assert!(layers.is_empty());
        assert_eq!(
            layers.check_for(&cid.to_string(), bytes.len() as u64, 3),
            None
        );
    }

    #[test]
    fn a_one_window_piece_is_checked_against_its_cid_alone() {
        let bytes = data(100_000, 4);
        let cid = commp::commp_of(&bytes).unwrap();
        let layers = Layers::new(W128K);
        let check = layers.check_for(&cid.to_string(), 100_000, 1).unwrap();
        check.check(0, &bytes, W128K).unwrap();
        let mut bad = bytes.clone();
        bad[99_999] ^= 0x80;
        assert!(check.check(0, &bad, W128K).is_err());
        assert!(check.check(0, &bytes[..99_999], W128K).is_err());
        // v1 CIDs carry the same root.
        let v1 = layers
            .check_for(&cid.to_v1().to_string(), 100_000, 1)
            .unwrap();
        v1.check(0, &bytes, W128K).unwrap();
        assert!(v1.check(0, &bad, W128K).is_err());
    }

    /// `cid` re-encoded with a tree one level taller than the smallest.
    fn one_level_taller(cid: &PieceCid) -> PieceCid {
        fn uvarint(out: &mut Vec<u8>, mut v: u64) {
            while v >= 0x80 {
                out.push(v as u8 | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        let (payload, height) = (cid.payload_size().unwrap(), cid.height().unwrap() + 1);
        let capacity = 127u64 << (height - 2);
        let taller = commp::raise_root(cid.root(), height - 1, height).unwrap();
        let mut digest = Vec::new();
        uvarint(&mut digest, capacity - payload);
        digest.push(height);
        digest.extend_from_slice(&taller);
        // CID version 1, raw codec, fr32-sha256-trunc254-padbintree multihash.
        let mut out = cid.to_bytes()[..4].to_vec();
        uvarint(&mut out, digest.len() as u64);
        out.extend_from_slice(&digest);
        PieceCid::from_bytes(&out).unwrap()
    }

    #[test]
    fn a_cid_committed_with_a_taller_tree_still_matches_its_bytes() {
        let bytes = data(100_000, 5);
        let cid = commp::commp_of(&bytes).unwrap();
        let taller = one_level_taller(&cid);
        assert_eq!(taller.height(), Some(cid.height().unwrap() + 1));
        assert_eq!(taller.payload_size(), Some(100_000));
        assert!(bytes_match_cid(&bytes, &cid));
        assert!(bytes_match_cid(&bytes, &taller));
        assert!(bytes_match_cid(&bytes, &taller.to_v1()));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(!bytes_match_cid(&bad, &taller));
        assert!(!bytes_match_cid(&bad, &taller.to_v1()));
        assert!(!bytes_match_cid(&bytes[1..], &cid), "a wrong length");
    }
}
