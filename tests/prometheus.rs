//! A real Prometheus (Debian's `prometheus` package; `make test-deps`
//! installs it) scrapes the real binary while traffic goes through it, and
//! every PromQL expression of `deploy/grafana/beam-edge-dashboard.json` is
//! evaluated through Prometheus' HTTP API. The shipped `deploy/prometheus.yml`
//! and `deploy/prometheus/rules.yml` are checked with `promtool`, and the
//! rules' unit tests (`rules_test.yml`) run.

mod common;
mod common_rpc;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beam_edge::piece::commp::commp_of;
use common::mock_curio::MockCurio;
use common::*;
use common_rpc::{chain, KEY};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} is missing: `make test-deps` installs Debian's prometheus package (it ships promtool)"
    );
    path
}

/// Runs promtool with `args` in `dir`; panics with its output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(tool("promtool"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// A Prometheus server on loopback with its own data directory; killed on drop.
struct Prometheus {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(config: &Path, dir: tempfile::TempDir) -> Prometheus {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        wait_for("Prometheus ready", || {
            raw_get(p.addr, "/-/ready", &[]).is_ok_and(|(s, _, _)| s == 200)
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query` of `expr`: the result vector as (labels, value).
    fn query(&self, expr: &str) -> Vec<(serde_json::Value, f64)> {
        // curl, not raw_get: Prometheus sends a large answer chunked.
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--data-urlencode"])
            .arg(format!("query={expr}"))
            .arg(format!("http://{}/api/v1/query", self.addr))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, s) = text.trim_end().rsplit_once('\n').unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(s, "200", "{expr}: {v}");
        assert_eq!(v["status"], "success", "{expr}: {v}");
        assert_eq!(v["data"]["resultType"], "vector", "{expr}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap();
                let value = match value {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap(),
                };
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Time (unix seconds) of the latest successful scrape of the edge, if any.
    fn last_scrape(&self) -> Option<f64> {
        self.query("timestamp(up{job=\"beam-edge\"} == 1)")
            .first()
            .map(|(_, t)| *t)
    }

    /// Waits for a scrape that started after this call.
    fn wait_scrape(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        wait_for("a scrape of the edge", || {
            self.last_scrape().is_some_and(|t| t > now)
        });
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "no {what} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every PromQL expression in the dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/beam-edge-dashboard.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            out.push((
                panel["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The `beam_edge_*` metric names an expression uses (histogram series
/// suffixes stripped), recording-rule names (`beam_edge:…`) excluded.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("beam_edge_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &expr[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_string());
        i = end;
    }
    names
}

/// A POST of `body` to the admin listener (Connection: close): status and body.
fn post(addr: std::net::SocketAddr, path: &str, auth: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\nAuthorization: {auth}\r\nContent-Type: video/mp4\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// One round of traffic: misses, hits from both tiers, a seek, a
/// whole-body 200 from Beam, a cut response, a Beam 402 and an upload.
fn traffic(beam: &MockBeam, edge: &EdgeProcess, auth: &str, round: u64) {
    // 2 MB: 16 windows of 128 KiB, far more than the 256 KiB memory tier.
    let data = mp4_like(2_000_000, 100 + round);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data.clone());
    let path = format!("/piece/{cid}");
    let (s, h, body) = raw_get(edge.public, &path, &[]).unwrap();
    assert_eq!((s, h["x-cache"].as_str()), (200, "MISS"));
    assert!(body == data);
    // The whole piece again: its first windows come back from disk. Wait
    // until every window is stored (X-Cache: HIT says every byte is in a tier).
    wait_for("the piece in the cache", || {
        raw_get(edge.public, &path, &[("Range", "bytes=0-0")])
            .is_ok_and(|(_, h, _)| h["x-cache"] == "HIT")
            && raw_get(edge.public, &path, &[("Range", "bytes=1999999-1999999")])
                .is_ok_and(|(_, h, _)| h["x-cache"] == "HIT")
    });
    let (s, _, body) = raw_get(edge.public, &path, &[]).unwrap();
    assert_eq!(s, 200);
    assert!(body == data);
    // The end of the piece twice: the second read is a memory hit.
    for _ in 0..2 {
        let (s, _, body) =
            raw_get(edge.public, &path, &[("Range", "bytes=1990000-1999999")]).unwrap();
        assert_eq!(s, 206);
        assert!(body == data[1_990_000..]);
    }
    // A piece of one window: checked against its CID when fetched.
    let small = mp4_like(100_000, 150 + round);
    let small_cid = commp_of(&small).unwrap().to_string();
    beam.add_piece(&small_cid, small.clone());
    let (s, _, body) = raw_get(edge.public, &format!("/piece/{small_cid}"), &[]).unwrap();
    assert_eq!(s, 200);
    assert!(body == small);
    // A seek into a cold piece.
    let cold = mp4_like(1_500_000, 200 + round);
    let cold_cid = commp_of(&cold).unwrap().to_string();
    beam.add_piece(&cold_cid, cold.clone());
    let (s, _, body) = raw_get(
        edge.public,
        &format!("/piece/{cold_cid}"),
        &[("Range", "bytes=1000000-1099999")],
    )
    .unwrap();
    assert_eq!(s, 206);
    assert!(body == cold[1_000_000..1_100_000]);
    // Beam answers a range at the start with the whole piece (cold CDN).
    let full = mp4_like(300_000, 300 + round);
    let full_cid = commp_of(&full).unwrap().to_string();
    beam.add_piece(&full_cid, full.clone());
    beam.set_fault(Fault::FullBodyForRange);
    let (s, _, body) = raw_get(
        edge.public,
        &format!("/piece/{full_cid}"),
        &[("Range", "bytes=0-99")],
    )
    .unwrap();
    beam.set_fault(Fault::None);
    assert_eq!(s, 206);
    assert!(body == full[..100]);
    // Beam dies mid-body (retries are off): the response is cut.
    let cut = mp4_like(600_000, 400 + round);
    let cut_cid = commp_of(&cut).unwrap().to_string();
    beam.add_piece(&cut_cid, cut);
    // Its first window (and type) first, so that the header goes out from
    // the cache before the upstream fails.
    let (s, _, _) = raw_get(
        edge.public,
        &format!("/piece/{cut_cid}"),
        &[("Range", "bytes=0-99")],
    )
    .unwrap();
    assert_eq!(s, 206);
    beam.set_fault(Fault::ResetMidBody);
    let r = raw_get(edge.public, &format!("/piece/{cut_cid}"), &[]);
    assert!(r.is_err(), "{:?}", r.map(|(s, h, b)| (s, h, b.len())));
    // Beam's quota is spent: 402.
    beam.set_fault(Fault::Status(402));
    let quota = mp4_like(1000, 500 + round);
    let quota_cid = commp_of(&quota).unwrap().to_string();
    beam.add_piece(&quota_cid, quota);
    let (s, _, _) = raw_get(edge.public, &format!("/piece/{quota_cid}"), &[]).unwrap();
    assert_eq!(s, 402);
    // Beam fails (503): the storage provider is asked instead (a 402 is a
    // refusal and never falls back).
    beam.set_fault(Fault::Status(503));
    let failing = commp_of(&mp4_like(1000, 550 + round)).unwrap().to_string();
    let (s, _, _) = raw_get(edge.public, &format!("/piece/{failing}"), &[]).unwrap();
    assert_eq!(s, 502);
    beam.set_fault(Fault::None);
    // An upload through the admin listener, played back from the cache.
    let upload = mp4_like(450_000, 600 + round);
    let (s, text) = post(edge.admin, "/admin/uploads", auth, &upload);
    assert_eq!(s, 201, "{text}\n{}", edge.log());
    let start = text.find("\r\n\r\n").unwrap() + 4;
    let report: serde_json::Value = serde_json::from_str(&text[start..]).unwrap();
    let asset = report["asset_path"].as_str().unwrap();
    let (s, _, body) = raw_get(edge.public, asset, &[]).unwrap();
    assert_eq!(s, 200);
    assert!(body == upload);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_answers_from_a_real_prometheus() {
    // The shipped config and rules, as an operator would check them.
    promtool(
        &root().join("deploy"),
        &["check", "config", "prometheus.yml"],
    );
    promtool(
        &root().join("deploy/prometheus"),
        &["check", "rules", "rules.yml"],
    );
    let tested = promtool(
        &root().join("deploy/prometheus"),
        &["test", "rules", "rules_test.yml"],
    );
    assert!(tested.contains("SUCCESS"), "{tested}");

    let curio = MockCurio::start();
    let rpc = chain(curio.url(), true).await;
    tokio::task::spawn_blocking(move || scrape_and_query(&curio, &rpc.url()))
        .await
        .unwrap();
}

fn scrape_and_query(curio: &MockCurio, rpc_url: &str) {
    let beam = MockBeam::start();
    // Beam's CDN holds every piece: each fault below meets a ranged read.
    beam.set_always_warm();
    let token = "an-admin-token-for-prometheus";
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, "  retries: 0\n"),
        cache: "  window: 128KiB\n  memory: 256KiB\n".into(),
        admin_token: Some(token.into()),
        extra: format!(
            "upload:\n  rpc_url: \"{}\"\n  provider_id: 7\n  provider_url: \"{}\"\n  piece_size: 200000\n",
            rpc_url,
            curio.url()
        ),
        env: vec![("BEAM_EDGE_PRIVATE_KEY".into(), KEY.into())],
        ..Default::default()
    });

    // The shipped prometheus.yml, pointed at this edge, scraping every
    // second, with the shipped rules.
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root().join("deploy/prometheus.yml")).unwrap();
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&shipped).unwrap();
    cfg["global"]["scrape_interval"] = "1s".into();
    cfg["global"]["scrape_timeout"] = "1s".into();
    cfg["global"]["evaluation_interval"] = "1s".into();
    let rules = root().join("deploy/prometheus/rules.yml");
    cfg["rule_files"] = serde_yaml::Value::Sequence(vec![rules.display().to_string().into()]);
    let jobs = cfg["scrape_configs"].as_sequence_mut().unwrap();
    assert_eq!(jobs.len(), 1, "one job in the shipped config");
    assert_eq!(jobs[0]["job_name"], "beam-edge");
    jobs[0]["static_configs"][0]["targets"] =
        serde_yaml::Value::Sequence(vec![edge.metrics.to_string().into()]);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    promtool(dir.path(), &["check", "config", "prometheus.yml"]);
    let prom = Prometheus::start(&config, dir);

    // A first scrape before any traffic: every counter's first sample.
    prom.wait_scrape();
    let auth = format!("Bearer {token}");
    for round in 0..2 {
        traffic(&beam, &edge, &auth, round);
        prom.wait_scrape();
    }
    // One more, so that the last round's counters have two samples, and the
    // recording rules evaluated on them.
    prom.wait_scrape();
    wait_for("recording rules evaluated", || {
        !prom.query("beam_edge:byte_hit_ratio:rate5m").is_empty()
    });

    // Every metric a panel names exists in /metrics.
    let text = edge.metrics_text();
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for (title, expr) in &queries {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "panel \"{title}\" uses {name}, which /metrics does not export"
            );
        }
    }

    // Every expression answers with plausible values. Events the traffic
    // above does not cause every time may read 0; all others must be > 0.
    let may_be_zero = [
        "beam_edge_coalesced_waiters_total",
        "beam_edge_cache_evictions_total",
        "beam_edge_window_lookups_total",
        // This edge has no access control configured (tests/access.rs
        // checks that refusals and pacing are counted).
        "beam_edge_access_refusals_total",
        "beam_edge_paced_writes_total",
        // Zero whenever no window is being fetched, and without a full budget.
        "beam_edge_inflight_bytes",
        "beam_edge_inflight_events_total",
    ];
    let read_admin = || {
        let (s, _, body) =
            raw_get(edge.admin, "/admin/cache", &[("Authorization", &auth)]).unwrap();
        assert_eq!(s, 200);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    // A response cut mid-body may count its last bytes after the scrape that
    // followed the traffic: compare with /admin/cache only once the latest
    // scrape holds the same served bytes as /admin/cache does.
    let mut admin = read_admin();
    wait_for(
        "the scraped served bytes to settle at /admin/cache's",
        || {
            admin = read_admin();
            let served: u64 = ["memory", "disk", "upstream", "peer"]
                .iter()
                .filter_map(|k| admin["served_bytes"][k].as_u64())
                .sum();
            let scraped = prom
                .query("sum(beam_edge_served_bytes_total)")
                .first()
                .map(|(_, v)| *v);
            if scraped == Some(served as f64) {
                return true;
            }
            prom.wait_scrape();
            false
        },
    );
    for (title, expr) in &queries {
        let promql = expr.replace("$__rate_interval", "5m");
        assert!(!promql.contains('$'), "a Grafana variable left in {expr}");
        let result = prom.query(&promql);
        assert!(
            !result.is_empty(),
            "panel \"{title}\": {promql} returned no series\n{}",
            prom.log()
        );
        for (labels, v) in &result {
            assert!(
                v.is_nan() || (v.is_finite() && *v >= 0.0),
                "panel \"{title}\": {promql} {labels} = {v}"
            );
        }
        let finite: Vec<f64> = result
            .iter()
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .collect();
        assert!(
            !finite.is_empty(),
            "panel \"{title}\": {promql} has no finite value: {result:?}"
        );
        if !may_be_zero.iter().any(|m| expr.contains(m)) {
            assert!(
                finite.iter().any(|v| *v > 0.0),
                "panel \"{title}\": {promql} is 0 everywhere: {result:?}"
            );
        }
        if promql.starts_with("histogram_quantile") {
            assert!(finite.iter().all(|v| *v <= 30.0), "{promql}: {result:?}");
        }
        if title.contains("ratio") || title.contains("fill") {
            assert!(
                finite.iter().all(|v| *v <= 1.0),
                "panel \"{title}\": {promql}: {result:?}"
            );
        }
    }

    // The byte hit ratio panel is /admin/cache's figure: the rate window
    // covers every sample since the first, zero, one.
    let hit = |source: &str| -> f64 {
        let (_, expr) = queries
            .iter()
            .find(|(t, e)| t == "Byte hit ratio" && e.contains(source))
            .unwrap();
        let r = prom.query(&expr.replace("$__rate_interval", "5m"));
        assert_eq!(r.len(), 1, "{r:?}");
        r[0].1
    };
    let total = hit("memory|disk");
    let memory = hit("source=\"memory\"}");
    let want_total = admin["hit_ratio"]["total"].as_f64().unwrap();
    let want_memory = admin["hit_ratio"]["memory"].as_f64().unwrap();
    assert!(
        (total - want_total).abs() < 1e-9,
        "dashboard {total} vs /admin/cache {want_total}: {admin}"
    );
    assert!(
        (memory - want_memory).abs() < 1e-9,
        "{memory} vs {want_memory}"
    );
    assert!(
        total > 0.0 && total < 1.0,
        "hits and misses both happened: {total}"
    );
    assert!(
        admin["served_bytes"]["disk"].as_u64().unwrap() > 0
            && admin["served_bytes"]["memory"].as_u64().unwrap() > 0,
        "both tiers served: {admin}"
    );
    // The recording rules agree, and see the 402s and the disk tier.
    // (a rule is evaluated on its own clock: wait for an evaluation after
    // the last scrape).
    wait_for("the recorded hit ratio to equal /admin/cache's", || {
        prom.query("beam_edge:byte_hit_ratio:rate5m")
            .first()
            .is_some_and(|(_, v)| (v - want_total).abs() < 1e-9)
    });
    let quota = prom.query("beam_edge:beam_payment_required:rate5m");
    assert!(quota[0].1 > 0.0, "{quota:?}");
    let fill = prom.query("beam_edge:cache_fill_ratio{tier=\"disk\"}");
    assert!(fill[0].1 > 0.0 && fill[0].1 < 1.0, "{fill:?}");
    // The quota alert is pending (its `for:` has not passed).
    let alerts = prom.query("ALERTS{alertname=\"BeamEdgeBeamQuotaExhausted\"}");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].0["alertstate"], "pending");
}

/// A fresh edge with no traffic yet: every expression of the shipped
/// dashboard returns a series, so no panel says "No data" (every labelled
/// series whose label values are known is exported at 0 from start-up).
/// Two scrapes, not one: `rate()` needs two samples of a series; the first
/// scrape already holds every series.
#[test]
fn a_fresh_edge_answers_every_dashboard_query() {
    let beam = MockBeam::start();
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root().join("deploy/prometheus.yml")).unwrap();
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&shipped).unwrap();
    cfg["global"]["scrape_interval"] = "1s".into();
    cfg["global"]["scrape_timeout"] = "1s".into();
    cfg["scrape_configs"][0]["static_configs"][0]["targets"] =
        serde_yaml::Value::Sequence(vec![edge.metrics.to_string().into()]);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let prom = Prometheus::start(&config, dir);
    wait_for("two scrapes of the edge", || {
        prom.query("count_over_time(up{job=\"beam-edge\"}[5m])")
            .first()
            .is_some_and(|(_, n)| *n >= 2.0)
    });
    let mut empty = Vec::new();
    for (title, expr) in dashboard_queries() {
        let promql = expr.replace("$__rate_interval", "5m");
        if prom.query(&promql).is_empty() {
            empty.push(format!("\"{title}\": {promql}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels with no data on a fresh edge:\n{}",
        empty.join("\n")
    );
}
