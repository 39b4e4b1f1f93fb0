//! `/asset/<id>`: a multi-piece file served as one resource, through real
//! HTTP against a mock Beam holding the pieces and the manifest piece.

mod common;

use beam_edge::manifest::{Manifest, ManifestPiece, FORMAT, VERSION};
use beam_edge::piece::commp::commp_of;
use common::*;

#[test]
fn an_asset_serves_ranges_across_its_pieces() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let data = mp4_like(700_000, 21);
    let id = publish_asset(&beam, &data, 250_000, "video/webm");
    let path = format!("/asset/{id}");

    let (s, h, body) = raw_get(edge.public, &path, &[]).unwrap();
    assert_eq!(s, 200);
    assert!(body == data, "whole asset differs");
    assert_eq!(
        h["content-type"], "video/webm",
        "the manifest's type, not a sniffed one"
    );
    assert_eq!(h["etag"], format!("\"{id}\""));
    assert_eq!(h["content-length"], "700000");

    for (a, b) in [
        (249_990, 250_009),
        (0, 699_999),
        (100, 600_000),
        (499_999, 500_000),
        (699_999, 699_999),
    ] {
        let (s, h, body) =
            raw_get(edge.public, &path, &[("Range", &format!("bytes={a}-{b}"))]).unwrap();
        assert_eq!(s, 206, "{a}-{b}");
        assert_eq!(h["content-range"], format!("bytes {a}-{b}/700000"));
        assert!(body == data[a..=b], "bytes {a}-{b} differ");
    }
    let (s, h, body) =
        raw_get(edge.public, &path, &[("Range", "bytes=-10, 249999-250000")]).unwrap();
    assert_eq!(s, 206);
    assert!(h["content-type"].starts_with("multipart/byteranges"));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("Content-Range: bytes 249999-250000/700000"));
    assert!(text.contains("Content-Range: bytes 699990-699999/700000"));
    let (s, _, _) = raw_get(edge.public, &path, &[("Range", "bytes=700000-")]).unwrap();
    assert_eq!(s, 416);
    let (s, h, body) = raw_request(edge.public, "HEAD", &path, &[]).unwrap();
    assert_eq!(
        (s, h["content-length"].as_str(), body.len()),
        (200, "700000", 0)
    );
    let (s, _, _) = raw_get(
        edge.public,
        &path,
        &[("If-None-Match", &format!("\"{id}\""))],
    )
    .unwrap();
    assert_eq!(s, 304);
}

#[test]
fn ids_that_are_not_assets_are_refused_clearly() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    // A piece that exists but is not a manifest.
    let data = mp4_like(10_000, 22);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let (s, _, body) = raw_get(edge.public, &format!("/asset/{cid}"), &[]).unwrap();
    assert_eq!(s, 404);
    assert!(
        String::from_utf8_lossy(&body).contains("not an asset manifest"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (s, _, body) = raw_get(edge.public, "/asset/hello", &[]).unwrap();
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).starts_with("invalid asset id"));
    let v1 = commp_of(&data).unwrap().to_v1().to_string();
    let (s, _, _) = raw_get(edge.public, &format!("/asset/{v1}"), &[]).unwrap();
    assert_eq!(s, 400);
    // A manifest whose pieces do not add up is refused, not served.
    let m = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        size: 10_001,
        content_type: "video/mp4".into(),
        file_name: String::new(),
        window: 1 << 20,
        pieces: vec![ManifestPiece {
            cid: cid.clone(),
            size: 10_000,
            layer: String::new(),
        }],
    };
    let bytes = m.to_bytes();
    let bad = commp_of(&bytes).unwrap().to_string();
    beam.add_piece(&bad, bytes);
    let (s, _, body) = raw_get(edge.public, &format!("/asset/{bad}"), &[]).unwrap();
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&body).contains("pieces hold 10000 bytes"));
}

