//! The window cache through real HTTP: the real binary on loopback against
//! mock upstreams, with hits asserted through metrics and the mock's request
//! log, not only through bytes.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use beam_edge::piece::commp::commp_of;
use common::*;

/// Window of 128 KiB padded = 130,048 raw bytes: small windows keep tests fast.
const W: usize = 130_048;
const SMALL_WINDOWS: &str = "  window: 128KiB\n  memory: 64MiB\n";

fn piece(beam: &MockBeam, len: usize, seed: u64) -> (String, Vec<u8>) {
    let data = mp4_like(len, seed);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    (cid, data)
}

fn get(edge: &EdgeProcess, path: &str, headers: &[(&str, &str)]) -> Response {
    raw_get(edge.public, path, headers)
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", edge.log()))
}

fn range(a: usize, b: usize) -> String {
    format!("bytes={a}-{b}")
}

fn metric(edge: &EdgeProcess, name: &str) -> f64 {
    metric_value(&edge.metrics_text(), name)
}

/// Waits until `f` holds (the cache writes to disk in the background); the
/// deadline only matters when the test fails.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn start(beam: &MockBeam, cache: &str, disk: &str, upstream: &str) -> EdgeProcess {
    EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(beam, upstream),
        cache: cache.to_string(),
        disk: disk.to_string(),
        ..Default::default()
    })
}

#[test]
fn second_read_is_a_memory_hit_with_no_upstream_request() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    // Runs of up to 8 windows: one request covers windows 1..=3.
    let edge = start(
        &beam,
        &format!("{SMALL_WINDOWS}  prefetch: 0\n  run_windows: 8\n"),
        "",
        "",
    );
    let (cid, data) = piece(&beam, 5 * W + 100, 1);
    let path = format!("/piece/{cid}");

    let (s, h, body) = get(&edge, &path, &[("Range", &range(W + 10, 3 * W + 20))]);
    assert_eq!((s, body.as_slice()), (206, &data[W + 10..=3 * W + 20]));
    assert_eq!(h["x-cache"], "MISS");
    assert!(h["server-timing"].starts_with("upstream;dur="));
    // One upstream request covered the run of windows 1..=3, aligned.
    let ranges: Vec<String> = beam
        .requests()
        .iter()
        .map(|r| r.headers["range"].clone())
        .collect();
    assert!(ranges.contains(&range(W, 4 * W - 1)), "{ranges:?}");
    // The response ends inside window 3, which is still arriving: a read
    // that joins an in-flight window is not a HIT, so wait until it is stored.
    wait_for("windows 1..=3 in memory", || {
        metric(&edge, "beam_edge_cache_entries{tier=\"memory\"}") >= 3.0
    });

    beam.clear_log();
    let (s, h, body) = get(&edge, &path, &[("Range", &range(W + 10, 3 * W + 20))]);
    assert_eq!((s, body.as_slice()), (206, &data[W + 10..=3 * W + 20]));
    assert_eq!(h["x-cache"], "HIT");
    assert!(beam.requests().is_empty());
    assert!(metric(&edge, "beam_edge_served_bytes_total{source=\"memory\"}") >= (2 * W) as f64);
    assert!(
        metric(
            &edge,
            "beam_edge_window_lookups_total{result=\"hit\",tier=\"memory\"}"
        ) >= 3.0
    );

    // Half cached, half not: PARTIAL, and only the missing windows are fetched.
    let (s, h, body) = get(&edge, &path, &[("Range", &range(3 * W, 5 * W + 50))]);
    assert_eq!((s, body.as_slice()), (206, &data[3 * W..=5 * W + 50]));
    assert_eq!(h["x-cache"], "PARTIAL");
    let ranges: Vec<String> = beam
        .requests()
        .iter()
        .map(|r| r.headers["range"].clone())
        .collect();
    assert_eq!(ranges, vec![range(4 * W, 5 * W + 99)]);
}

