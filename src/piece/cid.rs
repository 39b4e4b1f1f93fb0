//! PieceCID parsing and formatting, v2 (FRC-0069) and v1 (legacy CommP).
//!
//! What it is: a strict parser from the string form (multibase `b`, RFC 4648
//! lowercase base32 without padding) to [`PieceCid`], the inverse
//! [`Display`](fmt::Display), the binary CID ([`PieceCid::to_bytes`]) and the
//! conversions between the two versions.
//!
//! - v2: CIDv1, codec raw (0x55), multihash
//!   `fr32-sha2-256-trunc254-padded-binary-tree` (0x1011), digest
//!   `uvarint(padding) || height (u8) || root[32]`. Carries the payload size.
//! - v1: CIDv1, codec `fil-commitment-unsealed` (0xf101), multihash
//!   `sha2-256-trunc254-padded` (0x1012), digest = `root[32]`. No size.
//!
//! What it is not: lenient. Only the canonical lowercase string is accepted
//! (no uppercase, no non-minimal varints, no stray trailing bits or bytes),
//! because Beam matches the CID string exactly as it went on chain; a CID
//! that parses here formats back to the very same string.
//!
//! Sizes: a tree of `height` h has 2^h 32-byte leaves, `32 << h` padded
//! bytes, and holds `127 << (h - 2)` payload bytes (Fr32 packs 127 bytes into
//! 128). `padding` is the payload capacity not covered by data, so
//! `payload_size = (127 << (h - 2)) - padding`.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;

/// Longest CID string accepted; checked before any decoding so hostile input
/// costs nothing. A v2 CID is at most 8 + 69 characters.
pub const MAX_CID_CHARS: usize = 256;

/// Smallest tree height: 4 leaves, one 127-byte Fr32 unit.
pub const MIN_HEIGHT: u8 = 2;

/// Largest tree height accepted: the largest for which the padded size
/// `32 << height` still fits in a `u64` (2^63 bytes). Real pieces stop at
/// height 30 (32 GiB sectors); anything past this cap is nonsense.
pub const MAX_HEIGHT: u8 = 58;

/// Multicodec: raw binary, the codec of a v2 PieceCID.
pub const CODEC_RAW: u64 = 0x55;
/// Multicodec: `fil-commitment-unsealed`, the codec of a v1 PieceCID.
pub const CODEC_FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
/// Multihash: `fr32-sha2-256-trunc254-padded-binary-tree` (v2).
pub const MH_FR32_SHA256_TRUNC254_TREE: u64 = 0x1011;
/// Multihash: `sha2-256-trunc254-padded` (v1).
pub const MH_SHA256_TRUNC254_PADDED: u64 = 0x1012;

/// Which of the two PieceCID forms a [`PieceCid`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CidVersion {
    /// Legacy CommP CID (`baga6ea4seaq…`): root only.
    V1,
    /// FRC-0069 CID (`bafkzcib…`): root, tree height and padding.
    V2,
}

/// A parsed PieceCID: the commitment root plus, for v2, the tree shape.
///
/// Two values are equal when version, root and (for v2) shape are equal, so a
/// v1 and a v2 CID of the same piece differ; compare `to_v1()` forms to ask
/// "same piece?".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PieceCid {
    root: [u8; 32],
    shape: Shape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Shape {
    V1,
    V2 { padding: u64, height: u8 },
}

