//! Cluster mode (issue 10) with real processes: three replicas of the real
//! binary on 127.0.0.2, 127.0.0.3 and 127.0.0.4, each with its own cache
//! directory, in front of one mock Beam that logs every range. Membership
//! comes from a static list, then from DNS SRV records served by a real
//! `dnsmasq` started by the test on a high port.
//!
//! What is asserted is observable: bytes, the mock's request log, window
//! files under each cache directory, metrics and `/admin/cluster`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beam_edge::piece::commp::commp_of;
use common::*;

/// Window of 128 KiB padded = 130,048 raw bytes.
const W: usize = 130_048;
/// 20 windows minus a bit: every replica owns some.
const PIECE_LEN: usize = 20 * W - 1000;

fn piece(beam: &MockBeam, seed: u64) -> (String, Vec<u8>) {
    let data = mp4_like(PIECE_LEN, seed);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    (cid, data)
}

/// One replica's fixed identity: name, IP, peer port and cache directory
/// (kept across restarts).
struct Member {
    name: String,
    ip: String,
    peer_port: u16,
    cache_dir: PathBuf,
}

impl Member {
    fn peer_addr(&self) -> String {
        format!("{}:{}", self.ip, self.peer_port)
    }
}

fn members(n: usize, root: &Path) -> Vec<Member> {
    (0..n)
        .map(|i| Member {
            name: format!("edge-{i}"),
            ip: format!("127.0.0.{}", i + 2),
            peer_port: free_port(),
            cache_dir: root.join(format!("cache-{i}")),
        })
        .collect()
}

/// `peers:` lines listing `(name, addr)`.
fn static_peers(list: &[(String, String)]) -> String {
    let mut s = String::from("  peers:\n");
    for (name, addr) in list {
        s.push_str(&format!("    - {{ name: {name}, addr: \"{addr}\" }}\n"));
    }
    s
}

fn all_peers(ms: &[Member]) -> String {
    static_peers(
        &ms.iter()
            .map(|m| (m.name.clone(), m.peer_addr()))
            .collect::<Vec<_>>(),
    )
}

/// Starts replica `m` with `membership` (the `peers:` or `dns_srv:` lines).
fn start(beam: &MockBeam, m: &Member, self_name: &str, membership: &str) -> EdgeProcess {
    start_with(beam, m, self_name, membership, "")
}

/// [`start`] with more top-level YAML (`extra`).
fn start_with(
    beam: &MockBeam,
    m: &Member,
    self_name: &str,
    membership: &str,
    extra: &str,
) -> EdgeProcess {
    let cluster = format!(
        "cluster:\n  enabled: true\n  self: {self_name}\n  peer_listen: \"{}\"\n  refresh: 1s\n  peer_timeout: 5s\n  fail_for: 3s\n  hot_after: 3\n  hot_share: 50\n{membership}{extra}",
        m.peer_addr()
    );
    EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(beam, ""),
        cache: "  window: 128KiB\n  memory: 64MiB\n  prefetch: 2\n".into(),
        cache_dir: Some(m.cache_dir.clone()),
        extra: cluster,
        ip: Some(m.ip.clone()),
        ..Default::default()
    })
}

