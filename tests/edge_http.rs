//! The public listener through real HTTP: the real `beam-edge` binary on
//! loopback in front of a mock Beam that speaks HTTP/1.1 with real Range
//! semantics and switchable faults.

mod common;

use std::time::Duration;

use beam_edge::piece::commp::commp_of;
use common::*;

/// A piece of `len` MP4-looking bytes, registered on the mock; returns (cid, bytes).
fn piece(beam: &MockBeam, len: usize, seed: u64) -> (String, Vec<u8>) {
    let data = mp4_like(len, seed);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    (cid, data)
}

fn get(
    edge: &EdgeProcess,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    raw_get(edge.public, path, headers)
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", edge.log()))
}

#[test]
fn whole_piece_and_every_single_range_form() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let (cid, data) = piece(&beam, 100_000, 1);
    let path = format!("/piece/{cid}");
    let n = data.len();

    let (s, h, b) = get(&edge, &path, &[]);
    assert_eq!(s, 200);
    assert_eq!(b, data);
    assert_eq!(h["content-length"], n.to_string());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["etag"], format!("\"{cid}\""));
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(h["access-control-expose-headers"].contains("Content-Range"));
    assert!(!h.contains_key("content-range"));

    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=99000-", 99000, n - 1),
        ("bytes=-500", n - 500, n - 1),
        ("bytes=-1000000", 0, n - 1),
        ("bytes=99990-200000", 99990, n - 1),
        ("bytes=0-0", 0, 0),
        ("BYTES=5-9", 5, 9),
        ("bytes=0-99999999999999999999999", 0, n - 1),
    ];
    for (range, a, b) in cases {
        let (s, h, body) = get(&edge, &path, &[("Range", range)]);
        assert_eq!(s, 206, "{range}");
        assert_eq!(body, &data[*a..=*b], "{range}");
        assert_eq!(h["content-range"], format!("bytes {a}-{b}/{n}"), "{range}");
        assert_eq!(h["content-length"], (b - a + 1).to_string(), "{range}");
        assert_eq!(h["content-type"], "video/mp4", "{range}");
        assert_eq!(h["etag"], format!("\"{cid}\""));
    }

    // The upstream is asked for the aligned window that holds the bytes (here
    // the whole 100,000-byte piece is window 0), once, never with the
    // client's credentials, always for identity encoding.
    let (cid2, data2) = piece(&beam, 100_000, 11);
    beam.clear_log();
    let (s, h, body) = get(
        &edge,
        &format!("/piece/{cid2}"),
        &[
            ("Range", "bytes=2000-2999"),
            ("Authorization", "Bearer secret"),
            ("Cookie", "a=b"),
        ],
    );
    assert_eq!((s, body.as_slice()), (206, &data2[2000..3000]));
    assert_eq!(h["x-cache"], "MISS");
    let reqs = beam.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = &reqs[0];
    assert_eq!(r.path, format!("/{PAYER}/{cid2}"));
    assert_eq!(r.headers["range"], "bytes=0-99999");
    assert_eq!(r.headers["accept-encoding"], "identity");
    assert!(!r.headers.contains_key("authorization"));
    assert!(!r.headers.contains_key("cookie"));
}

