//! TLS, HTTP/2 and the graceful upgrade with real parts: the real binary, a
//! test CA and server certificates made by the `openssl` command line, curl
//! (HTTP/2 by ALPN, h2c by prior knowledge) and `openssl s_client` as
//! clients, and a second `beam-edge serve --upgrade` process that takes the
//! listening sockets from the first over the upgrade socket.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beam_edge::piece::commp::commp_of;
use common::pki::{tls_lines, Pki};
use common::*;

fn piece(beam: &MockBeam, len: usize, seed: u64) -> (String, Vec<u8>) {
    let data = mp4_like(len, seed);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    (cid, data)
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One curl request: (http_version, status, headers lowercased, body).
struct Curl {
    version: String,
    status: u16,
    headers: String,
    body: Vec<u8>,
}

fn curl(args: &[&str], url: &str) -> Curl {
    let dir = tempfile::tempdir().unwrap();
    let (h, b) = (dir.path().join("h"), dir.path().join("b"));
    let out = Command::new("curl")
        .args(["-s", "-S", "-w", "%{http_version} %{http_code}", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = String::from_utf8(out.stdout).unwrap();
    let (version, status) = w.split_once(' ').unwrap();
    Curl {
        version: version.to_string(),
        status: status.parse().unwrap(),
        headers: std::fs::read_to_string(&h).unwrap().to_ascii_lowercase(),
        body: std::fs::read(&b).unwrap_or_default(),
    }
}

fn header<'a>(headers: &'a str, name: &str) -> &'a str {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {headers}"))
        .trim()
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The (content-range, bytes) parts of a multipart/byteranges body.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    loop {
        let start = find(rest, delim.as_bytes()).expect("delimiter");
        rest = &rest[start + delim.len()..];
        if rest.starts_with(b"--") {
            return parts;
        }
        let head_end = find(rest, b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&rest[2..head_end]).to_ascii_lowercase();
        let crange = header(&head.replace("\r\n", "\n"), "content-range").to_string();
        let span = crange
            .strip_prefix("bytes ")
            .unwrap()
            .split_once('/')
            .unwrap()
            .0;
        let (a, b) = span.split_once('-').unwrap();
        let len = b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
        let body_start = head_end + 4;
        parts.push((crange, rest[body_start..body_start + len].to_vec()));
        rest = &rest[body_start + len..];
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn start_tls(beam: &MockBeam, pki: &Pki, cert: &Path, key: &Path, extra: &str) -> EdgeProcess {
    EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(beam, ""),
        server: tls_lines(cert, key) + extra,
        public_ca: Some(pki.ca()),
        ..Default::default()
    })
}

#[test]
fn https_h2_serves_ranges_multipart_and_whole_pieces_byte_exact() {
    let beam = MockBeam::start();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let (cert, key) = pki.issue("server", 1001);
    let edge = start_tls(&beam, &pki, &cert, &key, "");
    let (cid, data) = piece(&beam, 3_000_000, 7);
    let url = format!("https://{}/piece/{cid}", edge.public);
    let ca = pki.ca().display().to_string();

    // One range, HTTP/2 negotiated by ALPN.
    let r = curl(&["--http2", "--cacert", &ca, "-r", "1000000-1999999"], &url);
    assert_eq!((r.version.as_str(), r.status), ("2", 206));
    assert_eq!(
        header(&r.headers, "content-range"),
        "bytes 1000000-1999999/3000000"
    );
    assert!(r.body == data[1_000_000..2_000_000], "range bytes differ");

    // Multipart ranges over h2.
    let r = curl(
        &[
            "--http2",
            "--cacert",
            &ca,
            "-r",
            "0-9,2999990-2999999,500000-600000",
        ],
        &url,
    );
    assert_eq!((r.version.as_str(), r.status), ("2", 206));
    let ct = header(&r.headers, "content-type").to_string();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect(&ct);
    let parts = multipart_parts(&r.body, boundary);
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], ("bytes 0-9/3000000".into(), data[..10].to_vec()));
    assert_eq!(
        parts[1],
        (
            "bytes 500000-600000/3000000".into(),
            data[500_000..600_001].to_vec()
        )
    );
    assert_eq!(
        parts[2],
        (
            "bytes 2999990-2999999/3000000".into(),
            data[2_999_990..].to_vec()
        )
    );

    // The whole piece, read slowly so that h2 flow control holds the writer
    // back (body-write backpressure) for most of the response.
    let r = curl(&["--http2", "--cacert", &ca, "--limit-rate", "2M"], &url);
    assert_eq!((r.version.as_str(), r.status), ("2", 200));
    assert!(r.body == data, "whole piece differs over h2");

    // HTTP/1.1 over TLS still works, and HEAD too.
    let r = curl(&["--http1.1", "--cacert", &ca, "-r", "-100"], &url);
    assert_eq!((r.version.as_str(), r.status), ("1.1", 206));
    assert!(r.body == data[data.len() - 100..]);
    let r = curl(&["--http2", "--cacert", &ca, "-I"], &url);
    assert_eq!((r.version.as_str(), r.status), ("2", 200));
    assert_eq!(header(&r.headers, "content-length"), "3000000");

    // Plain HTTP on the TLS port is refused, not served.
    assert!(raw_get(edge.public, "/healthz", &[]).is_err());
}

