//! Properties of PieceCID and CommP: chunking, threads and the window layer
//! never change the result; every CID, encoded here from the specs, parses
//! to its fields and formats back to the same string; and near misses of
//! valid CIDs are refused with the reason.

use beam_edge::piece::cid::{max_payload, MAX_CID_CHARS, MAX_HEIGHT, MIN_HEIGHT};
use beam_edge::piece::commp::{
    commp_of, layer_len, root_from_layer, verify_layer, window_raw_len, window_root, CommP, Node,
    DEFAULT_WINDOW_PADDED,
};
use beam_edge::piece::{CidVersion, PieceCid, PieceCidError};
use proptest::prelude::*;

/// Deterministic bytes from a seed (xorshift64), so cases stay small to
/// describe and shrink by length rather than by content.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn hash_with(mut hasher: CommP, data: &[u8], cuts: &[usize]) -> (PieceCid, Vec<Node>) {
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.min(data.len()).max(start);
        hasher.update(&data[start..cut]);
        start = cut;
    }
    hasher.update(&data[start..]);
    hasher.finish_with_layer().expect("valid payload")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_chunking_gives_the_same_cid(
        seed in any::<u64>(),
        len in 127usize..6000,
        mut cuts in proptest::collection::vec(0usize..6000, 0..12),
    ) {
        let data = bytes(seed, len);
        cuts.sort_unstable();
        let (cid, _) = hash_with(CommP::new(), &data, &cuts);
        prop_assert_eq!(&cid, &commp_of(&data).expect("valid payload"));
        prop_assert_eq!(cid.payload_size(), Some(len as u64));
    }

    #[test]
    fn layer_rebuilds_the_root_and_each_window_stands_alone(
        seed in any::<u64>(),
        window_log in 7u32..=13,
        windows_x100 in 1u64..700,
        threads in 1usize..=3,
        chunk_height in 2u8..=8,
        mut cuts in proptest::collection::vec(0usize..800_000, 0..6),
    ) {
        let window_padded = 1u64 << window_log;
        let window_raw = window_raw_len(window_padded).expect("valid window");
        let len = (window_raw * windows_x100 / 100).max(127) as usize;
        let data = bytes(seed, len);
        cuts.sort_unstable();

        let (cid, layer) = hash_with(CommP::with_layer(window_padded).expect("valid window"), &data, &cuts);
        let threaded = CommP::with_threads(threads)
            .chunk_height(chunk_height)
            .and_then(|h| h.layer(window_padded))
            .expect("valid settings");
        let (cid_t, layer_t) = hash_with(threaded, &data, &cuts);
        prop_assert_eq!(&cid_t, &cid);
        prop_assert_eq!(&layer_t, &layer);
        prop_assert_eq!(&cid, &commp_of(&data).expect("valid payload"));

        let height = cid.height().expect("v2");
        prop_assert_eq!(layer.len() as u64, layer_len(len as u64, window_padded).expect("valid"));
        prop_assert_eq!(&root_from_layer(&layer, window_padded, height).expect("valid layer"), cid.root());
        prop_assert_eq!(verify_layer(&cid, window_padded, &layer), Ok(()));

        if u32::from(height) > window_log - 5 {
            for (i, node) in layer.iter().enumerate() {
                let start = i * window_raw as usize;
                let end = (start + window_raw as usize).min(len);
                prop_assert_eq!(&window_root(&data[start..end], window_padded).expect("fits"), node);
            }
        } else {
            prop_assert_eq!(&layer, &vec![*cid.root()]);
        }
    }

    #[test]
    fn v2_and_v1_round_trip_through_strings(
        root in any::<[u8; 32]>(),
        payload in 1u64..=max_payload(),
    ) {
        let v2 = PieceCid::from_root_v2(root, payload).expect("in range");
        let text = v2.to_string();
        prop_assert!(text.starts_with("bafkzcib"));
        let back = PieceCid::parse(&text).expect("own output parses");
        prop_assert_eq!(&back, &v2);
        prop_assert_eq!(back.payload_size(), Some(payload));
        prop_assert_eq!(back.to_string(), text);
        prop_assert_eq!(PieceCid::from_bytes(&v2.to_bytes()), Ok(v2.clone()));

        let v1 = v2.to_v1();
        let text1 = v1.to_string();
        prop_assert!(text1.starts_with("baga6ea4seaq"));
        let back1 = PieceCid::parse(&text1).expect("own output parses");
        prop_assert_eq!(back1.version(), CidVersion::V1);
        prop_assert_eq!(back1.to_v2(payload), Ok(v2.clone()));
    }

    #[test]
    fn generated_cids_parse_to_their_fields_and_format_back(cid in valid_cid()) {
        let text = cid.text();
        let parsed = PieceCid::parse(&text)
            .unwrap_or_else(|e| panic!("{cid:?} ({text}) does not parse: {e}"));
        prop_assert_eq!(parsed.root(), &cid.root);
        match cid.shape {
            Some((padding, height)) => {
                prop_assert_eq!(parsed.version(), CidVersion::V2);
                prop_assert_eq!(parsed.height(), Some(height));
                prop_assert_eq!(parsed.padding(), Some(padding));
                prop_assert_eq!(
                    parsed.payload_size(),
                    Some((127u64 << (height - 2)) - padding)
                );
                prop_assert_eq!(parsed.padded_size(), Some(32u64 << height));
            }
            None => {
                prop_assert_eq!(parsed.version(), CidVersion::V1);
                prop_assert_eq!(parsed.payload_size(), None);
            }
        }
        prop_assert_eq!(parsed.to_string(), text);
        prop_assert_eq!(parsed.to_bytes(), cid.bytes());
    }

    /// Every one-character change of a valid CID either is refused or
    /// formats back to the changed string; a change inside the root's
    /// characters is always another valid CID (with another root).
    #[test]
    fn every_one_character_change_is_refused_or_formats_back(
        cid in valid_cid(),
        at in any::<prop::sample::Index>(),
        with in 0usize..32,
    ) {
        let text = cid.text();
        let at = 1 + at.index(text.len() - 1);
        let mut changed = text.clone().into_bytes();
        changed[at] = BASE32_ALPHABET[with];
        let changed = String::from_utf8(changed).expect("ascii");
        match PieceCid::parse(&changed) {
            Ok(parsed) => prop_assert_eq!(parsed.to_string(), changed),
            Err(e) => prop_assert!(
                !cid.root_chars().contains(&at),
                "a change inside the root ({changed}) was refused: {e}"
            ),
        }
        let inside = cid.root_chars();
        let at = inside.start + (at % inside.len());
        let mut changed = text.clone().into_bytes();
        changed[at] = BASE32_ALPHABET[with];
        let changed = String::from_utf8(changed).expect("ascii");
        let parsed = PieceCid::parse(&changed)
            .unwrap_or_else(|e| panic!("{changed} (root changed at {at}) is refused: {e}"));
        prop_assert_eq!(parsed.to_string(), changed.clone());
        prop_assert_eq!(parsed.version(), PieceCid::parse(&text).expect("valid").version());
        prop_assert_eq!(parsed.root() == &cid.root, changed == text);
    }

    #[test]
    fn near_misses_are_refused_with_the_reason(cid in valid_cid(), miss in near_miss(), pick in any::<u64>()) {
        let (text, want) = miss.apply(&cid, pick);
        let got = PieceCid::parse(&text);
        prop_assert!(
            got.as_ref().is_err_and(|e| want.matches(e)),
            "{miss:?} of {} gave {got:?}, expected {want:?}",
            cid.text()
        );
    }
}

