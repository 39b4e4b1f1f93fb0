//! Beam as the real FilBeam worker behaves (issue #22), through the real
//! binary on loopback: a cold piece is warmed by exactly one whole-body
//! response, Beam's refusals are final (no provider fallback), remembered
//! and `no-store`, `access.denylist` answers 451 before any upstream I/O and
//! is reloaded on SIGHUP, and a v1 piece's size comes from the providers'
//! HEAD while Beam is cold. Costs are read from the mock Beam's own byte
//! and request counters.

mod common;

use std::time::{Duration, Instant};

use beam_edge::piece::commp::commp_of;
use common::*;

/// Window of 128 KiB padded = 130,048 raw bytes.
const W: usize = 130_048;
const SMALL_WINDOWS: &str = "  window: 128KiB\n  memory: 64MiB\n";

fn get(edge: &EdgeProcess, path: &str, headers: &[(&str, &str)]) -> Response {
    raw_get(edge.public, path, headers)
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", edge.log()))
}

fn metric(edge: &EdgeProcess, name: &str) -> f64 {
    metric_value(&edge.metrics_text(), name)
}

/// Waits until `f` holds; the deadline only matters when the test fails
/// (the edge's log is then printed).
fn wait_for(edge: &EdgeProcess, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}\n{}", edge.log());
}

fn start(beam: &MockBeam, cache: &str, upstream: &str, extra: &str) -> EdgeProcess {
    EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(beam, upstream),
        cache: cache.to_string(),
        extra: extra.to_string(),
        ..Default::default()
    })
}

fn warmups(edge: &EdgeProcess, outcome: &str) -> f64 {
    metric(
        edge,
        &format!("beam_edge_beam_warmups_total{{outcome=\"{outcome}\"}}"),
    )
}

/// A player's cold play: the first bytes, then the whole piece.
fn play(edge: &EdgeProcess, cid: &str, data: &[u8]) {
    let path = format!("/piece/{cid}");
    let (s, _, body) = get(edge, &path, &[("Range", "bytes=0-99")]);
    assert_eq!((s, body.as_slice()), (206, &data[..100]));
    let (s, _, body) = get(edge, &path, &[]);
    assert_eq!(s, 200);
    assert!(body == data, "the whole piece, byte for byte");
}

#[test]
fn a_cold_full_play_costs_beam_one_piece_and_leaves_it_warm() {
    let beam = MockBeam::start();
    // The default, strict rule, spelt out: a piece's first Beam request
    // goes alone, so a cold piece costs exactly one whole body
    // (`beam_assume_warm: true` lets the tail guess go beside it; see its
    // test below).
    let edge = start(&beam, SMALL_WINDOWS, "  beam_assume_warm: false\n", "");
    let size = 60 * W + 123;
    let data = mp4_like(size, 1);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());

    play(&edge, &cid, &data);
    wait_for(&edge, "the warm-up to complete", || {
        warmups(&edge, "completed") == 1.0
    });
    // One whole-body response, read to the end: Beam's CDN holds the piece.
    // No other request: the windows the play's runs planned while the head's
    // answer was coming are the stream's, however soon it passes them.
    beam.wait_answers_done();
    assert_eq!(beam.cold_answers(), 1, "{:?}", beam.requests());
    assert_eq!(beam.completed_cold(), 1);
    assert!(beam.is_warm(&cid));
    assert_eq!(beam.piece_requests(), 1, "{:?}", beam.requests());
    let sent = beam.body_bytes_sent();
    assert_eq!(
        sent, size as u64,
        "Beam sent {sent} bytes for a {size}-byte piece"
    );
    assert_eq!(warmups(&edge, "started"), 1.0);
    assert_eq!(warmups(&edge, "failed"), 0.0);

    // Another edge (cold cache) now gets ranges as 206s of their own size.
    beam.clear_log();
    let other = start(&beam, &format!("{SMALL_WINDOWS}  prefetch: 0\n"), "", "");
    let at = 40 * W + 5;
    let (s, _, body) = get(
        &other,
        &format!("/piece/{cid}"),
        &[("Range", &format!("bytes={at}-{}", at + 99))],
    );
    assert_eq!((s, body.as_slice()), (206, &data[at..at + 100]));
    assert_eq!(beam.completed_cold(), 0);
    assert!(
        beam.body_bytes_sent() <= 2 * W as u64,
        "a warm Beam sent {} bytes for one window",
        beam.body_bytes_sent()
    );
    assert_eq!(warmups(&other, "started"), 0.0);
}

