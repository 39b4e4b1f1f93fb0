//! Access control on the real binary over loopback HTTP, against the mock
//! Beam: signed URLs (every refusal answered 403 with its reason before any
//! upstream request, which the mock's request log shows), the signing CLI
//! and admin endpoint, per-client request and byte limits, `X-Forwarded-For`
//! from trusted proxies only, per-payer egress budgets, and the open-edge
//! warning. Signatures are computed here independently (HMAC-SHA256 over
//! the documented message), so the wire format is checked, not just
//! round-tripped. No assertion reads a clock: pacing is asserted by bytes
//! and counters.

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use beam_edge::piece::commp::commp_of;
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const K1: &str = "first-key-0123456789abcdef0123456789abcdef";
const K2: &str = "second-key-0123456789abcdef0123456789abcdef";
const UNKNOWN: &str = "nobody-has-this-0123456789abcdef0123456789";
const TOKEN: &str = "an-admin-token-for-access-tests";

fn piece(beam: &MockBeam, len: usize, seed: u64) -> (String, Vec<u8>) {
    let data = mp4_like(len, seed);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    (cid, data)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The query of a link to `path`: HMAC-SHA256 under `secret` over
/// `beam-edge-url-v1\n<path>\n<exp>\n<ip>\n`, base64url without padding.
fn sign(secret: &str, kid: &str, path: &str, exp: u64, ip: Option<&str>) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    let exp = exp.to_string();
    for part in ["beam-edge-url-v1", path, &exp, ip.unwrap_or("")] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    let sig = data_encoding::BASE64URL_NOPAD.encode(&mac.finalize().into_bytes());
    let mut q = format!("exp={exp}&kid={kid}&sig={sig}");
    if let Some(ip) = ip {
        q.push_str(&format!("&ip={ip}"));
    }
    q
}

fn refusals(edge: &EdgeProcess, reason: &str) -> f64 {
    metric_value(
        &edge.metrics_text(),
        &format!("beam_edge_access_refusals_total{{reason=\"{reason}\"}}"),
    )
}

fn signed_edge(beam: &MockBeam, keys: &tempfile::TempDir) -> EdgeProcess {
    let k1 = keys.path().join("k1");
    std::fs::write(&k1, format!("{K1}\n")).unwrap();
    EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(beam, ""),
        admin_token: Some(TOKEN.into()),
        // k2 signs new links; k1, the key rotated out, still verifies.
        extra: format!(
            "access:\n  signed_urls:\n    required: true\n    keys:\n      - {{ id: k2, secret: \"{K2}\" }}\n      - {{ id: k1, secret_file: \"{}\" }}\n    clock_skew: 30s\n    max_ttl: 1d\n",
            k1.display()
        ),
        ..Default::default()
    })
}