/// The serial number the listener serves, from `openssl s_client`.
fn served_serial(addr: std::net::SocketAddr, ca: &Path) -> Option<String> {
    let s_client = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca)
        .args(["-verify_return_error", "-alpn", "h2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    x509.stdin.as_ref()?.write_all(&s_client.stdout).ok()?;
    let out = x509.wait_with_output().ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .trim()
        .strip_prefix("serial=")
        .map(str::to_string)
}

fn sighup(child: &Child) {
    run(Command::new("kill").args(["-HUP", &child.id().to_string()]));
}

#[test]
fn sighup_swaps_the_certificate_and_a_bad_one_keeps_the_old() {
    let beam = MockBeam::start();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let (cert, key) = pki.issue("server", 0x1001);
    let mut edge = start_tls(&beam, &pki, &cert, &key, "");
    assert_eq!(
        served_serial(edge.public, &pki.ca()).as_deref(),
        Some("1001")
    );

    // cert-manager style rotation: new files in place, then SIGHUP.
    let (cert2, key2) = pki.issue("rotated", 0x2002);
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    sighup(&edge.child);
    wait_for("the rotated certificate", || {
        served_serial(edge.public, &pki.ca()).as_deref() == Some("2002")
    });
    assert!(edge.log().contains("TLS certificate reloaded"));

    // A broken rotation (a key of another certificate) keeps serving the
    // current pair, and says why.
    let (_, other_key) = pki.issue("other", 0x3003);
    std::fs::copy(&other_key, &key).unwrap();
    sighup(&edge.child);
    wait_for("the reload error in the log", || {
        edge.log()
            .contains("keeping the current TLS certificate: server.tls.key")
    });
    assert_eq!(
        served_serial(edge.public, &pki.ca()).as_deref(),
        Some("2002")
    );
    let r = curl(
        &["--http2", "--cacert", &pki.ca().display().to_string()],
        &format!("https://{}/healthz", edge.public),
    );
    assert_eq!((r.version.as_str(), r.status), ("2", 200));
    assert!(
        still_running(&mut edge.child),
        "a bad certificate on SIGHUP ended the process:\n{}",
        edge.log()
    );
}

/// Whether `child` is still running. `try_wait` reaps a child that has
/// exited, so an exited process is never mistaken for a live one (`kill -0`
/// succeeds on an exited child nobody has waited for: a zombie).
fn still_running(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

#[test]
fn bad_tls_files_are_start_up_errors_naming_the_key() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let (cert, key) = pki.issue("server", 1);
    let (_, other_key) = pki.issue("other", 2);
    let garbage = pki_dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = pki_dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = pki_dir.path().join("missing.pem");
    let cases: [(&Path, &Path, &str); 5] = [
        (&missing, &key, "server.tls.cert: cannot read"),
        (&cert, &missing, "server.tls.key: cannot read"),
        (&garbage, &key, "server.tls.cert:"),
        (&empty, &key, "server.tls.cert:"),
        (&cert, &other_key, "server.tls.key:"),
    ];
    for (c, k, want) in cases {
        let cfg = pki_dir.path().join("c.yaml");
        std::fs::write(
            &cfg,
            format!(
                "server:\n  listen: \"127.0.0.1:{}\"\n{}admin:\n  listen: \"127.0.0.1:{}\"\nmetrics:\n  listen: \"127.0.0.1:{}\"\n",
                free_port(),
                tls_lines(c, k),
                free_port(),
                free_port()
            ),
        )
        .unwrap();
        let out = Command::new(bin())
            .args(["serve", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{c:?} {k:?} started");
        assert!(err.contains(want), "{c:?} {k:?}: want {want:?} in {err}");
        let out = Command::new(bin())
            .arg("check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(want));
    }
    // The mismatch is named as such.
    let cfg = pki_dir.path().join("c.yaml");
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the certificate"));
}

#[test]
fn h2c_is_off_by_default_and_on_when_configured() {
    let beam = MockBeam::start();
    let (cid, data) = piece(&beam, 300_000, 9);
    let plain = EdgeProcess::with_beam(&beam, "");
    let h2c = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        server: "  h2c: true\n".into(),
        ..Default::default()
    });
    let r = curl(
        &["--http2-prior-knowledge", "-r", "100-199"],
        &h2c.url(&format!("/piece/{cid}")),
    );
    assert_eq!((r.version.as_str(), r.status), ("2", 206));
    assert!(r.body == data[100..200]);
    // HTTP/1.1 still works on the h2c listener.
    let r = curl(
        &["--http1.1", "-r", "100-199"],
        &h2c.url(&format!("/piece/{cid}")),
    );
    assert_eq!((r.version.as_str(), r.status), ("1.1", 206));
    // Without h2c, a prior-knowledge h2 client gets no HTTP/2.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--http2-prior-knowledge",
        ])
        .arg(plain.url("/healthz"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout), "2");
}

