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
use alloy::sol_types::SolValue;
use beam_edge::upload::chain::{parse_private_key, Network};
use beam_edge::upload::pipeline::AssetOptions;
use beam_edge::upload::publish::{PublishError, PublishSettings, Publisher};
use beam_edge::upload::sp::SpTimeouts;
use common::mock_curio::MockCurio;
use common_rpc::{chain, MockRpc, KEY, PAYER};

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
    assert_eq!(report.asset_path, format!("/asset/{}", report.asset_id));
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

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_through_the_admin_listener_plays_back_from_asset() {
    let curio = MockCurio::start();
    let rpc = chain(curio.url(), true).await;
    let token = "an-admin-token-for-uploads";
    let upload_yaml = format!(
        "upload:\n  rpc_url: \"{}\"\n  provider_id: 7\n  copies: 1\n  provider_url: \"{}\"\n  piece_size: 200000\n  max_size: 1MiB\n",
        rpc.url(),
        curio.url()
    );
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
        // upload.warm_cache: the upload was written into the cache as it
        // streamed, so the first play is a hit that touches no upstream.
        let path = report["asset_path"].as_str().unwrap().to_string();
        let (s, h, got) = common::raw_get(edge.public, &path, &[]).unwrap();
        assert_eq!(s, 200);
        assert_eq!(h["content-type"], "video/mp4");
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