/// Why a string (or a size) is not a valid PieceCID. Each message names what
/// is wrong with the input in one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PieceCidError {
    /// The input string is empty.
    #[error("PieceCID is empty")]
    Empty,
    /// The input is longer than [`MAX_CID_CHARS`].
    #[error("PieceCID is {len} characters long; at most {max} are accepted", max = MAX_CID_CHARS)]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// The first character is not the multibase prefix `b`.
    #[error("PieceCID must start with multibase prefix 'b' (lowercase base32), found {found:?}")]
    NotBase32 {
        /// The first character of the input.
        found: char,
    },
    /// An uppercase base32 letter: valid base32, but not the canonical form.
    #[error("PieceCID must be canonical lowercase base32, found uppercase {found:?} at position {position}")]
    NotLowercase {
        /// The offending character.
        found: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// A character outside the base32 alphabet `a-z2-7`.
    #[error("invalid base32 character {found:?} at position {position}")]
    BadBase32Char {
        /// The offending character.
        found: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// The base32 text has an impossible length or non-zero trailing bits.
    #[error("base32 text of {len} characters is not canonical (impossible length or non-zero trailing bits)")]
    NonCanonicalBase32 {
        /// Number of base32 characters after the prefix.
        len: usize,
    },
    /// The CID version is not 1.
    #[error("not a CIDv1: version is {found}")]
    NotCidV1 {
        /// The version found.
        found: u64,
    },
    /// The codec is neither raw (v2) nor fil-commitment-unsealed (v1).
    #[error(
        "wrong codec 0x{found:x}: expected 0x55 (raw, v2) or 0xf101 (fil-commitment-unsealed, v1)"
    )]
    WrongCodec {
        /// The codec found.
        found: u64,
    },
    /// The multihash does not belong with the codec.
    #[error("wrong multihash 0x{found:x} for codec 0x{codec:x}: expected 0x{expected:x}")]
    WrongMultihash {
        /// The multihash code found.
        found: u64,
        /// The codec it came with.
        codec: u64,
        /// The multihash that codec requires.
        expected: u64,
    },
    /// A varint is not minimally encoded or longer than 9 bytes.
    #[error("malformed varint in the {field} (not minimal, or over 9 bytes)")]
    BadVarint {
        /// Which field of the CID.
        field: &'static str,
    },
    /// The bytes end before the named field is complete.
    #[error("truncated CID: the {field} is cut short")]
    Truncated {
        /// Which field of the CID.
        field: &'static str,
    },
    /// The declared digest length does not match the digest's contents.
    #[error("wrong digest length {found}: expected {expected}")]
    WrongDigestLength {
        /// Length declared in the multihash.
        found: u64,
        /// Length the digest requires.
        expected: u64,
    },
    /// The v2 tree height is outside `MIN_HEIGHT..=MAX_HEIGHT`.
    #[error("invalid tree height {height}: must be {min} to {max} (a piece holds at least 127 bytes)", min = MIN_HEIGHT, max = MAX_HEIGHT)]
    InvalidHeight {
        /// The height found.
        height: u8,
    },
    /// The v2 padding leaves no payload in the tree.
    #[error("padding {padding} leaves no payload in a tree of height {height} (capacity {capacity} bytes)")]
    PaddingTooLarge {
        /// The padding found.
        padding: u64,
        /// The tree height.
        height: u8,
        /// Payload capacity of that tree.
        capacity: u64,
    },
    /// Bytes follow the digest.
    #[error("{count} trailing bytes after the digest")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A payload size no v2 PieceCID can carry.
    #[error("payload size {size} is out of range: must be 1 to {max}", max = max_payload())]
    PayloadSizeOutOfRange {
        /// The size asked for.
        size: u64,
    },
    /// `to_v2` was given a size that contradicts the v2 CID's own.
    #[error("payload size {given} contradicts the CID's own {own}")]
    PayloadSizeMismatch {
        /// The size the CID carries.
        own: u64,
        /// The size given.
        given: u64,
    },
}

/// Payload bytes a tree of `height` holds: `127 << (height - 2)`.
///
/// `None` outside `MIN_HEIGHT..=MAX_HEIGHT`.
pub fn payload_capacity(height: u8) -> Option<u64> {
    if (MIN_HEIGHT..=MAX_HEIGHT).contains(&height) {
        Some(127u64 << (height - 2))
    } else {
        None
    }
}

/// Height of the smallest tree that holds `payload` bytes (at least
/// [`MIN_HEIGHT`]); `None` for 0 or for more than [`max_payload`].
pub fn height_for_payload(payload: u64) -> Option<u8> {
    if payload == 0 || payload > max_payload() {
        return None;
    }
    let quads = payload.div_ceil(127);
    // Both casts are exact: the log of a u64 power of two is below 64.
    let log = quads.next_power_of_two().trailing_zeros() as u8;
    Some(MIN_HEIGHT + log)
}

/// Largest payload a v2 CID here can describe (a tree of [`MAX_HEIGHT`]).
pub const fn max_payload() -> u64 {
    127u64 << (MAX_HEIGHT - 2)
}

impl PieceCid {
    /// Parses a PieceCID string, v1 or v2, canonical lowercase only.
    pub fn parse(s: &str) -> Result<Self, PieceCidError> {
        let bytes = decode_multibase(s)?;
        Self::from_bytes(&bytes)
    }

