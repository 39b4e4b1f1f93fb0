//! End-to-end test of the player page at `/`: the real `beam-edge` binary,
//! a real H.264 MP4 served by the mock Beam as a piece, and a real headless
//! Chromium driven by `tests/player/e2e.mjs` (playwright-core).
//!
//! The MP4 is made by ffmpeg without `+faststart`, so its `moov` index sits
//! after the media data and the browser must use Range requests to start
//! (and to seek). The script checks playback, seeking, the stats panel,
//! keyboard control and the error messages, and saves a screenshot to
//! `target/player-e2e.png`.
//!
//! Needs `ffmpeg`, `/usr/bin/chromium` and `npm ci --prefix tests/player`.
//! When one is missing the test fails and says which: it never passes
//! without having run the browser.

mod common;
mod common_rpc;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{EdgeProcess, MockBeam};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Upper bound for the browser script (its own budget is 150 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// One browser at a time: two Chromiums decoding video on a 2-core machine
/// starve each other's media pipelines, and the checks would then measure
/// the machine rather than the player.
static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with the install command for whatever is missing.
fn require_tools() {
    let mut missing = Vec::new();
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs("ffmpeg", "-version") {
        missing.push("ffmpeg (apt-get install -y ffmpeg)");
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push("chromium at /usr/bin/chromium (apt-get install -y chromium)");
    }
    if !runs("node", "--version") {
        missing.push("node >= 20 (apt-get install -y nodejs npm)");
    }
    if !manifest_dir()
        .join("tests/player/node_modules/playwright-core")
        .is_dir()
    {
        missing.push("playwright-core (npm ci --prefix tests/player)");
    }
    assert!(
        missing.is_empty(),
        "player e2e test cannot run; missing: {}",
        missing.join(", ")
    );
}

/// A 20 s, 640x360, 30 fps H.264 + AAC MP4 with `moov` at the end.
fn make_video(dir: &Path) -> Vec<u8> {
    let out = dir.join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30",
        ])
        .args(["-c:a", "aac", "-b:a", "64k"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg failed: {status}");
    std::fs::read(&out).expect("read the ffmpeg output")
}

/// Top-level MP4 box types in file order.
fn top_level_boxes(mp4: &[u8]) -> Vec<String> {
    let mut boxes = Vec::new();
    let mut off = 0usize;
    while off + 8 <= mp4.len() {
        let size = u32::from_be_bytes(mp4[off..off + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&mp4[off + 4..off + 8]).to_string());
        if size < 8 {
            break;
        }
        off += size;
    }
    boxes
}

fn screenshot_path() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("player-e2e.png")
}

/// Runs the script with a hard deadline; returns (success, stdout + stderr).
fn run_script(args: &[&str], log_dir: &Path) -> (bool, String) {
    run_named_script("e2e.mjs", args, log_dir)
}

/// Runs `tests/player/<name>` with a hard deadline.
fn run_named_script(name: &str, args: &[&str], log_dir: &Path) -> (bool, String) {
    run_named_script_env(name, args, &[], log_dir)
}

/// [`run_named_script`] with environment variables for the script.
fn run_named_script_env(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    log_dir: &Path,
) -> (bool, String) {
    let _one_browser = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let out_path = log_dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("node")
        .arg(manifest_dir().join("tests/player").join(name))
        .args(args)
        .envs(env.iter().copied())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run node");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = String::new();
    std::fs::File::open(&out_path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(killed after {SCRIPT_TIMEOUT:?})")),
    }
}

#[test]
fn player_plays_seeks_measures_and_reports_errors_in_chromium() {
    play_in_chromium(false);
}

/// The same clip uploaded as an asset of two pieces: the browser's ranges
/// cross the piece boundary.
#[test]
fn player_plays_a_multi_piece_asset_in_chromium() {
    play_in_chromium(true);
}

