//! Container-aware prefetch through the real binary: a player's first read of
//! a cold MP4 whose `moov` sits after its media data (ffmpeg's default)
//! makes the edge fetch the index beside the head, so the player's jump to
//! it is a hit that costs Beam nothing more. With the prefetch off, the same
//! jump is a miss: the prefetch, not luck, made the hit.

mod common;

use std::time::{Duration, Instant};

use beam_edge::piece::commp::commp_of;
use common::*;

/// Window of 128 KiB padded = 130,048 raw bytes.
const W: usize = 130_048;

/// ftyp (32 bytes), mdat (`media` bytes of payload), then a moov of
/// `moov` bytes: the layout of ffmpeg's output without `+faststart`.
fn tail_moov_mp4(media: usize, moov: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(32 + 8 + media + moov);
    f.extend_from_slice(&32u32.to_be_bytes());
    f.extend_from_slice(b"ftypisom");
    f.extend_from_slice(&[0; 20]);
    f.extend_from_slice(&((8 + media) as u32).to_be_bytes());
    f.extend_from_slice(b"mdat");
    f.extend((0..media).map(|i| (i * 7 % 251) as u8));
    f.extend_from_slice(&(moov as u32).to_be_bytes());
    f.extend_from_slice(b"moov");
    f.extend((0..moov - 8).map(|i| (i * 13 % 241) as u8));
    f
}

/// A tail-moov MP4 whose moov spans the last three windows (the tail guess
/// fetches the last, the index prefetch the two before it), given to `beam`:
/// its CID, its bytes and where its moov starts. Beam's CDN already holds it
/// (206s from the first request), so no warm-up of a cold Beam reads the
/// whole piece: what fills the index windows is the prefetch.
fn moov_spanning_three_windows(beam: &MockBeam) -> (String, Vec<u8>, usize) {
    beam.set_always_warm();
    let data = tail_moov_mp4(6 * W, 2 * W + 500);
    let moov_at = 32 + 8 + 6 * W;
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    (cid, data, moov_at)
}

/// Gives `data` to `beam`, reads its first KiB like a player, and waits
/// for the head's window and the tail guess's to be in memory: the piece's
/// CID and path.
fn head_then_tail_guess(edge: &EdgeProcess, beam: &MockBeam, data: &[u8]) -> (String, String) {
    let cid = commp_of(data).unwrap().to_string();
    beam.add_piece(&cid, data.to_vec());
    let path = format!("/piece/{cid}");
    let (s, _, body) = raw_get(edge.public, &path, &[("Range", "bytes=0-1023")]).unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[..1024]));
    wait_for("the tail guess", edge, || {
        metric_value(
            &edge.metrics_text(),
            "beam_edge_cache_entries{tier=\"memory\"}",
        ) >= 2.0
    });
    (cid, path)
}

fn wait_for(what: &str, edge: &EdgeProcess, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}\n{}", edge.log());
}

fn start(beam: &MockBeam, cache_extra: &str) -> EdgeProcess {
    EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(beam, ""),
        cache: format!("  window: 128KiB\n  memory: 64MiB\n  prefetch: 0\n{cache_extra}"),
        ..Default::default()
    })
}

/// Reads the head like a browser, then the moov; returns the moov read's
/// X-Cache and the Beam requests it caused.
fn play(edge: &EdgeProcess, beam: &MockBeam, cid: &str, data: &[u8], moov_at: usize) -> String {
    let path = format!("/piece/{cid}");
    let (s, _, body) = raw_get(edge.public, &path, &[("Range", "bytes=0-1023")]).unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[..1024]));
    // The index windows are fetched in the background; wait for them
    // (window 0 plus the windows the moov spans, all in memory).
    let moov_windows = (data.len() - 1) / W - moov_at / W + 1;
    let want = 1.0 + moov_windows as f64;
    wait_for("the head and the index windows in memory", edge, || {
        metric_value(
            &edge.metrics_text(),
            "beam_edge_cache_entries{tier=\"memory\"}",
        ) >= want
    });
    beam.clear_log();
    let range = format!("bytes={moov_at}-{}", data.len() - 1);
    let (s, h, body) = raw_get(edge.public, &path, &[("Range", &range)]).unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[moov_at..]));
    h["x-cache"].clone()
}

