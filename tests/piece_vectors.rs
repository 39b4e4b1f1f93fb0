//! PieceCID and CommP against the vectors of filecoin.md ("PieceCID"), the
//! size boundaries of the Fr32 tree, and every parse error with its message.

use beam_edge::piece::commp::{
    commp_of, layer_len, root_from_layer, verify_layer, window_root, zero_tree_root, CommP,
    CommpError, DEFAULT_WINDOW_PADDED,
};
use beam_edge::piece::{CidVersion, PieceCid, PieceCidError};
use data_encoding::BASE32_NOPAD;

/// v2 vectors: (payload, expected CID).
fn v2_vectors() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (
            vec![0; 127],
            "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy",
        ),
        (
            vec![0; 128],
            "bafkzcibcpybwiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy",
        ),
        (
            vec![0; 254],
            "bafkzcibcaabwiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy",
        ),
        (
            vec![0; 1024],
            "bafkzcibd6adqn7d6skbjnziw7kw6tbvsr6jnisspes4tkscsem3wu6mqe66br6bt",
        ),
        (
            vec![0; 1_040_384],
            "bafkzcibcaah5tgehxfzvoouw4ejzgzcsg3axwh2moa2noi6hvgpxbg5u3jqrmky",
        ),
        (
            vec![0; 1_048_576],
            "bafkzcibeqcad6egqwuynxmfu6jof2lzkfdp65aelknasuautd4mmjgpvujkaq2ytey",
        ),
        (
            vec![0; 10_000_000],
            "bafkzcibfqdjzkaytuishkcbilbijmw36gnftcj5qybblducg3rkeaijxmj6nq6m44e5a",
        ),
        (
            (0..5000).map(|i| (i % 256) as u8).collect(),
            "bafkzcibdxamaqyigyn4mbyyisc2euhpbhtbtgw4gcasorvptc2jxtjsc7wrupdq6",
        ),
        (
            four_quads(),
            "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi",
        ),
    ]
}

/// 127×0x00, 127×0x01, 127×0x02, 127×0x03.
fn four_quads() -> Vec<u8> {
    (0u8..4).flat_map(|b| std::iter::repeat_n(b, 127)).collect()
}

/// v1 vectors: (payload, expected CID).
fn v1_vectors() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (
            vec![0; 128],
            "baga6ea4seaqgiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy",
        ),
        (
            vec![0; 1024],
            "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy",
        ),
        (
            four_quads(),
            "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi",
        ),
        (
            vec![0xcc; 127],
            "baga6ea4seaqmfldjtozgne6adk7eve2vdxte7vzlivae7nzsbrawobo546zkijq",
        ),
        (
            vec![0xcc; 1024],
            "baga6ea4seaqdlpnhgsndrgjeu4p46hahlsr4lybg6du4d56ooppdpxhcofxeuoi",
        ),
    ]
}

/// Hash in uneven chunks (1, 2, 3, ... bytes, then 4 KiB) to cross every
/// Fr32-unit boundary in a different place.
fn commp_chunked(data: &[u8]) -> PieceCid {
    let mut hasher = CommP::new();
    let mut rest = data;
    let mut step = 1;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        hasher.update(&rest[..n]);
        rest = &rest[n..];
        step = if step < 300 { step + 1 } else { 4096 };
    }
    hasher.finish().expect("valid payload")
}

#[test]
fn v2_vectors_match_exactly() {
    for (data, expected) in v2_vectors() {
        let cid = commp_of(&data).expect("valid payload");
        assert_eq!(cid.to_string(), expected, "payload of {} bytes", data.len());
        assert_eq!(cid.version(), CidVersion::V2);
        assert_eq!(cid.payload_size(), Some(data.len() as u64));
        let parsed: PieceCid = expected.parse().expect("vector parses");
        assert_eq!(parsed, cid);
        assert_eq!(parsed.to_string(), expected);
        assert_eq!(commp_chunked(&data), cid, "chunked, {} bytes", data.len());
    }
}

#[test]
fn v1_vectors_match_exactly() {
    for (data, expected) in v1_vectors() {
        let cid = commp_of(&data).expect("valid payload");
        let v1 = cid.to_v1();
        assert_eq!(v1.to_string(), expected, "payload of {} bytes", data.len());
        let parsed = PieceCid::parse(expected).expect("vector parses");
        assert_eq!(parsed.version(), CidVersion::V1);
        assert_eq!(parsed.root(), cid.root());
        assert_eq!(parsed.payload_size(), None);
        assert_eq!(parsed.height(), None);
        assert_eq!(parsed.to_v2(data.len() as u64), Ok(cid));
    }
}