fn admin_cluster(p: &EdgeProcess) -> serde_json::Value {
    let (status, _, body) = raw_get(p.admin, "/admin/cluster", &[]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Waits until `p` sees `n` members, all ready.
/// Starts every member with the static list of all of them, and waits until
/// each sees them all. Returns the membership YAML (for restarts) and the
/// processes, in member order.
fn start_all(beam: &MockBeam, ms: &[Member]) -> (String, Vec<EdgeProcess>) {
    let peers = all_peers(ms);
    let ps: Vec<EdgeProcess> = ms.iter().map(|m| start(beam, m, &m.name, &peers)).collect();
    for p in &ps {
        wait_members(p, ms.len());
    }
    (peers, ps)
}

fn wait_members(p: &EdgeProcess, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = admin_cluster(p);
        let ready = v["members"]
            .as_array()
            .map(|a| a.iter().filter(|m| m["state"] == "ready").count())
            .unwrap_or(0);
        if ready == n && v["members"].as_array().map(Vec::len) == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} members not ready: {v}\n{}",
            n,
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read_all(p: &EdgeProcess, cid: &str) -> Vec<u8> {
    let (status, _, body) = raw_get(p.public, &format!("/piece/{cid}"), &[])
        .unwrap_or_else(|e| panic!("read through {}: {e}\n{}", p.public, p.log()));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    body
}

fn read_range(p: &EdgeProcess, cid: &str, a: usize, b: usize) -> (String, Vec<u8>) {
    let (status, h, body) = raw_get(
        p.public,
        &format!("/piece/{cid}"),
        &[("Range", &format!("bytes={a}-{b}"))],
    )
    .unwrap_or_else(|e| panic!("range through {}: {e}\n{}", p.public, p.log()));
    assert_eq!(status, 206, "{}", String::from_utf8_lossy(&body));
    (h.get("x-cache").cloned().unwrap_or_default(), body)
}

/// Window indexes of `cid` stored as files under a cache directory.
fn window_files(dir: &Path, cid: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let Ok(shards) = std::fs::read_dir(dir.join("w")) else {
        return out;
    };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path().join(cid)) else {
            continue;
        };
        for f in files.flatten() {
            if let Some(i) = f.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.insert(i);
            }
        }
    }
    out
}

/// Waits until the replicas' disks hold `count` windows of `cid` in all,
/// then returns each disk's windows.
fn wait_stored(ms: &[Member], cid: &str, count: usize) -> Vec<BTreeSet<u64>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let per: Vec<_> = ms.iter().map(|m| window_files(&m.cache_dir, cid)).collect();
        let total: usize = per.iter().map(BTreeSet::len).sum();
        if total >= count || Instant::now() > deadline {
            return per;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bytes of the piece the mock sent for `cid`, per window (from its log of
/// `Range` headers), and the total of the ranges asked.
fn beam_windows(beam: &MockBeam, cid: &str) -> (BTreeMap<u64, u32>, u64) {
    let mut per = BTreeMap::new();
    let mut total = 0;
    for r in beam.requests().iter().filter(|r| r.path.ends_with(cid)) {
        let Some(spec) = r
            .headers
            .get("range")
            .and_then(|v| v.strip_prefix("bytes="))
        else {
            continue;
        };
        let (a, b) = spec.split_once('-').unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        total += b - a + 1;
        for w in a / W as u64..=b / W as u64 {
            *per.entry(w).or_insert(0) += 1;
        }
    }
    (per, total)
}

fn metric(p: &EdgeProcess, name: &str) -> f64 {
    metric_value(&p.metrics_text(), name)
}

fn window_count() -> u64 {
    PIECE_LEN.div_ceil(W) as u64
}

/// Clause 1 and 3: a full read through one replica fetches every window
/// from Beam once in the whole cluster and stores it on exactly one disk;
/// the same read through the others costs Beam nothing.
#[test]
fn one_cache_across_three_replicas() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: the subject is how replicas share windows.
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 11);
    let root = tempfile::tempdir().unwrap();
    let ms = members(3, root.path());
    let (_, ps) = start_all(&beam, &ms);

    assert!(read_all(&ps[0], &cid) == data, "bytes differ");
    let per_disk = wait_stored(&ms, &cid, window_count() as usize);
    let all: Vec<u64> = per_disk.iter().flatten().copied().collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "a window on two disks: {per_disk:?}"
    );
    assert_eq!(distinct, (0..window_count()).collect(), "{per_disk:?}");
    for (i, d) in per_disk.iter().enumerate() {
        assert!(!d.is_empty(), "replica {i} owns nothing: {per_disk:?}");
    }
    let (per_window, total) = beam_windows(&beam, &cid);
    assert_eq!(
        total,
        PIECE_LEN as u64,
        "Beam ranges: {:?}",
        beam.requests()
    );
    assert!(per_window.values().all(|n| *n == 1), "{per_window:?}");
    assert!(metric(&ps[0], "beam_edge_served_bytes_total{source=\"peer\"}") > 0.0);
    assert!(metric(&ps[0], "beam_edge_peer_fetches_total{outcome=\"ok\"}") > 0.0);

    // The same read through the other replicas: zero Beam bytes.
    beam.clear_log();
    for p in &ps[1..] {
        assert!(read_all(p, &cid) == data, "bytes differ");
        let (a, b) = (PIECE_LEN / 3, PIECE_LEN / 3 + 3 * W);
        assert!(
            read_range(p, &cid, a, b).1 == data[a..=b],
            "range bytes differ"
        );
    }
    assert_eq!(beam_windows(&beam, &cid).1, 0, "{:?}", beam.requests());
    assert_eq!(beam.body_bytes_sent(), 0);
    // Still one copy per window.
    let again: usize = ms
        .iter()
        .map(|m| window_files(&m.cache_dir, &cid).len())
        .sum();
    assert_eq!(again, window_count() as usize);

    // /admin/cluster: three ready members whose shares add up to one.
    let v = admin_cluster(&ps[1]);
    assert_eq!(v["self"], "edge-1");
    let shares: f64 = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9, "{v}");
    let mine = v["share"].as_f64().unwrap();
    assert!((0.2..0.47).contains(&mine), "{v}");
}