#[test]
fn a_reader_ahead_of_the_warm_up_is_served_by_its_stream_before_it_ends() {
    let beam = MockBeam::start();
    // No read-ahead and no tail guess: the first request alone starts the
    // warm-up, and the seek below is the only reader ahead of the stream.
    let edge = start(
        &beam,
        &format!("{SMALL_WINDOWS}  prefetch: 0\n  tail_guess: false\n"),
        "",
        "",
    );
    let data = mp4_like(40 * W, 3);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let path = format!("/piece/{cid}");
    // Beam's cold answer streams its first two 64 KiB chunks (window 0)
    // and waits there.
    beam.gate_cold_at(2 * 65_536);
    let (s, _, body) = get(&edge, &path, &[("Range", "bytes=0-99")]);
    assert_eq!((s, body.as_slice()), (206, &data[..100]));
    // A seek 10 windows ahead, within upstream.max_skip of the stream: its
    // window is handed to the warm-up rather than asked of anyone.
    let adopted = metric(&edge, "beam_edge_beam_warmup_adopted_windows_total");
    let at = 10 * W + 7;
    let reader = {
        let (addr, path) = (edge.public, path.clone());
        std::thread::spawn(move || {
            raw_get(
                addr,
                &path,
                &[("Range", &format!("bytes={at}-{}", at + 99))],
            )
        })
    };
    wait_for(
        &edge,
        "the seek's window to be handed to the warm-up",
        || metric(&edge, "beam_edge_beam_warmup_adopted_windows_total") > adopted,
    );
    // The stream moves past that window (to 40 chunks, ~20 windows) and
    // waits again, well before the piece's end.
    beam.gate_cold_at(40 * 65_536);
    let (s, _, body) = reader.join().unwrap().unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[at..at + 100]));
    // Served by the one cold answer while it was still paused: no second
    // request, no completed warm-up.
    assert_eq!(beam.completed_cold(), 0);
    assert_eq!(beam.piece_requests(), 1, "{:?}", beam.requests());
    beam.open_cold_gate();
    wait_for(&edge, "the warm-up to complete", || {
        warmups(&edge, "completed") == 1.0
    });
    assert_eq!(beam.piece_requests(), 1, "{:?}", beam.requests());
}

#[test]
fn a_cold_deep_seek_is_served_by_the_provider_while_beam_warms_once() {
    let beam = MockBeam::start();
    let provider = MockBeam::start();
    provider.set_always_warm();
    // (The default, strict rule, spelt out: the head's content-type probe
    // waits for the seek's Beam answer instead of going beside it.)
    let upstream = format!(
        "  providers: [\"http://{}\"]\n  beam_assume_warm: false\n",
        provider.addr
    );
    let edge = start(&beam, SMALL_WINDOWS, &upstream, "");
    let size = 80 * W;
    let data = mp4_like(size, 2);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    provider.add_piece(&cid, data.clone());

    let at = 70 * W + 3;
    let (s, _, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &format!("bytes={at}-{}", at + 999))],
    );
    assert_eq!((s, body.as_slice()), (206, &data[at..at + 1000]));
    assert!(
        !provider.requests().is_empty(),
        "the deep range came from the provider"
    );
    wait_for(&edge, "the warm-up to complete", || {
        warmups(&edge, "completed") == 1.0
    });
    assert_eq!(beam.cold_answers(), 1, "{:?}", beam.requests());
    assert_eq!(beam.completed_cold(), 1);
    assert!(beam.body_bytes_sent() as f64 <= 1.05 * size as f64);
    assert!(beam.is_warm(&cid));
    // The stream filled this cache too: the head is a hit now.
    beam.clear_log();
    let (s, h, _) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=0-9")]);
    assert_eq!((s, h["x-cache"].as_str()), (206, "HIT"));
    assert_eq!(beam.piece_requests(), 0);
}