#[test]
fn the_v2_and_v1_of_four_quads_share_their_root() {
    let v2 = PieceCid::parse("bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi")
        .expect("v2");
    let v1 = PieceCid::parse("baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi")
        .expect("v1");
    assert_eq!(v2.to_v1(), v1);
    assert_eq!(v2.root(), v1.root());
}

#[test]
fn empty_32_gib_piece_from_zero_tree_root() {
    // 32 GiB padded = 2^30 leaves.
    let root = zero_tree_root(30).expect("height 30 is in range");
    assert_eq!(
        PieceCid::from_root_v1(root).to_string(),
        "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"
    );
}

#[test]
fn boundary_sizes_round_trip() {
    // (payload, tree height, padding)
    let cases: [(u64, u8, u64); 9] = [
        (127, 2, 0),
        (128, 3, 126),
        (253, 3, 1),
        (254, 3, 0),
        (255, 4, 253),
        (4064, 7, 0),
        (4065, 8, 4063),
        (1_040_384, 15, 0),
        (1_040_385, 16, 1_040_383),
    ];
    for (len, height, padding) in cases {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let cid = commp_of(&data).expect("valid payload");
        assert_eq!(cid.payload_size(), Some(len), "{len}");
        assert_eq!(cid.height(), Some(height), "{len}");
        assert_eq!(cid.padding(), Some(padding), "{len}");
        assert_eq!(cid.padded_size(), Some(32u64 << height), "{len}");
        let text = cid.to_string();
        assert!(text.starts_with("bafkzcib"), "{text}");
        assert_eq!(PieceCid::parse(&text), Ok(cid.clone()));
        assert_eq!(commp_chunked(&data), cid, "chunked {len}");
        let mut threaded = CommP::with_threads(2)
            .chunk_height(4)
            .expect("valid chunk height");
        threaded.update(&data);
        assert_eq!(threaded.finish(), Ok(cid.clone()), "threaded {len}");
        assert!(cid.to_v1().to_string().starts_with("baga6ea4seaq"));
    }
}

#[test]
fn binary_cid_layout() {
    let v2 = PieceCid::parse("bafkzcibcpybwiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy")
        .expect("v2");
    let bytes = v2.to_bytes();
    // version 1, raw, 0x1011, digest len 34, padding 126, height 3, root.
    assert_eq!(&bytes[..7], &[0x01, 0x55, 0x91, 0x20, 0x22, 0x7e, 0x03]);
    assert_eq!(&bytes[7..], v2.root());
    assert_eq!(PieceCid::from_bytes(&bytes), Ok(v2.clone()));
    let v1 = v2.to_v1().to_bytes();
    assert_eq!(&v1[..6], &[0x01, 0x81, 0xe2, 0x03, 0x92, 0x20]);
    assert_eq!(v1[6], 0x20);
    assert_eq!(&v1[7..], v2.root());
}

#[test]
fn layer_of_the_default_window() {
    // Two full windows and a short third one.
    let len = 2 * 1_040_384 + 5000;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
    let (cid, layer) = CommP::with_layer(DEFAULT_WINDOW_PADDED)
        .map(|mut h| {
            h.update(&data);
            h
        })
        .and_then(CommP::finish_with_layer)
        .expect("valid payload");
    assert_eq!(layer.len(), 3);
    assert_eq!(layer_len(len as u64, DEFAULT_WINDOW_PADDED), Ok(3));
    for (i, node) in layer.iter().enumerate() {
        let window = &data[i * 1_040_384..((i + 1) * 1_040_384).min(len)];
        assert_eq!(
            window_root(window, DEFAULT_WINDOW_PADDED).as_ref(),
            Ok(node),
            "window {i}"
        );
    }
    let height = cid.height().expect("v2");
    assert_eq!(
        root_from_layer(&layer, DEFAULT_WINDOW_PADDED, height).as_ref(),
        Ok(cid.root())
    );
    assert_eq!(verify_layer(&cid, DEFAULT_WINDOW_PADDED, &layer), Ok(()));
    let mut bad = layer.clone();
    bad[1][0] ^= 1;
    assert_eq!(
        verify_layer(&cid, DEFAULT_WINDOW_PADDED, &bad),
        Err(CommpError::LayerMismatch)
    );
    assert_eq!(
        verify_layer(&cid, DEFAULT_WINDOW_PADDED, &layer[..2]),
        Err(CommpError::LayerLength {
            found: 2,
            expected: 3
        })
    );
    assert_eq!(
        verify_layer(&cid.to_v1(), DEFAULT_WINDOW_PADDED, &layer),
        Err(CommpError::NeedsV2)
    );
}