/// Clause 4: a replica killed with SIGKILL costs no client an error; after
/// its restart with the same name and directory it serves its share from
/// its disk, with zero Beam bytes.
fn admin_piece(p: &EdgeProcess, cid: &str) -> serde_json::Value {
    let (status, _, body) = raw_get(p.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn wait_layer(p: &EdgeProcess, cid: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = admin_piece(p, cid);
        if v["layer"]["swept"] == true {
            return v;
        }
        assert!(Instant::now() < deadline, "no layer: {v}\n{}", p.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replica_takes_a_peers_layer_checked_instead_of_reading_the_piece() {
    let beam = MockBeam::start();
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 31);
    let root = tempfile::tempdir().unwrap();
    let ms = members(2, root.path());
    let peers = all_peers(&ms);
    // Layers are built at once (no delay), so that a replica that did not
    // get one from its peer would read the whole piece at once too.
    let verify = "verify:\n  build_delay: 0s\n";
    let ps: Vec<EdgeProcess> = ms
        .iter()
        .map(|m| start_with(&beam, m, &m.name, &peers, verify))
        .collect();
    for p in &ps {
        wait_members(p, 2);
    }
    // Replica 0 reads the piece whole and builds its layer.
    assert!(read_all(&ps[0], &cid) == data, "bytes differ");
    assert_eq!(wait_layer(&ps[0], &cid)["layer"]["source"], "built");
    // The peer listener hands it out: window size and 32 bytes per window.
    let (status, h, body) = raw_get(
        ms[0].peer_addr().parse().unwrap(),
        &format!("/layer/{cid}"),
        &[],
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(h["x-beam-edge-layer-window"], "131072");
    assert_eq!(body.len() as u64, 32 * window_count());
    // Replica 1 reads one range: it asks replica 0 for the layer, checks
    // it against the PieceCID, and never reads the piece whole.
    beam.clear_log();
    let (_, got) = read_range(&ps[1], &cid, 5 * W + 3, 5 * W + 99);
    assert!(got == data[5 * W + 3..=5 * W + 99]);
    let v = wait_layer(&ps[1], &cid);
    assert_eq!(v["layer"]["source"], "peer", "{v}");
    assert_eq!(v["checked_by"], "layer", "{v}");
    assert_eq!(
        metric(
            &ps[1],
            "beam_edge_layer_jobs_total{job=\"peer\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &ps[1],
            "beam_edge_layer_jobs_total{job=\"build\",outcome=\"ok\"}"
        ),
        0.0
    );
    let (_, beam_bytes) = beam_windows(&beam, &cid);
    assert!(
        beam_bytes <= 2 * W as u64,
        "Beam sent {beam_bytes} bytes after the layer existed: the piece was read again"
    );
}

/// A cluster member that is not beam-edge: ready (`/readyz` 200), it
/// answers `GET /layer/<cid>` with `windows` roots of its own making (a
/// liar, or a replica with a damaged store) and everything else 503.
/// Counts the layer requests it answered.
fn lying_peer(ip: &str, windows: u64) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicU32, Ordering};
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let asked = std::sync::Arc::new(AtomicU32::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut out = conn;
            let _ = if path == "/readyz" {
                out.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                )
            } else if path.starts_with("/layer/") {
                count.fetch_add(1, Ordering::SeqCst);
                let body = vec![0x5au8; 32 * windows as usize];
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Beam-Edge-Layer-Window: 131072\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                out.write_all(head.as_bytes())
                    .and_then(|_| out.write_all(&body))
            } else {
                out.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            };
        }
    });
    (addr, asked)
}

