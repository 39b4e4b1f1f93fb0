//! The payer from the request (`/beam/[<network>/]<payer>/<cid>`,
//! `upstream.payers`) and names after the CID (`Content-Disposition`), through
//! the real binary against the mock Beam, which checks the payer it was asked
//! for (a piece only some payers have CDN data sets for gets 402 otherwise).

mod common;

use std::time::{Duration, Instant};

use beam_edge::piece::commp::commp_of;
use common::*;

const PAYER_A: &str = "0x00000000000000000000000000000000000000aa";
const PAYER_B: &str = "0x00000000000000000000000000000000000000bb";
const PAYER_C: &str = "0x00000000000000000000000000000000000000cc";

fn piece_for(beam: &MockBeam, len: usize, seed: u64, payers: &[&str]) -> (String, Vec<u8>) {
    let data = mp4_like(len, seed);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece_for_payers(&cid, data.clone(), payers);
    (cid, data)
}

fn get(
    edge: &EdgeProcess,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    raw_get(edge.public, path, headers).unwrap()
}

/// Upstream requests for `cid` the mock has seen.
fn fetches_of(beam: &MockBeam, cid: &str) -> Vec<Logged> {
    beam.requests()
        .into_iter()
        .filter(|r| r.path.ends_with(&format!("/{cid}")))
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An edge with no `upstream.payer` (so `payers` defaults to `any`) in front
/// of the mock, plus `extra` upstream lines.
fn edge_without_payer(beam: &MockBeam, extra: &str) -> EdgeProcess {
    EdgeProcess::start(&format!(
        "  beam_url: \"{}\"\n  read_timeout: 10s\n{extra}",
        beam.url_template()
    ))
}

#[test]
fn two_payers_share_one_cache_entry_and_one_upstream_fetch() {
    let beam = MockBeam::start();
    let (cid, data) = piece_for(&beam, 300_000, 1, &[PAYER_A, PAYER_B]);
    let edge = edge_without_payer(&beam, "");

    // No payer configured and payers `any`: ready, and /piece says where to go.
    let (s, _, body) = get(&edge, "/readyz", &[]);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let (s, _, body) = get(&edge, &format!("/piece/{cid}"), &[]);
    assert_eq!(s, 503);
    assert!(
        String::from_utf8_lossy(&body).contains("/beam/<payer>/<cid>"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(fetches_of(&beam, &cid).is_empty());

    // A's fill is held at the mock; B's request joins it.
    beam.hold();
    let a = {
        let addr = edge.public;
        let path = format!("/beam/{PAYER_A}/{cid}");
        std::thread::spawn(move || raw_get(addr, &path, &[]).unwrap())
    };
    wait_for("A's fill to reach the mock", || {
        !fetches_of(&beam, &cid).is_empty()
    });
    let coalesced_before = metric_value(&edge.metrics_text(), "beam_edge_coalesced_waiters_total");
    let b = {
        let addr = edge.public;
        let path = format!("/beam/{PAYER_B}/{cid}/clip.mp4");
        std::thread::spawn(move || raw_get(addr, &path, &[("Range", "bytes=1000-")]).unwrap())
    };
    wait_for("B to join A's fill", || {
        metric_value(&edge.metrics_text(), "beam_edge_coalesced_waiters_total") > coalesced_before
    });
    beam.release();
    let (sa, _, body_a) = a.join().unwrap();
    let (sb, hb, body_b) = b.join().unwrap();
    assert_eq!(sa, 200);
    assert_eq!(body_a, data);
    assert_eq!(sb, 206);
    assert_eq!(body_b, &data[1000..]);
    assert_eq!(hb["content-disposition"], "inline; filename=\"clip.mp4\"");

    // One upstream fetch, billed to A (the payer whose request started it).
    let fetches = fetches_of(&beam, &cid);
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert_eq!(payer_of(&fetches[0].path).as_deref(), Some(PAYER_A));

    // One cache entry serves either payer: B reads it again as a hit.
    let (s, h, body) = get(&edge, &format!("/beam/{PAYER_B}/{cid}"), &[]);
    assert_eq!((s, h["x-cache"].as_str()), (200, "HIT"));
    assert_eq!(body, data);
    assert_eq!(fetches_of(&beam, &cid).len(), 1);
    let m = edge.metrics_text();
    assert_eq!(
        metric_value(&m, "beam_edge_cache_entries{tier=\"memory\"}"),
        1.0,
        "{m}"
    );
}

#[test]
fn payers_are_checked_before_any_upstream_request() {
    let beam = MockBeam::start();
    let (cid, data) = piece_for(&beam, 50_000, 2, &[PAYER_A, PAYER_C]);
    let edge = edge_without_payer(
        &beam,
        &format!("  payers: [\"{PAYER_A}\", \"{PAYER_B}\"]\n"),
    );
    let (s, _, _) = get(&edge, "/readyz", &[]);
    assert_eq!(s, 200);

    // Not in upstream.payers: 403 naming the payer, nothing asked upstream.
    let (s, h, body) = get(&edge, &format!("/beam/{PAYER_C}/{cid}"), &[]);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(s, 403, "{text}");
    assert!(
        text.contains(PAYER_C) && text.contains("upstream.payers"),
        "{text}"
    );
    assert_eq!(h["cache-control"], "no-store");
    // Malformed: 400 naming it.
    for bad in [
        "0xnothex",
        "alice",
        "0x00000000000000000000000000000000000000aa00",
    ] {
        let (s, _, body) = get(&edge, &format!("/beam/{bad}/{cid}"), &[]);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(s, 400, "{bad}: {text}");
        assert!(text.contains(&format!("invalid payer \"{bad}\"")), "{text}");
    }
    // A CORS preflight is answered whatever the payer; other methods are 405.
    let (s, h, _) = raw_request(
        edge.public,
        "OPTIONS",
        &format!("/beam/{PAYER_C}/{cid}/a.mp4"),
        &[],
    )
    .unwrap();
    assert_eq!(s, 204);
    assert_eq!(h["access-control-allow-origin"], "*");
    let (s, h, _) = raw_request(
        edge.public,
        "DELETE",
        &format!("/beam/{PAYER_A}/{cid}"),
        &[],
    )
    .unwrap();
    assert_eq!(s, 405);
    assert_eq!(h["allow"], "GET, HEAD, OPTIONS");
    let (s, _, body) = get(&edge, "/beam/", &[]);
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("/beam/"));
    assert!(fetches_of(&beam, &cid).is_empty());

    // Allowed, and Beam knows the payer: plays. Payers compare case-insensitively.
    let upper_a = PAYER_A.replace("aa", "AA");
    let (s, _, body) = get(&edge, &format!("/beam/{upper_a}/{cid}"), &[]);
    assert_eq!(s, 200);
    assert_eq!(body, data);
    // Allowed here, but no CDN data set of B holds the piece: Beam's 402.
    let (cid2, _) = piece_for(&beam, 40_000, 3, &[PAYER_A]);
    let (s, _, body) = get(&edge, &format!("/beam/{PAYER_B}/{cid2}"), &[]);
    assert_eq!(s, 402, "{}", String::from_utf8_lossy(&body));
    let fetches = fetches_of(&beam, &cid2);
    assert!(!fetches.is_empty());
    assert!(fetches
        .iter()
        .all(|r| payer_of(&r.path).as_deref() == Some(PAYER_B)));
}

#[test]
fn the_network_in_the_path_picks_the_beam_domain() {
    let beam = MockBeam::start();
    // The mock sees /<network>/<payer>/<cid>, as Beam sees the domain.
    let edge = EdgeProcess::start(&format!(
        "  beam_url: \"http://{}/{{network}}/{{payer}}\"\n  network: mainnet\n",
        beam.addr
    ));
    for (seed, prefix, network) in [
        (4, "", "mainnet"),
        (5, "calibration/", "calibration"),
        (6, "mainnet/", "mainnet"),
    ] {
        let (cid, data) = piece_for(&beam, 20_000, seed, &[PAYER_A]);
        let path = format!("/beam/{prefix}{PAYER_A}/{cid}/a.mp4");
        let (s, _, body) = get(&edge, &path, &[("Range", "bytes=0-99")]);
        assert_eq!(s, 206, "{path}");
        assert_eq!(body, &data[..100]);
        let fetches = fetches_of(&beam, &cid);
        assert!(!fetches.is_empty());
        for r in fetches {
            assert_eq!(r.path, format!("/{network}/{PAYER_A}/{cid}"));
        }
    }

    // A template without the network cannot reach the other network: said so.
    let (cid, _) = piece_for(&beam, 20_000, 7, &[PAYER_A]);
    let edge = edge_without_payer(&beam, "  network: calibration\n");
    let (s, _, body) = get(&edge, &format!("/beam/mainnet/{PAYER_A}/{cid}"), &[]);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("calibration only"), "{text}");
}

#[test]
fn names_after_the_cid_become_a_sanitised_content_disposition() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let data = mp4_like(120_000, 5);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let long = "x".repeat(1000);
    let cases: Vec<(String, String)> = vec![
        ("clip.mp4".into(), "inline; filename=\"clip.mp4\"".into()),
        (
            "My%20Clip.mp4".into(),
            "inline; filename=\"My Clip.mp4\"".into(),
        ),
        (
            "a%22b%22.mp4".into(),
            "inline; filename=\"a_b_.mp4\"".into(),
        ),
        (
            "..%2F..%2Fetc%2Fpasswd".into(),
            "inline; filename=\"_.._etc_passwd\"".into(),
        ),
        (
            "../evil.mp4".into(),
            "inline; filename=\"_evil.mp4\"".into(),
        ),
        (
            "%C3%9Cber%20caf%C3%A9.mp4".into(),
            "inline; filename=\"_ber caf_.mp4\"; filename*=UTF-8''%C3%9Cber%20caf%C3%A9.mp4".into(),
        ),
        (
            "a%0D%0ASet-Cookie:%20x=1.mp4".into(),
            "inline; filename=\"aSet-Cookie: x=1.mp4\"".into(),
        ),
        (
            format!("{long}.mp4"),
            format!("inline; filename=\"{}.mp4\"", &long[..196]),
        ),
    ];
    for (name, want) in &cases {
        let path = format!("/piece/{cid}/{name}");
        let (s, h, body) = get(&edge, &path, &[]);
        assert_eq!(s, 200, "{path}");
        assert_eq!(&h["content-disposition"], want, "{path}");
        assert!(!h.contains_key("set-cookie"));
        assert_eq!(body, data, "{path}");
    }
    // Only-dots or empty names announce nothing.
    for path in [
        format!("/piece/{cid}/"),
        format!("/piece/{cid}/..."),
        format!("/piece/{cid}"),
    ] {
        let (s, h, _) = get(&edge, &path, &[]);
        assert_eq!(s, 200);
        assert!(!h.contains_key("content-disposition"), "{path}");
    }

    // HEAD and ranges on a named path: the same headers and bytes as without.
    let named = format!("/piece/{cid}/clip.mp4");
    let (s, h, body) = raw_request(edge.public, "HEAD", &named, &[]).unwrap();
    assert_eq!((s, body.len()), (200, 0));
    assert_eq!(h["content-length"], data.len().to_string());
    assert_eq!(h["content-disposition"], "inline; filename=\"clip.mp4\"");
    assert_eq!(h["etag"], format!("\"{cid}\""));
    assert!(h["access-control-expose-headers"].contains("Content-Disposition"));
    let (s, h, body) = get(&edge, &named, &[("Range", "bytes=100-199")]);
    assert_eq!(s, 206);
    assert_eq!(h["content-range"], format!("bytes 100-199/{}", data.len()));
    assert_eq!(h["content-disposition"], "inline; filename=\"clip.mp4\"");
    assert_eq!(body, &data[100..200]);
    let (s, h, _) = get(&edge, &named, &[("If-None-Match", &format!("\"{cid}\""))]);
    assert_eq!(s, 304);
    assert_eq!(h["etag"], format!("\"{cid}\""));

    // The name never reaches the upstream.
    let requests = beam.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.path, format!("/{PAYER}/{cid}"), "{r:?}");
    }
}

