//! Tests of loading, overrides and every section's checks.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

#[test]
fn sizes_parse_with_units() {
    assert_eq!(ByteSize::parse("1MiB"), Ok(ByteSize(1 << 20)));
    assert_eq!(ByteSize::parse("10GiB"), Ok(ByteSize(10 << 30)));
    assert_eq!(ByteSize::parse("512 KiB"), Ok(ByteSize(512 << 10)));
    assert_eq!(ByteSize::parse("2MB"), Ok(ByteSize(2_000_000)));
    assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
    assert!(ByteSize::parse("MiB")
        .unwrap_err()
        .contains("expected a number"));
    assert!(ByteSize::parse("3 parsecs")
        .unwrap_err()
        .contains("unknown unit"));
    assert!(ByteSize::parse("99999999999TiB")
        .unwrap_err()
        .contains("too large"));
    assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
    assert_eq!(ByteSize(1000).to_string(), "1000B");
}

#[test]
fn embedded_default_is_valid_and_matches_the_contract() {
    let c = Config::from_yaml(DEFAULT_CONFIG_YAML, "embedded").unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.server.grace_period.0, Duration::from_secs(10));
    assert_eq!(c.server.keepalive_timeout.0, Duration::from_secs(60));
    assert_eq!(c.server.send_timeout.0, Duration::from_secs(60));
    assert_eq!(c.upstream.beam_url, "https://{payer}.{network_domain}");
    assert_eq!(c.upstream.payer, None);
    assert_eq!(c.upstream.network, Network::Calibration);
    assert!(c.upstream.providers.is_empty());
    assert_eq!(c.upstream.connect_timeout.0, Duration::from_secs(5));
    assert_eq!(c.upstream.read_timeout.0, Duration::from_secs(30));
    assert_eq!(c.cache.window, ByteSize(1 << 20));
    assert_eq!(c.cache.memory, ByteSize(256 << 20));
    assert_eq!(c.cache.disk.path, PathBuf::from("./beam-edge-cache"));
    assert_eq!(c.cache.disk.size, ByteSize(10 << 30));
    assert_eq!(c.admin.listen, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(c.admin.token, None);
    assert_eq!(c.metrics.listen, "127.0.0.1:9464".parse().unwrap());
    assert_eq!(c.window_raw_bytes(), 1_040_384);
    assert_eq!(c.beam_base_url(), None);
    assert_eq!(c.warnings().len(), 1);
    // Missing keys take these same values.
    assert_eq!(c, Config::default());
    assert_eq!(Config::from_yaml("", "empty").unwrap(), c);
    let partial = Config::from_yaml("upstream:\n  network: mainnet\n", "partial").unwrap();
    assert_eq!(partial.upstream.network, Network::Mainnet);
    assert_eq!(partial.upstream.read_timeout, c.upstream.read_timeout);
    assert_eq!(partial.server, c.server);
}

#[test]
fn payer_policy_defaults_to_any_without_a_payer() {
    let mut c = Config::embedded_default();
    assert_eq!(c.upstream.payers, None);
    assert_eq!(c.payer_policy(), Payers::Any);
    let mine = "0x00000000000000000000000000000000000000AA";
    c.upstream.payer = Some(mine.into());
    assert_eq!(c.payer_policy(), Payers::Only(vec![mine.into()]));
    assert!(c.payer_policy().allows(&mine.to_ascii_lowercase()));
    assert!(!c
        .payer_policy()
        .allows("0x00000000000000000000000000000000000000bb"));
    let parsed = Config::from_yaml("upstream:\n  payers: any\n", "t").unwrap();
    assert_eq!(parsed.upstream.payers, Some(Payers::Any));
    let parsed = Config::from_yaml("upstream:\n  payers: []\n", "t").unwrap();
    assert!(!parsed.payer_policy().allows_some());
    assert_eq!(
        c.beam_base_url_for(mine, Network::Mainnet).unwrap(),
        "https://0x00000000000000000000000000000000000000aa.filbeam.io"
    );
    c.upstream.beam_url = "http://127.0.0.1:9/".into();
    assert_eq!(c.beam_base_url_for(mine, Network::Mainnet), None);
}