#[test]
fn a_peers_layer_that_does_not_hash_to_the_piece_is_refused() {
    let beam = MockBeam::start();
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 32);
    let root = tempfile::tempdir().unwrap();
    let ms = members(1, root.path());
    let (liar_addr, asked) = lying_peer("127.0.0.5", window_count());
    // The liar is the only other member: it is asked first.
    let peers = static_peers(&[
        (ms[0].name.clone(), ms[0].peer_addr()),
        ("liar".to_string(), liar_addr),
    ]);
    let edge = start_with(
        &beam,
        &ms[0],
        &ms[0].name,
        &peers,
        "verify:\n  build_delay: 0s\n",
    );
    wait_members(&edge, 2);
    let (_, got) = read_range(&edge, &cid, 100, 199);
    assert!(got == data[100..200]);
    // The liar's layer was asked for and refused; the replica built its own.
    let v = wait_layer(&edge, &cid);
    assert_eq!(v["layer"]["source"], "built", "{v}");
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(
        metric(
            &edge,
            "beam_edge_layer_jobs_total{job=\"peer\",outcome=\"ok\"}"
        ),
        0.0
    );
    assert!(
        edge.log()
            .contains("liar sent a layer that is not the piece's"),
        "{}",
        edge.log()
    );
    // Every byte read through it is the piece's.
    assert!(read_all(&edge, &cid) == data);
}

#[test]
fn a_killed_replica_costs_no_errors_and_comes_back_warm() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: the subject is how replicas share windows.
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 12);
    let root = tempfile::tempdir().unwrap();
    let ms = members(3, root.path());
    let (peers, mut ps) = start_all(&beam, &ms);
    assert!(read_all(&ps[0], &cid) == data);
    let per_disk = wait_stored(&ms, &cid, window_count() as usize);
    assert!(!per_disk[2].is_empty(), "edge-2 owns nothing: {per_disk:?}");

    // SIGKILL: no goodbye, no drain.
    ps[2].child.kill().unwrap();
    ps[2].child.wait().unwrap();
    for p in &ps[..2] {
        assert!(read_all(p, &cid) == data, "bytes differ after the kill");
        let (a, b) = (W / 2, 5 * W + 17);
        assert!(read_range(p, &cid, a, b).1 == data[a..=b]);
    }
    let failed: f64 = ps[..2]
        .iter()
        .map(|p| metric(p, "beam_edge_peer_fetches_total{outcome=\"failed\"}"))
        .sum();
    let fell_back: f64 = ps[..2]
        .iter()
        .map(|p| {
            metric(p, "beam_edge_peer_fallbacks_total{to=\"beam\"}")
                + metric(p, "beam_edge_peer_fallbacks_total{to=\"next_peer\"}")
        })
        .sum();
    assert!(
        failed > 0.0 && fell_back > 0.0,
        "failed {failed}, fallbacks {fell_back}"
    );

    // Back with the same name, peer address and directory.
    let old = ps.remove(2);
    drop(old);
    let back = start(&beam, &ms[2], &ms[2].name, &peers);
    wait_members(&back, 3);
    beam.clear_log();
    assert!(
        read_all(&back, &cid) == data,
        "bytes differ after the restart"
    );
    assert_eq!(beam.body_bytes_sent(), 0, "{:?}", beam.requests());
    assert!(metric(&back, "beam_edge_served_bytes_total{source=\"disk\"}") > 0.0);
}