#[test]
fn a_warm_up_that_breaks_is_not_retried_and_readers_still_get_their_bytes() {
    let beam = MockBeam::start();
    let edge = start(&beam, &format!("{SMALL_WINDOWS}  prefetch: 0\n"), "", "");
    let size = 20 * W;
    let data = mp4_like(size, 3);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    // Whole-piece answers that stop half way: no warm-up can complete.
    beam.set_fault(Fault::FullBodyForRangeCut);
    let (s, _, body) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=0-99")]);
    assert_eq!((s, body.as_slice()), (206, &data[..100]));
    wait_for(&edge, "the warm-up to fail", || {
        warmups(&edge, "failed") == 1.0
    });
    beam.set_fault(Fault::None);
    beam.set_always_warm();
    // A later read is served (Beam answers 206 now) and no second warm-up starts.
    let at = 15 * W;
    let (s, _, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &format!("bytes={at}-{}", at + 9))],
    );
    assert_eq!((s, body.as_slice()), (206, &data[at..at + 10]));
    assert_eq!(warmups(&edge, "started"), 1.0);
}

fn refusal_count(edge: &EdgeProcess, reason: &str) -> f64 {
    metric(
        edge,
        &format!("beam_edge_refusals_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn beams_refusals_are_final_remembered_and_not_stored() {
    let beam = MockBeam::start();
    let provider = MockBeam::start();
    provider.set_always_warm();
    // (The default, strict rule, spelt out: one request learns a refusal,
    // which is then answered without asking Beam.)
    let upstream = format!(
        "  providers: [\"http://{}\"]\n  refusal_ttl: 10m\n  beam_assume_warm: false\n",
        provider.addr
    );
    let edge = start(&beam, SMALL_WINDOWS, &upstream, "");
    // Every reason is exported from the start.
    for reason in [
        "bad_bits",
        "sanctioned",
        "no_cdn",
        "quota_exhausted",
        "denylist",
    ] {
        assert_eq!(refusal_count(&edge, reason), 0.0, "{reason}");
    }
    let cases = [
        (Refuse::BadBits, 451, "bad_bits", "Bad Bits"),
        (Refuse::Sanctioned, 403, "sanctioned", "sanctioned"),
        (Refuse::NoCdn, 402, "no_cdn", "withCDN=false"),
        (Refuse::Quota, 402, "quota_exhausted", "quota exhausted"),
    ];
    for (i, (why, status, reason, text)) in cases.into_iter().enumerate() {
        let data = mp4_like(10 * W, 10 + i as u64);
        let cid = commp_of(&data).unwrap().to_string();
        beam.add_piece(&cid, data.clone());
        provider.add_piece(&cid, data);
        beam.refuse(&cid, why);
        beam.clear_log();
        provider.clear_log();
        // A player's refused play: a probe, then the ranges it retries.
        for r in ["bytes=0-99", "bytes=0-", "bytes=1000000-", "bytes=0-"] {
            let (s, h, body) = get(&edge, &format!("/piece/{cid}"), &[("Range", r)]);
            let body = String::from_utf8_lossy(&body);
            assert_eq!(s, status, "{reason} {r}: {body}");
            assert_eq!(h["cache-control"], "no-store", "{reason}");
            assert!(body.contains(text), "{reason}: {body}");
        }
        assert_eq!(beam.piece_requests(), 1, "{reason}: remembered");
        assert!(
            provider.requests().is_empty(),
            "{reason}: no fallback to the provider"
        );
        assert_eq!(refusal_count(&edge, reason), 4.0, "{reason}");
    }
}

#[test]
fn an_exhausted_quota_falls_back_only_when_configured() {
    let beam = MockBeam::start();
    let provider = MockBeam::start();
    provider.set_always_warm();
    let upstream = format!(
        "  providers: [\"http://{}\"]\n  on_quota_exhausted: providers\n",
        provider.addr
    );
    let edge = start(&beam, SMALL_WINDOWS, &upstream, "");
    let data = mp4_like(4 * W, 20);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    provider.add_piece(&cid, data.clone());
    beam.refuse(&cid, Refuse::Quota);
    let (s, _, body) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=10-19")]);
    assert_eq!((s, body.as_slice()), (206, &data[10..20]));
    assert!(!provider.requests().is_empty());
    // A sanctioned payer never falls back, whatever the quota setting.
    let data2 = mp4_like(4 * W, 21);
    let cid2 = commp_of(&data2).unwrap().to_string();
    beam.add_piece(&cid2, data2.clone());
    provider.add_piece(&cid2, data2);
    beam.refuse(&cid2, Refuse::Sanctioned);
    provider.clear_log();
    let (s, _, _) = get(
        &edge,
        &format!("/piece/{cid2}"),
        &[("Range", "bytes=10-19")],
    );
    assert_eq!(s, 403);
    assert!(provider.requests().is_empty());
}

fn bad_bits_line(cid: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{cid}/").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("//{hex}\n")
}

#[test]
fn the_denylist_refuses_before_any_upstream_io_and_reloads_on_sighup() {
    let beam = MockBeam::start();
    beam.set_always_warm();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("badbits.deny");
    let listed_data = mp4_like(3 * W, 30);
    let listed = commp_of(&listed_data).unwrap().to_string();
    beam.add_piece(&listed, listed_data);
    // Listed by its v1 form: the v2 request is refused all the same.
    let v1 = commp_of(&mp4_like(3 * W, 30)).unwrap().to_v1().to_string();
    std::fs::write(&list, format!("# local list\n{}", bad_bits_line(&v1))).unwrap();
    let edge = start(
        &beam,
        SMALL_WINDOWS,
        "",
        &format!("access:\n  denylist: [\"{}\"]\n", list.display()),
    );
    let (s, h, body) = get(&edge, &format!("/piece/{listed}"), &[]);
    assert_eq!(s, 451, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h["cache-control"], "no-store");
    let (s, _, _) = get(&edge, &format!("/beam/{PAYER}/{listed}"), &[]);
    assert_eq!(s, 451);
    assert_eq!(beam.piece_requests(), 0, "no upstream I/O");

    // A piece played and cached, then listed: SIGHUP refuses and purges it.
    let data = mp4_like(3 * W, 31);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let (s, _, body) = get(&edge, &format!("/piece/{cid}"), &[]);
    assert_eq!((s, body == data), (200, true));
    let asset = publish_asset(&beam, &mp4_like(2 * W, 32), W, "video/mp4");
    let (s, _, _) = get(&edge, &format!("/asset/{asset}"), &[]);
    assert_eq!(s, 200);
    let manifest_piece = {
        let (_, _, m) = get(&edge, &format!("/piece/{asset}"), &[]);
        let m = String::from_utf8_lossy(&m).to_string();
        m.split("\"cid\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    std::fs::write(
        &list,
        format!(
            "{}{}{}",
            bad_bits_line(&v1),
            bad_bits_line(&cid),
            bad_bits_line(&manifest_piece)
        ),
    )
    .unwrap();
    let pid = edge.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for(&edge, "the reload", || {
        edge.log().contains("access.denylist reloaded: 3 entries")
    });
    beam.clear_log();
    let (s, _, _) = get(&edge, &format!("/piece/{cid}"), &[("Range", "bytes=0-9")]);
    assert_eq!(s, 451);
    let (s, _, _) = get(&edge, &format!("/asset/{asset}"), &[]);
    assert_eq!(s, 451, "an asset with a listed piece");
    assert_eq!(beam.piece_requests(), 0);
    let (s, _, status) = raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
    assert_eq!(s, 200);
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["memory"], serde_json::json!([]), "purged: {status}");
    assert_eq!(status["disk"], serde_json::json!([]), "purged: {status}");
    assert_eq!(refusal_count(&edge, "denylist"), 4.0);
}

#[test]
fn a_v1_piece_size_comes_from_the_providers_head_while_beam_is_cold() {
    let beam = MockBeam::start();
    let provider = MockBeam::start();
    provider.set_always_warm();
    let upstream = format!("  providers: [\"http://{}\"]\n", provider.addr);
    let edge = start(&beam, SMALL_WINDOWS, &upstream, "");
    let data = mp4_like(6 * W + 11, 40);
    let v1 = commp_of(&data).unwrap().to_v1().to_string();
    beam.add_piece(&v1, data.clone());
    provider.add_piece(&v1, data.clone());
    let (s, h, body) = get(
        &edge,
        &format!("/piece/{v1}"),
        &[("Range", "bytes=100-199")],
    );
    assert_eq!((s, body.as_slice()), (206, &data[100..200]), "{h:?}");
    assert_eq!(
        h["content-range"],
        format!("bytes 100-199/{}", data.len()),
        "the size the provider's HEAD gave"
    );
    assert!(provider.requests().iter().any(|r| r.method == "HEAD"));
}

/// A v1 piece's size probe meets Beam cold (one whole-piece answer, cut
/// after the probe's bytes) but starts no warm-up. A player's first read
/// then still makes one Beam request alone, which starts the one warm-up:
/// the tail guess waits for its answer instead of asking beside it (each
/// got a whole-piece answer, and the loser's was read again from byte 0
/// or dropped after Beam had pulled the whole piece for it).
#[test]
fn after_a_v1_size_probe_met_beam_cold_the_play_still_makes_one_warm_up() {
    let beam = MockBeam::start();
    let provider = MockBeam::start();
    provider.set_always_warm();
    let upstream = format!("  providers: [\"http://{}\"]\n", provider.addr);
    let edge = start(&beam, SMALL_WINDOWS, &upstream, "");
    let data = mp4_like(6 * W + 11, 41);
    let v1 = commp_of(&data).unwrap().to_v1().to_string();
    beam.add_piece(&v1, data.clone());
    provider.add_piece(&v1, data.clone());
    // Cold answers stop after 64 KiB until the test lets them go: the
    // probe's is cut there, and no answer completes (warming Beam) early.
    beam.gate_cold_at(64 << 10);
    let (s, _, body) = get(&edge, &format!("/piece/{v1}"), &[("Range", "bytes=0-1023")]);
    assert_eq!((s, body.as_slice()), (206, &data[..1024]));
    // (The tail guess, had it gone beside the head, has asked by now.)
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        beam.cold_answers(),
        2,
        "the size probe's whole-piece answer and the warm-up's, no other: {:?}",
        beam.sorted_ranges()
    );
    beam.open_cold_gate();
    wait_for(&edge, "the warm-up to complete", || {
        beam.completed_cold() == 1
    });
    beam.wait_answers_done();
    assert_eq!(beam.cold_answers(), 2);
}

/// A request that waited for a piece's first Beam answer goes once that
/// answer is in, not once the first request is done with the storage
/// provider it went on to (a deep range while the warm-up streams): a second
/// deep read waited for a slow provider's answer to the first.
#[test]
fn a_read_waiting_for_beams_first_answer_does_not_wait_for_the_first_reads_provider() {
    let beam = MockBeam::start();
    let provider = MockBeam::start_provider();
    let upstream = format!(
        "  providers: [\"http://{}\"]\n  max_skip: 256KiB\n",
        provider.addr
    );
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream_timing(&beam, "60s", &upstream),
        cache: format!("{SMALL_WINDOWS}  prefetch: 0\n  tail_guess: false\n"),
        ..Default::default()
    });
    let data = mp4_like(8 * W, 42);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    provider.add_piece(&cid, data.clone());
    let path = format!("/piece/{cid}");
    let (first, second) = (6 * W, 4 * W);
    // The warm-up's stream stops after 64 KiB (it reaches neither read), and
    // Beam answers the first read, the piece's first request, when the test
    // says.
    beam.gate_cold_at(64 << 10);
    beam.hold_ranges_from(first as u64);
    let read = |from: usize| {
        let (addr, path) = (edge.public, path.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let range = format!("bytes={from}-{}", from + 99);
            let _ = tx.send(raw_get(addr, &path, &[("Range", &range)]));
        });
        rx
    };
    let first_read = read(first);
    wait_for(&edge, "the first read's Beam request", || {
        beam.piece_requests() >= 1
    });
    // The second read waits for that answer.
    let second_read = read(second);
    std::thread::sleep(Duration::from_millis(200));
    // Beam answers cold: the warm-up starts, and the first read's range goes
    // to the provider, which holds it.
    provider.hold_ranges_from(first as u64);
    beam.release_ranges_from(first as u64);
    let (s, _, body) = second_read
        .recv_timeout(Duration::from_secs(30))
        .expect("the second read waited for the first read's provider")
        .unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[second..second + 100]));
    provider.release_ranges_from(first as u64);
    let (s, _, body) = first_read
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[first..first + 100]));
    beam.open_cold_gate();
}