#[test]
fn signed_links_are_checked_before_any_upstream_io() {
    let beam = MockBeam::start();
    let keys = tempfile::tempdir().unwrap();
    let edge = signed_edge(&beam, &keys);
    let (cid, data) = piece(&beam, 300_000, 1);
    let path = format!("/piece/{cid}");
    let now = unix_now();

    // Valid: signed with the old key, and one that expired 10 s ago, within
    // the 30 s clock skew.
    for exp in [now + 60, now - 10] {
        let link = format!("{path}?{}", sign(K1, "k1", &path, exp, None));
        let (s, _, body) = raw_get(edge.public, &link, &[]).unwrap();
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
        assert!(body == data);
    }
    // Bound to this client's address.
    let bound = format!(
        "{path}?{}",
        sign(K2, "k2", &path, now + 60, Some("127.0.0.1"))
    );
    assert_eq!(raw_get(edge.public, &bound, &[]).unwrap().0, 200);

    // Every refusal on a piece nothing has fetched yet: any upstream
    // request would show in the mock's log.
    let (cold, _) = piece(&beam, 200_000, 2);
    let cold_path = format!("/piece/{cold}");
    beam.clear_log();
    let valid = sign(K2, "k2", &cold_path, now + 60, None);
    let later = valid.replace(&format!("exp={}", now + 60), &format!("exp={}", now + 3600));
    assert_ne!(later, valid);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "no signature",
            cold_path.clone(),
            "signed link is required",
            "signature_missing",
        ),
        (
            "expired past the skew",
            format!(
                "{cold_path}?{}",
                sign(K2, "k2", &cold_path, now - 120, None)
            ),
            "expired",
            "signature_expired",
        ),
        (
            "tampered path (a name added)",
            format!("{cold_path}/clip.mp4?{valid}"),
            "does not match",
            "signature_mismatch",
        ),
        (
            "tampered expiry",
            format!("{cold_path}?{later}"),
            "does not match",
            "signature_mismatch",
        ),
        (
            "unknown key id",
            format!(
                "{cold_path}?{}",
                sign(UNKNOWN, "k9", &cold_path, now + 60, None)
            ),
            "\"k9\"",
            "signature_unknown_key",
        ),
        (
            "replayed on another path",
            format!("{cold_path}?{}", sign(K2, "k2", &path, now + 60, None)),
            "does not match",
            "signature_mismatch",
        ),
        (
            "bound to another client",
            format!(
                "{cold_path}?{}",
                sign(K2, "k2", &cold_path, now + 60, Some("127.0.0.2"))
            ),
            "bound to client address 127.0.0.2",
            "signature_wrong_client",
        ),
        (
            "a /beam/ path",
            format!("/beam/{PAYER}/{cold}"),
            "signed link is required",
            "signature_missing",
        ),
    ];
    for (what, link, reason, _) in &cases {
        let (s, h, body) = raw_get(edge.public, link, &[]).unwrap();
        // (a wrongly served piece is binary: show only its start)
        let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        assert_eq!(s, 403, "{what}: {text}");
        assert!(text.contains(reason), "{what}: {text}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
        assert_eq!(h["access-control-allow-origin"], "*", "{what}");
    }
    assert!(
        beam.requests().is_empty(),
        "refused requests reached Beam: {:?}",
        beam.requests()
    );
    for label in [
        "signature_missing",
        "signature_expired",
        "signature_mismatch",
        "signature_unknown_key",
        "signature_wrong_client",
    ] {
        let want = cases.iter().filter(|c| c.3 == label).count() as f64;
        assert_eq!(refusals(&edge, label), want, "{label}");
    }
    // The player page and health checks need no signature.
    for open in ["/", "/player/player.js", "/healthz", "/readyz"] {
        assert_eq!(raw_get(edge.public, open, &[]).unwrap().0, 200, "{open}");
    }

    // The admin endpoint mints with the first key (k2).
    let auth = format!("Bearer {TOKEN}");
    let q: String = url::form_urlencoded::byte_serialize(cold_path.as_bytes()).collect();
    let (s, _, body) = raw_get(
        edge.admin,
        &format!("/admin/sign?path={q}&ttl=10m"),
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let minted: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(minted["key_id"], "k2");
    let expires = minted["expires"].as_u64().unwrap();
    assert!(
        expires >= now + 600 && expires <= unix_now() + 600,
        "{minted}"
    );
    let link = minted["path_and_query"].as_str().unwrap();
    let (s, _, body) = raw_get(edge.public, link, &[]).unwrap();
    assert_eq!(s, 200);
    assert_eq!(body.len(), 200_000);
    let (s, _, body) = raw_get(
        edge.admin,
        &format!("/admin/sign?path={q}&ttl=30d"),
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("max_ttl"));
    let (s, _, _) = raw_get(edge.admin, &format!("/admin/sign?path={q}"), &[]).unwrap();
    assert_eq!(s, 401, "minting needs the admin token");

    // The CLI signs a path with a file name as a client will send it.
    let cfg = edge.dir.path().join("beam-edge.yaml");
    let out = Command::new(bin())
        .args(["sign", &format!("{path}/My Clip.mp4"), "--ttl", "5m", "-c"])
        .arg(&cfg)
        .args(["--base-url", &format!("http://{}/", edge.public)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8(out.stdout).unwrap();
    let url = url.trim();
    let prefix = format!("http://{}/piece/{cid}/My%20Clip.mp4?exp=", edge.public);
    assert!(url.starts_with(&prefix), "{url}");
    let (s, h, body) = raw_get(
        edge.public,
        &url[format!("http://{}", edge.public).len()..],
        &[],
    )
    .unwrap();
    assert_eq!(s, 200);
    assert!(body == data);
    assert!(h["content-disposition"].contains("My Clip.mp4"), "{h:?}");
    let out = Command::new(bin())
        .args(["sign", &path, "--ttl", "2d", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("access.signed_urls.max_ttl"));
}

#[test]
fn request_rate_is_limited_per_client_and_forwarded_for_only_from_trusted_proxies() {
    let beam = MockBeam::start();
    let (cid, _) = piece(&beam, 10_000, 3);
    let path = format!("/piece/{cid}");
    let limits = "access:\n  limits:\n    requests_per_second: 2\n".to_string();
    // Behind a trusted proxy (loopback), clients are told apart by X-Forwarded-For.
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        server: "  trusted_proxies: [\"127.0.0.0/8\"]\n".into(),
        extra: limits.clone(),
        ..Default::default()
    });
    // 20 requests cannot all fall into separate 1 s intervals of 2.
    let mut refused = None;
    for _ in 0..20 {
        let r = raw_get(edge.public, &path, &[("X-Forwarded-For", "203.0.113.1")]).unwrap();
        if r.0 == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.0, 200);
    }
    let (_, h, body) = refused.expect("a client over 2 requests/s is refused");
    let retry: u64 = h["retry-after"].parse().unwrap();
    assert!((1..=1).contains(&retry), "{h:?}");
    assert!(String::from_utf8_lossy(&body).contains("203.0.113.1"));
    // Another client behind the same proxy is served; a forged entry left
    // of the proxy's own does not change who the client is.
    let other = raw_get(edge.public, &path, &[("X-Forwarded-For", "203.0.113.2")]).unwrap();
    assert_eq!(other.0, 200);
    assert!(refusals(&edge, "client_request_rate") >= 1.0);
    drop(edge);

    // Without trusted proxies the header is ignored: every request is the
    // loopback peer's, whatever it claims.
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        extra: limits,
        ..Default::default()
    });
    let mut statuses = Vec::new();
    for i in 0..20 {
        let forged = format!("198.51.100.{i}");
        let r = raw_get(edge.public, &path, &[("X-Forwarded-For", &forged)]).unwrap();
        statuses.push(r.0);
        if r.0 == 429 {
            assert!(String::from_utf8_lossy(&r.2).contains("127.0.0.1"));
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[test]
fn bytes_per_second_paces_responses_without_refusing_them() {
    let beam = MockBeam::start();
    let (cid, data) = piece(&beam, 400_000, 4);
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        extra: "access:\n  limits:\n    bytes_per_second: 100KiB\n".into(),
        ..Default::default()
    });
    let (s, _, body) = raw_get(edge.public, &format!("/piece/{cid}"), &[]).unwrap();
    assert_eq!(s, 200);
    assert!(body == data, "every byte arrives");
    // 400,000 bytes at 102,400 per 1 s interval span at least 4 intervals,
    // and a write moves to the next interval by waiting for it: 3 waits
    // (one fewer tolerated, should a stall cross a boundary by itself).
    let waits = metric_value(&edge.metrics_text(), "beam_edge_paced_writes_total");
    assert!(waits >= 2.0, "{waits} paced writes");
    assert_eq!(refusals(&edge, "client_request_rate"), 0.0);
}