#[test]
fn connection_timeouts_are_bounded_and_named() {
    for (yaml, key) in [
        (
            "server:\n  keepalive_timeout: 0s\n",
            "server.keepalive_timeout",
        ),
        ("server:\n  send_timeout: 2h\n", "server.send_timeout"),
        ("server:\n  send_timeout: 500ms\n", "server.send_timeout"),
    ] {
        let e = Config::from_yaml(yaml, "t.yaml").unwrap_err();
        assert_eq!(e.path, key, "{yaml}");
        assert!(e.reason.contains("1s to 1h"), "{}", e.reason);
    }
    let c = Config::from_yaml("server:\n  keepalive_timeout: 2s\n", "t.yaml").unwrap();
    assert_eq!(c.server.keepalive_timeout.0, Duration::from_secs(2));
}

#[test]
fn beam_url_placeholders_are_filled() {
    let mut c = Config::embedded_default();
    c.upstream.payer = Some("0xAbCdEf0123456789abcdef0123456789ABCDEF01".into());
    assert_eq!(
        c.beam_base_url().unwrap(),
        "https://0xabcdef0123456789abcdef0123456789abcdef01.calibration.filbeam.io"
    );
    c.upstream.network = Network::Mainnet;
    assert_eq!(
        c.beam_base_url().unwrap(),
        "https://0xabcdef0123456789abcdef0123456789abcdef01.filbeam.io"
    );
    c.upstream.beam_url = "http://127.0.0.1:9/{network}/".into();
    assert_eq!(c.beam_base_url().unwrap(), "http://127.0.0.1:9/mainnet");
}

fn with(from: &str, to: &str) -> Result<Config, ConfigError> {
    assert!(
        DEFAULT_CONFIG_YAML.contains(from),
        "fixture {from:?} not in default config"
    );
    Config::from_yaml(&DEFAULT_CONFIG_YAML.replacen(from, to, 1), "test.yaml")
}

#[test]
fn errors_name_the_key_path() {
    let e = with("connect_timeout: 5s", "connect_timeout: 5x").unwrap_err();
    assert_eq!(e.path, "upstream.connect_timeout");
    assert!(
        e.to_string()
            .starts_with("test.yaml: upstream.connect_timeout: invalid duration"),
        "{e}"
    );

    let e = with("  threads: 2", "  threads: 2\n  thread: 3").unwrap_err();
    assert_eq!(e.path, "server.thread");
    assert!(e.reason.contains("unknown field 'thread'"), "{e}");

    let e = with("window: 1MiB", "window: 3MiB").unwrap_err();
    assert_eq!(e.path, "cache.window");

    let e = with("size: 10GiB", "size: lots").unwrap_err();
    assert_eq!(e.path, "cache.disk.size");

    // The in-flight budget holds at least 4 windows; its queue is bounded.
    let e = with("inflight: 256MiB", "inflight: 3MiB").unwrap_err();
    assert_eq!(e.path, "cache.inflight");
    assert!(e.reason.contains("at least 4 windows"), "{e}");
    let e = with("inflight_queue: 1024", "inflight_queue: 2000000").unwrap_err();
    assert_eq!(e.path, "cache.inflight_queue");
    let e = with("inflight_queue: 1024", "inflight_queue: -1").unwrap_err();
    assert_eq!(e.path, "cache.inflight_queue");

    let e = with("listen: \"127.0.0.1:8080\"", "listen: \"localhost\"").unwrap_err();
    assert_eq!(e.path, "server.listen");

    let e = with("network: calibration", "network: testnet").unwrap_err();
    assert_eq!(e.path, "upstream.network");

    let e = with("payer: null", "payer: \"0x12\"").unwrap_err();
    assert_eq!(e.path, "upstream.payer");

    let e = with(
        "payers: null",
        "payers: [\"0x00000000000000000000000000000000000000aa\", \"0xzz\"]",
    )
    .unwrap_err();
    assert_eq!(e.path, "upstream.payers");
    assert!(
        e.reason.contains("entry 1") && e.reason.contains("0xzz"),
        "{e}"
    );

    let e = with("payers: null", "payers: everyone").unwrap_err();
    assert_eq!(e.path, "upstream.payers");
    assert!(e.reason.contains("`any`"), "{e}");

    let e = with("{network_domain}\"", "{netwrok}\"").unwrap_err();
    assert_eq!(e.path, "upstream.beam_url");
    assert!(e.reason.contains("{netwrok}"), "{e}");

    let e = with("providers: []", "providers: [\"ftp://x\"]").unwrap_err();
    assert_eq!(e.path, "upstream.providers");

    let e = with("listen: \"127.0.0.1:8081\"", "listen: \"0.0.0.0:8081\"").unwrap_err();
    assert_eq!(e.path, "admin.token");

    let e = with("listen: \"127.0.0.1:9464\"", "listen: \"127.0.0.1:8081\"").unwrap_err();
    assert_eq!(e.path, "metrics.listen");

    let e = with("read_timeout: 30s", "read_timeout: 0s").unwrap_err();
    assert_eq!(e.path, "upstream.read_timeout");
}