/// `upstream.beam_assume_warm`: the tail guess goes beside the head,
/// before Beam's first answer (a round trip sooner), and read-ahead still
/// waits for that answer. On a piece Beam is cold for after all, both get
/// a whole-piece answer: the first is the one warm-up, and the second is
/// hung up at once, not read from byte 0 up to its range (the whole piece
/// again).
#[test]
fn with_beam_assume_warm_the_tail_guess_goes_beside_the_head_and_cold_costs_one_body() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream_timing(&beam, "60s", "  beam_assume_warm: true\n"),
        cache: format!("{SMALL_WINDOWS}  prefetch: 4\n"),
        ..Default::default()
    });
    // The last window, half a window long, is the tail guess's whole range.
    let size = 60 * W + W / 2;
    let tail = 60 * W;
    let data = mp4_like(size, 44);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let path = format!("/piece/{cid}");
    // Beam answers the head and the tail guess when the test says, and its
    // cold answers stop after 64 KiB until the test lets them go.
    beam.gate_cold_at(64 << 10);
    beam.hold_ranges_from(0);
    beam.hold_ranges_from(tail as u64);
    let head = {
        let (addr, path) = (edge.public, path.clone());
        let range = format!("bytes=0-{}", W - 1);
        std::thread::spawn(move || raw_get(addr, &path, &[("Range", &range)]))
    };
    let first_two = vec![
        format!("bytes=0-{}", W - 1),
        format!("bytes={tail}-{}", size - 1),
    ];
    wait_for(&edge, "the head's and the tail guess's requests", || {
        beam.sorted_ranges() == first_two
    });
    // The head read goes through window 0, so read-ahead of windows 1 to 4
    // starts at once, but it still waits for Beam's first answer: it is not
    // on the first frame's path, and on a cold piece the warm-up's stream
    // takes its windows.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(beam.sorted_ranges(), first_two);
    // The head's answer comes first and starts the warm-up; the tail
    // guess's comes while the warm-up runs.
    beam.release_ranges_from(0);
    wait_for(&edge, "the warm-up to start", || {
        warmups(&edge, "started") == 1.0
    });
    beam.release_ranges_from(tail as u64);
    wait_for(&edge, "the tail guess's whole-piece answer", || {
        beam.cold_answers() == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    beam.open_cold_gate();
    let (s, _, body) = head.join().unwrap().unwrap();
    assert!(s == 206 && body == data[..W], "the head window");
    wait_for(&edge, "the warm-up to complete", || {
        warmups(&edge, "completed") == 1.0
    });
    beam.wait_answers_done();
    assert_eq!(beam.completed_cold(), 1);
    assert_eq!(beam.cold_answers(), 2, "{:?}", beam.sorted_ranges());
    let sent = beam.body_bytes_sent();
    assert!(
        sent <= size as u64 + (128 << 10),
        "Beam sent {sent} bytes for a {size}-byte piece: the second whole-piece answer was read"
    );
    // The warm-up cached every window: the whole piece, byte for byte, with
    // no other request.
    let (s, _, body) = get(&edge, &path, &[]);
    assert_eq!(s, 200);
    assert!(body == data, "the whole piece, byte for byte");
    assert_eq!(beam.piece_requests(), 2, "{:?}", beam.sorted_ranges());
}

/// `upstream.beam_assume_warm`, a deep first read (a seek before any play):
/// its window is split at once (critical bytes first: the window's head
/// asked beside the reader's part), and the content-type probe of the
/// piece's head goes beside it too, all before Beam's first answer.
/// (Without it, both wait for that answer.)
#[test]
fn with_beam_assume_warm_a_deep_first_reads_split_and_probe_go_before_beams_answer() {
    let beam = MockBeam::start();
    beam.set_always_warm();
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream_timing(&beam, "60s", "  beam_assume_warm: true\n"),
        cache: format!("{SMALL_WINDOWS}  prefetch: 0\n  critical_first: 16KiB\n"),
        ..Default::default()
    });
    let data = mp4_like(8 * W, 45);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let at = 5 * W + 70_000;
    beam.hold_ranges_from(at as u64);
    let read = {
        let (addr, path) = (edge.public, format!("/piece/{cid}"));
        let range = format!("bytes={at}-{}", at + 99);
        std::thread::spawn(move || raw_get(addr, &path, &[("Range", &range)]))
    };
    let want = [
        format!("bytes={at}-{}", 6 * W - 1),
        format!("bytes={}-{}", 5 * W, at - 1),
    ];
    // All three go while the reader's answer is held. (A probe that waits
    // for that answer goes only once something gives up on it, tens of
    // seconds on: the 10 s bound below is a liveness bound, not a timing.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ranges = beam.sorted_ranges();
        if want.iter().all(|w| ranges.contains(w))
            && ranges.iter().any(|r| r.starts_with("bytes=0-"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reader's part, the window's head and the probe did not all go: {ranges:?}\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    beam.release_ranges_from(at as u64);
    let (s, _, body) = read.join().unwrap().unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[at..at + 100]));
}