/// Clause 4, the slow owner: a replica that accepts connections but never
/// answers (SIGSTOP) is timed out (`cluster.peer_timeout`), skipped, and
/// its windows come from the next member or Beam; the client sees its bytes.
#[test]
fn a_stalled_owner_is_timed_out_and_skipped() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: the subject is how replicas share windows.
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 16);
    let root = tempfile::tempdir().unwrap();
    let ms = members(3, root.path());
    let (_, ps) = start_all(&beam, &ms);
    assert!(read_all(&ps[0], &cid) == data);
    let per_disk = wait_stored(&ms, &cid, window_count() as usize);
    assert!(!per_disk[2].is_empty(), "edge-2 owns nothing: {per_disk:?}");
    // The kernel still accepts its connections; nothing answers them.
    let pid = ps[2].child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let got = raw_get(ps[1].public, &format!("/piece/{cid}"), &[]);
    signal("-CONT");
    let (status, _, body) =
        got.unwrap_or_else(|e| panic!("read with a stalled owner: {e}\n{}", ps[1].log()));
    assert_eq!(status, 200);
    assert!(body == data, "bytes differ with a stalled owner");
    assert!(metric(&ps[1], "beam_edge_peer_fetches_total{outcome=\"failed\"}") > 0.0);
    let fell_back = metric(&ps[1], "beam_edge_peer_fallbacks_total{to=\"beam\"}")
        + metric(&ps[1], "beam_edge_peer_fallbacks_total{to=\"next_peer\"}");
    assert!(fell_back > 0.0);
}

/// Clause 3: two replicas that disagree about membership (each believes
/// the other owns what it forwards) make one hop, never a loop.
#[test]
fn disagreeing_replicas_make_one_hop() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: the subject is how replicas share windows.
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 13);
    let root = tempfile::tempdir().unwrap();
    let ms = members(2, root.path());
    let (a, b) = (&ms[0], &ms[1]);
    // A: a at A, b at B. B calls itself "a" and names A "b": every window
    // one forwards, the other believes the first one owns.
    let a_view = static_peers(&[("a".into(), a.peer_addr()), ("b".into(), b.peer_addr())]);
    let b_view = static_peers(&[("a".into(), b.peer_addr()), ("b".into(), a.peer_addr())]);
    let pa = start(&beam, a, "a", &a_view);
    let pb = start(&beam, b, "a", &b_view);
    wait_members(&pa, 2);
    wait_members(&pb, 2);

    assert!(read_all(&pa, &cid) == data);
    let forwarded_by_a = metric(&pa, "beam_edge_peer_fetches_total{outcome=\"ok\"}");
    assert!(forwarded_by_a > 0.0);
    // B served A's requests itself: it forwarded nothing.
    assert_eq!(
        metric(&pb, "beam_edge_peer_fetches_total{outcome=\"ok\"}"),
        0.0
    );
    assert_eq!(
        metric(&pb, "beam_edge_peer_fetches_total{outcome=\"failed\"}"),
        0.0
    );
    let (per_window, total) = beam_windows(&beam, &cid);
    assert_eq!(total, PIECE_LEN as u64, "{:?}", beam.requests());
    assert!(per_window.values().all(|n| *n == 1), "{per_window:?}");

    // And the other way round: B, emptied, forwards what it believes "b"
    // owns to A, which does not forward it again (it fills from Beam).
    let (status, _, _) =
        raw_request(pb.admin, "DELETE", &format!("/admin/cache/{cid}"), &[]).unwrap();
    assert_eq!(status, 200);
    assert!(read_all(&pb, &cid) == data);
    assert!(metric(&pb, "beam_edge_peer_fetches_total{outcome=\"ok\"}") > 0.0);
    assert_eq!(
        metric(&pa, "beam_edge_peer_fetches_total{outcome=\"ok\"}"),
        forwarded_by_a
    );
}