#[test]
fn egress_budget_stops_misses_within_one_window_and_still_serves_hits() {
    let beam = MockBeam::start();
    // Beam's CDN holds the piece: budgets are reserved window by window
    // (with a budget set, a cold piece gets no warm-up).
    beam.set_always_warm();
    // 128 KiB padded windows: 130,048 raw bytes each.
    let window = 130_048u64;
    let size = 2_000_000u64;
    // Spent to the byte: four windows and the piece's short last one (the
    // first read from byte 0 prefetches the tail, where a container's index
    // sits). So the request-time check (used >= limit), not only a window's
    // reservation, refuses misses, and must still let hits through.
    let budget = 4 * window + size % window;
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, "  retries: 0\n"),
        // No read-ahead: the demand run alone asks the upstream, so what
        // Beam sent when the response is cut is final.
        cache: "  window: 128KiB\n  prefetch: 0\n".into(),
        extra: format!("access:\n  egress_budget:\n    per_hour: {budget}\n"),
        ..Default::default()
    });
    let (cid, data) = piece(&beam, size as usize, 5);
    let path = format!("/piece/{cid}");
    // The first window (and the content type) first, so that the whole
    // read below is one run from window 1 on.
    let (s, _, body) = raw_get(edge.public, &path, &[("Range", "bytes=0-99")]).unwrap();
    assert_eq!(s, 206);
    assert!(body == data[..100]);
    // The whole piece is more than the budget: the response starts, and is
    // cut once no further window can be paid for.
    let r = raw_get(edge.public, &path, &[]);
    assert!(r.is_err(), "the response is cut: {:?}", r.map(|x| x.0));
    let sent = beam.body_bytes_sent();
    assert!(
        sent <= budget,
        "Beam sent {sent} bytes, over the {budget} budget"
    );
    assert!(
        sent + window > budget,
        "stopped {} bytes short of the budget: more than one window",
        budget - sent
    );
    // Cached windows are still served.
    let (s, h, body) = raw_get(edge.public, &path, &[("Range", "bytes=0-99999")]).unwrap();
    assert_eq!((s, h["x-cache"].as_str()), (206, "HIT"));
    assert!(body == data[..100_000]);
    // A miss is refused with Retry-After, before any upstream request.
    beam.clear_log();
    let (s, h, body) = raw_get(edge.public, &path, &[("Range", "bytes=1900000-1999999")]).unwrap();
    assert_eq!(s, 429, "{}", String::from_utf8_lossy(&body));
    let retry: u64 = h["retry-after"].parse().unwrap();
    assert!((1..=3600).contains(&retry), "{h:?}");
    assert!(String::from_utf8_lossy(&body).contains("per_hour"));
    assert!(beam.requests().is_empty(), "{:?}", beam.requests());
    assert!(refusals(&edge, "egress_budget_hour") >= 1.0);
}