/// The second process of an upgrade; killed on drop.
struct Upgraded {
    child: Child,
    log_path: PathBuf,
}

impl Upgraded {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Upgraded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files of windows under the disk tier's directory (`w/<shard>/<cid>/<n>`).
fn window_files(cache: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(cache.join("w")).unwrap().flatten() {
        for piece in std::fs::read_dir(shard.path()).unwrap().flatten() {
            for f in std::fs::read_dir(piece.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if name.bytes().all(|b| b.is_ascii_digit()) {
                    files.push(f.path());
                }
            }
        }
    }
    files
}

#[test]
fn graceful_upgrade_finishes_streams_and_keeps_the_disk_index_whole() {
    // Small windows so that pieces span many windows; a small memory tier so
    // that reads after the upgrade come from disk.
    const W: usize = 130_048;
    let beam = MockBeam::start();
    let (slow_cid, slow_data) = piece(&beam, 80 * W, 11);
    let mut others = Vec::new();
    for seed in 0..3 {
        others.push(piece(&beam, 12 * W + 777, 20 + seed));
    }
    let work = tempfile::tempdir().unwrap();
    let sock = work.path().join("upgrade.sock");
    let pid_file = work.path().join("beam-edge.pid");
    let cache_dir = work.path().join("cache");
    let mut old = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        cache: "  window: 128KiB\n  memory: 2MiB\n  prefetch: 0\n".into(),
        cache_dir: Some(cache_dir.clone()),
        server: format!(
            "  grace_period: 30s\n  upgrade_sock: \"{}\"\n  pid_file: \"{}\"\n",
            sock.display(),
            pid_file.display()
        ),
        ..Default::default()
    });
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        old.child.id().to_string()
    );
    // Half of one other piece is cached before the upgrade.
    let (s, _, b) = raw_get(
        old.public,
        &format!("/piece/{}", others[0].0),
        &[("Range", &format!("bytes=0-{}", 6 * W - 1))],
    )
    .unwrap();
    assert_eq!((s, b.as_slice()), (206, &others[0].1[..6 * W]));

    // Client 1: streams a cold piece (10 MB) from the old process at
    // ~1 MB/s, so it is still streaming, and the old process still filling
    // the disk tier, after it stops accepting (5 s after SIGQUIT).
    let slow_url = old.url(&format!("/piece/{slow_cid}"));
    let slow_out = work.path().join("slow.bin");
    let mut slow = Command::new("curl")
        .args(["-s", "-S", "-f", "--limit-rate", "1M", "-o"])
        .arg(&slow_out)
        .arg(&slow_url)
        .spawn()
        .unwrap();
    wait_for("the slow stream to start", || {
        std::fs::metadata(&slow_out).is_ok_and(|m| m.len() > 0)
    });

    // The new process: waits on the upgrade socket for the listeners.
    let cfg = old.dir.path().join("beam-edge.yaml");
    let new_log = work.path().join("new.log");
    // systemd's notification socket: the new process must declare itself
    // the service's main process.
    let notify = std::os::unix::net::UnixDatagram::bind(work.path().join("notify")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let new = Upgraded {
        child: Command::new(bin())
            .args(["serve", "--upgrade", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", work.path().join("notify"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&new_log).unwrap())
            .spawn()
            .unwrap(),
        log_path: new_log,
    };
    wait_for("the upgrade socket", || sock.exists());
    run(Command::new("kill").args(["-QUIT", &old.child.id().to_string()]));
    wait_for("the new process to take the sockets", || {
        new.log().contains("Bootstrap done")
    });
    let mut msg = [0u8; 256];
    let n = notify.recv(&mut msg).expect("a systemd notification");
    assert_eq!(
        std::str::from_utf8(&msg[..n]).unwrap(),
        format!("MAINPID={}\nREADY=1\n", new.child.id())
    );

    // Client 2: new connections all through the hand-over, the drain and the
    // old process's exit; each answer byte-exact, whoever serves it.
    let mut requests = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut i = 0usize;
    loop {
        let (cid, data) = &others[i % others.len()];
        let a = (i * 97_531) % (data.len() - 1);
        let b = (a + 200_000).min(data.len() - 1);
        let r = curl(
            &["-r", &format!("{a}-{b}")],
            &format!("http://{}/piece/{cid}", old.public),
        );
        assert_eq!(r.status, 206, "request {i} during the hand-over");
        assert!(r.body == data[a..=b], "request {i} bytes differ");
        requests += 1;
        i += 1;
        let done = slow.try_wait().unwrap().is_some();
        // (try_wait, not kill -0: the exited child is a zombie until reaped.)
        if done && requests >= 20 && old.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "old process still running");
    }
    let status = slow.wait().unwrap();
    assert!(
        status.success(),
        "the slow stream failed: {status}\n{}",
        new.log()
    );
    assert!(
        std::fs::read(&slow_out).unwrap() == slow_data,
        "the slow stream's bytes differ"
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        new.child.id().to_string()
    );

    // Once the old process is gone, the new one owns the cache directory
    // and has adopted what the old one wrote while it drained.
    wait_for("the disk hand-over", || {
        new.log().contains("now the only user")
    });
    let log = new.log();
    let adopted: u64 = log
        .split("adopted ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        adopted > 0,
        "the old process wrote no window during the drain: {log}"
    );
    let stats = || {
        let (_, _, b) = raw_get(old.admin, "/admin/cache", &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["disk"]["entries"].as_u64().unwrap()
    };
    let files = window_files(&cache_dir);
    assert_eq!(stats(), files.len() as u64, "index entries vs window files");
    assert!(
        files.len() >= 80,
        "the slow piece's windows are on disk: {}",
        files.len()
    );
    let tmp_left: Vec<_> = std::fs::read_dir(cache_dir.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(tmp_left.is_empty(), "temp files left: {tmp_left:?}");

    // Every window is readable and correct: whole pieces through the new
    // process, with no upstream request for what the disk holds.
    beam.clear_log();
    let (s, _, b) = raw_get(old.public, &format!("/piece/{slow_cid}"), &[]).unwrap();
    assert_eq!(s, 200);
    assert!(b == slow_data, "slow piece differs after the upgrade");
    assert!(
        beam.requests().is_empty(),
        "the slow piece, written by the old process, was fetched again: {:?}",
        beam.requests().len()
    );
    for (cid, data) in &others {
        let (s, _, b) = raw_get(old.public, &format!("/piece/{cid}"), &[]).unwrap();
        assert_eq!(s, 200);
        assert!(&b == data, "{cid} differs after the upgrade");
    }
    wait_for("the re-read windows on disk", || {
        stats() == window_files(&cache_dir).len() as u64
    });
}

/// The shipped systemd unit (`deploy/systemd/beam-edge.service`) passes
/// `systemd-analyze verify` with its paths pointed at this build, and its
/// reload waits on the upgrade socket its header tells operators to set.
#[test]
fn the_shipped_systemd_unit_verifies_and_waits_on_the_documented_socket() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/beam-edge.service"),
    )
    .unwrap();
    let documented = unit
        .lines()
        .find_map(|l| l.split("upgrade_sock: ").nth(1))
        .map(|s| s.trim_end_matches(['}', ' ']).to_string())
        .expect("the header names server.upgrade_sock");
    assert!(
        unit.contains(&format!("[ -S {documented} ]")),
        "ExecReload must wait on {documented}"
    );
    assert!(unit.contains("Type=notify") && unit.contains("NotifyAccess=all"));

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("beam-edge.yaml");
    std::fs::write(&config, format!("server:\n  upgrade_sock: {documented}\n")).unwrap();
    run(Command::new(bin()).arg("check-config").arg(&config));
    let local = unit
        .replace("/usr/local/bin/beam-edge", bin())
        .replace("/etc/beam-edge/beam-edge.yaml", config.to_str().unwrap());
    let path = work.path().join("beam-edge.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (make test installs the systemd package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_unit: Vec<&str> = stderr.lines().filter(|l| l.contains("beam-edge")).collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