#[test]
fn disk_tier_serves_when_memory_is_too_small_and_survives_kill_9() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    // Memory holds one window; the piece has eight.
    let cache = "  window: 128KiB\n  memory: 128KiB\n  prefetch: 0\n";
    let (cid, data) = piece(&beam, 8 * W - 7, 2);
    let path = format!("/piece/{cid}");
    let cache_dir = tempfile::tempdir().unwrap();
    let opts = EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: cache.to_string(),
        cache_dir: Some(cache_dir.path().to_path_buf()),
        ..Default::default()
    };
    let mut edge = EdgeProcess::start_opts(opts.clone());
    let (s, _, body) = get(&edge, &path, &[]);
    assert_eq!((s, body), (200, data.clone()));
    wait_for("8 windows on disk", || {
        metric(&edge, "beam_edge_cache_entries{tier=\"disk\"}") >= 8.0
    });
    beam.clear_log();
    let (s, h, body) = get(&edge, &path, &[("Range", &range(0, 8 * W - 8))]);
    assert_eq!((s, body.as_slice()), (206, &data[..]));
    assert_eq!(h["x-cache"], "HIT");
    assert!(beam.requests().is_empty(), "{:?}", beam.requests());
    assert!(metric(&edge, "beam_edge_served_bytes_total{source=\"disk\"}") >= (6 * W) as f64);
    assert!(
        metric(
            &edge,
            "beam_edge_window_lookups_total{result=\"hit\",tier=\"disk\"}"
        ) >= 6.0
    );

    // kill -9 and restart on the same directory: everything is served from
    // disk, byte-exact, with no upstream request at all.
    edge.child.kill().unwrap();
    edge.child.wait().unwrap();
    drop(edge);
    let edge = EdgeProcess::start_opts(opts.clone());
    beam.clear_log();
    let (s, h, body) = get(&edge, &path, &[]);
    assert_eq!(s, 200);
    assert_eq!(h["x-cache"], "HIT");
    assert_eq!(
        h["content-type"], "video/mp4",
        "the sniffed type was persisted"
    );
    assert!(body == data, "restart served different bytes");
    assert!(beam.requests().is_empty(), "{:?}", beam.requests());
    // A range over parts of two windows reads only those parts from disk
    // (block-checked) and leaves the memory tier alone.
    let disk_served = metric(&edge, "beam_edge_served_bytes_total{source=\"disk\"}");
    let mem_entries = metric(&edge, "beam_edge_cache_entries{tier=\"memory\"}");
    let mem_evictions = metric(&edge, "beam_edge_cache_evictions_total{tier=\"memory\"}");
    let (a, b) = (5 * W + 1000, 6 * W + 999);
    let (s, h, body) = get(&edge, &path, &[("Range", &range(a, b))]);
    assert_eq!((s, body.as_slice()), (206, &data[a..=b]));
    assert_eq!(h["x-cache"], "HIT");
    assert_eq!(
        metric(&edge, "beam_edge_served_bytes_total{source=\"disk\"}") - disk_served,
        (b - a + 1) as f64
    );
    assert_eq!(
        metric(&edge, "beam_edge_cache_entries{tier=\"memory\"}"),
        mem_entries
    );
    assert_eq!(
        metric(&edge, "beam_edge_cache_evictions_total{tier=\"memory\"}"),
        mem_evictions,
        "partial disk hits are not promoted"
    );
    assert!(beam.requests().is_empty(), "{:?}", beam.requests());
    drop(edge);

    // A torn entry (truncated file) is a miss, is deleted, and is refetched.
    let victim = find_window_file(cache_dir.path(), &cid, 3).expect("window 3 file");
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let edge = EdgeProcess::start_opts(opts);
    beam.clear_log();
    let (s, _, body) = get(&edge, &path, &[("Range", &range(3 * W, 4 * W - 1))]);
    assert_eq!((s, body.as_slice()), (206, &data[3 * W..4 * W]));
    let ranges: Vec<String> = beam
        .requests()
        .iter()
        .map(|r| r.headers["range"].clone())
        .collect();
    assert_eq!(ranges, vec![range(3 * W, 4 * W - 1)]);
}

