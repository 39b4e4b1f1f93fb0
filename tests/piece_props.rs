//! Properties of PieceCID and CommP: chunking, threads and the window layer
//! never change the result, and every CID formats back to what it parsed from.

use beam_edge::piece::cid::max_payload;
use beam_edge::piece::commp::{
    commp_of, layer_len, root_from_layer, verify_layer, window_raw_len, window_root, CommP, Node,
    DEFAULT_WINDOW_PADDED,
};
use beam_edge::piece::{CidVersion, PieceCid};
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
    fn whatever_parses_formats_back_to_the_same_string(s in "b[a-z2-7]{0,90}") {
        if let Ok(cid) = PieceCid::parse(&s) {
            prop_assert_eq!(cid.to_string(), s);
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
