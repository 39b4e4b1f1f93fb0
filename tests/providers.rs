//! Storage-provider failover against the real binary: providers resolved
//! from a mock chain (tests/common_rpc) with no `upstream.providers`, an RPC
//! outage survived on the cached answer, Curio's 429, a provider that
//! compresses, and Beam 4xx answers that carry a one-year Cache-Control.
//! Beam, the providers (tests/common_sp, Curio's `/piece/<cid>`) and the
//! chain are loopback servers; everything else is the shipped binary.

mod common;
mod common_rpc;
mod common_sp;

use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolType;
use beam_edge::chain::abi::{IFwss, IFwssView, IPdpVerifier, IServiceProviderRegistry};
use beam_edge::chain::Network;
use common::{
    beam_upstream, metric_value, mp4_like, raw_get, raw_request, EdgeOptions, EdgeProcess, Fault,
    MockBeam, Refuse, PAYER,
};
use common_rpc::MockRpc;
use common_sp::MockSp;
use serde_json::Value;

const VIEW: Address = Address::repeat_byte(0x33);
const DEADLINE: Duration = Duration::from_secs(30);

fn cid_of(data: &[u8]) -> String {
    beam_edge::piece::commp::commp_of(data).unwrap().to_string()
}

/// One of the payer's data sets on the mock chain.
struct MockDataSet {
    id: u64,
    provider_id: u64,
    service_url: String,
    pdp_end_epoch: u64,
}

/// A `DataSetInfoView` in the layout the reader decodes (built from words,
/// so the mock follows the binding's width: `providerId` at word 9,
/// `dataSetId` last, as in both the 11- and the 13-word layouts).
fn data_set_info(payer: Address, ds: &MockDataSet) -> IFwssView::DataSetInfoView {
    let width = <IFwssView::DataSetInfoView as SolType>::ENCODED_SIZE.unwrap() / 32;
    let mut words = vec![U256::ZERO; width];
    words[0] = U256::from(ds.id); // pdpRailId
    words[2] = U256::from(ds.id); // cdnRailId
    words[3] = U256::from_be_slice(payer.as_slice());
    words[4] = U256::from(0x2222u64); // payee
    words[5] = U256::from(0x1111u64); // serviceProvider
    words[7] = U256::from(ds.id + 1000); // clientDataSetId
    words[8] = U256::from(ds.pdp_end_epoch);
    words[9] = U256::from(ds.provider_id);
    words[width - 1] = U256::from(ds.id);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes::<32>()).collect();
    <IFwssView::DataSetInfoView as SolType>::abi_decode(&bytes).unwrap()
}

/// A calibration chain where the test payer has `sets`, each at its own
/// provider; every set is live and managed by FWSS.
fn mock_chain(rt: &tokio::runtime::Runtime, sets: Vec<MockDataSet>) -> MockRpc {
    mock_chain_of(rt, vec![(PAYER.parse().unwrap(), sets)])
}