fn find_window_file(dir: &std::path::Path, cid: &str, index: u64) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.is_dir() {
            if let Some(f) = find_window_file(&p, cid, index) {
                return Some(f);
            }
        } else if p
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == index.to_string())
            && p.parent()
                .is_some_and(|d| d.file_name().is_some_and(|n| n.to_string_lossy() == cid))
        {
            return Some(p);
        }
    }
    None
}

#[test]
fn eviction_keeps_both_tiers_within_budget() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    // Disk: room for two windows (plus headers); memory: one.
    let edge = start(
        &beam,
        "  window: 128KiB\n  memory: 128KiB\n  prefetch: 0\n",
        "    size: 300KiB\n",
        "",
    );
    let (cid, data) = piece(&beam, 8 * W, 3);
    let (s, _, body) = get(&edge, &format!("/piece/{cid}"), &[]);
    assert_eq!((s, body), (200, data));
    wait_for("disk evictions", || {
        metric(&edge, "beam_edge_cache_evictions_total{tier=\"disk\"}") >= 5.0
    });
    assert!(metric(&edge, "beam_edge_cache_entries{tier=\"disk\"}") <= 2.0);
    assert!(metric(&edge, "beam_edge_cache_bytes{tier=\"disk\"}") <= (300 * 1024) as f64);
    assert!(metric(&edge, "beam_edge_cache_bytes{tier=\"memory\"}") <= (128 * 1024) as f64);
    assert!(metric(&edge, "beam_edge_cache_evictions_total{tier=\"memory\"}") >= 5.0);
}

#[test]
fn concurrent_cold_requests_cause_one_upstream_fetch() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    let edge = start(&beam, &format!("{SMALL_WINDOWS}  prefetch: 0\n"), "", "");
    let (cid, data) = piece(&beam, 4 * W, 4);
    // The upstream holds its answers until all 20 readers are waiting.
    beam.hold();
    let path = format!("/piece/{cid}");
    let want = range(W + 5, 2 * W + 5);
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (addr, path, want) = (edge.public, path.clone(), want.clone());
            std::thread::spawn(move || raw_get(addr, &path, &[("Range", &want)]).unwrap())
        })
        .collect();
    wait_for("19 readers to join the fill in flight", || {
        metric(&edge, "beam_edge_coalesced_waiters_total") >= 19.0
    });
    beam.release();
    for t in threads {
        let (s, _, body) = t.join().unwrap();
        assert_eq!((s, body.as_slice()), (206, &data[W + 5..=2 * W + 5]));
    }
    // 20 readers, one upstream request for the run of windows 1..=2 (plus
    // one for window 0, which gives the content type).
    let ranges: Vec<String> = beam
        .requests()
        .iter()
        .map(|r| r.headers["range"].clone())
        .collect();
    assert_eq!(
        ranges.iter().filter(|r| **r == range(W, 3 * W - 1)).count(),
        1,
        "{ranges:?}"
    );
    assert!(ranges.len() <= 2, "{ranges:?}");
    assert!(metric(&edge, "beam_edge_coalesced_waiters_total") >= 19.0);
    let fetched = metric(&edge, "beam_edge_upstream_bytes_total{upstream=\"beam\"}");
    assert!(
        fetched <= (3 * W) as f64,
        "upstream bytes {fetched} for 20 readers of 2 windows"
    );
}