#[test]
fn the_moov_a_player_jumps_to_is_fetched_beside_the_head() {
    let beam = MockBeam::start();
    let edge = start(&beam, "");
    let (cid, data, moov_at) = moov_spanning_three_windows(&beam);

    let x_cache = play(&edge, &beam, &cid, &data, moov_at);
    assert_eq!(x_cache, "HIT", "{}", edge.log());
    assert!(beam.requests().is_empty(), "{:?}", beam.requests());
    let m = edge.metrics_text();
    assert_eq!(
        metric_value(&m, "beam_edge_index_prefetch_total{kind=\"tail\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "beam_edge_index_prefetch_total{kind=\"index\"}"),
        1.0
    );
}

#[test]
fn without_the_prefetch_the_jump_is_a_miss() {
    let beam = MockBeam::start();
    let edge = start(&beam, "  index_prefetch: 0\n");
    let (cid, data, moov_at) = moov_spanning_three_windows(&beam);

    let path = format!("/piece/{cid}");
    let (s, _, _) = raw_get(edge.public, &path, &[("Range", "bytes=0-1023")]).unwrap();
    assert_eq!(s, 206);
    let range = format!("bytes={moov_at}-{}", data.len() - 1);
    let (s, h, body) = raw_get(edge.public, &path, &[("Range", &range)]).unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[moov_at..]));
    assert_eq!(h["x-cache"], "MISS");
    let m = edge.metrics_text();
    assert_eq!(
        metric_value(&m, "beam_edge_index_prefetch_total{kind=\"tail\"}"),
        0.0
    );
    assert_eq!(
        metric_value(&m, "beam_edge_index_prefetch_total{kind=\"index\"}"),
        0.0
    );
}

#[test]
fn a_piece_that_is_not_media_costs_at_most_its_last_window() {
    let beam = MockBeam::start();
    // Beam's CDN holds the piece: a cold one is warmed whole by one answer
    // (tests/beam_cold.rs), which would carry the last window too.
    beam.set_always_warm();
    let edge = start(&beam, "");
    let data = mp4_like(8 * W, 3)
        .into_iter()
        .map(|b| b ^ 0x5a)
        .collect::<Vec<u8>>();
    head_then_tail_guess(&edge, &beam, &data);
    let m = edge.metrics_text();
    assert_eq!(
        metric_value(&m, "beam_edge_index_prefetch_total{kind=\"tail\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "beam_edge_index_prefetch_total{kind=\"index\"}"),
        0.0
    );
    // Beam was asked for window 0 and the last window, nothing else.
    let last = 8 * W / W - 1;
    let ranges = beam.sorted_ranges();
    assert_eq!(
        ranges,
        vec![
            format!("bytes=0-{}", W - 1),
            format!("bytes={}-{}", last * W, 8 * W - 1)
        ]
    );
}

#[test]
fn the_head_read_is_a_pieces_first_contact_and_read_ahead_waits_for_it() {
    // Beam's CDN does not hold the piece: its first answer is the whole
    // body, which becomes the piece's one warm-up. That first request must
    // be the player's head read, never the tail guess or the read-ahead
    // started beside it: a whole body answering a deep range is dropped (a
    // second and third Beam request follow), and read-ahead that goes first
    // holds the head back by a round trip.
    let beam = MockBeam::start();
    // Read-ahead on: the head read (window 0, whole) starts read-ahead of
    // the next four windows beside the tail guess, and all of them race the
    // head for Beam's first request.
    // (`beam_assume_warm: false`, the default, spelt out: the rule this test
    // is about.)
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, "  beam_assume_warm: false\n"),
        cache: "  window: 128KiB\n  memory: 64MiB\n  prefetch: 4\n".into(),
        ..Default::default()
    });
    let data = tail_moov_mp4(6 * W, 2 * W + 500);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    beam.hold();
    let reader = {
        let (addr, path) = (edge.public, format!("/piece/{cid}"));
        let range = format!("bytes=0-{}", W - 1);
        std::thread::spawn(move || raw_get(addr, &path, &[("Range", &range)]).unwrap())
    };
    wait_for("Beam's first request", &edge, || {
        !beam.requests().is_empty()
    });
    // Room for a racing guess to be sent too (it must not be).
    std::thread::sleep(Duration::from_millis(300));
    let first = beam.requests();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0]
            .headers
            .get("range")
            .is_some_and(|r| r.starts_with("bytes=0-")),
        "the first Beam request is not the head read: {first:?}"
    );
    beam.release();
    let (s, _, body) = reader.join().unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[..W]));
    // The guess and the read-ahead still come, from the warm-up's stream:
    // it takes the windows their runs planned while they waited for the
    // head's answer, however soon it passes them, so Beam gets no second
    // request, not even for a window the stream passed first.
    wait_for("the warm-up to end", &edge, || beam.completed_cold() == 1);
    beam.wait_answers_done();
    let all = beam.requests();
    assert_eq!(all.len(), 1, "Beam was asked again: {all:?}");
    assert_eq!(beam.completed_cold(), 1);
    let m = edge.metrics_text();
    assert_eq!(
        metric_value(&m, "beam_edge_index_prefetch_total{kind=\"tail\"}"),
        1.0
    );
}