/// A whole Beam link pasted into the player of an edge with no payer
/// configured: it plays through `/beam/mainnet/<payer>/<cid>/<name>`, and the
/// mock Beam serves the clip only to that payer on that network.
#[test]
fn player_plays_a_pasted_beam_link_in_chromium() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path());
    let cid = beam_edge::piece::commp::commp_of(&video)
        .expect("commp of the clip")
        .to_string();
    let payer = "0x00000000000000000000000000000000000000b1";
    let beam = MockBeam::start();
    beam.add_piece_for_payers(&cid, video.clone(), &[payer]);
    // No upstream.payer: upstream.payers is `any`. The mock sees the network
    // and the payer in the path, as Beam sees them in the host name.
    let edge = EdgeProcess::start(&format!(
        "  beam_url: \"http://{}/{{network}}/{{payer}}\"\n  read_timeout: 10s\n",
        beam.addr
    ));
    let link = format!("https://{payer}.filbeam.io/{cid}/Test%20clip.mp4");
    let shot = screenshot_path().with_file_name("player-e2e-beam-link.png");
    let _ = std::fs::remove_file(&shot);
    let base = edge.url("");
    let (ok, output) = run_script(&[&base, &link, shot.to_str().unwrap()], dir.path());
    println!("{output}");
    assert!(
        ok,
        "player e2e script failed:\n{output}\n--- beam-edge log ---\n{}",
        edge.log()
    );
    let requests = beam.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(
            r.path.starts_with(&format!("/mainnet/{payer}/")) && r.path.ends_with(&cid),
            "{r:?}"
        );
    }
}

/// An edge that requires signed links: a link minted by `beam-edge sign`
/// plays, its copied link keeps the signature, and an unsigned id shows the
/// edge's 403 reason.
#[test]
fn player_plays_a_signed_link_in_chromium() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path());
    let cid = beam_edge::piece::commp::commp_of(&video)
        .expect("commp of the clip")
        .to_string();
    let beam = MockBeam::start();
    beam.add_piece(&cid, video.clone());
    let edge = EdgeProcess::start_opts(common::EdgeOptions {
        upstream: common::beam_upstream(&beam, ""),
        extra: "access:\n  signed_urls:\n    required: true\n    keys: [{ id: k1, secret: \"a-secret-for-the-signed-player-test-0123\" }]\n".into(),
        ..Default::default()
    });
    let out = Command::new(common::bin())
        .args(["sign", &format!("/piece/{cid}"), "--ttl", "10m", "-c"])
        .arg(edge.dir.path().join("beam-edge.yaml"))
        .output()
        .expect("beam-edge sign runs");
    assert!(out.status.success(), "{out:?}");
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(link.contains("sig="), "{link}");
    let shot = screenshot_path().with_file_name("player-e2e-signed.png");
    let _ = std::fs::remove_file(&shot);
    let (ok, output) = run_script(&[&edge.url(""), &link, shot.to_str().unwrap()], dir.path());
    println!("{output}");
    assert!(
        ok,
        "player e2e script failed:\n{output}\n--- beam-edge log ---\n{}",
        edge.log()
    );
}

fn play_in_chromium(as_asset: bool) {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path());
    let boxes = top_level_boxes(&video);
    let pos = |t: &str| boxes.iter().position(|b| b == t);
    assert!(
        pos("mdat") < pos("moov") && pos("mdat").is_some(),
        "moov must follow mdat, got {boxes:?}"
    );

    let cid = beam_edge::piece::commp::commp_of(&video)
        .expect("commp of the clip")
        .to_string();
    // A valid CID of bytes the mock does not hold: the 404 path.
    let unknown = beam_edge::piece::commp::commp_of(&common::mp4_like(4096, 7))
        .expect("commp")
        .to_string();
    let beam = MockBeam::start();
    beam.add_piece(&cid, video.clone());
    let cid = if as_asset {
        common::publish_asset(&beam, &video, video.len() / 2 + 1, "video/mp4")
    } else {
        cid
    };
    let edge = EdgeProcess::with_beam(&beam, "");

    let shot = if as_asset {
        screenshot_path().with_file_name("player-e2e-asset.png")
    } else {
        screenshot_path()
    };
    let _ = std::fs::remove_file(&shot);
    let started = Instant::now();
    let base = edge.url("");
    let (ok, output) = run_script(&[&base, &cid, shot.to_str().unwrap(), &unknown], dir.path());
    println!("{output}");
    println!(
        "browser script took {:.1} s; screenshot: {}",
        started.elapsed().as_secs_f64(),
        shot.display()
    );
    assert!(
        ok,
        "player e2e script failed:\n{output}\n--- beam-edge log ---\n{}",
        edge.log()
    );

    let png = std::fs::read(&shot).expect("the script saved a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "screenshot is not a real PNG"
    );
    // The browser's reads reached the upstream as ranges, not as one whole-file fetch per request.
    let ranged = beam
        .requests()
        .iter()
        .filter(|r| r.headers.contains_key("range"))
        .count();
    assert!(
        ranged > 0,
        "no ranged upstream request: {:?}",
        beam.requests()
    );
}