/// [`mock_chain`] with several payers, each with its own data sets
/// (provider ids unique across them): `getClientDataSets` answers each
/// payer with its own, as FWSS's view does.
fn mock_chain_of(
    rt: &tokio::runtime::Runtime,
    payers: Vec<(Address, Vec<MockDataSet>)>,
) -> MockRpc {
    let rpc = rt.block_on(MockRpc::start(Network::Calibration.chain_id()));
    let c = Network::Calibration.contracts();
    let payers = std::sync::Arc::new(payers);
    rpc.on_call::<IFwss::viewContractAddressCall, _>(c.fwss, |_| VIEW);
    let s = payers.clone();
    rpc.on_call::<IFwssView::getClientDataSetsCall, _>(VIEW, move |q| {
        if q.offset > U256::ZERO {
            return Vec::new();
        }
        s.iter()
            .filter(|(payer, _)| *payer == q.client)
            .flat_map(|(payer, sets)| sets.iter().map(|ds| data_set_info(*payer, ds)))
            .collect()
    });
    rpc.on_call::<IFwssView::getAllDataSetMetadataCall, _>(VIEW, |_| {
        IFwssView::getAllDataSetMetadataReturn {
            keys: vec!["withCDN".into()],
            values: vec![String::new()],
        }
    });
    rpc.on_call::<IPdpVerifier::dataSetLiveCall, _>(c.pdp_verifier, |_| true);
    let fwss = c.fwss;
    rpc.on_call::<IPdpVerifier::getDataSetListenerCall, _>(c.pdp_verifier, move |_| fwss);
    rpc.on_call::<IPdpVerifier::getActivePieceCountCall, _>(c.pdp_verifier, |_| U256::from(1));
    let s = payers.clone();
    rpc.on_call::<IServiceProviderRegistry::getProviderWithProductCall, _>(
        c.sp_registry,
        move |q| {
            let ds = s
                .iter()
                .flat_map(|(_, sets)| sets.iter())
                .find(|d| U256::from(d.provider_id) == q.providerId)
                .expect("a known provider id");
            IServiceProviderRegistry::ProviderWithProduct {
                providerId: q.providerId,
                providerInfo: IServiceProviderRegistry::ServiceProviderInfoView {
                    serviceProvider: Address::repeat_byte(0x11),
                    payee: Address::repeat_byte(0x22),
                    name: format!("sp {}", ds.provider_id),
                    description: String::new(),
                    isActive: true,
                },
                product: IServiceProviderRegistry::ServiceProduct {
                    productType: 0,
                    capabilityKeys: vec!["serviceURL".into(), "location".into()],
                    isActive: true,
                },
                // Capability values are raw bytes: the URL's UTF-8.
                productCapabilityValues: vec![
                    Bytes::from(ds.service_url.clone().into_bytes()),
                    Bytes::from_static(b"loopback"),
                ],
            }
        },
    );
    rpc
}

fn admin_piece(edge: &EdgeProcess, cid: &str) -> Value {
    let (status, _, body) = raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn purge(edge: &EdgeProcess, cid: &str) {
    let (status, _, _) =
        raw_request(edge.admin, "DELETE", &format!("/admin/cache/{cid}"), &[]).unwrap();
    assert_eq!(status, 200);
}

fn get_piece(edge: &EdgeProcess, cid: &str) -> common::Response {
    raw_get(edge.public, &format!("/piece/{cid}"), &[]).unwrap()
}

/// After a read that put `bad` in backoff: exactly one backoff counted and
/// shown, and a fresh read (the piece purged) served by the other
/// providers without asking `bad` again.
fn bad_provider_is_backing_off(edge: &EdgeProcess, cid: &str, data: &[u8], bad: &MockSp) {
    let m = edge.metrics_text();
    assert_eq!(metric_value(&m, "beam_edge_provider_backoffs_total"), 1.0);
    let status = admin_piece(edge, cid);
    assert_eq!(
        status["providers"]["backing_off"],
        serde_json::json!([bad.url()]),
        "{status}"
    );
    let asked = bad.count("GET");
    purge(edge, cid);
    let (status, _, body) = get_piece(edge, cid);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == data);
    assert_eq!(bad.count("GET"), asked, "a provider backing off was asked");
}