#[test]
fn assets_take_a_name_or_their_manifest_file_name() {
    let beam = MockBeam::start();
    let data = mp4_like(700_000, 6);
    let id = publish_asset(&beam, &data, 300_000, "video/mp4");
    let edge = edge_without_payer(&beam, "");

    // The manifest's file name ("clip") when the URL has none.
    let (s, h, body) = get(&edge, &format!("/beam/{PAYER_A}/asset/{id}"), &[]);
    assert_eq!(s, 200);
    assert_eq!(body, data);
    assert_eq!(h["content-disposition"], "inline; filename=\"clip\"");
    assert_eq!(h["content-type"], "video/mp4");
    // A name in the URL wins; ranges across pieces are unchanged.
    let (s, h, body) = get(
        &edge,
        &format!("/beam/{PAYER_A}/asset/{id}/holiday%20%F0%9F%8E%A5.mp4"),
        &[("Range", "bytes=299990-300009")],
    );
    assert_eq!(s, 206);
    assert_eq!(body, &data[299_990..300_010]);
    assert_eq!(
        h["content-disposition"],
        "inline; filename=\"holiday _.mp4\"; filename*=UTF-8''holiday%20%F0%9F%8E%A5.mp4"
    );
    // Every upstream request went to A's host, for a CID, never with a name.
    let requests = beam.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    for r in &requests {
        assert_eq!(payer_of(&r.path).as_deref(), Some(PAYER_A), "{r:?}");
        assert!(
            r.path.rsplit('/').next().unwrap().starts_with("bafkzcib"),
            "{r:?}"
        );
    }
}