#[test]
fn sequential_readers_get_read_ahead() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    let edge = start(
        &beam,
        "  window: 128KiB\n  memory: 64MiB\n  prefetch: 4\n",
        "",
        "",
    );
    let (cid, data) = piece(&beam, 16 * W, 5);
    let path = format!("/piece/{cid}");
    // A player reading one window at a time.
    let (s, _, body) = get(&edge, &path, &[("Range", &range(0, W - 1))]);
    assert_eq!((s, body.as_slice()), (206, &data[..W]));
    wait_for("4 windows prefetched", || {
        metric(
            &edge,
            "beam_edge_window_fills_total{kind=\"prefetch\",outcome=\"ok\"}",
        ) >= 4.0
    });
    beam.clear_log();
    for i in 1..=4 {
        let (s, h, body) = get(&edge, &path, &[("Range", &range(i * W, (i + 1) * W - 1))]);
        assert_eq!((s, body.as_slice()), (206, &data[i * W..(i + 1) * W]));
        assert_eq!(h["x-cache"], "HIT", "window {i} was read ahead");
    }
    assert!(metric(&edge, "beam_edge_prefetch_total{result=\"used\"}") >= 4.0);
    // A small probe of a window (not reading through it) triggers no read-ahead.
    // Read-ahead is decided when a reader opens a window, before its first
    // byte is written; the request is counted after its last. So once the
    // probe is counted, any read-ahead it caused is counted too.
    let answered = || {
        metric(
            &edge,
            "beam_edge_requests_total{route=\"piece\",status=\"206\"}",
        )
    };
    let issued = metric(&edge, "beam_edge_prefetch_total{result=\"issued\"}");
    let answered_before = answered();
    let (s, _, _) = get(&edge, &path, &[("Range", &range(12 * W, 12 * W + 99))]);
    assert_eq!(s, 206);
    wait_for("the probe to be counted", || answered() > answered_before);
    assert_eq!(
        metric(&edge, "beam_edge_prefetch_total{result=\"issued\"}"),
        issued + 0.0
    );
}

#[test]
fn a_client_that_leaves_stops_the_upstream_download() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    let edge = start(
        &beam,
        "  window: 128KiB\n  memory: 64MiB\n  prefetch: 2\n  run_windows: 8\n",
        "",
        "",
    );
    let size = 256 * W; // about 32 MiB
    let (cid, _) = piece(&beam, size, 6);
    // About 1.3 MB/s from the upstream: one run of 8 windows takes ~0.8 s,
    // long enough to notice the client leaving even on a loaded machine.
    beam.set_fault(Fault::Throttle(Duration::from_millis(50)));
    let mut sock = std::net::TcpStream::connect(edge.public).unwrap();
    write!(
        sock,
        "GET /piece/{cid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < 200_000 {
        got += sock.read(&mut buf).unwrap();
    }
    drop(sock);
    // The run in flight finishes its current window, then stops: the proxy
    // drops its upstream connections, which ends the mock's answers long
    // before the 32 MiB piece could have been sent (about 26 s at this rate).
    beam.wait_answers_done();
    let sent = beam.body_bytes_sent();
    // Bounded by window 0, one run of 8 windows, the read-ahead and what the
    // mock managed to push into loopback socket buffers before the proxy
    // closed the connection: far from the 256-window piece.
    assert!(
        sent < (24 * W) as u64,
        "sent {sent} bytes of {size} for a client that read {got}"
    );
}

