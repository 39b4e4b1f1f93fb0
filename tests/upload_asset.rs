//! Uploading files as assets against the mock Curio (real HTTP over
//! loopback), and serving them back through the real binary's `/asset`.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;

use beam_edge::manifest::Manifest;
use beam_edge::upload::pipeline::{upload_asset, AssetOptions, UploadError, UploadedAsset};
use beam_edge::upload::sp::{SpClient, SpTimeouts};
use common::mock_curio::MockCurio;
use common::*;

fn options(piece_size: u64) -> AssetOptions {
    AssetOptions {
        piece_size,
        max_size: 1 << 40,
        window_padded: 128 << 10,
        content_type: None,
        file_name: "clip.mp4".into(),
        commp_threads: 1,
    }
}

/// `data` as a stream of uneven chunks.
fn chunks(data: &[u8]) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Unpin + Send {
    let mut parts = Vec::new();
    let mut i = 0;
    let mut n = 1000;
    while i < data.len() {
        let end = (i + n).min(data.len());
        parts.push(Ok(Bytes::copy_from_slice(&data[i..end])));
        i = end;
        n = n * 7 % 65_521 + 100;
    }
    stream::iter(parts)
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn upload(
    curio: &MockCurio,
    data: &[u8],
    opts: &AssetOptions,
) -> Result<UploadedAsset, UploadError> {
    let sp = SpClient::new(&curio.url(), SpTimeouts::default()).unwrap();
    run(async { upload_asset(&sp, chunks(data), opts, Arc::new(|_| {})).await })
}

fn finalizes(curio: &MockCurio) -> usize {
    curio.requests_to("POST", "/pdp/piece/uploads/").len()
}

#[test]
fn a_file_is_split_into_pieces_and_a_manifest() {
    let curio = MockCurio::start();
    let data = mp4_like(1_000_000, 31);
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let sp = SpClient::new(&curio.url(), SpTimeouts::default()).unwrap();
    let asset = run(async {
        upload_asset(
            &sp,
            chunks(&data),
            &options(300_000),
            Arc::new(move |n| s2.store(n, Ordering::SeqCst)),
        )
        .await
    })
    .unwrap();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1_000_000,
        "progress reached the file size"
    );
    let sizes: Vec<u64> = asset.pieces.iter().map(|p| p.size).collect();
    assert_eq!(sizes, vec![300_000, 300_000, 300_000, 100_000]);
    let mut offset = 0;
    for p in &asset.pieces {
        let got = curio
            .piece_bytes(&p.cid.to_string())
            .expect("provider holds the piece");
        assert!(
            got == data[offset..offset + p.size as usize],
            "piece at {offset} differs"
        );
        offset += p.size as usize;
    }
    // The manifest is a piece of its own, and the asset id is its CID.
    let stored = curio
        .piece_bytes(&asset.asset_id.to_string())
        .expect("manifest piece");
    let m = Manifest::parse(&stored).unwrap();
    assert_eq!(m, asset.manifest);
    assert_eq!(m.size, 1_000_000);
    assert_eq!(m.content_type, "video/mp4", "sniffed from the first bytes");
    assert_eq!(m.file_name, "clip.mp4");
    assert_eq!(m.pieces.len(), 4);
    // Layers: one 32-byte root per 130,048-byte window, hex.
    assert_eq!(m.pieces[0].layer.len(), 300_000usize.div_ceil(130_048) * 64);
    assert_eq!(finalizes(&curio), 5);
}

#[test]
fn a_short_tail_takes_127_bytes_from_the_piece_before() {
    let curio = MockCurio::start();
    let data = mp4_like(600_050, 32);
    let asset = upload(&curio, &data, &options(300_000)).unwrap();
    let sizes: Vec<u64> = asset.pieces.iter().map(|p| p.size).collect();
    assert_eq!(sizes, vec![300_000, 299_923, 127]);
    let last = curio.piece_bytes(&asset.pieces[2].cid.to_string()).unwrap();
    assert!(last == data[600_050 - 127..]);
}

#[test]
fn bad_inputs_store_nothing() {
    let curio = MockCurio::start();
    match upload(&curio, &[7u8; 100], &options(300_000)) {
        Err(UploadError::TooSmall(100)) => {}
        other => panic!("expected TooSmall, got {other:?}"),
    }
    assert!(
        curio.requests().is_empty(),
        "no request for a too-small file"
    );

    let mut opts = options(300_000);
    opts.max_size = 500_000;
    let err = upload(&curio, &mp4_like(600_000, 33), &opts).unwrap_err();
    assert!(
        matches!(err, UploadError::TooLarge { limit: 500_000 }),
        "{err}"
    );
    assert_eq!(
        finalizes(&curio),
        1,
        "only the first full piece was finalized; no manifest"
    );

    let err = upload(&curio, &mp4_like(1000, 34), &options(100)).unwrap_err();
    assert!(err.to_string().contains("piece_size"), "{err}");
}