#[test]
fn unsatisfiable_invalid_and_rejected_ranges() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let (cid, data) = piece(&beam, 10_000, 2);
    let path = format!("/piece/{cid}");

    for range in ["bytes=10000-", "bytes=20000-30000", "bytes=-0"] {
        beam.clear_log();
        let (s, h, body) = get(&edge, &path, &[("Range", range)]);
        assert_eq!(s, 416, "{range}");
        assert_eq!(h["content-range"], "bytes */10000", "{range}");
        assert!(
            String::from_utf8_lossy(&body).contains("10000 bytes"),
            "{range}"
        );
        // A v2 CID carries the size: a 416 costs no upstream request.
        assert!(beam.requests().is_empty(), "{range}");
    }
    // Syntactically invalid: ignored, the whole piece with 200.
    for range in ["bytes=--1", "bytes=5-2", "items=0-5", "bytes=abc", "bytes="] {
        let (s, _, body) = get(&edge, &path, &[("Range", range)]);
        assert_eq!(s, 200, "{range}");
        assert_eq!(body, data, "{range}");
    }
    // Amplification: too many ranges, or too many disjoint parts, is refused.
    let many = format!(
        "bytes={}",
        (0..150)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let (s, h, body) = get(&edge, &path, &[("Range", &many)]);
    assert_eq!(s, 416);
    assert_eq!(h["content-range"], "bytes */10000");
    assert!(String::from_utf8_lossy(&body).contains("too many ranges"));
    let disjoint = format!(
        "bytes={}",
        (0..20)
            .map(|i| format!("{}-{}", i * 400, i * 400))
            .collect::<Vec<_>>()
            .join(",")
    );
    let (s, _, body) = get(&edge, &path, &[("Range", &disjoint)]);
    assert_eq!(s, 416);
    assert!(String::from_utf8_lossy(&body).contains("disjoint"));
}

/// Splits a multipart/byteranges body into (content-range, bytes) parts.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    loop {
        let start = find(rest, delim.as_bytes()).expect("delimiter");
        rest = &rest[start + delim.len()..];
        if rest.starts_with(b"--") {
            assert_eq!(&rest[2..], b"\r\n", "closing delimiter ends the body");
            return parts;
        }
        assert!(rest.starts_with(b"\r\n"));
        let head_end = find(rest, b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&rest[2..head_end]).to_string();
        let mut ctype = String::new();
        let mut crange = String::new();
        for l in head.split("\r\n") {
            let (k, v) = l.split_once(": ").unwrap();
            match k.to_ascii_lowercase().as_str() {
                "content-type" => ctype = v.to_string(),
                "content-range" => crange = v.to_string(),
                other => panic!("unexpected part header {other}"),
            }
        }
        let body_start = head_end + 4;
        let (_, total) = crange.rsplit_once('/').unwrap();
        let span = crange
            .strip_prefix("bytes ")
            .unwrap()
            .split_once('/')
            .unwrap()
            .0;
        let (a, b) = span.split_once('-').unwrap();
        let len = b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
        let _ = total;
        parts.push((
            ctype,
            crange.clone(),
            rest[body_start..body_start + len].to_vec(),
        ));
        rest = &rest[body_start + len..];
        assert!(rest.starts_with(b"\r\n"));
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[test]
fn multiple_ranges_are_a_correct_multipart_response() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let (cid, data) = piece(&beam, 50_000, 3);
    let path = format!("/piece/{cid}");

    let (s, h, body) = get(&edge, &path, &[("Range", "bytes=40000-40099, 0-9, -10")]);
    assert_eq!(s, 206);
    let ct = &h["content-type"];
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect(ct);
    assert_eq!(h["content-length"], body.len().to_string());
    let parts = parse_multipart(&body, boundary);
    assert_eq!(parts.len(), 3);
    assert_eq!(
        parts[0],
        (
            "video/mp4".into(),
            "bytes 0-9/50000".into(),
            data[0..10].to_vec()
        )
    );
    assert_eq!(
        parts[1],
        (
            "video/mp4".into(),
            "bytes 40000-40099/50000".into(),
            data[40000..40100].to_vec()
        )
    );
    assert_eq!(
        parts[2],
        (
            "video/mp4".into(),
            "bytes 49990-49999/50000".into(),
            data[49990..].to_vec()
        )
    );

    // Overlapping and adjacent ranges merge into a plain 206.
    let (s, h, body) = get(&edge, &path, &[("Range", "bytes=100-199,150-299,300-399")]);
    assert_eq!(s, 206);
    assert_eq!(h["content-range"], "bytes 100-399/50000");
    assert_eq!(body, &data[100..400]);

    // HEAD of a multipart response: same headers, no body.
    let (s, h, body) = raw_request(
        edge.public,
        "HEAD",
        &path,
        &[("Range", "bytes=0-9,1000-1009")],
    )
    .unwrap();
    assert_eq!(s, 206);
    assert!(h["content-type"].starts_with("multipart/byteranges; boundary="));
    assert!(body.is_empty());
}