#[test]
fn layer_of_a_piece_within_one_window_is_its_root() {
    let data = vec![7u8; 5000];
    let mut hasher = CommP::with_layer(DEFAULT_WINDOW_PADDED).expect("valid window");
    hasher.update(&data);
    let (cid, layer) = hasher.finish_with_layer().expect("valid payload");
    assert_eq!(layer, vec![*cid.root()]);
    assert_eq!(verify_layer(&cid, DEFAULT_WINDOW_PADDED, &layer), Ok(()));
}

#[test]
fn commp_errors_say_what_is_wrong() {
    assert_eq!(
        commp_of(&[0; 126]).map_err(|e| e.to_string()),
        Err("payload of 126 bytes is too small: a piece holds at least 127 bytes".to_owned())
    );
    assert_eq!(
        CommP::with_layer(1000).map(|_| ()).map_err(|e| e.to_string()),
        Err("window of 1000 padded bytes is invalid: it must be a power of two from 128 to 68719476736".to_owned())
    );
    assert_eq!(
        window_root(&[0; 1017], 1024).map_err(|e| e.to_string()),
        Err("1017 bytes do not fit one window of 1016 raw bytes".to_owned())
    );
}

/// Lowercase base32 with the multibase prefix, for hand-built CIDs.
fn b32(bytes: &[u8]) -> String {
    format!("b{}", BASE32_NOPAD.encode(bytes).to_ascii_lowercase())
}

fn parse_err(s: &str) -> (PieceCidError, String) {
    let err = PieceCid::parse(s).expect_err("must not parse");
    let msg = err.to_string();
    (err, msg)
}

/// A valid v2 binary CID (128 zero bytes: padding 126, height 3).
fn v2_bytes() -> Vec<u8> {
    PieceCid::parse("bafkzcibcpybwiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy")
        .expect("v2")
        .to_bytes()
}