#[test]
fn a_client_that_disconnects_mid_upload_leaves_nothing_behind() {
    let curio = MockCurio::start();
    let data = mp4_like(450_000, 35);
    let mut parts: Vec<io::Result<Bytes>> = data
        .chunks(50_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    parts.truncate(7); // 350,000 bytes, then the connection drops
    parts.push(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "client went away",
    )));
    let sp = SpClient::new(&curio.url(), SpTimeouts::default()).unwrap();
    let err = run(async {
        upload_asset(
            &sp,
            stream::iter(parts),
            &options(300_000),
            Arc::new(|_| {}),
        )
        .await
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("client went away") && text.contains("abandoned"),
        "{text}"
    );
    // The first piece completed; the second was abandoned without a finalize; no manifest.
    assert_eq!(finalizes(&curio), 1);
    let sessions = curio.sessions();
    assert_eq!(sessions.iter().filter(|s| s.finalized.is_some()).count(), 1);
    assert!(sessions
        .iter()
        .any(|s| s.finalized.is_none() && !s.complete));
}

#[test]
fn an_uploaded_asset_plays_back_through_the_edge_byte_exact() {
    // Beam does not know the fresh pieces yet (404); the provider that holds
    // them is the fallback, as right after a real upload.
    let curio = MockCurio::start();
    let beam = MockBeam::start();
    let data = mp4_like(900_000, 36);
    let asset = upload(&curio, &data, &options(250_000)).unwrap();
    assert_eq!(asset.pieces.len(), 4);
    let edge = EdgeProcess::with_beam(
        &beam,
        &format!("  providers: [\"{}\"]\n  retries: 0\n", curio.url()),
    );
    let path = format!("/asset/{}", asset.asset_id);
    let (s, h, body) = raw_get(edge.public, &path, &[]).unwrap();
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "video/mp4");
    assert!(body == data, "whole asset differs");
    for (a, b) in [(249_000, 251_000), (499_999, 750_000), (10, 899_999)] {
        let (s, _, body) =
            raw_get(edge.public, &path, &[("Range", &format!("bytes={a}-{b}"))]).unwrap();
        assert_eq!(s, 206);
        assert!(body == data[a..=b], "bytes {a}-{b} differ");
    }
}

fn vm_hwm_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        / 1024
}

/// The upload bench (`benches/upload.sh`): a 4 GiB generated file through
/// `upload_asset` to the mock Curio (which only counts the bytes), printing
/// throughput and the process's peak RSS. Asserts correctness only.
#[test]
#[ignore = "run alone in release mode by benches/upload.sh"]
fn upload_4gib_asset_throughput_and_rss() {
    use beam_edge::upload::sp::MAX_UPLOAD_SIZE;
    let size: u64 = std::env::var("UPLOAD_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 << 30);
    let curio = MockCurio::start_with(common::mock_curio::MockConfig {
        verify_uploads: false,
        ..Default::default()
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut opts = options(MAX_UPLOAD_SIZE);
    opts.commp_threads = threads;
    // 1 MiB chunks of cheap, varying bytes, generated as they are sent.
    let chunk = 1u64 << 20;
    let body = stream::iter((0..size.div_ceil(chunk)).map(move |i| {
        let n = chunk.min(size - i * chunk) as usize;
        let mut v = vec![(i % 251) as u8; n];
        v[0] = (i >> 8) as u8;
        Ok::<Bytes, io::Error>(Bytes::from(v))
    }));
    let before = vm_hwm_mib();
    let start = std::time::Instant::now();
    let sp = SpClient::new(&curio.url(), SpTimeouts::default()).unwrap();
    let asset = run(async { upload_asset(&sp, body, &opts, Arc::new(|_| {})).await }).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(asset.manifest.size, size);
    assert_eq!(asset.pieces.len() as u64, size.div_ceil(MAX_UPLOAD_SIZE));
    println!(
        "| file | pieces | CommP threads | seconds | MB/s | peak RSS before | peak RSS after |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.2} GiB | {} + manifest | {threads} | {secs:.1} | {:.0} | {before} MiB | {} MiB |",
        size as f64 / (1u64 << 30) as f64,
        asset.pieces.len(),
        size as f64 / secs / 1e6,
        vm_hwm_mib()
    );
}