#[test]
fn beam_whole_body_for_a_deep_range_falls_back_to_a_provider() {
    let beam = MockBeam::start();
    let provider = MockBeam::start_provider();
    let providers = format!(
        "  providers: [\"http://{}\"]\n  max_skip: 1MiB\n  beam_warm: false\n",
        provider.addr
    );
    let edge = start(
        &beam,
        &format!("{SMALL_WINDOWS}  prefetch: 0\n"),
        "",
        &providers,
    );
    let size = 200 * W; // 26 MB
    let (cid, data) = piece(&beam, size, 7);
    provider.add_piece(&cid, data.clone());
    beam.set_fault(Fault::FullBodyForRange);

    // Near the start (within max_skip): Beam's whole body is used, and the
    // windows it carried before the range are cached too.
    let (s, _, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &range(3 * W + 1, 3 * W + 10))],
    );
    assert_eq!((s, body.as_slice()), (206, &data[3 * W + 1..=3 * W + 10]));
    assert!(provider.requests().is_empty());
    beam.clear_log();
    let (s, h, _) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &range(W, 2 * W))],
    );
    assert_eq!((s, h["x-cache"].as_str()), (206, "HIT"));
    assert!(beam.requests().is_empty());

    // A deep seek: Beam's whole body is dropped at once, the provider serves the range.
    let at = 150 * W + 7;
    let (s, _, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &range(at, at + 999))],
    );
    assert_eq!((s, body.as_slice()), (206, &data[at..at + 1000]));
    let preq: Vec<String> = provider.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(preq, vec![format!("/piece/{cid}")]);
    // Once Beam's answer is over (cut by the proxy), what it sent is final.
    beam.wait_answers_done();
    assert!(
        beam.body_bytes_sent() < (size / 2) as u64,
        "read {} of Beam's whole body",
        beam.body_bytes_sent()
    );
    assert!(
        metric(
            &edge,
            "beam_edge_upstream_fallbacks_total{reason=\"full_body\",target=\"provider\"}"
        ) >= 1.0
    );
}

#[test]
fn deep_range_without_a_provider_is_a_clear_502() {
    let beam = MockBeam::start();
    let edge = start(
        &beam,
        &format!("{SMALL_WINDOWS}  prefetch: 0\n"),
        "",
        // Without a warm-up (tests/beam_cold.rs has those), a deep range
        // answered with the whole piece is never read up to.
        "  max_skip: 1MiB\n  beam_warm: false\n",
    );
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 100 * W, 8);
    // Window 0 is cached first, so only the deep read meets the fault.
    let (s, _, _) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=0-9")]);
    assert_eq!(s, 206);
    beam.set_fault(Fault::FullBodyForRange);
    let (s, _, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &range(90 * W, 90 * W + 9))],
    );
    assert_eq!(s, 502);
    assert!(String::from_utf8_lossy(&body).contains("upstream.providers"));
    assert!(
        metric(
            &edge,
            "beam_edge_upstream_fallbacks_total{reason=\"full_body\",target=\"beam_retry\"}"
        ) >= 1.0
    );
    // Once Beam is warm it serves ranges again.
    beam.set_fault(Fault::None);
    let (s, _, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &range(90 * W, 90 * W + 9))],
    );
    assert_eq!((s, body.as_slice()), (206, &data[90 * W..90 * W + 10]));
}

#[test]
fn beam_failure_falls_back_to_a_provider() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    let provider = MockBeam::start_provider();
    let providers = format!(
        "  providers: [\"http://{}/\"]\n  retries: 0\n",
        provider.addr
    );
    let edge = start(
        &beam,
        &format!("{SMALL_WINDOWS}  prefetch: 0\n"),
        "",
        &providers,
    );
    // Fresh upload: Beam does not know it yet (404), the provider has it.
    let data = mp4_like(3 * W, 9);
    let cid = commp_of(&data).unwrap().to_string();
    provider.add_piece(&cid, data.clone());
    let (s, _, body) = get(&edge, &format!("/piece/{cid}"), &[]);
    assert_eq!((s, body), (200, data));
    assert!(
        metric(
            &edge,
            "beam_edge_upstream_fallbacks_total{reason=\"error\",target=\"provider\"}"
        ) >= 1.0
    );
    // Unknown everywhere: Beam's 404 is what the client hears.
    let other = commp_of(&mp4_like(3 * W, 10)).unwrap().to_string();
    let (s, _, _) = get(&edge, &format!("/piece/{other}"), &[]);
    assert_eq!(s, 404);
}