#[test]
fn head_conditional_requests_and_cors() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let (cid, data) = piece(&beam, 20_000, 4);
    let path = format!("/piece/{cid}");
    let etag = format!("\"{cid}\"");

    let (s, h, body) = raw_request(edge.public, "HEAD", &path, &[]).unwrap();
    assert_eq!(s, 200);
    assert_eq!(h["content-length"], "20000");
    assert_eq!(h["content-type"], "video/mp4");
    assert!(body.is_empty());
    let (s, h, _) = raw_request(edge.public, "HEAD", &path, &[("Range", "bytes=100-199")]).unwrap();
    assert_eq!(s, 206);
    assert_eq!(h["content-range"], "bytes 100-199/20000");
    assert_eq!(h["content-length"], "100");

    // If-None-Match: 304 without touching the upstream.
    beam.clear_log();
    for inm in [etag.as_str(), "*", "\"x\", W/\"CID\""] {
        let inm = inm.replace("CID", &cid);
        let (s, h, body) = get(&edge, &path, &[("If-None-Match", &inm)]);
        assert_eq!(s, 304, "{inm}");
        assert_eq!(h["etag"], etag);
        assert!(body.is_empty());
    }
    assert!(beam.requests().is_empty());
    let (s, _, _) = get(&edge, &path, &[("If-None-Match", "\"other\"")]);
    assert_eq!(s, 200);

    // If-Range: a strong match keeps the range; anything else gets the whole piece.
    let (s, _, body) = get(
        &edge,
        &path,
        &[("Range", "bytes=10-19"), ("If-Range", &etag)],
    );
    assert_eq!((s, body.as_slice()), (206, &data[10..20]));
    for ir in [
        format!("W/{etag}"),
        "\"other\"".to_string(),
        "Wed, 21 Oct 2015 07:28:00 GMT".to_string(),
    ] {
        let (s, _, body) = get(&edge, &path, &[("Range", "bytes=10-19"), ("If-Range", &ir)]);
        assert_eq!(s, 200, "{ir}");
        assert_eq!(body, data);
    }

    // CORS preflight.
    let (s, h, _) = raw_request(
        edge.public,
        "OPTIONS",
        &path,
        &[
            ("Origin", "https://player.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
    )
    .unwrap();
    assert_eq!(s, 204);
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(h["access-control-allow-methods"].contains("GET"));
    assert_eq!(h["access-control-allow-headers"], "range");

    // Other methods.
    let (s, h, _) = raw_request(edge.public, "POST", &path, &[("Content-Length", "0")]).unwrap();
    assert_eq!(s, 405);
    assert_eq!(h["allow"], "GET, HEAD, OPTIONS");
}

#[test]
fn bad_cids_and_unknown_routes_never_reach_the_upstream() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    for (cid, why) in [
        ("hello", "base32"),
        (
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            "codec",
        ),
        (
            "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veig",
            "",
        ),
        (
            "BAFKZCIBCAABDOMN3TGWGRH3G532ZOPSKSTNBRD2N3SXFQBZE7RXT7VQN7VEIGMY",
            "",
        ),
        // (`<cid>/<name>` is a named path now; a suffix without a slash is junk.)
        (
            "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy.mp4",
            "",
        ),
        ("", ""),
    ] {
        let (s, h, body) = get(&edge, &format!("/piece/{cid}"), &[]);
        assert_eq!(s, 400, "{cid}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("invalid PieceCID"), "{cid}: {text}");
        assert!(text.to_lowercase().contains(why), "{cid}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(h["access-control-allow-origin"], "*");
    }
    let (s, _, body) = get(&edge, "/piece", &[]);
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("missing PieceCID"));
    for p in ["/nope", "/pieces/x", "/admin", "/metrics", "/healthz/x"] {
        let (s, _, _) = get(&edge, p, &[]);
        assert_eq!(s, 404, "{p}");
    }
    assert!(beam.requests().is_empty());

    let (s, _, body) = get(&edge, "/healthz", &[]);
    assert_eq!((s, body.as_slice()), (200, b"ok\n".as_slice()));
    let (s, _, body) = get(&edge, "/readyz", &[]);
    assert_eq!((s, body.as_slice()), (200, b"ready\n".as_slice()));
}

#[test]
fn a_v1_cid_learns_its_size_from_the_upstream() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let data = mp4_like(30_000, 5);
    let v1 = commp_of(&data).unwrap().to_v1().to_string();
    assert!(v1.starts_with("baga6ea4seaq"));
    beam.add_piece(&v1, data.clone());
    let (s, h, body) = get(&edge, &format!("/piece/{v1}"), &[("Range", "bytes=-100")]);
    assert_eq!(s, 206);
    assert_eq!(h["content-range"], "bytes 29900-29999/30000");
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(body, &data[29900..]);
    // The size is remembered and the window cached: the next request costs nothing upstream.
    beam.clear_log();
    let (s, _, body) = get(&edge, &format!("/piece/{v1}"), &[("Range", "bytes=10-20")]);
    assert_eq!((s, body.as_slice()), (206, &data[10..21]));
    assert_eq!(beam.requests().len(), 0);
}