/// `upstream.beam_assume_warm` on a piece Beam is cold for: a deep first
/// read's window is split, and its two parts straddle `max_skip`. The
/// reader's part goes to the storage provider while the warm-up streams,
/// and so does the window's head (it waited for the whole warm-up, the
/// window unfinished until then).
#[test]
fn with_beam_assume_warm_a_split_windows_head_comes_from_the_provider_while_beam_warms() {
    let beam = MockBeam::start();
    let provider = MockBeam::start_provider();
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream_timing(
            &beam,
            "60s",
            &format!(
                "  beam_assume_warm: true\n  max_skip: 256KiB\n  providers: [\"http://{}\"]\n",
                provider.addr
            ),
        ),
        cache: format!("{SMALL_WINDOWS}  prefetch: 0\n  critical_first: 16KiB\n"),
        ..Default::default()
    });
    let data = mp4_like(8 * W, 46);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    provider.add_piece(&cid, data.clone());
    // The warm-up's stream stops after 64 KiB, far from window 2, until the
    // test lets it go. Window 2 starts before max_skip (256 KiB), the read
    // after it.
    beam.gate_cold_at(64 << 10);
    let at = 2 * W + 20_000;
    assert!(2 * W < 256 << 10 && at > 256 << 10);
    let (s, _, body) = get(
        &edge,
        &format!("/piece/{cid}"),
        &[("Range", &format!("bytes={at}-{}", at + 99))],
    );
    assert_eq!((s, body.as_slice()), (206, &data[at..at + 100]));
    wait_for(&edge, "window 2 cached while Beam warms", || {
        let (_, _, body) = raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
        let st: serde_json::Value = serde_json::from_slice(&body).unwrap();
        st["memory"]
            .as_array()
            .is_some_and(|m| m.contains(&2.into()))
    });
    assert!(beam.completed_cold() == 0, "the warm-up is still held");
    beam.open_cold_gate();
    wait_for(&edge, "the warm-up to complete", || {
        warmups(&edge, "completed") == 1.0
    });
}

