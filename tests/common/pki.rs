//! A test PKI made with the `openssl` command line: a P-256 CA and server
//! certificates it signs, for the TLS tests (tests/tls_upgrade.rs and the
//! player over https).

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.crt`) and server certificates signed by it for
/// 127.0.0.1 and localhost, with a chosen serial.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let dir = dir.to_path_buf();
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args([
                "-subj",
                "/CN=beam-edge test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ])
            .current_dir(&dir));
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        Pki { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Writes `<name>.crt` and `<name>.key` (a fresh P-256 key) with `serial`.
    pub fn issue(&self, name: &str, serial: u32) -> (PathBuf, PathBuf) {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-subj", "/CN=localhost", "-keyout", &key])
            .args(["-out", &format!("{name}.csr")])
            .current_dir(&self.dir));
        run(Command::new("openssl")
            .args([
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
            ])
            .args(["-CAkey", "ca.key", "-set_serial", &serial.to_string()])
            .args(["-days", "2", "-extfile", "ext", "-out", &crt])
            .current_dir(&self.dir));
        (self.dir.join(crt), self.dir.join(key))
    }
}

/// The `server.tls` lines of an edge config for this pair.
pub fn tls_lines(cert: &Path, key: &Path) -> String {
    format!(
        "  tls:\n    cert: \"{}\"\n    key: \"{}\"\n",
        cert.display(),
        key.display()
    )
}