#[test]
fn a_reader_that_joined_a_fill_refused_to_another_payer_asks_as_itself() {
    let beam = MockBeam::start();
    // Only B has a CDN data set holding the piece: Beam answers A with 402.
    let (cid, data) = piece_for(&beam, 200_000, 8, &[PAYER_B]);
    let edge = edge_without_payer(&beam, "");
    beam.hold();
    let a = {
        let addr = edge.public;
        let path = format!("/beam/{PAYER_A}/{cid}");
        std::thread::spawn(move || raw_get(addr, &path, &[]).unwrap())
    };
    wait_for("A's fill to reach the mock", || {
        !fetches_of(&beam, &cid).is_empty()
    });
    let coalesced_before = metric_value(&edge.metrics_text(), "beam_edge_coalesced_waiters_total");
    let b = {
        let addr = edge.public;
        let path = format!("/beam/{PAYER_B}/{cid}");
        std::thread::spawn(move || raw_get(addr, &path, &[]).unwrap())
    };
    wait_for("B to join A's fill", || {
        metric_value(&edge.metrics_text(), "beam_edge_coalesced_waiters_total") > coalesced_before
    });
    beam.release();
    let (sa, _, body_a) = a.join().unwrap();
    let (sb, _, body_b) = b.join().unwrap();
    assert_eq!(sa, 402, "{}", String::from_utf8_lossy(&body_a));
    assert_eq!(sb, 200, "{}", String::from_utf8_lossy(&body_b));
    assert_eq!(body_b, data);
    // A's answer came from A's host, B's bytes from B's.
    let payers: Vec<_> = fetches_of(&beam, &cid)
        .iter()
        .map(|r| payer_of(&r.path).unwrap())
        .collect();
    assert_eq!(
        payers.first().map(String::as_str),
        Some(PAYER_A),
        "{payers:?}"
    );
    assert_eq!(
        payers.last().map(String::as_str),
        Some(PAYER_B),
        "{payers:?}"
    );
}