    /// Parses a binary CID (the form [`PieceCid::to_bytes`] writes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PieceCidError> {
        let mut pos = 0;
        let version = read_uvarint(bytes, &mut pos, "CID version")?;
        if version != 1 {
            return Err(PieceCidError::NotCidV1 { found: version });
        }
        let codec = read_uvarint(bytes, &mut pos, "codec")?;
        let expected_mh = match codec {
            CODEC_RAW => MH_FR32_SHA256_TRUNC254_TREE,
            CODEC_FIL_COMMITMENT_UNSEALED => MH_SHA256_TRUNC254_PADDED,
            found => return Err(PieceCidError::WrongCodec { found }),
        };
        let mh = read_uvarint(bytes, &mut pos, "multihash code")?;
        if mh != expected_mh {
            return Err(PieceCidError::WrongMultihash {
                found: mh,
                codec,
                expected: expected_mh,
            });
        }
        let digest_len = read_uvarint(bytes, &mut pos, "digest length")?;
        let rest = &bytes[pos..];
        let cid = if codec == CODEC_RAW {
            let mut dpos = 0;
            let padding = read_uvarint(rest, &mut dpos, "padding")?;
            let height = *rest.get(dpos).ok_or(PieceCidError::Truncated {
                field: "tree height",
            })?;
            dpos += 1;
            let expected = (dpos + 32) as u64;
            if digest_len != expected {
                return Err(PieceCidError::WrongDigestLength {
                    found: digest_len,
                    expected,
                });
            }
            let root = read_root(rest, dpos)?;
            Self::check_trailing(rest, dpos + 32)?;
            Self::v2_checked(root, padding, height)?
        } else {
            if digest_len != 32 {
                return Err(PieceCidError::WrongDigestLength {
                    found: digest_len,
                    expected: 32,
                });
            }
            let root = read_root(rest, 0)?;
            Self::check_trailing(rest, 32)?;
            Self::from_root_v1(root)
        };
        Ok(cid)
    }

    fn check_trailing(rest: &[u8], end: usize) -> Result<(), PieceCidError> {
        match rest.len().saturating_sub(end) {
            0 => Ok(()),
            count => Err(PieceCidError::TrailingBytes { count }),
        }
    }

    fn v2_checked(root: [u8; 32], padding: u64, height: u8) -> Result<Self, PieceCidError> {
        let capacity = payload_capacity(height).ok_or(PieceCidError::InvalidHeight { height })?;
        // A tree that is all padding describes no piece. Non-minimal trees
        // (padding of half the tree or more) are still well defined, so they
        // are accepted as they are and keep their height.
        if padding >= capacity {
            return Err(PieceCidError::PaddingTooLarge {
                padding,
                height,
                capacity,
            });
        }
        Ok(Self {
            root,
            shape: Shape::V2 { padding, height },
        })
    }

    /// A v2 CID for a piece `root` of `payload_size` bytes, in the smallest
    /// tree that holds them (as CommP builds it).
    pub fn from_root_v2(root: [u8; 32], payload_size: u64) -> Result<Self, PieceCidError> {
        let height = height_for_payload(payload_size)
            .ok_or(PieceCidError::PayloadSizeOutOfRange { size: payload_size })?;
        let capacity = payload_capacity(height).ok_or(PieceCidError::InvalidHeight { height })?;
        Self::v2_checked(root, capacity - payload_size, height)
    }

    /// A v1 CID for a piece `root`.
    pub fn from_root_v1(root: [u8; 32]) -> Self {
        Self {
            root,
            shape: Shape::V1,
        }
    }

    /// Which form this CID is (and will format as).
    pub fn version(&self) -> CidVersion {
        match self.shape {
            Shape::V1 => CidVersion::V1,
            Shape::V2 { .. } => CidVersion::V2,
        }
    }

    /// The CommP root: 32 bytes, top two bits of the last byte clear.
    pub fn root(&self) -> &[u8; 32] {
        &self.root
    }

    /// v2 only: the payload (raw, unpadded) size in bytes.
    pub fn payload_size(&self) -> Option<u64> {
        match self.shape {
            Shape::V1 => None,
            Shape::V2 { padding, height } => payload_capacity(height).map(|c| c - padding),
        }
    }

    /// v2 only: the padded tree size in bytes, `32 << height`.
    pub fn padded_size(&self) -> Option<u64> {
        self.height().map(|h| 32u64 << h)
    }

    /// v2 only: the tree height (log2 of the number of 32-byte leaves).
    pub fn height(&self) -> Option<u8> {
        match self.shape {
            Shape::V1 => None,
            Shape::V2 { height, .. } => Some(height),
        }
    }

    /// v2 only: payload capacity of the tree not covered by data.
    pub fn padding(&self) -> Option<u64> {
        match self.shape {
            Shape::V1 => None,
            Shape::V2 { padding, .. } => Some(padding),
        }
    }

    /// The same piece as a v1 CID (drops the size).
    pub fn to_v1(&self) -> PieceCid {
        Self::from_root_v1(self.root)
    }

    /// The same piece as a v2 CID, given its payload size. For a v2 CID the
    /// size must match its own (a v2 CID is returned unchanged); for a v1 the
    /// tree is taken to be the smallest that holds the payload, as CommP
    /// builds it.
    pub fn to_v2(&self, payload_size: u64) -> Result<PieceCid, PieceCidError> {
        match self.payload_size() {
            Some(own) if own == payload_size => Ok(self.clone()),
            Some(own) => Err(PieceCidError::PayloadSizeMismatch {
                own,
                given: payload_size,
            }),
            None => Self::from_root_v2(self.root, payload_size),
        }
    }

    /// The binary CID: uvarint version (1), uvarint codec, uvarint multihash
    /// code, uvarint digest length, digest. This is what EIP-712 `Cid.data`
    /// carries.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        push_uvarint(&mut out, 1);
        match self.shape {
            Shape::V1 => {
                push_uvarint(&mut out, CODEC_FIL_COMMITMENT_UNSEALED);
                push_uvarint(&mut out, MH_SHA256_TRUNC254_PADDED);
                push_uvarint(&mut out, 32);
            }
            Shape::V2 { padding, height } => {
                push_uvarint(&mut out, CODEC_RAW);
                push_uvarint(&mut out, MH_FR32_SHA256_TRUNC254_TREE);
                let mut prefix = Vec::with_capacity(10);
                push_uvarint(&mut prefix, padding);
                prefix.push(height);
                push_uvarint(&mut out, (prefix.len() + 32) as u64);
                out.extend_from_slice(&prefix);
            }
        }
        out.extend_from_slice(&self.root);
        out
    }
}