#[test]
fn chain_resolved_provider_serves_without_configured_providers_and_survives_an_rpc_outage() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = mp4_like(300_000, 91);
    let cid = cid_of(&data);
    // Beam does not know the piece (a fresh upload, not yet indexed).
    let beam = MockBeam::start();
    beam.set_fault(Fault::Status(404));
    let empty_a = MockSp::start();
    let empty_b = MockSp::start();
    let holder = MockSp::start();
    holder.add_piece(&cid, data.clone());
    // Holds the piece, but its data set was terminated: never asked.
    let terminated = MockSp::start();
    terminated.add_piece(&cid, data.clone());
    let rpc = mock_chain(
        &rt,
        vec![
            MockDataSet {
                id: 1,
                provider_id: 1,
                service_url: empty_a.url(),
                pdp_end_epoch: 0,
            },
            MockDataSet {
                id: 2,
                provider_id: 2,
                service_url: format!("{}/", empty_b.url()),
                pdp_end_epoch: 0,
            },
            MockDataSet {
                id: 3,
                provider_id: 3,
                service_url: holder.url(),
                pdp_end_epoch: 0,
            },
            MockDataSet {
                id: 4,
                provider_id: 4,
                service_url: terminated.url(),
                pdp_end_epoch: 500,
            },
        ],
    );
    let edge = EdgeProcess::start(&beam_upstream(
        &beam,
        &format!(
            "  resolve_providers: true\n  rpc_url: \"{}\"\n  resolve_ttl: 1s\n  retries: 0\n",
            rpc.url()
        ),
    ));

    let (status, headers, body) = get_piece(&edge, &cid);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == data, "bytes differ from the piece");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("video/mp4")
    );
    // Who was asked what: a HEAD probe each; a GET only of the holder.
    assert!(empty_a.count("HEAD") >= 1 && empty_b.count("HEAD") >= 1);
    assert_eq!(empty_a.count("GET") + empty_b.count("GET"), 0);
    assert!(holder.count("GET") >= 1);
    assert!(
        terminated.requests().is_empty(),
        "a terminated data set's provider was asked"
    );
    for sp in [&empty_a, &empty_b, &holder] {
        for r in sp.requests() {
            assert_eq!(r.accept_encoding.as_deref(), Some("identity"), "{r:?}");
            assert_eq!(r.path, format!("/piece/{cid}"));
        }
    }
    let status = admin_piece(&edge, &cid);
    let resolved = &status["providers"]["resolved"];
    assert_eq!(
        resolved["holders"],
        serde_json::json!([holder.url()]),
        "{status}"
    );
    assert_eq!(resolved["source"], "chain");
    assert!(resolved["resolved_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(status["providers"]["static"], serde_json::json!([]));
    let m = edge.metrics_text();
    assert!(
        metric_value(
            &m,
            "beam_edge_provider_resolutions_total{outcome=\"found\"}"
        ) >= 1.0
    );

    // The RPC goes away. Each round drops the cached bytes, so the piece
    // must come from the provider again, until a refresh has met the outage.
    rpc.set_down(true);
    let deadline = Instant::now() + DEADLINE;
    loop {
        purge(&edge, &cid);
        let (status, _, body) = get_piece(&edge, &cid);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(body == data, "bytes differ during the RPC outage");
        let resolved = admin_piece(&edge, &cid)["providers"]["resolved"].clone();
        if resolved["source"] == "chain_cached" {
            assert_eq!(resolved["holders"], serde_json::json!([holder.url()]));
            assert!(resolved["chain_error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refresh met the outage: {resolved}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    purge(&edge, &cid);
    let (status, _, body) = get_piece(&edge, &cid);
    assert_eq!(status, 200);
    assert!(body == data);
    let m = edge.metrics_text();
    assert!(
        metric_value(
            &m,
            "beam_edge_provider_resolutions_total{outcome=\"stale\"}"
        ) >= 1.0
    );
    assert!(terminated.requests().is_empty());
}

#[test]
fn a_busy_provider_is_skipped_and_the_next_one_serves() {
    let data = mp4_like(200_000, 92);
    let cid = cid_of(&data);
    let beam = MockBeam::start();
    beam.set_fault(Fault::Status(404));
    let busy = MockSp::start();
    busy.add_piece(&cid, data.clone());
    busy.set_busy();
    let good = MockSp::start();
    good.add_piece(&cid, data.clone());
    let edge = EdgeProcess::start(&beam_upstream(
        &beam,
        &format!(
            "  providers: [\"{}\", \"{}\"]\n  provider_backoff: 10m\n  retries: 0\n",
            busy.url(),
            good.url()
        ),
    ));
    // A HEAD learns the content type from the piece's first bytes: with
    // Beam failing, through the providers too.
    let (status, headers, _) =
        raw_request(edge.public, "HEAD", &format!("/piece/{cid}"), &[]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("video/mp4")
    );
    let (status, _, body) = get_piece(&edge, &cid);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == data);
    assert_eq!(busy.count("GET"), 1);
    assert!(good.count("GET") >= 1);
    // Backing off: the busy provider is not asked again.
    bad_provider_is_backing_off(&edge, &cid, &data, &busy);
}

#[test]
fn a_holder_that_fails_its_gets_is_backed_off_and_the_next_holder_serves() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = mp4_like(200_000, 93);
    let cid = cid_of(&data);
    let beam = MockBeam::start();
    beam.set_fault(Fault::Status(404));
    // Two holders on the chain. The broken one answers its HEAD probe 200
    // (first) and every GET 503; the good one answers its probe only once
    // the broken one's GET has failed, so the request must wait for it.
    let broken = MockSp::start();
    broken.add_piece(&cid, data.clone());
    broken.set_get_status(503);
    let good = MockSp::start();
    good.add_piece(&cid, data.clone());
    good.hold_heads();
    let rpc = mock_chain(
        &rt,
        vec![
            MockDataSet {
                id: 1,
                provider_id: 1,
                service_url: broken.url(),
                pdp_end_epoch: 0,
            },
            MockDataSet {
                id: 2,
                provider_id: 2,
                service_url: good.url(),
                pdp_end_epoch: 0,
            },
        ],
    );
    let edge = EdgeProcess::start(&beam_upstream(
        &beam,
        &format!(
            "  resolve_providers: true\n  rpc_url: \"{}\"\n  provider_backoff: 10m\n  retries: 0\n",
            rpc.url()
        ),
    ));
    let first = {
        let (addr, path) = (edge.public, format!("/piece/{cid}"));
        std::thread::spawn(move || raw_get(addr, &path, &[]).unwrap())
    };
    let deadline = Instant::now() + DEADLINE;
    while broken.count("GET") == 0 {
        assert!(
            Instant::now() < deadline,
            "the broken holder was never asked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    good.release_heads();
    let (status, _, body) = first.join().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == data, "bytes differ from the piece");
    assert_eq!(broken.count("GET"), 1);
    assert!(good.count("GET") >= 1);
    // Later reads ask the good holder only.
    bad_provider_is_backing_off(&edge, &cid, &data, &broken);
}

#[test]
fn a_compressed_provider_answer_is_never_served_as_bytes() {
    let data = mp4_like(200_000, 93);
    let cid = cid_of(&data);
    let beam = MockBeam::start();
    beam.set_fault(Fault::Status(502));
    let gzip = MockSp::start();
    gzip.add_piece(&cid, data.clone());
    gzip.set_compress();
    let good = MockSp::start();
    good.add_piece(&cid, data.clone());

    // The next provider serves the piece's own bytes.
    let edge = EdgeProcess::start(&beam_upstream(
        &beam,
        &format!(
            "  providers: [\"{}\", \"{}\"]\n  retries: 0\n",
            gzip.url(),
            good.url()
        ),
    ));
    let (status, headers, body) = get_piece(&edge, &cid);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == data);
    assert!(!headers.contains_key("content-encoding"));
    assert!(gzip.count("GET") >= 1);
    assert!(gzip
        .requests()
        .iter()
        .all(|r| r.accept_encoding.as_deref() == Some("identity")));
    let m = edge.metrics_text();
    assert!(
        metric_value(
            &m,
            "beam_edge_upstream_requests_total{outcome=\"bad_response\",upstream=\"provider\"}"
        ) >= 1.0,
        "{m}"
    );
    drop(edge);

    // Only the compressing provider: a clear 502, nothing cached.
    let edge = EdgeProcess::start(&beam_upstream(
        &beam,
        &format!("  providers: [\"{}\"]\n  retries: 0\n", gzip.url()),
    ));
    let (status, headers, body) = get_piece(&edge, &cid);
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers.get("cache-control").map(String::as_str),
        Some("no-store")
    );
    assert!(body.len() < 1000 && !body.starts_with(&[0x1f, 0x8b]));
    let status = admin_piece(&edge, &cid);
    assert_eq!(status["memory"], serde_json::json!([]), "{status}");
    assert_eq!(status["disk"], serde_json::json!([]), "{status}");
}

#[test]
fn beam_errors_with_a_one_year_cache_control_reach_the_client_as_no_store() {
    let data = mp4_like(10_000, 94);
    let cid = cid_of(&data);
    let beam = MockBeam::start();
    beam.add_piece(&cid, data);
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, "  retries: 0\n"),
        ..Default::default()
    });
    for code in [404u16, 402] {
        // The mock's error answers carry `Cache-Control: public, max-age=31536000`,
        // as Beam's do when it passes a provider's 4xx through.
        beam.set_fault(Fault::Status(code));
        for round in 0..2 {
            let before = beam.requests().len();
            let (status, headers, _) = get_piece(&edge, &cid);
            assert_eq!(status, code);
            assert_eq!(
                headers.get("cache-control").map(String::as_str),
                Some("no-store"),
                "{code}"
            );
            // Not cached: a 404 asks Beam again; a refusal (402) is
            // remembered for upstream.refusal_ttl, so a refused play costs
            // Beam one request, and is still answered no-store.
            if code == 404 || round == 0 {
                assert!(beam.requests().len() > before, "{code}");
            } else {
                assert_eq!(beam.requests().len(), before, "{code}: remembered");
            }
        }
        let status = admin_piece(&edge, &cid);
        assert_eq!(status["memory"], serde_json::json!([]));
        assert_eq!(status["disk"], serde_json::json!([]));
    }
}