/// Waits until the mock's byte counter stops moving (a benchmark, not a test).
fn settled(beam: &MockBeam) {
    let mut last = u64::MAX;
    loop {
        let now = beam.body_bytes_sent() + beam.provider_bytes();
        if now == last {
            return;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(1500));
    }
}

/// The figures of docs/src/performance.md ("Beam while cold"): what a cold
/// play, a cold deep seek, the three reads and a refused play cost
/// Beam and the provider, with the default config (1 MiB windows). Run
/// `BEAM_EDGE_BIN=<an older beam-edge> cargo test --locked --test beam_cold
/// figures -- --ignored --nocapture` for the "before" column.
#[test]
#[ignore]
fn figures() {
    let size = 45_000_000;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    println!(
        "| scenario | Beam requests | Beam bytes (MiB) | provider bytes (MiB) | Beam / piece |"
    );
    println!("|---|---|---|---|---|");
    let scenarios: [(&str, &[&str]); 3] = [
        (
            "cold play: bytes=0-99, then the whole piece",
            &["bytes=0-99", ""],
        ),
        ("cold deep seek: 1 MB at 80%", &["bytes=36000000-36999999"]),
        (
            "the issue's read: 100 bytes, a deep range, the whole piece",
            &["bytes=0-99", "bytes=30000000-30999999", ""],
        ),
    ];
    for (i, (name, reads)) in scenarios.iter().enumerate() {
        let beam = MockBeam::start();
        let provider = MockBeam::start_provider();
        let upstream = format!("  providers: [\"http://{}\"]\n", provider.addr);
        let edge = EdgeProcess::start_opts(EdgeOptions {
            upstream: beam_upstream(&beam, &upstream),
            ..Default::default()
        });
        let data = mp4_like(size, 100 + i as u64);
        let cid = commp_of(&data).unwrap().to_string();
        beam.add_piece(&cid, data.clone());
        provider.add_piece(&cid, data.clone());
        for r in reads.iter() {
            let headers: Vec<(&str, &str)> = if r.is_empty() {
                vec![]
            } else {
                vec![("Range", *r)]
            };
            let (s, _, _) = get(&edge, &format!("/piece/{cid}"), &headers);
            assert!(s == 200 || s == 206, "{s}");
        }
        settled(&beam);
        let beam_bytes = beam.body_bytes_sent();
        let provider_bytes = beam.provider_bytes() + provider.body_bytes_sent();
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.2}x |",
            beam.piece_requests(),
            mib(beam_bytes),
            mib(provider_bytes),
            beam_bytes as f64 / size as f64
        );
    }
    // A refused play: the player's probe, its retries and a seek.
    let beam = MockBeam::start();
    let provider = MockBeam::start_provider();
    let upstream = format!("  providers: [\"http://{}\"]\n", provider.addr);
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, &upstream),
        ..Default::default()
    });
    let data = mp4_like(size, 200);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    provider.add_piece(&cid, data);
    beam.refuse(&cid, Refuse::Sanctioned);
    let mut statuses = Vec::new();
    for r in [
        "bytes=0-99",
        "bytes=0-",
        "bytes=0-",
        "bytes=30000000-",
        "bytes=0-",
    ] {
        let (s, _, _) = get(&edge, &format!("/piece/{cid}"), &[("Range", r)]);
        statuses.push(s);
    }
    println!(
        "| refused play (403, 5 player requests, answered {statuses:?}) | {} | 0 | {:.1} (provider asked {} times) | - |",
        beam.piece_requests(),
        mib(provider.body_bytes_sent()),
        provider.requests().len()
    );
}