#[test]
fn every_parse_error_is_reachable_with_its_message() {
    let v2 = "bafkzcibcpybwiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy";
    let root = [0x11u8; 32];
    let cases: Vec<(String, PieceCidError, &str)> = vec![
        (String::new(), PieceCidError::Empty, "PieceCID is empty"),
        (
            format!("b{}", "a".repeat(300)),
            PieceCidError::TooLong { len: 301 },
            "PieceCID is 301 characters long; at most 256 are accepted",
        ),
        (
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into(),
            PieceCidError::NotBase32 { found: 'Q' },
            "PieceCID must start with multibase prefix 'b' (lowercase base32), found 'Q'",
        ),
        (
            v2.to_uppercase(),
            PieceCidError::NotBase32 { found: 'B' },
            "PieceCID must start with multibase prefix 'b' (lowercase base32), found 'B'",
        ),
        (
            format!("b{}", &v2[1..].to_uppercase()),
            PieceCidError::NotLowercase { found: 'A', position: 1 },
            "PieceCID must be canonical lowercase base32, found uppercase 'A' at position 1",
        ),
        (
            "bafk1zcib".into(),
            PieceCidError::BadBase32Char { found: '1', position: 4 },
            "invalid base32 character '1' at position 4",
        ),
        (
            "bafkzcib/".into(),
            PieceCidError::BadBase32Char { found: '/', position: 8 },
            "invalid base32 character '/' at position 8",
        ),
        (
            "ba".into(),
            PieceCidError::NonCanonicalBase32 { len: 1 },
            "base32 text of 1 characters is not canonical (impossible length or non-zero trailing bits)",
        ),
        (
            // Same bytes, but the last character carries non-zero spare bits.
            format!("{}z", &v2[..v2.len() - 1]),
            PieceCidError::NonCanonicalBase32 { len: v2.len() - 1 },
            "base32 text of 63 characters is not canonical (impossible length or non-zero trailing bits)",
        ),
        (b32(&[0x02, 0x55]), PieceCidError::NotCidV1 { found: 2 }, "not a CIDv1: version is 2"),
        (
            b32(&[0x01, 0x71, 0x12, 0x20]),
            PieceCidError::WrongCodec { found: 0x71 },
            "wrong codec 0x71: expected 0x55 (raw, v2) or 0xf101 (fil-commitment-unsealed, v1)",
        ),
        (
            b32(&[0x01, 0x55, 0x12, 0x20]),
            PieceCidError::WrongMultihash { found: 0x12, codec: 0x55, expected: 0x1011 },
            "wrong multihash 0x12 for codec 0x55: expected 0x1011",
        ),
        (
            b32(&[0x01, 0x81, 0xe2, 0x03, 0x91, 0x20]),
            PieceCidError::WrongMultihash { found: 0x1011, codec: 0xf101, expected: 0x1012 },
            "wrong multihash 0x1011 for codec 0xf101: expected 0x1012",
        ),
        (
            b32(&[0x81, 0x00, 0x55]),
            PieceCidError::BadVarint { field: "CID version" },
            "malformed varint in the CID version (not minimal, or over 9 bytes)",
        ),
        (
            b32(&[0x01, 0x55, 0x91, 0xa0, 0x00]),
            PieceCidError::BadVarint { field: "multihash code" },
            "malformed varint in the multihash code (not minimal, or over 9 bytes)",
        ),
        (
            b32(&[0x01, 0x55, 0x91]),
            PieceCidError::Truncated { field: "multihash code" },
            "truncated CID: the multihash code is cut short",
        ),
        (
            b32(&v2_bytes()[..v2_bytes().len() - 5]),
            PieceCidError::Truncated { field: "root" },
            "truncated CID: the root is cut short",
        ),
        (
            b32(&[&[0x01, 0x81, 0xe2, 0x03, 0x92, 0x20, 0x21][..], &[0; 33]].concat()),
            PieceCidError::WrongDigestLength { found: 33, expected: 32 },
            "wrong digest length 33: expected 32",
        ),
        (
            b32(&[&[0x01, 0x55, 0x91, 0x20, 0x23, 0x00, 0x02][..], &root].concat()),
            PieceCidError::WrongDigestLength { found: 35, expected: 34 },
            "wrong digest length 35: expected 34",
        ),
        (
            b32(&[&[0x01, 0x55, 0x91, 0x20, 0x22, 0x00, 0x01][..], &root].concat()),
            PieceCidError::InvalidHeight { height: 1 },
            "invalid tree height 1: must be 2 to 58 (a piece holds at least 127 bytes)",
        ),
        (
            b32(&[&[0x01, 0x55, 0x91, 0x20, 0x22, 0x00, 59][..], &root].concat()),
            PieceCidError::InvalidHeight { height: 59 },
            "invalid tree height 59: must be 2 to 58 (a piece holds at least 127 bytes)",
        ),
        (
            b32(&[&[0x01, 0x55, 0x91, 0x20, 0x23, 0xfe, 0x01, 0x03][..], &root].concat()),
            PieceCidError::PaddingTooLarge { padding: 254, height: 3, capacity: 254 },
            "padding 254 leaves no payload in a tree of height 3 (capacity 254 bytes)",
        ),
        (
            b32(&[&v2_bytes()[..], &[0x00]].concat()),
            PieceCidError::TrailingBytes { count: 1 },
            "1 trailing bytes after the digest",
        ),
    ];
    for (input, want, msg) in cases {
        let (err, text) = parse_err(&input);
        assert_eq!(err, want, "input {input:?}");
        assert_eq!(text, msg, "input {input:?}");
    }
}

#[test]
fn size_errors_say_what_is_wrong() {
    let root = [0x22u8; 32];
    let err = PieceCid::from_root_v2(root, 0).expect_err("no payload");
    assert_eq!(err, PieceCidError::PayloadSizeOutOfRange { size: 0 });
    assert_eq!(
        err.to_string(),
        "payload size 0 is out of range: must be 1 to 9151314442816847872"
    );
    let v2 = PieceCid::from_root_v2(root, 1000).expect("in range");
    let err = v2.to_v2(999).expect_err("contradicts");
    assert_eq!(
        err.to_string(),
        "payload size 999 contradicts the CID's own 1000"
    );
    assert_eq!(v2.to_v2(1000), Ok(v2.clone()));
}
