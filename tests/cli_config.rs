//! The command line and the shipped configuration files: every config under
//! `config/` and `deploy/` validates, every YAML under `deploy/` parses, and
//! bad configs fail with the key's path.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, free_port};

fn run(args: &[&str]) -> (i32, String, String) {
    run_env(args, &[])
}

/// Runs the binary with only `env` of the variables it reads set.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("BEAM_EDGE_ADMIN_TOKEN")
        .env_remove("BEAM_EDGE_PRIVATE_KEY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

#[test]
fn version_is_printed() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("beam-edge {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn shipped_configs_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut configs = vec![
        root.join("config/beam-edge.yaml"),
        root.join("deploy/beam-edge.yaml"),
    ];
    let mut extra = Vec::new();
    yaml_files(&root.join("config"), &mut extra);
    configs.extend(extra);
    // The ConfigMap carries a config too: extract and check it.
    let cm: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("deploy/kubernetes/configmap.yaml")).unwrap(),
    )
    .unwrap();
    let embedded = cm["data"]["beam-edge.yaml"]
        .as_str()
        .expect("configmap has data.beam-edge.yaml");
    let dir = tempfile::tempdir().unwrap();
    let cm_cfg = dir.path().join("configmap-beam-edge.yaml");
    std::fs::write(&cm_cfg, embedded).unwrap();
    configs.push(cm_cfg);
    for c in &configs {
        let (code, out, err) = run(&["check-config", c.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {out}{err}", c.display());
        assert!(out.trim_end().ends_with(": ok"), "{out}");
    }
    // The ConfigMap and the container config say the same thing.
    assert_eq!(
        embedded,
        std::fs::read_to_string(root.join("deploy/beam-edge.yaml")).unwrap()
    );
}

#[test]
fn every_deploy_yaml_parses() {
    let mut files = Vec::new();
    yaml_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"),
        &mut files,
    );
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc);
            assert!(v.is_ok(), "{}: {:?}", f.display(), v.err());
        }
    }
}

use serde::Deserialize as _;

#[test]
fn bad_configs_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("upstream:\n  read_timeout: soon\n", "upstream.read_timeout"),
        ("cache:\n  disk:\n    size: 12 parsecs\n", "cache.disk.size"),
        ("server:\n  listne: \"0.0.0.0:1\"\n", "server.listne"),
        ("admin:\n  listen: \"0.0.0.0:9999\"\n", "admin.token"),
        ("upstream:\n  payer: \"0xnothex\"\n", "upstream.payer"),
        ("metrics:\n  listen: \"not an address\"\n", "metrics.listen"),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&f, yaml).unwrap();
        let (code, _, err) = run(&["check-config", f.to_str().unwrap()]);
        assert_eq!(code, 1, "{yaml}");
        assert!(err.contains(&format!(": {key}: ")), "{yaml} -> {err}");
        // serve refuses to start with the same message.
        let (code, _, err) = run(&["serve", "--config", f.to_str().unwrap()]);
        assert_eq!(code, 2, "{yaml}");
        assert!(err.contains(&format!(": {key}: ")), "{yaml} -> {err}");
    }
    // The token may come from the environment (a Kubernetes secret), for
    // check-config as for serve.
    let f = dir.path().join("token-from-env.yaml");
    std::fs::write(&f, "admin:\n  listen: \"0.0.0.0:9999\"\n").unwrap();
    let (code, out, err) = run_env(
        &["check-config", f.to_str().unwrap()],
        &[("BEAM_EDGE_ADMIN_TOKEN", "a-token-of-sixteen-chars")],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run(&["check-config", "/nonexistent/beam-edge.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the file"), "{err}");
    // A bad flag names the key it overrides.
    let (code, _, err) = run(&["serve", "--network", "moon"]);
    assert_eq!(code, 2);
    assert!(err.contains("upstream.network"), "{err}");
    let (code, _, err) = run(&["serve", "--listen", "nowhere"]);
    assert_eq!(code, 2);
    assert!(err.contains("server.listen"), "{err}");
}

#[test]
fn a_listener_in_use_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(
        &f,
        format!("metrics:\n  listen: \"127.0.0.1:{}\"\n", free_port()),
    )
    .unwrap();
    let (code, _, err) = run(&[
        "serve",
        "--config",
        f.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("server.listen: cannot listen on"), "{err}");
}