#[test]
fn an_asset_window_that_does_not_match_its_layer_is_never_served_whole() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "  retries: 0\n");
    // Piece 0 holds three 1 MiB windows, each checked against the layer in
    // the manifest; piece 1 is one window, checked against its CID.
    let data = mp4_like(3_000_000, 23);
    let id = publish_asset(&beam, &data, 2_500_000, "video/mp4");
    let path = format!("/asset/{id}");
    let mismatches = || {
        metric_value(
            &edge.metrics_text(),
            "beam_edge_window_checks_total{result=\"mismatch\"}",
        )
    };
    // The manifest is read while the upstream is honest.
    let (s, _, _) = raw_request(edge.public, "HEAD", &path, &[]).unwrap();
    assert_eq!(s, 200);
    let (_, _, manifest) = raw_get(edge.public, &format!("/piece/{id}"), &[]).unwrap();
    let manifest = Manifest::parse(&manifest).unwrap();
    let checked_by = |cid: &str| {
        let (s, _, b) = raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
        assert_eq!(s, 200);
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()["checked_by"].clone()
    };
    assert_eq!(checked_by(&manifest.pieces[0].cid), "layer");
    assert_eq!(checked_by(&manifest.pieces[1].cid), "cid");

    // Every header and length right, one byte flipped per body: a client
    // gets a 502 or a cut transfer, never a complete response.
    beam.set_fault(Fault::Corrupt);
    let raw = 1_040_384;
    for (a, b) in [(raw, 2 * raw - 1), (raw + 5, raw + 10), (0, 2_999_999)] {
        match raw_get(edge.public, &path, &[("Range", &format!("bytes={a}-{b}"))]) {
            Ok((s, _, body)) => assert_eq!(s, 502, "bytes {a}-{b}: {} bytes", body.len()),
            Err(e) => assert!(e.contains("truncated"), "bytes {a}-{b}: {e}"),
        }
    }
    assert!(mismatches() >= 3.0, "{}", mismatches());

    // Honest again: the whole file, right, and the bad windows were never
    // cached. Fills started under the fault (read-ahead, a run's last window)
    // may still be finishing, with bad bytes: a reader that joined one would
    // rightly be cut, so wait until none is in flight.
    let filling = |cid: &str| {
        let (_, _, b) = raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        !v["filling"].as_array().unwrap().is_empty()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while manifest.pieces.iter().any(|p| filling(&p.cid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "fills still in flight"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    beam.set_fault(Fault::None);
    let (s, _, body) = raw_get(edge.public, &path, &[]).unwrap();
    assert_eq!(s, 200);
    assert!(body == data, "the asset differs");

    // `cache.check_windows: false` turns the checks off.
    let unchecked = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: "  check_windows: false\n".into(),
        ..Default::default()
    });
    let (s, _, body) = raw_get(unchecked.public, &path, &[]).unwrap();
    assert!(s == 200 && body == data);
    for p in &manifest.pieces {
        let (_, _, b) = raw_get(unchecked.admin, &format!("/admin/cache/{}", p.cid), &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["checked_by"], serde_json::Value::Null);
    }
    assert_eq!(
        metric_value(
            &unchecked.metrics_text(),
            "beam_edge_window_checks_total{result=\"ok\"}"
        ),
        0.0
    );
}

#[test]
fn a_manifest_that_does_not_hash_to_its_id_is_refused_and_not_kept() {
    let beam = MockBeam::start();
    // Small windows: the manifest spans two, which no layer covers, so only
    // the check of the whole manifest against its id can catch it.
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: "  window: 128KiB\n".into(),
        ..Default::default()
    });
    let data = mp4_like(10_000, 24);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let manifest = |name: &str| {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            size: 10_000,
            content_type: "video/mp4".into(),
            file_name: name.into(),
            window: 1 << 20,
            pieces: vec![ManifestPiece {
                cid: cid.clone(),
                size: 10_000,
                layer: String::new(),
            }],
        }
        .to_bytes()
    };
    let real = manifest(&"a".repeat(200_000));
    let forged = manifest(&"b".repeat(200_000));
    assert_eq!(real.len(), forged.len());
    assert!(real.len() > 130_048, "the manifest must span two windows");
    let id = commp_of(&real).unwrap().to_string();
    // The upstream serves a well-formed manifest of the right length, but
    // not the one the id names.
    beam.add_piece(&id, forged);
    let (s, _, body) = raw_get(edge.public, &format!("/asset/{id}"), &[]).unwrap();
    assert_eq!(s, 502, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("does not hash to its id"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Once the upstream is honest the asset plays: the forged windows were
    // not kept in the cache.
    beam.add_piece(&id, real);
    let (s, _, body) = raw_get(edge.public, &format!("/asset/{id}"), &[]).unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == data);
}