/// RFC 4648 base32, lowercase: the alphabet of the multibase `b` body.
const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A PieceCID built here from the specs (multiformats varints, FRC-0069's
/// digest layout, RFC 4648 base32) rather than through the code under test,
/// so parser and formatter are both checked against an independent encoder.
#[derive(Clone, Debug)]
struct SpecCid {
    root: [u8; 32],
    /// `Some((padding, height))` for v2, `None` for v1.
    shape: Option<(u64, u8)>,
}

fn uvarint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// Lowercase RFC 4648 base32 without padding, written out bit by bit.
fn base32(bytes: &[u8]) -> String {
    let (mut acc, mut bits, mut out) = (0u64, 0u32, String::new());
    for &b in bytes {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

impl SpecCid {
    /// Version, codec and multihash: CIDv1, raw + 0x1011 (v2) or
    /// fil-commitment-unsealed 0xf101 + 0x1012 (v1), as varints.
    fn header(&self) -> Vec<u8> {
        match self.shape {
            Some(_) => vec![0x01, 0x55, 0x91, 0x20],
            None => vec![0x01, 0x81, 0xe2, 0x03, 0x92, 0x20],
        }
    }

    /// The digest before the root: v2 `uvarint(padding) || height`, v1 nothing.
    fn digest_prefix(&self) -> Vec<u8> {
        match self.shape {
            Some((padding, height)) => {
                let mut p = uvarint(padding);
                p.push(height);
                p
            }
            None => Vec::new(),
        }
    }

    fn bytes_with(&self, digest_prefix: &[u8], digest_len: u64, root: &[u8]) -> Vec<u8> {
        let mut out = self.header();
        out.extend(uvarint(digest_len));
        out.extend_from_slice(digest_prefix);
        out.extend_from_slice(root);
        out
    }

    fn bytes(&self) -> Vec<u8> {
        let prefix = self.digest_prefix();
        self.bytes_with(&prefix, prefix.len() as u64 + 32, &self.root)
    }

    fn text(&self) -> String {
        format!("b{}", base32(&self.bytes()))
    }

    /// Positions in [`SpecCid::text`] of the characters that carry root
    /// bits only (not the last one, whose low bits are padding).
    fn root_chars(&self) -> std::ops::Range<usize> {
        let total = self.bytes().len();
        let root_bits = 8 * (total - 32)..8 * total;
        // Character k holds bits 5k..5k+5; +1 skips the multibase prefix.
        1 + root_bits.start.div_ceil(5)..1 + root_bits.end / 5
    }
}

/// Valid CIDs: v1, or v2 of any height the parser accepts with any padding
/// that leaves a payload (minimal trees, and larger ones).
fn valid_cid() -> impl Strategy<Value = SpecCid> {
    let v2 = (any::<[u8; 32]>(), MIN_HEIGHT..=MAX_HEIGHT, any::<u64>()).prop_map(
        |(root, height, pick)| {
            let capacity = 127u64 << (height - 2);
            // Half the cases at the edges: no padding, and the most.
            let padding = match pick % 4 {
                0 => 0,
                1 => capacity - 1,
                _ => pick % capacity,
            };
            SpecCid {
                root,
                shape: Some((padding, height)),
            }
        },
    );
    let v1 = any::<[u8; 32]>().prop_map(|root| SpecCid { root, shape: None });
    prop_oneof![3 => v2, 1 => v1]
}

/// A one-step corruption of a valid CID, and the error it must cause.
#[derive(Clone, Copy, Debug)]
enum NearMiss {
    Uppercase,
    OutsideAlphabet,
    WrongMultibase,
    TrailingByte,
    CutRoot,
    NoPayloadLeft,
    HeightOutOfRange,
    NonMinimalPadding,
    DigestLengthOff,
    NotCidV1,
    WrongMultihash,
    TrailingBits,
    Empty,
    TooLong,
}

fn near_miss() -> impl Strategy<Value = NearMiss> {
    use NearMiss::*;
    prop::sample::select(vec![
        Uppercase,
        OutsideAlphabet,
        WrongMultibase,
        TrailingByte,
        CutRoot,
        NoPayloadLeft,
        HeightOutOfRange,
        NonMinimalPadding,
        DigestLengthOff,
        NotCidV1,
        WrongMultihash,
        TrailingBits,
        Empty,
        TooLong,
    ])
}

/// What a near miss must be refused with.
#[derive(Debug)]
enum Want {
    Exactly(PieceCidError),
    NonCanonical,
    InvalidHeight,
    PaddingTooLarge,
}

impl Want {
    fn matches(&self, e: &PieceCidError) -> bool {
        match self {
            Want::Exactly(w) => w == e,
            Want::NonCanonical => matches!(e, PieceCidError::NonCanonicalBase32 { .. }),
            Want::InvalidHeight => matches!(e, PieceCidError::InvalidHeight { .. }),
            Want::PaddingTooLarge => matches!(e, PieceCidError::PaddingTooLarge { .. }),
        }
    }
}

impl NearMiss {
    /// The corrupted string and the error it must get. `pick` chooses a
    /// position or value where the corruption has a choice.
    fn apply(self, cid: &SpecCid, pick: u64) -> (String, Want) {
        use PieceCidError as E;
        let text = cid.text();
        let body_at = 1 + (pick as usize % (text.len() - 1));
        let encode = |bytes: Vec<u8>| format!("b{}", base32(&bytes));
        // A v2 twin of a v1 CID, for the corruptions of v2 fields.
        let v2 = SpecCid {
            root: cid.root,
            shape: Some(cid.shape.unwrap_or((0, 10))),
        };
        let (padding, height) = v2.shape.expect("v2");
        match self {
            NearMiss::Uppercase => {
                // A letter to uppercase (every CID body has one: `a`/`e` of the header).
                let at = (body_at..text.len())
                    .chain(1..body_at)
                    .find(|&i| text.as_bytes()[i].is_ascii_lowercase())
                    .expect("a letter");
                let found = text.as_bytes()[at].to_ascii_uppercase() as char;
                let mut t = text.clone();
                t.replace_range(at..=at, &found.to_string());
                (
                    t,
                    Want::Exactly(E::NotLowercase {
                        found,
                        position: at,
                    }),
                )
            }
            NearMiss::OutsideAlphabet => {
                let found = ['0', '1', '8', '9', '=', '-', '_', ' ', '/', 'é'][pick as usize % 10];
                let mut t = text.clone();
                t.replace_range(body_at..=body_at, &found.to_string());
                (
                    t,
                    Want::Exactly(E::BadBase32Char {
                        found,
                        position: body_at,
                    }),
                )
            }
            NearMiss::WrongMultibase => {
                let found = ['B', 'z', 'f', 'm', 'u', 'k'][pick as usize % 6];
                (
                    format!("{found}{}", &text[1..]),
                    Want::Exactly(E::NotBase32 { found }),
                )
            }
            NearMiss::TrailingByte => {
                let mut b = cid.bytes();
                b.push(pick as u8);
                (encode(b), Want::Exactly(E::TrailingBytes { count: 1 }))
            }
            NearMiss::CutRoot => {
                let mut b = cid.bytes();
                b.truncate(b.len() - 1 - (pick as usize % 32));
                (encode(b), Want::Exactly(E::Truncated { field: "root" }))
            }
            NearMiss::NoPayloadLeft => {
                let capacity = 127u64 << (height - 2);
                let padding = capacity + pick % 3;
                let spec = SpecCid {
                    root: cid.root,
                    shape: Some((padding, height)),
                };
                (spec.text(), Want::PaddingTooLarge)
            }
            NearMiss::HeightOutOfRange => {
                let bad = [0, 1, MAX_HEIGHT + 1, MAX_HEIGHT + 2, 64, 200, 255][pick as usize % 7];
                let spec = SpecCid {
                    root: cid.root,
                    shape: Some((padding, bad)),
                };
                (spec.text(), Want::InvalidHeight)
            }
            NearMiss::NonMinimalPadding => {
                // The same value with a redundant continuation byte.
                // (A 9-byte padding then has a tenth: over the limit, the same error.)
                let mut p = uvarint(padding);
                let last = p.len() - 1;
                p[last] |= 0x80;
                p.push(0x00);
                p.push(height);
                let b = v2.bytes_with(&p, p.len() as u64 + 32, &cid.root);
                (encode(b), Want::Exactly(E::BadVarint { field: "padding" }))
            }
            NearMiss::DigestLengthOff => {
                let prefix = cid.digest_prefix();
                let expected = prefix.len() as u64 + 32;
                let found = if pick.is_multiple_of(2) {
                    expected + 1
                } else {
                    expected - 1
                };
                let b = cid.bytes_with(&prefix, found, &cid.root);
                (
                    encode(b),
                    Want::Exactly(E::WrongDigestLength { found, expected }),
                )
            }
            NearMiss::NotCidV1 => {
                let found = [0u64, 2, 3, 0x12][pick as usize % 4];
                let mut b = cid.bytes();
                b[0] = found as u8;
                (encode(b), Want::Exactly(E::NotCidV1 { found }))
            }
            NearMiss::WrongMultihash => {
                // Each codec with the other version's multihash.
                let mut b = cid.bytes();
                let (found, codec, expected) = match cid.shape {
                    Some(_) => {
                        b[2] = 0x92; // 0x1012 in place of 0x1011
                        (0x1012, 0x55, 0x1011)
                    }
                    None => {
                        b[4] = 0x91; // 0x1011 in place of 0x1012
                        (0x1011, 0xf101, 0x1012)
                    }
                };
                (
                    encode(b),
                    Want::Exactly(E::WrongMultihash {
                        found,
                        codec,
                        expected,
                    }),
                )
            }
            NearMiss::TrailingBits => {
                // Non-zero bits in the unused tail of the last character, or,
                // where the bytes fill whole characters, one character too many.
                let bits = 8 * cid.bytes().len();
                let mut t = text.clone().into_bytes();
                if bits.is_multiple_of(5) {
                    t.push(BASE32_ALPHABET[1 + pick as usize % 31]);
                } else {
                    let last = t.len() - 1;
                    let value = BASE32_ALPHABET
                        .iter()
                        .position(|&c| c == t[last])
                        .expect("base32");
                    t[last] = BASE32_ALPHABET[value | 1];
                }
                (String::from_utf8(t).expect("ascii"), Want::NonCanonical)
            }
            NearMiss::Empty => (String::new(), Want::Exactly(E::Empty)),
            NearMiss::TooLong => {
                let len = MAX_CID_CHARS + 1 + pick as usize % 1000;
                let t = format!("{text}{}", "a".repeat(len - text.len()));
                (t, Want::Exactly(E::TooLong { len }))
            }
        }
    }
}

#[test]
fn threaded_default_chunks_match_single_thread_with_layer() {
    // Two full 8,323,072-byte chunks, one batch per two threads, plus a tail
    // that ends mid-window: exercises the parallel path at its real size.
    let data = bytes(42, 2 * 8_323_072 + 3 * 1_040_384 + 999);
    let single = hash_with(
        CommP::with_layer(DEFAULT_WINDOW_PADDED).expect("valid"),
        &data,
        &[1000, 5_000_000],
    );
    for threads in [2, 3] {
        let hasher = CommP::with_threads(threads)
            .layer(DEFAULT_WINDOW_PADDED)
            .expect("valid");
        let threaded = hash_with(hasher, &data, &[1000, 5_000_000]);
        assert_eq!(threaded, single, "{threads} threads");
    }
    let (cid, layer) = single;
    assert_eq!(layer.len(), 2 * 8 + 3 + 1);
    assert_eq!(verify_layer(&cid, DEFAULT_WINDOW_PADDED, &layer), Ok(()));
    // Windows larger than a chunk form in the shared stack, not in threads.
    let big = 1u64 << 25;
    let single = hash_with(CommP::with_layer(big).expect("valid"), &data, &[]);
    let threaded = hash_with(
        CommP::with_threads(2).layer(big).expect("valid"),
        &data,
        &[],
    );
    assert_eq!(threaded, single);
    assert_eq!(verify_layer(&single.0, big, &single.1), Ok(()));
}