/// The upload panel on the admin listener: a file picked in the page streams
/// to `POST /admin/uploads` (mock chain and mock Curio behind it) and the
/// asset it becomes plays in the same page, from the public listener.
#[test]
fn a_file_uploaded_through_the_admin_page_plays_back() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path());
    let file = dir.path().join("holiday.mp4");
    std::fs::write(&file, &video).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let curio = common::mock_curio::MockCurio::start();
    let rpc = rt.block_on(common_rpc::chain(curio.url(), true));
    let beam = MockBeam::start();
    let token = "an-admin-token-for-the-page";
    let edge = EdgeProcess::start_opts(common::EdgeOptions {
        upstream: common::beam_upstream(&beam, "  retries: 0\n"),
        admin_token: Some(token.into()),
        extra: format!(
            "upload:\n  rpc_url: \"{}\"\n  provider_id: 7\n  provider_url: \"{}\"\n  piece_size: 1000000\n",
            rpc.url(),
            curio.url()
        ),
        env: vec![("BEAM_EDGE_PRIVATE_KEY".into(), common_rpc::KEY.into())],
        ..Default::default()
    });
    let shot = screenshot_path().with_file_name("player-upload.png");
    let admin_url = format!("http://{}/", edge.admin);
    let (ok, output) = run_named_script(
        "upload.mjs",
        &[
            &admin_url,
            token,
            file.to_str().unwrap(),
            shot.to_str().unwrap(),
        ],
        dir.path(),
    );
    println!("{output}");
    assert!(
        ok,
        "upload page script failed:\n{output}\n--- beam-edge log ---\n{}",
        edge.log()
    );
    // The provider received the file as pieces, plus a manifest.
    let finalized = curio.requests_to("POST", "/pdp/piece/uploads/").len();
    assert_eq!(finalized, video.len().div_ceil(1_000_000) + 1);
    drop(rt);
}

/// Runs `openssl` with `args` in `dir` and returns its stdout.
fn openssl(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

/// The same player script over https with HTTP/2: the public listener has
/// `server.tls` with a certificate from a test CA made here, and Chromium
/// trusts that key by its SPKI hash (`--ignore-certificate-errors-spki-list`).
/// The script also asserts, from Chromium's own record of each response
/// (CDP `Network.responseReceived`), that the page and every media range
/// came over h2.
#[test]
fn player_plays_over_https_with_a_test_ca_in_chromium() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = common::pki::Pki::new(d);
    let (cert, key) = pki.issue("tls", 7);
    let pubkey = openssl(
        d,
        &["x509", "-pubkey", "-noout", "-in", cert.to_str().unwrap()],
        None,
    );
    let der = openssl(d, &["pkey", "-pubin", "-outform", "der"], Some(&pubkey));
    let digest = openssl(d, &["dgst", "-sha256", "-binary"], Some(&der));
    let spki = openssl(d, &["base64", "-A"], Some(&digest));
    let spki = String::from_utf8(spki).unwrap();

    let video = make_video(d);
    let cid = beam_edge::piece::commp::commp_of(&video)
        .expect("commp")
        .to_string();
    let unknown = beam_edge::piece::commp::commp_of(&common::mp4_like(4096, 7))
        .expect("commp")
        .to_string();
    let beam = MockBeam::start();
    beam.add_piece(&cid, video.clone());
    let edge = EdgeProcess::start_opts(common::EdgeOptions {
        upstream: common::beam_upstream(&beam, ""),
        server: common::pki::tls_lines(&cert, &key),
        public_ca: Some(pki.ca()),
        ..Default::default()
    });
    let shot = screenshot_path().with_file_name("player-e2e-https.png");
    let _ = std::fs::remove_file(&shot);
    let base = format!("https://{}", edge.public);
    let (ok, output) = run_named_script_env(
        "e2e.mjs",
        &[&base, &cid, shot.to_str().unwrap(), &unknown],
        // The browser trusts the key by its hash; the script's own
        // requests (Node's) trust the CA.
        &[
            ("TRUST_SPKI", spki.trim()),
            ("NODE_EXTRA_CA_CERTS", pki.ca().to_str().unwrap()),
        ],
        d,
    );
    println!("{output}");
    assert!(
        ok,
        "player e2e script over https failed:\n{output}\n--- beam-edge log ---\n{}",
        edge.log()
    );
    assert!(std::fs::read(&shot).is_ok_and(|p| p.starts_with(b"\x89PNG")));
}
