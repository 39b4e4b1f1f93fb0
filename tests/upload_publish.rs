//! Publishing an upload end to end against test doubles that speak the real
//! wire protocols: a mock JSON-RPC chain (registry, FWSS, FilecoinPay, USDFC)
//! and a mock Curio. The wallet is checked before any byte is sent; the file
//! is uploaded as pieces plus a manifest; the pieces are added to a new
//! `withCDN` data set with signed extraData.

mod common;
mod common_rpc;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolStruct;
use alloy::sol_types::SolValue;
use beam_edge::chain::abi::{AddPieces, Cid, CreateDataSet, MetadataEntry, PieceMetadata};
use beam_edge::chain::fwss_domain;
use beam_edge::chain::{parse_private_key, Network};
use beam_edge::piece::PieceCid;
use beam_edge::upload::pipeline::AssetOptions;
use beam_edge::upload::publish::{CopyStatus, PublishReport};
use beam_edge::upload::publish::{PublishError, PublishSettings, Publisher};
use beam_edge::upload::sp::SpTimeouts;
use common::mock_curio::MockCurio;
use common::mock_curio::{MockConfig, MockStep};
use common_rpc::{chain, chain_with, payee_address, ChainSpec, MockDataSet, MockRpc, KEY, PAYER};

fn settings(rpc: &MockRpc) -> PublishSettings {
    PublishSettings {
        network: Network::Calibration,
        rpc_url: rpc.url(),
        provider_id: 7,
        provider_url: None,
        data_set: None,
        asset: AssetOptions {
            piece_size: 200_000,
            max_size: 1 << 30,
            window_padded: 128 << 10,
            content_type: None,
            file_name: "movie.mp4".into(),
            commp_threads: 1,
        },
        timeouts: SpTimeouts {
            poll_interval: Duration::from_millis(20),
            poll_deadline: Duration::from_secs(10),
            ..SpTimeouts::default()
        },
        copies: 1,
        copy_provider_ids: Vec::new(),
        expected_size: None,
    }
}

