//! Every byte checked against its PieceCID (`verify.*`), against the real
//! binary: a piece of several windows whose first storage provider lies
//! (flips one byte of a window, serves another piece's bytes with the right
//! length, cuts a window short) and whose second tells the truth, with Beam
//! down so that the providers serve. Under `strict` not one wrong byte
//! reaches a client; under `background` every wrong window is purged once
//! the layer is built, and fetched again from the honest provider. Layers
//! survive a restart, and every response says how it was checked.

mod common;

use std::time::{Duration, Instant};

use common::{
    beam_upstream, metric_value, mp4_like, raw_get, EdgeOptions, EdgeProcess, Fault, MockBeam,
};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);
/// Raw bytes of a 128 KiB (padded) window.
const WINDOW: usize = 130_048;
/// Five whole windows and part of a sixth.
const SIZE: usize = 5 * WINDOW + 60_000;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Rig {
    _beam: MockBeam,
    bad: MockBeam,
    good: MockBeam,
    edge: EdgeProcess,
    cid: String,
    data: Vec<u8>,
}

/// Beam answers 500; `bad` (asked first) serves `bad_data` under the CID
/// with `fault`; `good` serves the true bytes.
fn rig(mode: &str, bad_data: impl FnOnce(&[u8]) -> Vec<u8>, fault: Fault) -> Rig {
    let data = mp4_like(SIZE, 7);
    let cid = beam_edge::piece::commp::commp_of(&data)
        .unwrap()
        .to_string();
    let beam = MockBeam::start();
    beam.set_fault(Fault::Status(500));
    // Storage providers answer ranges with 206 from the first request (as
    // cold Beam mocks they answered whole bodies until one completed, so
    // which windows the liar served hung on timing).
    let bad = MockBeam::start_provider();
    bad.add_piece(&cid, bad_data(&data));
    bad.set_fault(fault);
    let good = MockBeam::start_provider();
    good.add_piece(&cid, data.clone());
    let providers = format!(
        "  providers: [\"http://{}\", \"http://{}\"]\n  provider_backoff: 10m\n  retries: 1\n",
        bad.addr, good.addr
    );
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, &providers),
        cache: "  window: 128KiB\n  memory: 64MiB\n  prefetch: 0\n".into(),
        extra: format!("verify:\n  mode: {mode}\n  build_delay: 0s\n"),
        ..Default::default()
    });
    Rig {
        _beam: beam,
        bad,
        good,
        edge,
        cid,
        data,
    }
}

fn flip_in_window_2(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d[2 * WINDOW + 77] ^= 0x10;
    d
}

fn another_piece(data: &[u8]) -> Vec<u8> {
    mp4_like(data.len(), 99)
}