#[test]
fn overrides_apply_and_are_checked() {
    let mut c = Config::embedded_default();
    c.apply_overrides(&Overrides {
        listen: Some("127.0.0.1:1234".into()),
        upstream_url: Some("http://127.0.0.1:9/{payer}".into()),
        payer: Some("0x00000000000000000000000000000000000000aa".into()),
        network: Some("mainnet".into()),
    })
    .unwrap();
    c.validate("x").unwrap();
    assert_eq!(c.server.listen.port(), 1234);
    assert_eq!(c.upstream.network, Network::Mainnet);
    assert_eq!(
        c.beam_base_url().unwrap(),
        "http://127.0.0.1:9/0x00000000000000000000000000000000000000aa"
    );
    let e = c
        .apply_overrides(&Overrides {
            network: Some("moon".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.path, "upstream.network");
    assert_eq!(e.source_name, "command line");
}

#[test]
fn hedging_keys_parse_and_bad_ones_name_their_key() {
    let c = Config::from_yaml(DEFAULT_CONFIG_YAML, "embedded").unwrap();
    assert_eq!(c.upstream.hedge_after, HedgeAfter::Auto);
    assert_eq!(c.upstream.hedge_budget.0, 5.0);
    let parse = |yaml: &str| {
        let c = Config::from_yaml(yaml, "t").unwrap();
        c.validate("t").unwrap();
        (c.upstream.hedge_after, c.upstream.hedge_budget.0)
    };
    assert_eq!(
        parse("upstream:\n  hedge_after: 150ms\n  hedge_budget: 2.5%\n"),
        (HedgeAfter::After(Duration::from_millis(150)), 2.5)
    );
    assert_eq!(
        parse("upstream:\n  hedge_after: off\n  hedge_budget: 10\n"),
        (HedgeAfter::Off, 10.0)
    );
    let bad = |yaml: &str| {
        Config::from_yaml(yaml, "t")
            .and_then(|c| c.validate("t").map(|_| c))
            .unwrap_err()
    };
    for (yaml, key, says) in [
        (
            "upstream:\n  hedge_after: soon\n",
            "upstream.hedge_after",
            "auto",
        ),
        (
            "upstream:\n  hedge_after: 2m\n",
            "upstream.hedge_after",
            "1ms to 60s",
        ),
        (
            "upstream:\n  hedge_budget: 120%\n",
            "upstream.hedge_budget",
            "0% to 100%",
        ),
        (
            "upstream:\n  hedge_budget: lots\n",
            "upstream.hedge_budget",
            "5%",
        ),
    ] {
        let e = bad(yaml);
        assert_eq!(e.path, key, "{yaml}");
        assert!(e.to_string().contains(says), "{yaml}: {e}");
    }
}

#[test]
fn provider_resolution_keys_are_checked_and_name_their_key() {
    let c = Config::from_yaml(DEFAULT_CONFIG_YAML, "embedded").unwrap();
    assert!(c.upstream.resolve_providers);
    assert_eq!(c.upstream.rpc_url, None);
    assert_eq!(c.upstream.resolve_ttl.0, Duration::from_secs(600));
    assert_eq!(c.upstream.provider_backoff.0, Duration::from_secs(10));
    // One endpoint for both when only upload.rpc_url is set.
    assert_eq!(
        resolve_rpc_url(&c),
        "https://api.calibration.node.glif.io/rpc/v1"
    );
    let mut u = c.clone();
    u.upload.rpc_url = Some("http://127.0.0.1:1/rpc".into());
    assert_eq!(resolve_rpc_url(&u), "http://127.0.0.1:1/rpc");
    u.upstream.rpc_url = Some("http://127.0.0.1:2/rpc".into());
    assert_eq!(resolve_rpc_url(&u), "http://127.0.0.1:2/rpc");

    let bad = |yaml: &str| {
        Config::from_yaml(yaml, "t")
            .and_then(|c| c.validate("t").map(|_| c))
            .unwrap_err()
            .path
    };
    assert_eq!(
        bad("upstream:\n  rpc_url: \"ftp://x\"\n"),
        "upstream.rpc_url"
    );
    assert_eq!(
        bad("upstream:\n  resolve_ttl: 0s\n"),
        "upstream.resolve_ttl"
    );
    assert_eq!(
        bad("upstream:\n  provider_backoff: 2h\n"),
        "upstream.provider_backoff"
    );
    let ok = Config::from_yaml(
            "upstream:\n  payer: \"0x00000000000000000000000000000000000000aa\"\n  resolve_providers: true\n",
            "t",
        )
        .unwrap();
    assert!(ok.validate("t").is_ok());
}

fn cluster_yaml(extra: &str) -> String {
    format!("cluster:\n  enabled: true\n  self: a\n  peer_listen: \"127.0.0.1:7000\"\n{extra}")
}

#[test]
fn cluster_config_is_checked_when_enabled() {
    let peers = "  peers:\n    - { name: a, addr: \"127.0.0.2:7000\" }\n    - { name: b, addr: \"127.0.0.3:7000\" }\n";
    let c = Config::from_yaml(&cluster_yaml(peers), "x").unwrap();
    assert_eq!(c.cluster.peers.len(), 2);
    assert_eq!(c.cluster.resolved_self().as_deref(), Some("a"));
    let e = Config::from_yaml(&cluster_yaml(""), "x").unwrap_err();
    assert_eq!(e.path, "cluster.peers");
    let dup = "  peers:\n    - { name: a, addr: \"127.0.0.2:7000\" }\n    - { name: a, addr: \"127.0.0.3:7000\" }\n";
    let e = Config::from_yaml(&cluster_yaml(dup), "x").unwrap_err();
    assert_eq!(e.path, "cluster.peers[1].name");
    let stranger = "  peers:\n    - { name: b, addr: \"127.0.0.2:7000\" }\n";
    let e = Config::from_yaml(&cluster_yaml(stranger), "x").unwrap_err();
    assert_eq!(e.path, "cluster.self");
    let both = "  peers:\n    - { name: a, addr: \"127.0.0.2:7000\" }\n  dns_srv: _peer._tcp.x\n";
    let e = Config::from_yaml(&cluster_yaml(both), "x").unwrap_err();
    assert_eq!(e.path, "cluster.dns_srv");
    let srv =
        "  dns_srv: _peer._tcp.edge.default.svc.cluster.local\n  nameserver: \"127.0.0.1:5353\"\n";
    Config::from_yaml(&cluster_yaml(srv), "x").unwrap();
    let clash = "  dns_srv: x.y\n  peer_listen: \"127.0.0.1:8080\"\n";
    let e = Config::from_yaml(
        &format!("cluster:\n  enabled: true\n  self: a\n{clash}"),
        "x",
    )
    .unwrap_err();
    assert_eq!(e.path, "cluster.peer_listen");
    let e =
        Config::from_yaml(&cluster_yaml("  dns_srv: x.y\n  hot_share: 101\n"), "x").unwrap_err();
    assert_eq!(e.path, "cluster.hot_share");
    let e = Config::from_yaml("cluster:\n  enabeld: true\n", "x").unwrap_err();
    assert!(e.path.starts_with("cluster"), "{e}");
    // Off: nothing else is required.
    Config::from_yaml("cluster:\n  enabled: false\n", "x").unwrap();
}