/// Clause 5: a window hammered on a replica that does not own it ends up in
/// that replica's memory tier (and not on its disk).
#[test]
fn a_hammered_window_becomes_a_memory_hit_on_a_non_owner() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: the subject is how replicas share windows.
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 14);
    let root = tempfile::tempdir().unwrap();
    let ms = members(3, root.path());
    let (_, ps) = start_all(&beam, &ms);
    assert!(read_all(&ps[0], &cid) == data);
    let per_disk = wait_stored(&ms, &cid, window_count() as usize);
    // A whole window that edge-0 does not own.
    let w = (0..window_count() - 1)
        .find(|i| !per_disk[0].contains(i))
        .expect("edge-0 owns every window");
    let (a, b) = (w as usize * W, (w as usize + 1) * W - 1);
    let mut last_cache = String::new();
    for _ in 0..6 {
        let (x_cache, body) = read_range(&ps[0], &cid, a, b);
        assert!(body == data[a..=b]);
        last_cache = x_cache;
    }
    assert_eq!(last_cache, "HIT");
    let before = metric(&ps[0], "beam_edge_served_bytes_total{source=\"memory\"}");
    assert!(read_range(&ps[0], &cid, a, b).1 == data[a..=b]);
    let after = metric(&ps[0], "beam_edge_served_bytes_total{source=\"memory\"}");
    assert_eq!(after - before, W as f64);
    assert!(metric(&ps[0], "beam_edge_hot_windows_total{event=\"admitted\"}") >= 1.0);
    assert!(
        !window_files(&ms[0].cache_dir, &cid).contains(&w),
        "stored on a non-owner's disk"
    );
}

/// A `dnsmasq` serving SRV and A records on a high loopback port; killed on drop.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SRV_NAME: &str = "_peer._tcp.beam-edge-peers.test.svc.cluster.local";

fn dnsmasq(ms: &[Member]) -> Dnsmasq {
    let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dnsmasq is not installed (Debian: dnsmasq-base; `make test` installs it)");
    let port = free_port();
    let mut args = vec![
        "--no-daemon".to_string(),
        format!("--port={port}"),
        "--conf-file=/dev/null".into(),
        "--listen-address=127.0.0.1".into(),
        "--bind-interfaces".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--user=root".into(),
    ];
    for m in ms {
        let host = format!("{}.beam-edge-peers.test.svc.cluster.local", m.name);
        args.push(format!("--srv-host={SRV_NAME},{host},{}", m.peer_port));
        args.push(format!("--host-record={host},{}", m.ip));
    }
    let child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Dnsmasq { child, port }
}

/// Clause 2: membership from the DNS SRV records of a headless Service,
/// re-resolved every `refresh`; a lookup error keeps the last members.
#[test]
fn membership_from_dns_srv() {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: the subject is how replicas share windows.
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 15);
    let root = tempfile::tempdir().unwrap();
    let ms = members(3, root.path());
    let mut dns = dnsmasq(&ms);
    let membership = format!(
        "  dns_srv: {SRV_NAME}\n  nameserver: \"127.0.0.1:{}\"\n",
        dns.port
    );
    let ps: Vec<EdgeProcess> = ms
        .iter()
        .map(|m| start(&beam, m, &m.name, &membership))
        .collect();
    for p in &ps {
        wait_members(p, 3);
    }
    let v = admin_cluster(&ps[0]);
    let names: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["edge-0", "edge-1", "edge-2"], "{v}");

    assert!(read_all(&ps[1], &cid) == data);
    let per_disk = wait_stored(&ms, &cid, window_count() as usize);
    let total: usize = per_disk.iter().map(BTreeSet::len).sum();
    assert_eq!(total, window_count() as usize, "{per_disk:?}");
    assert!(per_disk.iter().all(|d| !d.is_empty()), "{per_disk:?}");
    assert_eq!(beam_windows(&beam, &cid).1, PIECE_LEN as u64);

    // DNS goes away: lookups fail, the last members are kept.
    dns.child.kill().unwrap();
    dns.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(
        &ps[2],
        "beam_edge_cluster_discovery_total{result=\"error\"}",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no failed lookup seen\n{}",
            ps[2].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        admin_cluster(&ps[2])["members"].as_array().unwrap().len(),
        3
    );
    beam.clear_log();
    assert!(read_all(&ps[2], &cid) == data);
    assert_eq!(beam.body_bytes_sent(), 0, "{:?}", beam.requests());
}