/// The tail guess fetches the whole last window, but its last bytes first
/// (where a short tail `moov` sits), with the window's head beside them
/// (critical bytes first): the player's jump to a small tail index does not
/// wait for the window's head to stream past. Only once Beam has answered
/// the piece with a range (the head read's answer).
#[test]
fn the_tail_guess_asks_for_the_last_windows_end_first() {
    // 512 KiB windows (520,192 raw bytes): the guess's last 256 KiB start
    // deeper than cache.critical_first (128 KiB).
    const W: usize = 520_192;
    let beam = MockBeam::start();
    beam.set_always_warm();
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: "  window: 512KiB\n  memory: 64MiB\n  prefetch: 0\n".into(),
        ..Default::default()
    });
    // Four windows, the last 420,192 bytes long, its last 4,000 the moov.
    let data = tail_moov_mp4(4 * W - 100_000 - 40 - 4_000, 4_000);
    let (_, path) = head_then_tail_guess(&edge, &beam, &data);
    beam.wait_answers_done();
    let (size, last) = (data.len(), 3 * W);
    let split = size - (256 << 10);
    let ranges = beam.sorted_ranges();
    assert_eq!(
        ranges,
        vec![
            format!("bytes=0-{}", W - 1),
            format!("bytes={last}-{}", split - 1),
            format!("bytes={split}-{}", size - 1),
        ]
    );
    // Each byte once; the moov jump is a hit.
    assert_eq!(beam.body_bytes_sent(), (W + size - last) as u64);
    let moov_at = size - 4_000;
    let (s, h, body) = raw_get(
        edge.public,
        &path,
        &[("Range", &format!("bytes={moov_at}-{}", size - 1))],
    )
    .unwrap();
    assert_eq!((s, body.as_slice()), (206, &data[moov_at..]));
    assert_eq!(h["x-cache"], "HIT");
}

/// A piece's first Beam request goes alone, but only the first: once Beam
/// has answered it, the requests that waited for that answer all go at
/// once. (Each waiter used to take the first request's place in turn and
/// hold the next back for its own round trip: the tail guess went two round
/// trips after the head, behind the reader's next windows.)
#[test]
fn once_beam_answered_the_first_request_the_waiting_ones_go_at_once() {
    let beam = MockBeam::start();
    beam.set_always_warm();
    // (An upstream answer may take a minute: a request held back behind
    // another's would wait that long, past the test's deadline.)
    // (`beam_assume_warm: false`, the default, spelt out: the rule this test
    // is about.)
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream_timing(&beam, "60s", "  beam_assume_warm: false\n"),
        cache: "  window: 128KiB\n  memory: 64MiB\n  prefetch: 0\n  tail_guess: false\n".into(),
        ..Default::default()
    });
    let data = mp4_like(8 * W, 9);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let ranges = || -> Vec<String> {
        beam.requests()
            .iter()
            .map(|r| r.headers["range"].clone())
            .collect()
    };
    // Three readers, in this order: of window 0 (the piece's first Beam
    // request), of window 1, of window 3. Beam holds its answers to the
    // first two for as long as the test says.
    beam.hold_ranges_from(0);
    beam.hold_ranges_from(W as u64);
    let send = |from: usize| {
        let mut sock = std::net::TcpStream::connect(edge.public).unwrap();
        use std::io::Write;
        write!(
            sock,
            "GET /piece/{cid} HTTP/1.1\r\nHost: x\r\nRange: bytes={from}-{}\r\nConnection: close\r\n\r\n",
            from + 1023
        )
        .unwrap();
        sock
    };
    let _head = send(0);
    wait_for("the head's request", &edge, || ranges().len() == 1);
    let _second = send(W);
    std::thread::sleep(Duration::from_millis(200));
    let _third = send(3 * W);
    std::thread::sleep(Duration::from_millis(200));
    // Both wait for the head's answer.
    assert_eq!(ranges(), vec![format!("bytes=0-{}", W - 1)]);
    beam.release_ranges_from(0);
    // Beam has answered: the third reader's request goes although the
    // second's is still waiting for its own answer.
    wait_for("the third reader's request", &edge, || {
        ranges().contains(&format!("bytes={}-{}", 3 * W, 4 * W - 1))
    });
    assert!(
        ranges().contains(&format!("bytes={W}-{}", 2 * W - 1)),
        "{:?}",
        ranges()
    );
    beam.release_ranges_from(W as u64);
}