#[test]
fn admin_endpoints_purge_warm_and_report() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    let token = "a-long-admin-token-for-tests";
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: format!("{SMALL_WINDOWS}  prefetch: 0\n"),
        admin_token: Some(token.into()),
        ..Default::default()
    });
    let (cid, data) = piece(&beam, 6 * W, 11);
    // Learn the piece's content type (window 0) before warming other windows.
    let (s, _, _) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=0-0")]);
    assert_eq!(s, 206);
    let auth = format!("Bearer {token}");
    let admin = |method: &str, path: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("Authorization", auth.as_str())];
        h.extend_from_slice(extra);
        raw_request(edge.admin, method, path, &h).unwrap()
    };

    // Auth.
    let (s, h, _) = raw_get(edge.admin, "/admin/cache", &[]).unwrap();
    assert_eq!(s, 401);
    assert!(h["www-authenticate"].starts_with("Bearer"));
    let (s, _, _) = raw_get(
        edge.admin,
        "/admin/cache",
        &[("Authorization", "Bearer wrong")],
    )
    .unwrap();
    assert_eq!(s, 401);

    // Warm windows 2..=3 in the background, then read them: a hit.
    let (s, _, body) = admin(
        "POST",
        &format!("/admin/cache/warm/{cid}"),
        &[("Range", &range(2 * W, 4 * W - 1)), ("Content-Length", "0")],
    );
    assert_eq!(s, 202, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["windows"]["first"], 2);
    assert_eq!(v["windows"]["last"], 3);
    wait_for("warm-up", || {
        let (_, _, b) = admin("GET", &format!("/admin/cache/{cid}"), &[]);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let m = v["memory"].as_array().unwrap().clone();
        m.contains(&serde_json::json!(2)) && m.contains(&serde_json::json!(3))
    });
    beam.clear_log();
    let (s, h, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &range(2 * W, 4 * W - 1))],
    );
    assert_eq!((s, h["x-cache"].as_str()), (206, "HIT"));
    assert_eq!(body, &data[2 * W..4 * W]);
    assert!(beam.requests().is_empty());

    // Stats.
    let (s, _, body) = admin("GET", "/admin/cache", &[]);
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["window_bytes"], W as u64);
    assert!(v["memory"]["entries"].as_u64().unwrap() >= 2);
    assert!(v["hit_ratio"]["memory"].as_f64().unwrap() > 0.0);

    // Purge: the next read goes upstream again. (Wait for the warm-up's
    // disk writes first, so the purge sees the windows on both tiers.)
    wait_for("warm-up on disk", || {
        let (_, _, b) = admin("GET", &format!("/admin/cache/{cid}"), &[]);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["filling"].as_array().unwrap().is_empty()
    });
    let (s, _, body) = admin("DELETE", &format!("/admin/cache/{cid}"), &[]);
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["removed_windows"].as_u64().unwrap() >= 2);
    let (s, h, _) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &range(2 * W, 2 * W + 9))],
    );
    assert_eq!((s, h["x-cache"].as_str()), (206, "MISS"));

    // Bad input.
    let (s, _, _) = admin("GET", "/admin/cache/not-a-cid", &[]);
    assert_eq!(s, 400);
    let (s, _, _) = admin("GET", "/admin/nothing", &[]);
    assert_eq!(s, 404);
    // Admin routes are not on the public port, and vice versa.
    let (s, _, _) = get(&edge, "/admin/cache", &[]);
    assert_eq!(s, 404);
}