#[test]
fn static_providers_come_first_and_a_dead_rpc_is_a_clear_failure() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = mp4_like(150_000, 95);
    let cid = cid_of(&data);
    let beam = MockBeam::start();
    beam.set_fault(Fault::Status(404));
    let configured = MockSp::start();
    configured.add_piece(&cid, data.clone());
    let on_chain = MockSp::start();
    on_chain.add_piece(&cid, data.clone());
    let rpc = mock_chain(
        &rt,
        vec![MockDataSet {
            id: 1,
            provider_id: 1,
            service_url: on_chain.url(),
            pdp_end_epoch: 0,
        }],
    );

    // A static provider that serves: the chain is never read (only its
    // chain id, checked once at start-up against upstream.network).
    let edge = EdgeProcess::start(&beam_upstream(
        &beam,
        &format!(
            "  providers: [\"{}\"]\n  resolve_providers: true\n  rpc_url: \"{}\"\n  retries: 0\n",
            configured.url(),
            rpc.url()
        ),
    ));
    let (status, _, body) = get_piece(&edge, &cid);
    assert_eq!(status, 200);
    assert!(body == data);
    assert_eq!(rpc.log(), vec!["eth_chainId".to_string()]);
    assert!(on_chain.requests().is_empty());
    assert_eq!(
        admin_piece(&edge, &cid)["providers"]["resolved"],
        Value::Null
    );
    drop(edge);

    // The RPC is down from the start and nothing is configured: Beam's own
    // answer, and the admin API says why no provider was asked.
    rpc.set_down(true);
    let edge = EdgeProcess::start(&beam_upstream(
        &beam,
        &format!(
            "  resolve_providers: true\n  rpc_url: \"{}\"\n  retries: 0\n",
            rpc.url()
        ),
    ));
    let (status, headers, _) = get_piece(&edge, &cid);
    assert_eq!(status, 404);
    assert_eq!(
        headers.get("cache-control").map(String::as_str),
        Some("no-store")
    );
    let resolved = admin_piece(&edge, &cid)["providers"]["resolved"].clone();
    assert_eq!(resolved["source"], "failed", "{resolved}");
    assert_eq!(resolved["holders"], serde_json::json!([]));
    assert!(resolved["chain_error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    let m = edge.metrics_text();
    assert!(
        metric_value(
            &m,
            "beam_edge_provider_resolutions_total{outcome=\"failed\"}"
        ) >= 1.0
    );
    assert!(on_chain.requests().is_empty());
}

#[test]
fn an_rpc_on_another_network_stops_the_start_naming_both() {
    // upstream.network says calibration; the RPC answers eth_chainId 314
    // (mainnet). Resolving providers there would name providers holding none
    // of the payer's calibration pieces: the start fails, before any socket.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rpc = rt.block_on(MockRpc::start(Network::Mainnet.chain_id()));
    let beam = MockBeam::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("beam-edge.yaml");
    let port = |_| common::free_port();
    std::fs::write(
        &cfg,
        format!(
            "server:\n  listen: \"127.0.0.1:{}\"\nupstream:\n{}\n  network: calibration\ncache:\n  disk:\n    path: \"{}\"\nadmin:\n  listen: \"127.0.0.1:{}\"\nmetrics:\n  listen: \"127.0.0.1:{}\"\n",
            port(0),
            beam_upstream(
                &beam,
                &format!("  resolve_providers: true\n  rpc_url: \"{}\"", rpc.url())
            ),
            dir.path().join("cache").display(),
            port(1),
            port(2),
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // A generous hang guard, not a timing check: a start that did not fail
    // serves until killed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("the edge started on the wrong network: {stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("upstream.network is calibration (314159)")
            && stderr.contains("serves mainnet (314)"),
        "{stderr}"
    );
    assert_eq!(rpc.count("eth_chainId"), 1, "{:?}", rpc.log());
    assert!(beam.requests().is_empty());
}

/// A window's Range request against `edge`: the status and the body.
fn get_range(edge: &EdgeProcess, cid: &str, start: u64, end: u64) -> (u16, Vec<u8>) {
    let range = format!("bytes={start}-{end}");
    let (status, _, body) =
        raw_get(edge.public, &format!("/piece/{cid}"), &[("Range", &range)]).unwrap();
    (status, body)
}

#[test]
fn a_late_beam_answer_is_hedged_to_a_provider_within_the_budget() {
    let data = mp4_like(1_000_000, 94);
    let cid = cid_of(&data);
    let beam = MockBeam::start();
    beam.add_warm_piece(&cid, data.clone());
    // Every Beam answer is late.
    beam.set_fault(Fault::Delay(Duration::from_millis(1_500)));
    let sp = MockSp::start();
    sp.add_piece(&cid, data.clone());
    let start = |budget: &str| {
        EdgeProcess::start_opts(EdgeOptions {
            upstream: beam_upstream(
                &beam,
                &format!(
                    "  providers: [\"{}\"]\n  hedge_after: 100ms\n  hedge_budget: {budget}\n",
                    sp.url()
                ),
            ),
            // One window per request: no read-ahead, no container guesses.
            cache: "  window: 128KiB\n  prefetch: 0\n  index_prefetch: 0\n".into(),
            ..Default::default()
        })
    };
    let hedges = |edge: &EdgeProcess, outcome: &str| {
        metric_value(
            &edge.metrics_text(),
            &format!("beam_edge_hedges_total{{outcome=\"{outcome}\"}}"),
        )
    };
    let edge = start("100%");
    // The first answer from Beam is never hedged: it says whether Beam
    // holds the piece (a cold piece's first answer is its warm-up).
    let (status, body) = get_range(&edge, &cid, 0, 99);
    assert_eq!(status, 206);
    assert!(body == data[..100]);
    assert_eq!(sp.count("GET"), 0, "the first Beam request was hedged");
    assert_eq!(hedges(&edge, "won"), 0.0);
    // Beam now answers this piece with ranges: a late answer is hedged,
    // and the provider's answer is served.
    let (status, body) = get_range(&edge, &cid, 600_000, 600_099);
    assert_eq!(status, 206);
    assert!(
        body == data[600_000..600_100],
        "the hedge served wrong bytes"
    );
    assert_eq!(sp.count("GET"), 1);
    assert_eq!(hedges(&edge, "won"), 1.0);
    assert_eq!(hedges(&edge, "over_budget"), 0.0);
    // Beam starts refusing the piece (the payer's quota is spent), late.
    // The hedge serves the window in flight, but Beam's request runs on to
    // its answer: the refusal is remembered, and the next window gets it
    // with no request to Beam or to a provider.
    beam.refuse(&cid, Refuse::Quota);
    let (status, body) = get_range(&edge, &cid, 300_000, 300_099);
    assert_eq!(status, 206);
    assert!(body == data[300_000..300_100]);
    assert_eq!(hedges(&edge, "won"), 2.0);
    beam.wait_answers_done();
    let (beam_asked, sp_asked) = (beam.requests().len(), sp.count("GET"));
    let (status, body) = get_range(&edge, &cid, 900_000, 900_099);
    assert_eq!(status, 402, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        beam.requests().len(),
        beam_asked,
        "the refusal was not remembered"
    );
    assert_eq!(
        sp.count("GET"),
        sp_asked,
        "a provider was asked after a refusal"
    );
    drop(edge);
    beam.stop_refusing(&cid);

    // 5%: one hedge per 20 requests that could be hedged. The first late
    // answer may not spend one.
    let sp_gets = sp.count("GET");
    let edge = start("5%");
    for (start, end) in [(0, 99), (600_000, 600_099)] {
        let (status, body) = get_range(&edge, &cid, start, end);
        assert_eq!(status, 206);
        assert!(body == data[start as usize..=end as usize]);
    }
    assert_eq!(hedges(&edge, "over_budget"), 1.0);
    assert_eq!(hedges(&edge, "won"), 0.0);
    assert_eq!(sp.count("GET"), sp_gets, "a hedge past the budget");
}

#[test]
fn each_payers_holders_are_resolved_from_the_chain_by_default() {
    // No resolve_providers key: chain resolution is on whenever a payer is
    // known, upstream.payer's or that of a /beam/<payer>/ request, each
    // payer's data sets read on their own.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let other: Address = Address::repeat_byte(0xbb);
    let mine = mp4_like(150_000, 96);
    let theirs = mp4_like(160_000, 97);
    let only_mine = mp4_like(170_000, 98);
    let (mine_cid, theirs_cid, only_mine_cid) =
        (cid_of(&mine), cid_of(&theirs), cid_of(&only_mine));
    // Beam does not know them yet (fresh uploads, not yet indexed).
    let beam = MockBeam::start();
    beam.set_fault(Fault::Status(404));
    let my_sp = MockSp::start();
    my_sp.add_piece(&mine_cid, mine.clone());
    my_sp.add_piece(&only_mine_cid, only_mine.clone());
    let their_sp = MockSp::start();
    their_sp.add_piece(&theirs_cid, theirs.clone());
    let rpc = mock_chain_of(
        &rt,
        vec![
            (
                PAYER.parse().unwrap(),
                vec![MockDataSet {
                    id: 1,
                    provider_id: 1,
                    service_url: my_sp.url(),
                    pdp_end_epoch: 0,
                }],
            ),
            (
                other,
                vec![MockDataSet {
                    id: 2,
                    provider_id: 2,
                    service_url: their_sp.url(),
                    pdp_end_epoch: 0,
                }],
            ),
        ],
    );
    let edge = EdgeProcess::start(&beam_upstream(
        &beam,
        &format!(
            "  payers: any\n  rpc_url: \"{}\"\n  retries: 0\n",
            rpc.url()
        ),
    ));
    let other_path = |cid: &str| format!("/beam/{}/{cid}", other.to_string().to_lowercase());
    // The other payer's data sets are not at my provider: it is never asked,
    // and the request gets Beam's answer.
    let (status, _, _) = raw_get(edge.public, &other_path(&only_mine_cid), &[]).unwrap();
    assert_eq!(status, 404);
    assert!(
        my_sp.requests().is_empty(),
        "a provider of another payer's data sets was asked"
    );
    // upstream.payer's pieces, from its providers.
    let (status, _, body) = get_piece(&edge, &mine_cid);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == mine);
    // The other payer's pieces, from its own.
    let (status, _, body) = raw_get(edge.public, &other_path(&theirs_cid), &[]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == theirs);
    assert!(their_sp.count("GET") >= 1);
}