#[test]
fn upstream_status_codes_are_mapped_honestly() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let (cid, _) = piece(&beam, 5_000, 6);
    let path = format!("/piece/{cid}");

    let unknown = commp_of(&mp4_like(5_000, 99)).unwrap().to_string();
    let (s, h, body) = get(&edge, &format!("/piece/{unknown}"), &[]);
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&body).contains("not yet indexed"));
    assert_eq!(h["cache-control"], "no-store");

    for (upstream, ours, text) in [
        (402, 402, "CDN"),
        (403, 403, "refused"),
        (500, 502, "500"),
        (503, 502, "503"),
        (401, 502, "401"),
    ] {
        beam.set_fault(Fault::Status(upstream));
        let (s, h, body) = get(&edge, &path, &[("Range", "bytes=0-9")]);
        assert_eq!(s, ours, "upstream {upstream}");
        assert!(
            String::from_utf8_lossy(&body).contains(text),
            "upstream {upstream}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            h["cache-control"], "no-store",
            "a non-2xx is never cacheable"
        );
    }
    // Errors are not remembered: the next good answer is served.
    beam.set_fault(Fault::None);
    let (s, _, _) = get(&edge, &path, &[("Range", "bytes=0-9")]);
    assert_eq!(s, 206);

    let m = edge.metrics_text();
    assert!(
        metric_value(
            &m,
            "beam_edge_upstream_requests_total{outcome=\"payment_required\",upstream=\"beam\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "beam_edge_requests_total{route=\"piece\",status=\"404\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[test]
fn timeouts_are_504_and_dead_upstreams_502() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::start(&beam_upstream_timing(&beam, "2s", ""));
    let (cid, _) = piece(&beam, 5_000, 7);
    beam.set_fault(Fault::Delay(Duration::from_secs(4)));
    let (s, _, body) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=0-9")]);
    assert_eq!(s, 504);
    assert!(String::from_utf8_lossy(&body).contains("timed out"));

    // Nothing listens on this port.
    let dead = format!("  beam_url: \"http://127.0.0.1:{}/{{payer}}\"\n  payer: \"{PAYER}\"\n  connect_timeout: 1s\n", free_port());
    let edge2 = EdgeProcess::start(&dead);
    let (s, _, body) = get(&edge2, &format!("/piece/{cid}"), &[]);
    assert_eq!(s, 502);
    assert!(
        String::from_utf8_lossy(&body).contains("connection failed"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn a_window_that_does_not_hash_to_its_cid_is_never_served_or_cached() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "  retries: 0\n");
    let (cid, data) = piece(&beam, 300_000, 9);
    let path = format!("/piece/{cid}");
    let mismatches = || {
        metric_value(
            &edge.metrics_text(),
            "beam_edge_window_checks_total{result=\"mismatch\"}",
        )
    };
    let passed = || {
        metric_value(
            &edge.metrics_text(),
            "beam_edge_window_checks_total{result=\"ok\"}",
        )
    };
    assert_eq!((mismatches(), passed()), (0.0, 0.0));

    // The upstream flips one byte with every header and length right. The
    // piece is one window, checked against its CID, and its type is not
    // known yet: the header waits for the type sniff, which waits for the
    // window to pass, so the client gets a clear 502 and not one byte.
    // (With a known type, the header goes first and the transfer is cut
    // before its last byte: the asset tests cover that.)
    beam.set_fault(Fault::Corrupt);
    for range in ["bytes=0-299999", "bytes=10-20", "bytes=-1"] {
        let (s, _, body) = get(&edge, &path, &[("Range", range)]);
        assert_eq!(s, 502, "{range}");
        assert!(
            String::from_utf8_lossy(&body).contains("does not hash to its PieceCID"),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(
        mismatches(),
        3.0,
        "each request fetched again: nothing was cached"
    );

    // An honest upstream again: the right bytes, checked once, then cached.
    beam.set_fault(Fault::None);
    let (s, _, body) = get(&edge, &path, &[]);
    assert_eq!(s, 200);
    assert!(body == data);
    assert_eq!(passed(), 1.0);
    beam.clear_log();
    let (s, h, body) = get(&edge, &path, &[("Range", "bytes=100-199")]);
    assert_eq!((s, h["x-cache"].as_str()), (206, "HIT"));
    assert_eq!(body, &data[100..200]);
    assert!(beam.requests().is_empty());
}

#[test]
fn lying_upstreams_never_produce_wrong_bytes() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let (cid, _) = piece(&beam, 200_000, 8);
    let path = format!("/piece/{cid}");

    // Wrong Content-Range: refused before any header goes out.
    beam.set_fault(Fault::WrongContentRange);
    let (s, _, body) = get(&edge, &path, &[("Range", "bytes=100-199")]);
    assert_eq!(s, 502);
    assert!(String::from_utf8_lossy(&body).contains("Content-Range"));

    // Short body and reset mid-body: each retry resumes at the first missing
    // byte (the mock again sends only half of what is asked). The piece is
    // one window, checked against its CID, and its type is not known yet, so
    // the header waits for the type sniff, which waits for the window: once
    // retries are exhausted the answer is a 502 and not one byte.
    // The piece is small enough that each half fits in a fresh loopback
    // connection's receive window, so a reset never discards sent bytes the
    // proxy had not read yet.
    for (i, fault) in [Fault::ShortBody, Fault::ResetMidBody]
        .into_iter()
        .enumerate()
    {
        let (cid, _) = piece(&beam, 60_000, 80 + i as u64);
        beam.set_fault(fault.clone());
        beam.clear_log();
        let (s, _, body) = get(
            &edge,
            &format!("/piece/{cid}"),
            &[("Range", "bytes=0-59999")],
        );
        assert_eq!(s, 502, "{fault:?}: {}", String::from_utf8_lossy(&body));
        let ranges: Vec<String> = beam
            .requests()
            .iter()
            .filter_map(|r| r.headers.get("range").cloned())
            .collect();
        assert!(
            ranges.contains(&"bytes=30000-59999".to_string()),
            "{fault:?} resumed: {ranges:?}"
        );
        assert!(
            ranges.contains(&"bytes=45000-59999".to_string()),
            "{fault:?} resumed: {ranges:?}"
        );
    }
    // A piece of two windows, without a layer to check them by: its bytes
    // stream as they come, so once retries are exhausted the header is out,
    // the connection is cut and the transfer is visibly incomplete (FIN, not
    // reset: every byte sent arrives).
    let (cid, _) = piece(&beam, 1_100_000, 82);
    beam.set_fault(Fault::ShortBody);
    match raw_get(edge.public, &format!("/piece/{cid}"), &[]) {
        Ok((s, _, b)) => panic!(
            "a short body must not look complete: {s}, {} bytes",
            b.len()
        ),
        Err(e) => assert!(e.contains("truncated"), "{e}"),
    }

    beam.set_fault(Fault::None);
    let m = edge.metrics_text();
    assert!(
        metric_value(&m, "beam_edge_client_aborts_total{reason=\"upstream\"}") >= 1.0,
        "{m}"
    );
}

#[test]
fn a_whole_body_200_for_a_range_is_cut_to_the_range() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let size = 48 << 20;
    let (cid, data) = piece(&beam, size, 9);
    beam.set_fault(Fault::FullBodyForRange);
    beam.clear_log();
    let (s, h, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", "bytes=1000-1999")],
    );
    assert_eq!(s, 206);
    assert_eq!(h["content-range"], format!("bytes 1000-1999/{size}"));
    assert_eq!(body, &data[1000..2000]);
    // The upstream read stopped right after the range: far less than the piece
    // was sent (what is in flight is bounded by socket buffers). Once the
    // mock's answer is over (cut by the proxy), what it sent is final.
    beam.wait_answers_done();
    let sent = beam.body_bytes_sent();
    assert!(sent < (size as u64) / 4, "mock sent {sent} of {size} bytes");
    let m = edge.metrics_text();
    assert!(metric_value(&m, "beam_edge_upstream_full_body_total") >= 1.0);
}

#[test]
fn without_a_payer_piece_requests_say_what_is_missing() {
    // No payer, and none may be named per request: nothing can reach Beam.
    let edge = EdgeProcess::start("  network: mainnet\n  payers: []\n");
    let (s, _, body) = get(
        &edge,
        "/piece/bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy",
        &[],
    );
    assert_eq!(s, 503);
    assert!(String::from_utf8_lossy(&body).contains("upstream.payer is not set"));
    assert!(String::from_utf8_lossy(&body).contains("/beam/<payer>/<cid>"));
    let (s, _, body) = get(&edge, "/readyz", &[]);
    assert_eq!(s, 503);
    assert!(String::from_utf8_lossy(&body).contains("upstream.payer"));
}

#[test]
fn metrics_listener_serves_prometheus_text() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let (cid, _) = piece(&beam, 4_000, 10);
    let (s, _, _) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=0-999")]);
    assert_eq!(s, 206);
    let m = edge.metrics_text();
    assert_eq!(
        metric_value(
            &m,
            "beam_edge_requests_total{route=\"piece\",status=\"206\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "beam_edge_response_bytes_total{route=\"piece\"}"),
        1000.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "beam_edge_upstream_requests_total{outcome=\"ok\",upstream=\"beam\"}"
        ) >= 1.0
    );
    assert!(metric_value(&m, "beam_edge_upstream_bytes_total{upstream=\"beam\"}") >= 1000.0);
    assert!(m.contains("beam_edge_ttfb_seconds_bucket{route=\"piece\""));
    assert!(m.contains("beam_edge_upstream_latency_seconds_count{upstream=\"beam\"}"));
    let (s, _, _) = raw_get(edge.metrics, "/other", &[]).unwrap();
    assert_eq!(s, 404);
}