#[test]
fn a_purge_during_a_fill_leaves_no_window_behind() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: this test is about the cache.
    beam.set_always_warm();
    let edge = start(
        &beam,
        "  window: 128KiB\n  memory: 64MiB\n  prefetch: 0\n  run_windows: 8\n",
        "",
        "",
    );
    let (cid, _) = piece(&beam, 12 * W, 12);
    let status = || {
        let (s, _, b) = raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
        assert_eq!(s, 200);
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()
    };
    let (s, _, _) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=0-0")]);
    assert_eq!(s, 206);
    // One run of windows 1..=8 at about 0.65 MB/s: some complete before
    // the purge, the rest after it.
    beam.set_fault(Fault::Throttle(Duration::from_millis(100)));
    let (s, _, body) = raw_request(
        edge.admin,
        "POST",
        &format!("/admin/cache/warm/{cid}"),
        &[("Range", &range(W, 9 * W - 1)), ("Content-Length", "0")],
    )
    .unwrap();
    assert_eq!(s, 202, "{}", String::from_utf8_lossy(&body));
    wait_for("window 1 stored while the run goes on", || {
        let v = status();
        v["memory"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(1))
    });
    let (s, _, body) =
        raw_request(edge.admin, "DELETE", &format!("/admin/cache/{cid}"), &[]).unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    wait_for("the run to end", || {
        status()["filling"].as_array().unwrap().is_empty()
    });
    let v = status();
    assert_eq!(v["memory"], serde_json::json!([]), "{v}");
    assert_eq!(v["disk"], serde_json::json!([]), "{v}");
    // The next read fetches again, and is stored again.
    beam.set_fault(Fault::None);
    beam.clear_log();
    let (s, h, _) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &range(5 * W, 5 * W + 9))],
    );
    assert_eq!((s, h["x-cache"].as_str()), (206, "MISS"));
    assert_eq!(beam.requests().len(), 1);
}

/// Waits until window `index` of `cid` is in the memory tier, then checks
/// that Beam sent its bytes once (since the log was last cleared).
fn stored_once(edge: &EdgeProcess, beam: &MockBeam, cid: &str, index: u64) {
    wait_for(&format!("window {index} in memory"), || {
        let (s, _, b) = raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
        s == 200
            && serde_json::from_slice::<serde_json::Value>(&b).unwrap()["memory"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(index))
    });
    beam.wait_answers_done();
    assert_eq!(beam.body_bytes_sent(), W as u64, "no byte asked for twice");
}

/// Critical bytes first: a read deep inside a cold window gets its bytes
/// while the window's head is still held upstream, no byte is asked for
/// twice, and the window is then cached whole.
#[test]
fn a_read_deep_in_a_cold_window_does_not_wait_for_the_windows_head() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: ranges are answered 206.
    beam.set_always_warm();
    let edge = start(
        &beam,
        &format!(
            "{SMALL_WINDOWS}  prefetch: 0\n  tail_guess: false\n  run_windows: 1\n  critical_first: 16KiB\n"
        ),
        "",
        "",
    );
    let (cid, data) = piece(&beam, 4 * W, 13);
    let path = format!("/piece/{cid}");
    // Beam has answered the piece with a range (and the content type is known).
    let (s, _, _) = get(&edge, &path, &[("Range", "bytes=0-0")]);
    assert_eq!(s, 206);
    beam.clear_log();
    let beam_bytes =
        |edge: &EdgeProcess| metric(edge, "beam_edge_upstream_bytes_total{upstream=\"beam\"}");
    let before = beam_bytes(&edge);
    // Every request for window 2 from its first byte waits.
    beam.hold_ranges_from(2 * W as u64);
    let (from, to) = (2 * W + 60_000, 2 * W + 60_999);
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr, p) = (edge.public, path.clone());
    std::thread::spawn(move || {
        let _ = tx.send(raw_get(addr, &p, &[("Range", &range(from, to))]));
    });
    let answer = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "no answer while the window's head is held: Beam got {:?}\n{}",
                beam.requests()
                    .iter()
                    .map(|r| r.headers.get("range").cloned())
                    .collect::<Vec<_>>(),
                edge.log()
            )
        });
    let (s, _, body) = answer.unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[from..=to]));
    // Two requests for the window: the reader's part, and the head beside it.
    let ranges = beam.sorted_ranges();
    assert_eq!(
        ranges,
        vec![range(2 * W, from - 1), range(from, 3 * W - 1)],
        "{ranges:?}"
    );
    // The reader's part is all in: the head ends last, and its fetch
    // finishes the window.
    wait_for("the reader's part of window 2", || {
        beam_bytes(&edge) - before >= (3 * W - from) as f64
    });
    beam.release_ranges_from(2 * W as u64);
    stored_once(&edge, &beam, &cid, 2);
    beam.clear_log();
    let (s, h, body) = get(&edge, &path, &[("Range", &range(2 * W, 3 * W - 1))]);
    assert_eq!((s, body.as_slice()), (206, &data[2 * W..3 * W]));
    assert_eq!(h["x-cache"], "HIT");
    assert!(beam.requests().is_empty());

    // The other order: the head comes first, the reader's part last (it
    // then finishes the window).
    let (from, to) = (3 * W + 70_000, 3 * W + 70_999);
    let before = beam_bytes(&edge);
    beam.hold_ranges_from(from as u64);
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr, p) = (edge.public, path.clone());
    std::thread::spawn(move || {
        let _ = tx.send(raw_get(addr, &p, &[("Range", &range(from, to))]));
    });
    wait_for("the head of window 3", || {
        beam.requests()
            .iter()
            .any(|r| r.headers["range"] == range(3 * W, from - 1))
    });
    wait_for("the head of window 3 all in", || {
        beam_bytes(&edge) - before >= (from - 3 * W) as f64
    });
    beam.release_ranges_from(from as u64);
    let (s, _, body) = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[from..=to]));
    stored_once(&edge, &beam, &cid, 3);
}