impl FromStr for PieceCid {
    type Err = PieceCidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for PieceCid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = BASE32_NOPAD.encode(&self.to_bytes());
        // data-encoding's alphabet is uppercase; the canonical CID is not.
        text.make_ascii_lowercase();
        write!(f, "b{text}")
    }
}

/// Checks the multibase prefix and alphabet, then decodes.
fn decode_multibase(s: &str) -> Result<Vec<u8>, PieceCidError> {
    if s.is_empty() {
        return Err(PieceCidError::Empty);
    }
    if s.len() > MAX_CID_CHARS {
        return Err(PieceCidError::TooLong { len: s.len() });
    }
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, 'b')) => {}
        Some((_, found)) => return Err(PieceCidError::NotBase32 { found }),
        None => return Err(PieceCidError::Empty),
    }
    for (position, found) in chars {
        match found {
            'a'..='z' | '2'..='7' => {}
            'A'..='Z' => return Err(PieceCidError::NotLowercase { found, position }),
            _ => return Err(PieceCidError::BadBase32Char { found, position }),
        }
    }
    // The alphabet check above leaves only ASCII, so index 1 is a boundary;
    // uppercase it for data-encoding's RFC 4648 alphabet, which also rejects
    // impossible lengths and non-zero trailing bits.
    let text = s[1..].to_ascii_uppercase();
    BASE32_NOPAD
        .decode(text.as_bytes())
        .map_err(|_| PieceCidError::NonCanonicalBase32 { len: text.len() })
}

fn read_root(rest: &[u8], at: usize) -> Result<[u8; 32], PieceCidError> {
    rest.get(at..at + 32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or(PieceCidError::Truncated { field: "root" })
}

/// Reads an unsigned LEB128 varint, multiformats rules: at most 9 bytes, and
/// minimal (no trailing zero continuation byte), so every value has exactly
/// one encoding and parsing stays the inverse of formatting.
fn read_uvarint(bytes: &[u8], pos: &mut usize, field: &'static str) -> Result<u64, PieceCidError> {
    let mut value = 0u64;
    for i in 0..9 {
        let byte = *bytes
            .get(*pos + i)
            .ok_or(PieceCidError::Truncated { field })?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(PieceCidError::BadVarint { field });
            }
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err(PieceCidError::BadVarint { field })
}

fn push_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_round_trips_and_rejects_non_minimal() {
        for v in [0u64, 1, 127, 128, 0x1011, 0xf101, u64::MAX >> 1] {
            let mut buf = Vec::new();
            push_uvarint(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_uvarint(&buf, &mut pos, "x"), Ok(v));
            assert_eq!(pos, buf.len());
        }
        let mut pos = 0;
        assert_eq!(
            read_uvarint(&[0x81, 0x00], &mut pos, "x"),
            Err(PieceCidError::BadVarint { field: "x" })
        );
    }

    #[test]
    fn heights_for_payload_sizes() {
        assert_eq!(height_for_payload(1), Some(2));
        assert_eq!(height_for_payload(127), Some(2));
        assert_eq!(height_for_payload(128), Some(3));
        assert_eq!(height_for_payload(254), Some(3));
        assert_eq!(height_for_payload(255), Some(4));
        assert_eq!(height_for_payload(1_040_384), Some(15));
        assert_eq!(height_for_payload(1_040_385), Some(16));
        assert_eq!(height_for_payload(max_payload()), Some(MAX_HEIGHT));
        assert_eq!(height_for_payload(max_payload() + 1), None);
        assert_eq!(height_for_payload(0), None);
    }
}