fn admin_piece(edge: &EdgeProcess, cid: &str) -> Value {
    let (status, _, body) = raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn metric(edge: &EdgeProcess, name: &str) -> f64 {
    metric_value(&edge.metrics_text(), name)
}

/// Under strict, a cold read of a piece whose first provider lies waits
/// for the layer and then serves only checked bytes.
fn strict_serves_only_true_bytes(bad_data: impl FnOnce(&[u8]) -> Vec<u8>, fault: Fault) {
    let r = rig("strict", bad_data, fault);
    let path = format!("/piece/{}", r.cid);
    let (status, headers, body) = raw_get(r.edge.public, &path, &[]).unwrap();
    assert_eq!(status, 200, "{}", r.edge.log());
    assert_eq!(body.len(), r.data.len());
    assert!(body == r.data, "a wrong byte reached the client");
    assert_eq!(headers["x-beam-edge-checked"], "layer");
    // A range deep in the piece, and again after the first read.
    let (status, headers, body) =
        raw_get(r.edge.public, &path, &[("Range", "bytes=200000-400000")]).unwrap();
    assert_eq!(status, 206);
    assert!(body == r.data[200_000..=400_000]);
    assert_eq!(headers["x-beam-edge-checked"], "layer");
    let m = r.edge.metrics_text();
    assert_eq!(
        metric_value(
            &m,
            "beam_edge_served_check_bytes_total{check=\"unchecked\"}"
        ),
        0.0
    );
    assert!(metric_value(&m, "beam_edge_served_check_bytes_total{check=\"layer\"}") > 0.0);
    let st = admin_piece(&r.edge, &r.cid);
    assert_eq!(st["layer"]["source"], "built");
    assert_eq!(st["layer"]["swept"], true);
    assert_eq!(st["served_as"], "layer");
    assert!(!r.good.requests().is_empty(), "the honest provider served");
    // The layer store's footprint: one piece's roots, in memory and on disk.
    let (status, _, body) = raw_get(r.edge.admin, "/admin/cache", &[]).unwrap();
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_slice(&body).unwrap();
    let windows = st["layer"]["windows"].as_u64().unwrap();
    assert_eq!(stats["layers"]["pieces_in_memory"], 1, "{stats}");
    assert_eq!(stats["layers"]["memory_bytes"], 32 * windows, "{stats}");
    assert_eq!(stats["layers"]["files"], 1, "{stats}");
}

#[test]
fn strict_a_provider_that_flips_one_byte_sends_no_wrong_byte() {
    strict_serves_only_true_bytes(flip_in_window_2, Fault::None);
}

#[test]
fn strict_a_provider_that_serves_another_piece_sends_no_wrong_byte() {
    strict_serves_only_true_bytes(another_piece, Fault::None);
}

#[test]
fn strict_a_provider_that_cuts_windows_short_sends_no_wrong_byte() {
    strict_serves_only_true_bytes(<[u8]>::to_vec, Fault::ShortBody);
}

/// Under background, wrong windows are served unchecked at first; once the
/// layer is built every one of them is purged and fetched again from the
/// honest provider, and the piece is then served checked.
fn background_purges_and_refetches(bad_data: impl FnOnce(&[u8]) -> Vec<u8>, wrong: f64) {
    let r = rig("background", bad_data, Fault::None);
    let path = format!("/piece/{}", r.cid);
    let (status, headers, _) = raw_get(r.edge.public, &path, &[]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["x-beam-edge-checked"], "unchecked");
    wait_for("the layer build", || {
        metric(
            &r.edge,
            "beam_edge_layer_jobs_total{job=\"build\",outcome=\"ok\"}",
        ) == 1.0
    });
    assert_eq!(
        metric(&r.edge, "beam_edge_wrong_windows_purged_total"),
        wrong,
        "{}",
        r.edge.log()
    );
    let st = admin_piece(&r.edge, &r.cid);
    assert_eq!(st["layer"]["source"], "built");
    assert_eq!(st["layer"]["swept"], true);
    assert!(r.edge.log().contains("purged"), "the purge is logged");
    // The purged windows are fetched again, from the honest provider only.
    let bad_before = r.bad.requests().len();
    wait_for("the purged windows to be cached again", || {
        admin_piece(&r.edge, &r.cid)["memory"]
            .as_array()
            .is_some_and(|m| m.len() == 6)
    });
    let (status, headers, body) = raw_get(r.edge.public, &path, &[]).unwrap();
    assert_eq!(status, 200);
    assert!(body == r.data, "the wrong windows are gone");
    assert_eq!(headers["x-beam-edge-checked"], "layer");
    assert_eq!(r.bad.requests().len(), bad_before, "the liar is backed off");
}

#[test]
fn background_a_flipped_byte_is_purged_and_refetched_once_the_layer_is_built() {
    background_purges_and_refetches(flip_in_window_2, 1.0);
}

#[test]
fn background_another_pieces_bytes_are_purged_and_refetched() {
    background_purges_and_refetches(another_piece, 6.0);
}

#[test]
fn a_built_layer_survives_a_restart_and_checks_from_the_first_byte() {
    let data = mp4_like(SIZE, 11);
    let cid = beam_edge::piece::commp::commp_of(&data)
        .unwrap()
        .to_string();
    let beam = MockBeam::start();
    beam.add_piece(&cid, data.clone());
    let cache_dir = tempfile::tempdir().unwrap();
    let opts = || EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: "  window: 128KiB\n  memory: 64MiB\n  prefetch: 0\n".into(),
        cache_dir: Some(cache_dir.path().to_path_buf()),
        extra: "verify:\n  build_delay: 0s\n".into(),
        ..Default::default()
    };
    let path = format!("/piece/{cid}");
    {
        let edge = EdgeProcess::start_opts(opts());
        let m = edge.metrics_text();
        for check in ["cid", "layer", "unchecked"] {
            let line = format!("beam_edge_served_check_bytes_total{{check=\"{check}\"}} 0");
            assert!(m.contains(&line), "{check} exported at 0");
        }
        let (_, headers, _) = raw_get(edge.public, &path, &[]).unwrap();
        assert_eq!(headers["x-beam-edge-checked"], "unchecked");
        wait_for("the layer build", || {
            metric(
                &edge,
                "beam_edge_layer_jobs_total{job=\"build\",outcome=\"ok\"}",
            ) == 1.0
        });
        let st = admin_piece(&edge, &cid);
        assert_eq!(st["layer"]["on_disk"], true);
        assert_eq!(st["served_as"], "layer");
    }
    let edge = EdgeProcess::start_opts(opts());
    let (status, headers, body) =
        raw_get(edge.public, &path, &[("Range", "bytes=300000-")]).unwrap();
    assert_eq!(status, 206);
    assert!(body == data[300_000..]);
    assert_eq!(headers["x-beam-edge-checked"], "layer");
    let st = admin_piece(&edge, &cid);
    assert_eq!(st["layer"]["source"], "built");
    assert_eq!(
        metric(
            &edge,
            "beam_edge_layer_jobs_total{job=\"build\",outcome=\"ok\"}"
        ),
        0.0,
        "read back, not built again"
    );
}

#[test]
fn a_one_window_piece_is_checked_by_its_cid() {
    let data = mp4_like(100_000, 3);
    let cid = beam_edge::piece::commp::commp_of(&data)
        .unwrap()
        .to_string();
    let beam = MockBeam::start();
    beam.add_piece(&cid, data.clone());
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: "  window: 128KiB\n".into(),
        extra: "verify:\n  mode: strict\n".into(),
        ..Default::default()
    });
    let (status, headers, body) = raw_get(edge.public, &format!("/piece/{cid}"), &[]).unwrap();
    assert_eq!(status, 200);
    assert!(body == data);
    assert_eq!(headers["x-beam-edge-checked"], "cid");
}

#[test]
fn strict_refuses_a_piece_it_cannot_check() {
    let data = mp4_like(SIZE, 12);
    let cid = beam_edge::piece::commp::commp_of(&data)
        .unwrap()
        .to_string();
    let beam = MockBeam::start();
    beam.add_piece(&cid, data);
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: "  window: 128KiB\n".into(),
        // Smaller than the piece: no layer is built for it.
        extra: "verify:\n  mode: strict\n  build_max: 512KiB\n".into(),
        ..Default::default()
    });
    let (status, _, body) = raw_get(edge.public, &format!("/piece/{cid}"), &[]).unwrap();
    assert_eq!(status, 503);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("verify.build_max"), "{body}");
    assert!(beam.requests().is_empty(), "no byte was fetched");
}