#[test]
fn an_asset_whose_manifest_is_over_the_budget_gets_429_with_retry_after() {
    let beam = MockBeam::start();
    beam.set_always_warm();
    // The budget is one default window (1 MiB padded: 1,040,384 raw bytes).
    let window = 1_040_384usize;
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, "  retries: 0\n"),
        cache: "  prefetch: 0\n".into(),
        extra: format!("access:\n  egress_budget:\n    per_hour: {window}\n"),
        ..Default::default()
    });
    let (cid, data) = piece(&beam, window, 9);
    let id = publish_asset(&beam, &mp4_like(300_000, 10), 200_000, "video/mp4");
    // One read spends the whole budget.
    let (s, _, body) = raw_get(edge.public, &format!("/piece/{cid}"), &[]).unwrap();
    assert_eq!(s, 200);
    assert!(body == data);
    // The asset's manifest is not cached: reading it is a miss like any
    // other, refused before any upstream request, with a time to come back.
    beam.clear_log();
    let (s, h, body) = raw_get(edge.public, &format!("/asset/{id}"), &[]).unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(s, 429, "{body}");
    let retry: u64 = h
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {h:?}"))
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{h:?}");
    assert!(body.contains("per_hour"), "{body}");
    assert!(beam.requests().is_empty(), "{:?}", beam.requests());
    assert_eq!(refusals(&edge, "egress_budget_hour"), 1.0);
}

#[test]
fn an_open_edge_is_warned_about_and_the_default_listens_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open.yaml");
    std::fs::write(
        &open,
        "server:\n  listen: \"0.0.0.0:8080\"\nupstream:\n  payers: any\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check-config"])
        .arg(&open)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("warning: upstream.payers allows any payer")
            && stdout.contains("billed to that payer"),
        "{stdout}"
    );
    // Signatures required (or a payer list) silence it.
    let keyed = dir.path().join("keyed.yaml");
    std::fs::write(
        &keyed,
        format!("server:\n  listen: \"0.0.0.0:8080\"\nupstream:\n  payers: any\naccess:\n  signed_urls:\n    required: true\n    keys: [{{ id: k1, secret: \"{K1}\" }}]\n"),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check-config"])
        .arg(&keyed)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("any payer"));
    // A short secret names its key path.
    let weak = dir.path().join("weak.yaml");
    std::fs::write(
        &weak,
        "access:\n  signed_urls:\n    keys: [{ id: k1, secret: short }]\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check-config"])
        .arg(&weak)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access.signed_urls.keys[0]"),
        "{out:?}"
    );
    let c = beam_edge::config::Config::embedded_default();
    assert!(c.server.listen.ip().is_loopback(), "{}", c.server.listen);
}
