//! `beam-edge get` through the real binary: pieces and assets through the
//! real edge, straight from a mock Beam (by payer) and from a provider URL;
//! resume of a `.part`, parallel ranges, and a corrupted upstream that must
//! end in a non-zero exit naming the piece, with no final file.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use beam_edge::piece::commp::commp_of;
use common::*;

/// Runs `beam-edge get ARGS` and returns its output.
fn get(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("get")
        .args(args)
        .env_remove("BEAM_EDGE_ADMIN_TOKEN")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A piece of `len` varied bytes, added to the mock; returns its CID.
fn piece(beam: &MockBeam, len: usize, seed: u64) -> (String, Vec<u8>) {
    let data = mp4_like(len, seed);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    (cid, data)
}

/// The ranges the mock was asked for, as (start, end).
fn ranges_asked(beam: &MockBeam, cid: &str) -> Vec<(u64, u64)> {
    beam.requests()
        .iter()
        .filter(|r| r.path.ends_with(cid))
        .filter_map(|r| {
            let spec = r.headers.get("range")?.strip_prefix("bytes=")?.to_string();
            let (a, b) = spec.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

fn assert_file(path: &Path, want: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got.len(), want.len(), "{}: length", path.display());
    assert!(got == want, "{}: bytes differ", path.display());
    assert!(
        !beam_edge::download::part_path(path).exists(),
        "no .part is left beside {}",
        path.display()
    );
}

#[test]
fn a_piece_through_the_edge_with_four_ranges_at_once_is_verified() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    // 10 MB: three 4 MiB requests, the last one short.
    let (cid, data) = piece(&beam, 10_000_000, 1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("piece.bin");
    let o = get(&[
        &cid,
        "--edge",
        &edge.url(""),
        "-j",
        "4",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&out, &data);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("MB/s") && stderr.contains("ETA"),
        "{stderr}"
    );
    assert!(stderr.contains("verified 1 piece"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        out.to_str().unwrap()
    );
    // The edge's metrics saw the three ranged requests.
    let m = edge.metrics_text();
    assert!(
        metric_value(
            &m,
            "beam_edge_requests_total{route=\"piece\",status=\"206\"}"
        ) >= 3.0,
        "{m}"
    );
}

#[test]
fn an_asset_through_the_edge_is_checked_piece_by_piece() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::with_beam(&beam, "");
    let data = mp4_like(7_000_000, 2);
    let id = publish_asset(&beam, &data, 3_000_000, "video/mp4");
    let dir = tempfile::tempdir().unwrap();
    // By URL of the asset, into the asset's own file name.
    let o = Command::new(bin())
        .current_dir(dir.path())
        .args(["get", &edge.url(&format!("/asset/{id}")), "-j", "3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&dir.path().join("clip"), &data);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("verified 3 piece(s)"),
        "{}",
        text(&o)
    );
    // By bare id with --edge.
    let out = dir.path().join("by-id.mp4");
    let o = get(&[&id, "--edge", &edge.url("/"), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&out, &data);
}

#[test]
fn straight_from_beam_by_payer_and_from_a_provider_url() {
    let beam = MockBeam::start();
    let (cid, data) = piece(&beam, 5_000_000, 3);
    let data_asset = mp4_like(2_500_000, 4);
    let id = publish_asset(&beam, &data_asset, 1_000_000, "video/mp4");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("beam.yaml");
    std::fs::write(
        &cfg,
        format!("upstream:\n  beam_url: \"{}\"\n", beam.url_template()),
    )
    .unwrap();
    let out = dir.path().join("from-beam");
    let o = get(&[
        &cid,
        "--config",
        cfg.to_str().unwrap(),
        "--payer",
        PAYER,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&out, &data);
    assert!(
        beam.requests()
            .iter()
            .all(|r| r.path.starts_with(&format!("/{PAYER}/"))),
        "Beam was asked under the payer"
    );
    // An asset from Beam: its pieces are fetched by their CIDs.
    let out = dir.path().join("asset-from-beam");
    let o = get(&[
        &id,
        "--config",
        cfg.to_str().unwrap(),
        "--payer",
        PAYER,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&out, &data_asset);
    // A provider's /piece/<cid> URL.
    let out = dir.path().join("from-provider");
    let url = format!("http://{}/piece/{cid}", beam.addr);
    let o = get(&[&url, "-o", out.to_str().unwrap(), "-j", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&out, &data);
    // --provider with a bare CID.
    let out = dir.path().join("from-provider-2");
    let base = format!("http://{}", beam.addr);
    let o = get(&[&cid, "--provider", &base, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&out, &data);
}

#[test]
fn an_interrupted_download_resumes_from_its_part_file() {
    let beam = MockBeam::start();
    // Served as a storage provider serves /piece: ranges from the first request.
    beam.set_always_warm();
    let (cid, data) = piece(&beam, 9_000_000, 5);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("resumed.bin");
    let part = beam_edge::download::part_path(&out);
    // What an interrupted run leaves: a prefix of the file. (`--piece`: no
    // one-byte probe for a manifest, so the log holds only data requests.)
    std::fs::write(&part, &data[..5_000_000]).unwrap();
    let url = format!("http://{}/piece/{cid}", beam.addr);
    let o = get(&[&url, "-o", out.to_str().unwrap(), "-j", "4", "--piece"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&out, &data);
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming"));
    let asked = ranges_asked(&beam, &cid);
    assert_eq!(
        asked.iter().map(|(a, _)| *a).min(),
        Some(5_000_000),
        "only the rest was asked for: {asked:?}"
    );
    let fetched: u64 = asked.iter().map(|(a, b)| b - a + 1).sum();
    assert_eq!(fetched, 4_000_000, "{asked:?}");

    // A .part whose bytes are wrong is not trusted: the piece does not
    // match, and is fetched again whole.
    beam.clear_log();
    let mut bad = data[..3_000_000].to_vec();
    bad[1234] ^= 0xff;
    std::fs::write(&part, &bad).unwrap();
    let out2 = dir.path().join("resumed.bin");
    let o = get(&[&url, "-o", out2.to_str().unwrap(), "--piece"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_file(&out2, &data);
    assert_eq!(
        ranges_asked(&beam, &cid).iter().map(|(a, _)| *a).min(),
        Some(0)
    );

    // A .part longer than the piece is not this download's.
    std::fs::write(&part, vec![0u8; 9_000_001]).unwrap();
    let o = get(&[&url, "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a partial download"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_corrupted_upstream_fails_naming_the_piece_and_leaves_no_file() {
    let beam = MockBeam::start();
    let (cid, _) = piece(&beam, 6_000_000, 6);
    beam.set_fault(Fault::Corrupt);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.bin");
    let url = format!("http://{}/piece/{cid}", beam.addr);
    let o = get(&[&url, "-o", out.to_str().unwrap(), "-j", "4"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("piece 1 ({cid}) does not hash to its PieceCID")),
        "{stderr}"
    );
    assert!(!out.exists(), "the final file was not put in place");
    let part = beam_edge::download::part_path(&out);
    assert!(part.exists(), "the .part is kept for a resume");
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        0,
        "nothing verified"
    );

    // An asset whose second piece is corrupt (one piece's bytes replaced
    // at the source): the first piece stays in the .part.
    beam.set_fault(Fault::None);
    let data = mp4_like(2_000_000, 7);
    let id = publish_asset(&beam, &data, 1_000_000, "video/mp4");
    let second = commp_of(&data[1_000_000..]).unwrap().to_string();
    let mut wrong = data[1_000_000..].to_vec();
    wrong[500_000] ^= 1;
    beam.add_piece(&second, wrong);
    let out = dir.path().join("bad-asset");
    let url = format!("http://{}/piece/{id}", beam.addr);
    let o = get(&[&url, "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("piece 2 ({second})")),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
    let part = beam_edge::download::part_path(&out);
    assert!(std::fs::read(&part).unwrap() == data[..1_000_000]);
}

#[test]
fn bad_targets_and_statuses_get_clear_errors() {
    let beam = MockBeam::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o_path = out.to_str().unwrap();
    let base = format!("http://{}", beam.addr);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["hello".into(), "--provider".into(), base.clone()],
            "invalid PieceCID or asset id \"hello\"",
        ),
        (
            vec!["ftp://x/piece/y".into()],
            "only http:// and https:// are supported",
        ),
        (vec![format!("{base}/video.mp4")], "names no PieceCID"),
        (
            vec!["bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy".into()],
            "no source for",
        ),
        (
            // Unknown to the mock: 404.
            vec![format!(
                "{base}/piece/bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"
            )],
            "HTTP 404: not found",
        ),
    ];
    for (args, want) in cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["-o", o_path]);
        let o = get(&all);
        assert_eq!(o.status.code(), Some(1), "{all:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(want),
            "{all:?} wants {want:?}: {}",
            text(&o)
        );
        assert!(!out.exists());
    }
    // Beam's 402 (quota exhausted) is explained, not retried.
    let (cid, _) = piece(&beam, 200_000, 8);
    beam.set_fault(Fault::Status(402));
    beam.clear_log();
    let o = get(&[&format!("{base}/{PAYER}/{cid}"), "-o", o_path]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HTTP 402: payment required"),
        "{}",
        text(&o)
    );
    assert_eq!(beam.requests().len(), 1, "a 402 is final");
    // A 503 is retried, then reported.
    beam.set_fault(Fault::Status(503));
    let o = get(&[&format!("{base}/{PAYER}/{cid}"), "-o", o_path, "--piece"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("after 4 attempts"),
        "{}",
        text(&o)
    );
}