/// A checked window split for a deep reader still holds the reader's last
/// byte until the whole window, head included, has passed its check.
#[test]
fn a_deep_read_of_a_checked_window_gets_its_last_byte_once_the_window_passed() {
    let beam = MockBeam::start();
    beam.set_always_warm();
    let edge = start(
        &beam,
        &format!("{SMALL_WINDOWS}  prefetch: 0\n  critical_first: 16KiB\n"),
        "",
        "",
    );
    // One window: checked by its CID.
    let (cid, data) = piece(&beam, 100_000, 14);
    let path = format!("/piece/{cid}");
    let (s, _, _) = get(&edge, &path, &[("Range", "bytes=0-0")]);
    assert_eq!(s, 206);
    let (s, _, _) = raw_request(edge.admin, "DELETE", &format!("/admin/cache/{cid}"), &[]).unwrap();
    assert_eq!(s, 200);
    beam.clear_log();
    beam.hold_ranges_from(0);
    let (from, to) = (40_000, 99_998);
    let mut sock = std::net::TcpStream::connect(edge.public).unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: x\r\nRange: {}\r\nConnection: close\r\n\r\n",
        range(from, to)
    )
    .unwrap();
    // The part after the split comes while the head is held (all of it but
    // the held last byte, less what the server's 1,460-byte write buffer
    // keeps until its next write)...
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let body_at = |got: &[u8]| got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut buf = [0u8; 65536];
        match sock.read(&mut buf) {
            Ok(0) => panic!("closed early: {}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // ...and then nothing more.
            Err(_) if body_at(&got).is_some_and(|b| got.len() - b + 1 + 1460 >= to - from) => break,
            Err(_) => assert!(
                Instant::now() < deadline,
                "Beam got {:?}\n{}",
                beam.requests()
                    .iter()
                    .map(|r| r.headers.get("range").cloned())
                    .collect::<Vec<_>>(),
                edge.log()
            ),
        }
    }
    let b = body_at(&got).unwrap();
    let head = String::from_utf8_lossy(&got[..b]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(head.contains("x-beam-edge-checked: cid"), "{head}");
    assert!(
        got.len() - b < to - from + 1,
        "the last byte came before the window's head"
    );
    assert_eq!(&got[b..], &data[from..from + got.len() - b]);
    beam.release_ranges_from(0);
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.read_to_end(&mut got).unwrap();
    assert_eq!(&got[b..], &data[from..=to]);
    beam.wait_answers_done();
    assert_eq!(beam.body_bytes_sent(), data.len() as u64);
}
