//! `beam-edge wallet` as the real binary, against the mock chain of
//! `tests/common_rpc` on loopback: what it prints for a wallet that can pay,
//! the fixes it lists for one that cannot, and its exit codes (0 ready,
//! 1 not ready or unreachable, 2 bad configuration). The chain reads behind
//! it are checked call by call in `tests/upload_chain.rs`.

mod common_rpc;

use std::path::Path;
use std::process::Output;

use common_rpc::{chain, KEY, PAYER};

/// Writes the payer key and a config naming `rpc_url` and that key into
/// `dir`, and runs `beam-edge wallet --config … --network calibration`.
async fn wallet(dir: &Path, rpc_url: &str) -> Output {
    let key = dir.join("payer.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let config = dir.join("beam-edge.yaml");
    std::fs::write(
        &config,
        format!(
            "upload:\n  rpc_url: \"{rpc_url}\"\n  key_file: \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_beam-edge"))
        .arg("wallet")
        .arg("--config")
        .arg(&config)
        .args(["--network", "calibration"])
        .output()
        .await
        .unwrap()
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funded_approved_wallet_is_reported_ready_with_exit_0() {
    let rpc = chain("http://127.0.0.1:9".into(), true).await;
    let dir = tempfile::tempdir().unwrap();
    let out = wallet(dir.path(), &rpc.url()).await;
    let stdout = lines(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The mock chain: 1 FIL, 20 USDFC in the wallet, 10 deposited with no lockup.
    assert_eq!(
        stdout[..6],
        [
            format!("payer        {PAYER}"),
            "network      Calibration".to_string(),
            "FIL          1.000000000000000000".to_string(),
            "USDFC        20.000000000000000000".to_string(),
            "FilecoinPay  10.000000000000000000 USDFC deposited, 10.000000000000000000 available"
                .to_string(),
            "FWSS         approved as operator".to_string(),
        ],
        "{stdout:#?}"
    );
    assert!(
        stdout[6].starts_with("FWSS fees    create data set ")
            && stdout[6].ends_with(" (from the chain)"),
        "{stdout:#?}"
    );
    assert_eq!(stdout.len(), 7, "nothing to do: {stdout:#?}");
    // It checked the chain, then read the payer's accounts once each.
    let log = rpc.log();
    assert_eq!(
        log.first().map(String::as_str),
        Some("eth_chainId"),
        "{log:?}"
    );
    for call in [
        "eth_getBalance",
        "eth_call:balanceOf(address)",
        "eth_call:accounts(address,address)",
        "eth_call:operatorApprovals(address,address,address)",
        "eth_call:getPriceList()",
    ] {
        assert_eq!(rpc.count(call), 1, "{call}: {log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfunded_wallet_lists_what_to_do_with_exit_1() {
    let rpc = chain("http://127.0.0.1:9".into(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let out = wallet(dir.path(), &rpc.url()).await;
    let stdout = lines(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout:#?}");
    assert!(
        stdout.contains(&"FWSS         NOT approved as operator".to_string()),
        "{stdout:#?}"
    );
    let to_do: Vec<&String> = stdout
        .iter()
        .filter(|l| l.starts_with("to do        "))
        .collect();
    assert_eq!(to_do.len(), 2, "{stdout:#?}");
    assert!(
        to_do[0].contains("deposit USDFC into FilecoinPay"),
        "{to_do:#?}"
    );
    assert!(to_do[1].contains("approve FWSS"), "{to_do:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_is_not_the_configured_network_is_refused_with_exit_1() {
    // A JSON-RPC server of mainnet (314) behind a config that says calibration.
    let rpc = common_rpc::MockRpc::start(314).await;
    let dir = tempfile::tempdir().unwrap();
    let out = wallet(dir.path(), &rpc.url()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{:?}", lines(&out));
    assert!(stderr.starts_with("beam-edge wallet: "), "{stderr}");
    assert!(stderr.contains("314"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_error_names_the_key_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("beam-edge.yaml");
    std::fs::write(&config, "upload:\n  rpc_urll: \"http://127.0.0.1:9\"\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_beam-edge"))
        .arg("wallet")
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("upload.rpc_urll"), "{stderr}");
}