fn body(
    data: &[u8],
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Unpin + Send {
    futures_util::stream::iter(
        data.chunks(64 * 1024)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_is_published_into_a_new_cdn_data_set() {
    let curio = MockCurio::start();
    let rpc = chain(curio.url(), true).await;
    let key = parse_private_key(KEY, "test").unwrap();
    assert_eq!(key.address(), PAYER);
    let publisher = Publisher::connect(key, settings(&rpc)).await.unwrap();
    let data = common::mp4_like(500_000, 41);
    let report = publisher
        .publish(body(&data), Arc::new(|_| {}))
        .await
        .unwrap();

    assert_eq!(report.size, 500_000);
    assert_eq!(report.content_type, "video/mp4");
    assert_eq!(
        report.pieces.iter().map(|p| p.size).collect::<Vec<_>>(),
        vec![200_000, 200_000, 100_000]
    );
    assert!(report.created_data_set);
    assert_eq!(report.transactions.len(), 1);
    assert_eq!(
        report.piece_ids.len(),
        4,
        "three file pieces and the manifest"
    );
    // The path names the file, so players and download tools save it as such.
    assert_eq!(
        report.asset_path,
        format!("/asset/{}/movie.mp4", report.asset_id)
    );
    // The provider holds exactly the file's bytes, piece by piece.
    let mut offset = 0;
    for p in &report.pieces {
        let got = curio.piece_bytes(&p.cid).unwrap();
        assert!(got == data[offset..offset + p.size as usize]);
        offset += p.size as usize;
    }
    // One create-and-add call, for FWSS, listing the pieces then the manifest,
    // with extraData = abi(bytes create, bytes add) whose create part names the payer.
    let calls = curio.requests_to("POST", "/pdp/data-sets/create-and-add");
    assert_eq!(calls.len(), 1);
    let json = calls[0].json.clone().unwrap();
    let fwss = Network::Calibration.contracts().fwss;
    assert_eq!(
        json["recordKeeper"].as_str().unwrap().to_lowercase(),
        fwss.to_string().to_lowercase()
    );
    let listed: Vec<String> = json["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pieceCid"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = report.pieces.iter().map(|p| p.cid.clone()).collect();
    expected.push(report.asset_id.clone());
    assert_eq!(listed, expected);
    let extra = json["extraData"].as_str().unwrap();
    let raw = alloy::primitives::hex::decode(extra).unwrap();
    let (create, _add) = <(Bytes, Bytes)>::abi_decode_params(&raw).unwrap();
    let (payer, _id, keys, values, _sig) =
        <(Address, U256, Vec<String>, Vec<String>, Bytes)>::abi_decode_params(&create).unwrap();
    assert_eq!(payer, PAYER);
    assert_eq!(
        (keys, values),
        (vec!["withCDN".to_string()], vec![String::new()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfunded_wallet_is_refused_before_any_upload() {
    let curio = MockCurio::start();
    let rpc = chain(curio.url(), false).await;
    let key = parse_private_key(KEY, "test").unwrap();
    let err = match Publisher::connect(key, settings(&rpc)).await {
        Err(e) => e,
        Ok(_) => panic!("an unfunded wallet was accepted"),
    };
    assert!(matches!(err, PublishError::Wallet { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("FilecoinPay") && text.contains("operator"),
        "{text}"
    );
    assert!(curio.requests().is_empty(), "nothing reached the provider");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upload_command_publishes_a_file_and_prints_json() {
    let curio = MockCurio::start();
    let rpc = chain(curio.url(), true).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.webm");
    let data = common::mp4_like(300_000, 42);
    std::fs::write(&file, &data).unwrap();
    let cfg = dir.path().join("beam-edge.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upload:\n  rpc_url: \"{}\"\n  provider_id: 7\n  copies: 1\n  piece_size: 200000\ncache:\n  window: 128KiB\n",
            rpc.url()
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::bin())
            .args([
                "upload",
                file.to_str().unwrap(),
                "--config",
                cfg.to_str().unwrap(),
                "--json",
            ])
            .env("BEAM_EDGE_PRIVATE_KEY", KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("1234123412341234"),
        "the key must never be printed"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 300_000);
    assert_eq!(v["file_name"], "clip.webm");
    assert_eq!(v["content_type"], "video/webm", "from the file name");
    assert_eq!(v["pieces"].as_array().unwrap().len(), 2);
    assert_eq!(v["created_data_set"], true);
    // No upstream.payer in this config: the Beam links are the uploading
    // wallet's, which pays for the data set.
    let (id, payer) = (
        v["asset_id"].as_str().unwrap(),
        v["payer"].as_str().unwrap(),
    );
    assert_eq!(
        v["beam_urls"][0],
        format!("https://{payer}.calibration.filbeam.io/{id}")
    );
    assert_eq!(v["asset_path"], format!("/asset/{id}/clip.webm"));
    assert_eq!(
        curio
            .piece_bytes(v["pieces"][1]["cid"].as_str().unwrap())
            .unwrap(),
        data[200_000..]
    );
    assert!(stderr.contains("MB/s"), "progress lines: {stderr}");
}

/// The head of a `Connection: close` POST of `len` bytes to `path`.
fn post_head(path: &str, headers: &[(&str, &str)], len: usize) -> String {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// POSTs `body` to `path` on `addr` and returns (status, body).
fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(post_head(path, headers, body.len()).as_bytes())
        .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let start = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, out[start..].to_vec())
}

/// POSTs with `Expect: 100-continue`, sending `body` only after a `100
/// Continue`, as curl does for large files. Returns the status of every
/// answer read (the 100 included) and the final body.
fn post_expecting_continue(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Vec<u16>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    // A server that never answers fails the test instead of hanging it.
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut with_expect = vec![("Expect", "100-continue")];
    with_expect.extend_from_slice(headers);
    s.write_all(post_head(path, &with_expect, body.len()).as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let mut statuses = Vec::new();
    loop {
        // Read one answer's head.
        let end = loop {
            if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before an answer: {statuses:?}");
            out.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&out[..end]).to_string();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        statuses.push(status);
        out.drain(..end);
        if status != 100 {
            break;
        }
        s.write_all(body).unwrap();
    }
    s.read_to_end(&mut out).unwrap();
    (statuses, out)
}

/// The `upload:` section of a one-copy edge at `curio`, on `rpc`'s chain.
fn one_copy_upload_yaml(rpc: &MockRpc, curio: &MockCurio, piece_size: u64, extra: &str) -> String {
    format!(
        "upload:\n  rpc_url: \"{}\"\n  provider_id: 7\n  copies: 1\n  provider_url: \"{}\"\n  piece_size: {piece_size}\n{extra}",
        rpc.url(),
        curio.url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_through_the_admin_listener_plays_back_from_asset() {
    let curio = MockCurio::start();
    let rpc = chain(curio.url(), true).await;
    let token = "an-admin-token-for-uploads";
    let upload_yaml = one_copy_upload_yaml(&rpc, &curio, 200_000, "  max_size: 1MiB\n");
    let data = common::mp4_like(450_000, 43);
    let auth = format!("Bearer {token}");
    let result = tokio::task::spawn_blocking(move || {
        let curio = curio;
        let beam = common::MockBeam::start(); // knows nothing yet: fresh pieces are 404 on Beam
        let opts = common::EdgeOptions {
            upstream: common::beam_upstream(&beam, "  retries: 0\n"),
            cache: "  window: 128KiB\n".into(),
            admin_token: Some(token.into()),
            extra: upload_yaml,
            env: vec![("BEAM_EDGE_PRIVATE_KEY".into(), KEY.into())],
            ..Default::default()
        };
        let edge = common::EdgeProcess::start_opts(opts);
        // Without the token: 401, nothing uploaded.
        let (s, _) = post(edge.admin, "/admin/uploads", &[], &data);
        assert_eq!(s, 401);
        // Over upload.max_size: 413 before reading the body.
        let (s, body) = post(
            edge.admin,
            "/admin/uploads",
            &[("Authorization", &auth)],
            &vec![0u8; 2 << 20],
        );
        assert_eq!(s, 413, "{}", String::from_utf8_lossy(&body));
        // With `Expect: 100-continue` the refusal comes before any body byte.
        let (s, body) = post_expecting_continue(
            edge.admin,
            "/admin/uploads",
            &[("Authorization", &auth)],
            &vec![0u8; 2 << 20],
        );
        assert_eq!(s, [413], "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("upload.max_size"));
        let (s, _) = post_expecting_continue(edge.admin, "/admin/uploads", &[], &data);
        assert_eq!(s, [401]);
        assert!(
            curio.requests_to("POST", "/pdp/piece").is_empty(),
            "nothing uploaded"
        );
        // Accepted: a 100 Continue, then the body, then the report.
        let (s, body) = post_expecting_continue(
            edge.admin,
            "/admin/uploads",
            &[
                ("Authorization", &auth),
                ("Content-Type", "video/mp4"),
                ("X-Filename", "holiday.mp4"),
            ],
            &data,
        );
        assert_eq!(
            s,
            [100, 201],
            "{}\n{}",
            String::from_utf8_lossy(&body),
            edge.log()
        );
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(report["file_name"], "holiday.mp4");
        // Beam URLs for the manifest (the asset id) and each piece.
        let beam_urls = report["beam_urls"].as_array().unwrap();
        assert_eq!(beam_urls.len(), 4);
        assert!(beam_urls[0]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{}", report["asset_id"].as_str().unwrap())));
        assert_eq!(report["pieces"].as_array().unwrap().len(), 3);
        // Links name the file and the paying wallet; the parts of a
        // three-piece file are not named after the whole file.
        let id = report["asset_id"].as_str().unwrap();
        let payer = report["payer"].as_str().unwrap();
        assert!(beam_edge::config::is_eth_address(payer), "{payer}");
        assert_eq!(report["asset_path"], format!("/asset/{id}/holiday.mp4"));
        assert_eq!(
            report["beam_path"],
            format!("/beam/calibration/{payer}/asset/{id}/holiday.mp4")
        );
        for u in beam_urls {
            let u = u.as_str().unwrap();
            assert!(
                u.contains(&format!("/{payer}/")) && !u.ends_with(".mp4"),
                "{u}"
            );
        }
        // The report lists the (single, with copies: 1) copy.
        assert_eq!(report["complete"], true);
        assert_eq!(report["copies"].as_array().unwrap().len(), 1);
        assert_eq!(report["copies"][0]["role"], "primary");
        assert_eq!(report["copies"][0]["provider_id"], 7);
        assert_eq!(report["copies"][0]["data_set_id"], report["data_set_id"]);
        // upload.warm_cache: the upload was written into the cache as it
        // streamed, so the first play is a hit that touches no upstream.
        let path = report["asset_path"].as_str().unwrap().to_string();
        let (s, h, got) = common::raw_get(edge.public, &path, &[]).unwrap();
        assert_eq!(s, 200);
        assert_eq!(h["content-type"], "video/mp4");
        assert_eq!(h["content-disposition"], "inline; filename=\"holiday.mp4\"");
        assert_eq!(h["x-cache"], "HIT");
        assert!(got == data, "the uploaded asset plays back byte-exact");
        assert!(beam.requests().is_empty(), "{:?}", beam.requests());
        assert!(
            curio.requests_to("GET", "/piece/").is_empty(),
            "no provider read either"
        );
        let (s, _, got) =
            common::raw_get(edge.public, &path, &[("Range", "bytes=199990-200009")]).unwrap();
        assert_eq!((s, got.as_slice()), (206, &data[199_990..200_010]));
    });
    result.await.unwrap();
}

/// Without `upload.warm_cache` (or with no disk tier) the bytes are not
/// cached, but each piece's layer still is: a later read of a multi-window
/// piece from the upstream is checked against it from the first byte.
#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_piece_keeps_its_layer_without_warming_the_cache() {
    let curio = MockCurio::start();
    let rpc = chain(curio.url(), true).await;
    let token = "an-admin-token-for-uploads";
    let upload_yaml = one_copy_upload_yaml(
        &rpc,
        &curio,
        400_000,
        "  max_size: 1MiB\n  warm_cache: false\n",
    );
    let data = common::mp4_like(450_000, 44);
    let auth = format!("Bearer {token}");
    let result = tokio::task::spawn_blocking(move || {
        let _curio = curio;
        let beam = common::MockBeam::start();
        let edge = common::EdgeProcess::start_opts(common::EdgeOptions {
            upstream: common::beam_upstream(&beam, "  retries: 0\n"),
            cache: "  window: 128KiB\n".into(),
            admin_token: Some(token.into()),
            extra: upload_yaml,
            env: vec![("BEAM_EDGE_PRIVATE_KEY".into(), KEY.into())],
            ..Default::default()
        });
        let (s, body) = post(
            edge.admin,
            "/admin/uploads",
            &[("Authorization", &auth), ("Content-Type", "video/mp4")],
            &data,
        );
        assert_eq!(s, 201, "{}\n{}", String::from_utf8_lossy(&body), edge.log());
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // The first piece: 400,000 bytes, four 128 KiB windows.
        let cid = report["pieces"][0]["cid"].as_str().unwrap().to_string();
        let (s, _, b) = common::raw_get(
            edge.admin,
            &format!("/admin/cache/{cid}"),
            &[("Authorization", &auth)],
        )
        .unwrap();
        assert_eq!(s, 200);
        let status: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(status["windows"], 4, "{status}");
        assert_eq!(
            status["disk"],
            serde_json::json!([]),
            "not warmed: {status}"
        );
        assert_eq!(
            status["memory"],
            serde_json::json!([]),
            "not warmed: {status}"
        );
        assert_eq!(status["layer"]["source"], "upload", "{status}");
        assert_eq!(status["checked_by"], "layer", "{status}");
        // Beam now has the piece, one byte wrong: the window is checked
        // against the layer, and the wrong byte never reaches the client
        // (an error status, or the response cut before its last byte).
        let mut wrong = data[..400_000].to_vec();
        wrong[300_000] ^= 1;
        beam.add_warm_piece(&cid, wrong);
        if let Ok((s, _, body)) = common::raw_get(
            edge.public,
            &format!("/piece/{cid}"),
            &[("Range", "bytes=299990-300009")],
        ) {
            assert!(
                s >= 500 || body == data[299_990..300_010],
                "wrong bytes relayed: {s}"
            );
        }
        let m = edge.metrics_text();
        assert_eq!(
            common::metric_value(&m, "beam_edge_window_checks_total{result=\"mismatch\"}"),
            1.0
        );
    });
    result.await.unwrap();
}

/// `beam-edge upload` with a running edge's config writes each piece's
/// layer into that edge's disk tier, where the edge finds it on the next
/// read: the uploaded piece is checked from its first byte.
#[tokio::test(flavor = "multi_thread")]
async fn the_upload_command_leaves_its_layers_to_the_edge_of_its_config() {
    let curio = MockCurio::start();
    let rpc = chain(curio.url(), true).await;
    let upload_yaml = one_copy_upload_yaml(&rpc, &curio, 400_000, "");
    let data = common::mp4_like(450_000, 45);
    let result = tokio::task::spawn_blocking(move || {
        let _curio = curio;
        let beam = common::MockBeam::start();
        let edge = common::EdgeProcess::start_opts(common::EdgeOptions {
            upstream: common::beam_upstream(&beam, "  retries: 0\n"),
            cache: "  window: 128KiB\n".into(),
            extra: upload_yaml,
            ..Default::default()
        });
        let file = edge.dir.path().join("clip.mp4");
        std::fs::write(&file, &data).unwrap();
        let out = std::process::Command::new(common::bin())
            .arg("upload")
            .arg(&file)
            .arg("--config")
            .arg(edge.dir.path().join("beam-edge.yaml"))
            .env("BEAM_EDGE_PRIVATE_KEY", KEY)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Two pieces; the first (400,000 bytes) spans four windows.
        assert!(stdout.contains("layers     2 in "), "{stdout}");
        let cid = stdout
            .lines()
            .find_map(|l| l.strip_prefix("piece 0    "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_string();
        let (s, _, b) = common::raw_get(edge.admin, &format!("/admin/cache/{cid}"), &[]).unwrap();
        assert_eq!(s, 200);
        let status: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(status["checked_by"], "layer", "{status}");
        assert_eq!(status["layer"]["source"], "upload", "{status}");
        assert_eq!(status["layer"]["windows"], 4, "{status}");
    });
    result.await.unwrap();
}

// ---- two copies ----

const CALIB: u64 = 314_159;

fn recover(signature: &Bytes, hash: alloy::primitives::B256) -> Address {
    let sig = alloy::primitives::Signature::try_from(signature.as_ref()).unwrap();
    sig.recover_address_from_prehash(&hash).unwrap()
}

/// Checks an AddPieces extraData for `cids`: its signature recovers to the
/// payer. Returns the nonce.
fn verify_add(add: &[u8], client_data_set_id: U256, cids: &[String]) -> U256 {
    let (nonce, keys, _values, signature) =
        <(U256, Vec<Vec<String>>, Vec<Vec<String>>, Bytes)>::abi_decode_params(add).unwrap();
    assert_eq!(keys.len(), cids.len());
    let message = AddPieces {
        clientDataSetId: client_data_set_id,
        nonce,
        pieceData: cids
            .iter()
            .map(|c| Cid {
                data: c.parse::<PieceCid>().unwrap().to_bytes().into(),
            })
            .collect(),
        pieceMetadata: (0..cids.len())
            .map(|i| PieceMetadata {
                pieceIndex: U256::from(i),
                metadata: vec![],
            })
            .collect(),
    };
    let fwss = Network::Calibration.contracts().fwss;
    assert_eq!(
        recover(
            &signature,
            message.eip712_signing_hash(&fwss_domain(CALIB, fwss))
        ),
        PAYER,
        "AddPieces signed by the payer"
    );
    nonce
}

/// Checks a create-and-add extraData: a `withCDN` CreateDataSet for `payee`
/// and an AddPieces of `cids`, both signed by the payer.
fn verify_create_and_add(extra_hex: &str, payee: Address, cids: &[String]) {
    let raw = alloy::primitives::hex::decode(extra_hex).unwrap();
    let (create, add) = <(Bytes, Bytes)>::abi_decode_params(&raw).unwrap();
    let (payer, client_data_set_id, keys, values, signature) =
        <(Address, U256, Vec<String>, Vec<String>, Bytes)>::abi_decode_params(&create).unwrap();
    assert_eq!(payer, PAYER);
    assert_eq!(
        (keys, values),
        (vec!["withCDN".to_string()], vec![String::new()])
    );
    let message = CreateDataSet {
        clientDataSetId: client_data_set_id,
        payee,
        metadata: vec![MetadataEntry {
            key: "withCDN".into(),
            value: String::new(),
        }],
    };
    let fwss = Network::Calibration.contracts().fwss;
    assert_eq!(
        recover(
            &signature,
            message.eip712_signing_hash(&fwss_domain(CALIB, fwss))
        ),
        PAYER,
        "CreateDataSet signed by the payer for this provider's payee"
    );
    verify_add(&add, client_data_set_id, cids);
}

fn all_cids(report: &PublishReport) -> Vec<String> {
    let mut cids: Vec<String> = report.pieces.iter().map(|p| p.cid.clone()).collect();
    cids.push(report.asset_id.clone());
    cids
}

fn two_copy_settings(rpc: &MockRpc) -> PublishSettings {
    PublishSettings {
        copies: 2,
        ..settings(rpc)
    }
}

fn second_curio() -> MockCurio {
    MockCurio::start_with(MockConfig {
        data_set_base: 8000,
        ..MockConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_provider_pulls_the_pieces_from_the_first_over_http() {
    let primary = MockCurio::start();
    let secondary = second_curio();
    let rpc = chain_with(ChainSpec::new(vec![
        (7, primary.url()),
        (9, secondary.url()),
    ]))
    .await;
    let key = parse_private_key(KEY, "test").unwrap();
    let publisher = Publisher::connect(key, two_copy_settings(&rpc))
        .await
        .unwrap();
    let data = common::mp4_like(500_000, 43);
    let report = publisher
        .publish(body(&data), Arc::new(|_| {}))
        .await
        .unwrap();
    let cids = all_cids(&report);

    assert!(report.complete, "{:#?}", report.copies);
    assert_eq!(report.requested_copies, 2);
    assert_eq!(report.copies.len(), 2);
    let (first, second) = (&report.copies[0], &report.copies[1]);
    assert_eq!(
        (first.role, first.provider_id, first.status),
        ("primary", Some(7), CopyStatus::Complete)
    );
    assert_eq!(
        (second.role, second.provider_id, second.status),
        ("secondary", Some(9), CopyStatus::Complete)
    );
    assert_eq!(
        second.provider_url.as_deref(),
        Some(secondary.url().as_str())
    );
    assert!(second.created_data_set && first.created_data_set);
    let set = second.data_set_id.unwrap();
    assert!(set > 8000, "the second provider's own data set: {set}");
    assert_ne!(Some(set), first.data_set_id);
    assert_eq!(second.transactions.len(), 1);
    assert_eq!(second.piece_ids.len(), cids.len());
    // Nothing was uploaded to the second provider: it pulled.
    assert!(secondary.sessions().is_empty());
    let pulls = secondary.requests_to("POST", "/pdp/piece/pull");
    assert!(!pulls.is_empty());
    let pull = pulls[0].json.clone().unwrap();
    let sources: Vec<(String, String)> = pull["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pieceCid"].as_str().unwrap().to_string(),
                p["sourceUrl"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        cids.iter()
            .map(|c| (c.clone(), format!("{}piece/{c}", primary.url())))
            .collect::<Vec<_>>()
    );
    assert!(
        pull.get("dataSetId").is_none(),
        "a new data set: no dataSetId"
    );
    // The pull really fetched each piece from the primary over HTTP ...
    for cid in &cids {
        let gets = primary.requests_to("GET", &format!("/piece/{cid}"));
        assert_eq!(gets.len(), 1, "{cid}");
        assert_eq!(gets[0].status, Some(200));
        // ... and the second provider holds the same bytes.
        assert_eq!(secondary.piece_bytes(cid), primary.piece_bytes(cid));
    }
    let mut offset = 0;
    for p in &report.pieces {
        assert!(secondary.piece_bytes(&p.cid).unwrap() == data[offset..offset + p.size as usize]);
        offset += p.size as usize;
    }
    // Both data sets got a signed create-and-add, each for its provider's payee;
    // the pull carried the same extraData as the commit.
    let first_call = primary.requests_to("POST", "/pdp/data-sets/create-and-add");
    let second_call = secondary.requests_to("POST", "/pdp/data-sets/create-and-add");
    assert_eq!((first_call.len(), second_call.len()), (1, 1));
    let first_extra = first_call[0].json.as_ref().unwrap()["extraData"]
        .as_str()
        .unwrap()
        .to_string();
    let second_extra = second_call[0].json.as_ref().unwrap()["extraData"]
        .as_str()
        .unwrap()
        .to_string();
    verify_create_and_add(&first_extra, payee_address(7), &cids);
    verify_create_and_add(&second_extra, payee_address(9), &cids);
    assert_eq!(pull["extraData"].as_str(), Some(second_extra.as_str()));
    assert_ne!(first_extra, second_extra, "each copy signs its own");
    assert_eq!(
        secondary.data_set_pieces(set).unwrap().len(),
        cids.len(),
        "the pieces are in the second data set"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_into_an_existing_data_set_signs_add_pieces_and_names_the_set() {
    let primary = MockCurio::start();
    let secondary = second_curio();
    // The payer already has a withCDN set at provider 9 (the mock Curio knows
    // it as 8001 once one was created there).
    let seed = second_curio_seed(&secondary).await;
    let mut spec = ChainSpec::new(vec![(7, primary.url()), (9, secondary.url())]);
    spec.data_sets = vec![MockDataSet {
        data_set_id: seed,
        provider_id: 9,
        client_data_set_id: 4242,
        reserve: 100_000_000_000_000_000,
        leaves: 9_000,
    }];
    let rpc = chain_with(spec).await;
    let key = parse_private_key(KEY, "test").unwrap();
    let publisher = Publisher::connect(key, two_copy_settings(&rpc))
        .await
        .unwrap();
    let data = common::mp4_like(300_000, 44);
    let report = publisher
        .publish(body(&data), Arc::new(|_| {}))
        .await
        .unwrap();
    let cids = all_cids(&report);
    assert!(report.complete, "{:#?}", report.copies);
    let second = &report.copies[1];
    assert_eq!(second.data_set_id, Some(seed));
    assert!(!second.created_data_set);
    let pull = secondary.requests_to("POST", "/pdp/piece/pull")[0]
        .json
        .clone()
        .unwrap();
    assert_eq!(pull["dataSetId"].as_u64(), Some(seed));
    let adds = secondary.requests_to("POST", &format!("/pdp/data-sets/{seed}/pieces"));
    assert_eq!(adds.len(), 1);
    let extra = adds[0].json.as_ref().unwrap()["extraData"]
        .as_str()
        .unwrap();
    assert_eq!(pull["extraData"].as_str(), Some(extra));
    let raw = alloy::primitives::hex::decode(extra).unwrap();
    verify_add(&raw, U256::from(4242), &cids);
}

/// Creates a data set at `curio` (as an earlier upload would have) and
/// returns its id.
async fn second_curio_seed(curio: &MockCurio) -> u64 {
    let sp = beam_edge::upload::sp::SpClient::new(
        &curio.url(),
        SpTimeouts {
            poll_interval: Duration::from_millis(20),
            ..SpTimeouts::default()
        },
    )
    .unwrap();
    let tx = sp
        .create_data_set(&Network::Calibration.contracts().fwss.to_string(), "0x00")
        .await
        .unwrap();
    sp.wait_data_set_created(&tx).await.unwrap()
}

async fn failed_second_copy(setup: impl FnOnce(&MockCurio)) {
    let primary = MockCurio::start();
    let secondary = second_curio();
    setup(&secondary);
    let rpc = chain_with(ChainSpec::new(vec![
        (7, primary.url()),
        (9, secondary.url()),
    ]))
    .await;
    let key = parse_private_key(KEY, "test").unwrap();
    let mut settings = two_copy_settings(&rpc);
    settings.timeouts.poll_deadline = Duration::from_secs(2);
    let publisher = Publisher::connect(key, settings).await.unwrap();
    let data = common::mp4_like(300_000, 45);
    let report = publisher
        .publish(body(&data), Arc::new(|_| {}))
        .await
        .expect("a failed copy is not a failed upload");
    assert!(!report.complete);
    assert_eq!(report.copies.len(), 2);
    let (first, second) = (&report.copies[0], &report.copies[1]);
    assert_eq!(first.status, CopyStatus::Complete);
    assert_eq!(second.status, CopyStatus::Failed);
    let why = second.error.clone().unwrap();
    assert!(why.contains("pull pieces"), "{why}");
    assert!(second.transactions.is_empty());
    // Nothing was committed at the second provider ...
    assert!(secondary
        .requests_to("POST", "/pdp/data-sets/create-and-add")
        .is_empty());
    // ... and the primary copy is whole.
    let mut offset = 0;
    for p in &report.pieces {
        assert!(primary.piece_bytes(&p.cid).unwrap() == data[offset..offset + p.size as usize]);
        offset += p.size as usize;
    }
    let set = first.data_set_id.unwrap();
    assert_eq!(
        primary.data_set_pieces(set).unwrap().len(),
        report.pieces.len() + 1
    );
    // The JSON says so too.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["complete"], serde_json::json!(false));
    assert_eq!(json["copies"][1]["status"], "failed");
    assert_eq!(json["copies"][0]["status"], "complete");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_that_fails_leaves_the_primary_intact_and_the_report_incomplete() {
    failed_second_copy(|c| c.configure(|cfg| cfg.pull_fails = true)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_busy_forever_with_429_ends_as_an_incomplete_upload() {
    failed_second_copy(|c| c.fail(MockStep::PullPieces, 429)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_second_provider_the_upload_is_kept_and_reported_incomplete() {
    let primary = MockCurio::start();
    let rpc = chain_with(ChainSpec::new(vec![(7, primary.url())])).await;
    let key = parse_private_key(KEY, "test").unwrap();
    let publisher = Publisher::connect(key, two_copy_settings(&rpc))
        .await
        .unwrap();
    let report = publisher
        .publish(body(&common::mp4_like(200_000, 46)), Arc::new(|_| {}))
        .await
        .unwrap();
    assert!(!report.complete);
    assert_eq!(report.copies[1].provider_id, None);
    assert!(
        report.copies[1]
            .error
            .as_deref()
            .unwrap()
            .contains("no other active storage provider"),
        "{:?}",
        report.copies[1].error
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_view_layout_still_finds_the_data_set_to_reuse() {
    let primary = MockCurio::start();
    let seed = second_curio_seed(&primary).await;
    let mut spec = ChainSpec::new(vec![(7, primary.url())]);
    spec.legacy_view = true;
    spec.data_sets = vec![MockDataSet {
        data_set_id: seed,
        provider_id: 7,
        client_data_set_id: 777,
        reserve: 0,
        leaves: 40,
    }];
    let rpc = chain_with(spec).await;
    let key = parse_private_key(KEY, "test").unwrap();
    let publisher = Publisher::connect(key, settings(&rpc)).await.unwrap();
    let report = publisher
        .publish(body(&common::mp4_like(200_000, 47)), Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(report.data_set_id, seed);
    assert!(!report.created_data_set);
    let adds = primary.requests_to("POST", &format!("/pdp/data-sets/{seed}/pieces"));
    let extra = adds[0].json.as_ref().unwrap()["extraData"]
        .as_str()
        .unwrap();
    let raw = alloy::primitives::hex::decode(extra).unwrap();
    verify_add(&raw, U256::from(777), &all_cids(&report));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_whose_fees_cannot_be_locked_is_refused_with_the_missing_amount() {
    let primary = MockCurio::start();
    let secondary = second_curio();
    let mut spec = ChainSpec::new(vec![(7, primary.url()), (9, secondary.url())]);
    // 1.5 USDFC: enough for one new CDN data set, not for two.
    spec.funds = common_rpc::usdfc(15) / U256::from(10);
    let rpc = chain_with(spec).await;
    let key = parse_private_key(KEY, "test").unwrap();
    let mut settings = two_copy_settings(&rpc);
    settings.expected_size = Some(500_000);
    let err = match Publisher::connect(key, settings.clone()).await {
        Err(e) => e,
        Ok(_) => panic!("an upload that cannot be paid was accepted"),
    };
    assert!(matches!(err, PublishError::Wallet { .. }), "{err}");
    let text = err.to_string();
    // Worked by hand from the mock deployment's price list (not FWSS's
    // documented one): pieces of 200,000 + 200,000 + 100,000 bytes are
    // ⌈4n/127⌉ = 6,300 + 6,300 + 3,150 leaves; the manifest, sized with the
    // longest sniffable type (the type is not known yet), is 781 bytes = 25
    // leaves: 15,775 leaves, raw ⌊15,775 × 31.75⌋ = 500,856 bytes.
    // Rate: ⌊500,856 × 3e18 / (2^40 × 86,400)⌋ = 15,816,870 wei of storage
    // + ⌊0.036e18 / 86,400⌋ = 416,666,666,666 of proving per epoch, held
    // 57,600 epochs: 0.0240009110516736. Per copy: reserve 0.12 + CDN 0.6 +
    // cache miss 0.25 + that = 0.9940009110516736; two copies 1.988…;
    // 1.5 available: 0.4880018221033472 missing. One-time fees: 2 × (0.03 +
    // 0.0006 + 4 × 0.0004) = 0.0644.
    assert!(text.contains("2 copies, 2 new data sets"), "{text}");
    assert!(text.contains("needs 1.9880018221033472 USDFC"), "{text}");
    assert!(
        text.contains("0.0644 USDFC of one-time FWSS fees"),
        "{text}"
    );
    assert!(text.contains("1.5 USDFC is available"), "{text}");
    assert!(text.contains("deposit 0.4880018221033472 more"), "{text}");
    assert!(
        primary.requests().iter().all(|r| r.method != "PUT"),
        "no byte was sent"
    );
    assert!(rpc.count("eth_call:getPriceList()") >= 1);
    // One copy fits.
    let key = parse_private_key(KEY, "test").unwrap();
    settings.copies = 1;
    Publisher::connect(key, settings).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upload_command_reports_every_copy() {
    let primary = MockCurio::start();
    let secondary = second_curio();
    let rpc = chain_with(ChainSpec::new(vec![
        (7, primary.url()),
        (9, secondary.url()),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, common::mp4_like(300_000, 48)).unwrap();
    let config = dir.path().join("edge.yaml");
    std::fs::write(
        &config,
        format!(
            "upload:\n  rpc_url: \"{}\"\n  provider_id: 7\n  copy_provider_ids: [9]\n  piece_size: 200000\ncache:\n  window: 128KiB\n",
            rpc.url()
        ),
    )
    .unwrap();
    for json in [true, false] {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.arg("upload").arg(&file).arg("--config").arg(&config);
        // The default disk tier (./beam-edge-cache) is relative: keep it
        // out of the repository.
        cmd.current_dir(dir.path());
        if json {
            cmd.arg("--json");
        }
        let out = tokio::task::spawn_blocking(move || {
            cmd.env("BEAM_EDGE_PRIVATE_KEY", KEY).output().unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stdout}\n{stderr}");
        if json {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["complete"], serde_json::json!(true), "{stdout}");
            assert_eq!(v["requested_copies"], 2);
            let copies = v["copies"].as_array().unwrap();
            assert_eq!(copies.len(), 2);
            assert_eq!(copies[1]["provider_id"], 9);
            assert_eq!(copies[1]["provider_url"], secondary.url());
            assert_eq!(copies[1]["status"], "complete");
            assert!(copies[1]["data_set_id"].as_u64().unwrap() > 8000);
            assert_eq!(copies[1]["transactions"].as_array().unwrap().len(), 1);
        } else {
            let line = stdout
                .lines()
                .find(|l| l.starts_with("copy 1"))
                .unwrap_or_else(|| panic!("{stdout}"));
            assert!(line.contains("secondary provider 9"), "{line}");
            assert!(line.contains(&secondary.url()), "{line}");
            assert!(line.ends_with("complete"), "{line}");
        }
    }
}

#[test]
fn bad_copy_settings_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("upload:\n  copies: 0\n", "upload.copies"),
        ("upload:\n  copies: 9\n", "upload.copies"),
        (
            "upload:\n  provider_id: 7\n  copy_provider_ids: [9, 7]\n",
            "upload.copy_provider_ids",
        ),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&f, yaml).unwrap();
        let out = std::process::Command::new(common::bin())
            .args(["check-config", f.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{yaml} -> {err}");
        assert!(err.contains(&format!(": {key}: ")), "{yaml} -> {err}");
    }
    let ok = dir.path().join("ok.yaml");
    std::fs::write(
        &ok,
        "upload:\n  provider_id: 7\n  copies: 3\n  copy_provider_ids: [9, 11]\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["check-config", ok.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- what the chain checks: lockup, signer, record keeper ----

/// FWSS v1.3.0's prices as deployed (filecoin-services
/// `src/lib/PriceListUSDFC.sol`), the deployment the real-contract figures
/// of filecoin.md were measured on.
fn fwss_v1_3_prices() -> common_rpc::ledger::Prices {
    let bp = common_rpc::usdfc_bp;
    common_rpc::ledger::Prices {
        storage_per_tib_per_month: bp(25_000),
        dataset_fee_per_month: bp(240),
        create_data_set_fee: bp(250),
        add_pieces_base_fee: bp(5),
        add_pieces_per_piece_fee: bp(3),
        lifecycle_reserve_target: bp(1000),
        replenish_threshold: bp(50),
        default_lockup_period: U256::from(86_400),
        cdn_lockup_amount: bp(7000),
        cache_miss_lockup_amount: bp(3000),
        cdn_lockup_period: U256::from(2880 * 5),
    }
}

/// The "needs X USDFC" figure of a wallet refusal, in attoUSDFC.
fn needed(text: &str) -> U256 {
    let figure = text
        .split("needs ")
        .nth(1)
        .and_then(|rest| rest.split(" USDFC").next())
        .unwrap_or_else(|| panic!("no figure in {text}"));
    alloy::primitives::utils::parse_units(figure, 18)
        .unwrap()
        .get_absolute()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pre_flight_names_the_exact_lockup_the_contracts_take() {
    let curio = MockCurio::start();
    let mut spec = ChainSpec::new(vec![(7, curio.url())]);
    spec.prices = fwss_v1_3_prices();
    spec.funds = common_rpc::usdfc(1);
    let rpc = chain_with(spec).await;
    // The 5,000,000-byte file of filecoin.md, in one piece, with 1 MiB
    // windows and a known type: its manifest (586 bytes with this name) is
    // ⌈4 × 586 / 127⌉ = 19 leaves, the file ⌈4 × 5,000,000 / 127⌉ = 157,481.
    let mut settings = settings(&rpc);
    settings.asset.file_name = "holiday-2026-by-the-sea-at-dawn.mp4".into();
    settings.asset.piece_size = 1_065_353_216;
    settings.asset.window_padded = 1 << 20;
    settings.asset.content_type = Some("video/mp4".into());
    settings.expected_size = Some(5_000_000);
    let key = || parse_private_key(KEY, "test").unwrap();
    let refusal = |e: PublishError| match e {
        PublishError::Wallet { .. } => e.to_string(),
        other => panic!("not a wallet refusal: {other}"),
    };
    // 1 USDFC is short; the refusal names the figure.
    let text = refusal(
        Publisher::connect(key(), settings.clone())
            .await
            .err()
            .unwrap(),
    );
    let figure = needed(&text);
    // One wei less is refused before any byte is sent.
    rpc.set_funds(PAYER, figure - U256::from(1));
    let text = refusal(
        Publisher::connect(key(), settings.clone())
            .await
            .err()
            .unwrap(),
    );
    assert!(
        text.contains("deposit 0.000000000000000001 more USDFC"),
        "{text}"
    );
    assert!(
        curio.requests().iter().all(|r| r.path == "/pdp/ping"),
        "nothing but pings reached the provider: {:?}",
        curio.requests()
    );
    // Exactly the figure: the contracts take it all and the upload lands.
    rpc.set_funds(PAYER, figure);
    let publisher = Publisher::connect(key(), settings).await.unwrap();
    let data = common::mp4_like(5_000_000, 44);
    let report = publisher
        .publish(body(&data), Arc::new(|_| {}))
        .await
        .unwrap();
    let ledger = rpc.ledger();
    let ledger = ledger.lock().unwrap();
    assert_eq!(
        ledger.available(PAYER),
        U256::ZERO,
        "funds exactly cover the lockup"
    );
    let set = &ledger.sets[&report.data_set_id];
    assert_eq!(set.leaves, 157_500, "5,000,000 bytes and the manifest");
    assert_eq!(set.pieces, 2);
    // The pre-flight sized the manifest right: the stored one is 586 bytes.
    let manifest: PieceCid = report.asset_id.parse().unwrap();
    assert_eq!(manifest.payload_size(), Some(586));
    // And the figure is the real contracts' threshold (filecoin.md, "Learnt
    // against the real systems"): 0.1 reserve + 1.0 CDN + (⌊5,000,625 ×
    // 2.5e18 / (2^40 × 86,400)⌋ + ⌊0.024e18 / 86,400⌋) × 86,400. (Checked
    // last, so a wrong pre-flight is first caught by the mock chain.)
    assert_eq!(figure, U256::from(1_124_011_370_104_716_800u128));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payer_short_of_the_lockup_is_refused_by_the_chain_through_curio() {
    // A pre-flight that is wrong cannot hide behind the mock: with the
    // pre-flight's figure minus a little deposited *after* the pre-flight,
    // the provider's create-and-add reverts in FilecoinPay and Curio relays
    // it.
    let curio = MockCurio::start();
    let mut spec = ChainSpec::new(vec![(7, curio.url())]);
    spec.prices = fwss_v1_3_prices();
    let rpc = chain_with(spec).await;
    let mut settings = settings(&rpc);
    settings.expected_size = Some(300_000);
    settings.asset.content_type = Some("video/mp4".into());
    let key = parse_private_key(KEY, "test").unwrap();
    let publisher = Publisher::connect(key, settings).await.unwrap();
    // The payer withdraws down to the creation check's 1.124 USDFC: enough
    // to create the set, not for its storage rate.
    rpc.set_funds(PAYER, common_rpc::usdfc_bp(11_240));
    let Err(err) = publisher
        .publish(body(&common::mp4_like(300_000, 45)), Arc::new(|_| {}))
        .await
    else {
        panic!("the chain must refuse");
    };
    let text = err.to_string();
    assert!(text.contains("500"), "{text}");
    assert!(
        text.contains("insufficient funds to cover lockup after function execution"),
        "{text}"
    );
    let ledger = rpc.ledger();
    let ledger = ledger.lock().unwrap();
    assert!(ledger.sets.is_empty(), "nothing was created");
    assert_eq!(ledger.transactions.len(), 1);
}

/// A create-and-add of `cids` whose CreateDataSet names `payer` but is
/// signed by `signer`.
fn create_and_add_hex(signer: &str, payer: Address, payee: Address, cids: &[PieceCid]) -> String {
    use beam_edge::chain::{
        add_pieces_extra_data, cdn_metadata, create_and_add_extra_data, create_data_set_extra_data,
        random_u256,
    };
    let key = parse_private_key(signer, "test").unwrap();
    let fwss = Network::Calibration.contracts().fwss;
    let id = random_u256();
    let create = create_data_set_extra_data(&key, CALIB, fwss, id, payee, &cdn_metadata()).unwrap();
    // Swap in the payer: the signature does not cover it, FWSS recovers the
    // signer and compares.
    let (_, client_id, keys, values, signature) =
        <(Address, U256, Vec<String>, Vec<String>, Bytes)>::abi_decode_params(&create).unwrap();
    let create = Bytes::from((payer, client_id, keys, values, signature).abi_encode_params());
    let pieces: Vec<_> = cids.iter().map(|c| (c.to_bytes(), Vec::new())).collect();
    let add = add_pieces_extra_data(&key, CALIB, fwss, id, random_u256(), &pieces).unwrap();
    format!("{}", create_and_add_extra_data(create, add))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_signed_by_another_key_is_refused_as_curio_relays_the_revert() {
    let curio = MockCurio::start();
    let rpc = chain(curio.url(), true).await;
    let sp = beam_edge::upload::sp::SpClient::new(&curio.url(), SpTimeouts::default()).unwrap();
    let data = common::mp4_like(1000, 46);
    let cid = sp
        .upload_streaming(
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))]),
            1 << 20,
        )
        .await
        .unwrap()
        .piece_cid;
    let fwss = Network::Calibration.contracts().fwss.to_string();
    let other = "0x5678567856785678567856785678567856785678567856785678567856785678";
    // Signed by another key, naming the payer: FWSS's InvalidSignature.
    let extra = create_and_add_hex(other, PAYER, payee_address(7), std::slice::from_ref(&cid));
    let err = sp
        .create_and_add(&fwss, std::slice::from_ref(&cid), &extra)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("500") && text.contains("InvalidSignature"),
        "{text}"
    );
    // The same, signed by the payer, lands.
    let extra = create_and_add_hex(KEY, PAYER, payee_address(7), std::slice::from_ref(&cid));
    let wrong_keeper = "0x0000000000000000000000000000000000000abc";
    let err = sp
        .create_and_add(wrong_keeper, std::slice::from_ref(&cid), &extra)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let tx = sp
        .create_and_add(&fwss, std::slice::from_ref(&cid), &extra)
        .await
        .unwrap();
    sp.wait_created_and_added(&tx).await.unwrap();
    let ledger = rpc.ledger();
    let outcomes: Vec<bool> = ledger
        .lock()
        .unwrap()
        .transactions
        .iter()
        .map(|(_, r)| r.is_ok())
        .collect();
    assert_eq!(
        outcomes,
        vec![false, true],
        "the wrong keeper never reached the chain"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_replaced_by_fee_is_reported_under_the_hash_that_landed() {
    let curio = MockCurio::start();
    curio.configure(|c| c.replace_by_fee = true);
    let rpc = chain(curio.url(), true).await;
    let key = parse_private_key(KEY, "test").unwrap();
    let publisher = Publisher::connect(key, settings(&rpc)).await.unwrap();
    let report = publisher
        .publish(body(&common::mp4_like(300_000, 47)), Arc::new(|_| {}))
        .await
        .unwrap();
    // Curio was polled with the hash it gave...
    let polls = curio.requests_to("GET", "/pdp/data-sets/");
    let sent = polls[0].path.rsplit('/').next().unwrap().to_string();
    assert!(polls.iter().all(|r| r.path.ends_with(&sent)), "{polls:?}");
    // ...and the report names the transaction that landed.
    assert_eq!(
        report.transactions,
        vec![common::mock_curio::replaced_tx_hash(&sent)]
    );
}
