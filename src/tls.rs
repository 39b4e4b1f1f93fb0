//! TLS on the public listener: the certificate and key from `server.tls`
//! (PEM files), served through a rustls [`ResolvesServerCert`] whose
//! certified key is swapped in place on SIGHUP, so a rotated certificate
//! (cert-manager, certbot) takes effect without a restart and without
//! dropping a connection.
//!
//! What it is not: SNI-based selection (one certificate for every name),
//! client-certificate authentication, or OCSP stapling. A reload that fails
//! (missing file, unparsable PEM, key not matching the certificate) keeps the
//! certificate in use and logs why.
//!
//! Pingora 0.9.1's rustls listener (`pingora-core/src/listeners/tls/rustls`)
//! builds one `ServerConfig` per listener at start-up; its
//! `TlsSettings::set_cert_resolver` hook is what lets the key change later.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate load failure, naming the config key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsLoadError {
    /// `server.tls.cert` or `server.tls.key`.
    pub key: &'static str,
    /// What is wrong, with the file name.
    pub reason: String,
}

impl std::fmt::Display for TlsLoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Reads the certificate chain (`cert`, PEM, leaf first) and the private key
/// (`key`, PEM: PKCS#8, PKCS#1 or SEC1) and checks that the key belongs to the
/// leaf certificate.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsLoadError> {
    let cert_err = |reason: String| TlsLoadError {
        key: "server.tls.cert",
        reason,
    };
    let key_err = |reason: String| TlsLoadError {
        key: "server.tls.key",
        reason,
    };
    let cert_pem = std::fs::read(cert)
        .map_err(|e| cert_err(format!("cannot read {}: {e}", cert.display())))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("{} is not valid PEM: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(cert_err(format!(
            "{} holds no CERTIFICATE block",
            cert.display()
        )));
    }
    let key_pem =
        std::fs::read(key).map_err(|e| key_err(format!("cannot read {}: {e}", key.display())))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        key_err(format!(
            "{} holds no usable private key: {e}",
            key.display()
        ))
    })?;
    let provider = crypto_provider();
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| key_err(format!("{}: unsupported private key: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(key_err(format!(
                "{} does not match the certificate in {}",
                key.display(),
                cert.display()
            )))
        }
        // The provider cannot derive the public key of this key type: accept,
        // as rustls itself does (`CertifiedKey::from_der`).
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(cert_err(format!(
            "{}: unusable certificate: {e}",
            cert.display()
        ))),
    }
}

/// The served certificate: one certified key for every handshake, replaced
/// atomically by [`ReloadableCert::reload`].
#[derive(Debug)]
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Loads the pair once; an error names the config key.
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadableCert, TlsLoadError> {
        let certified = load_certified_key(cert, key)?;
        Ok(ReloadableCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(certified)),
        })
    }

    /// Re-reads both files. On success new handshakes get the new pair
    /// (connections already open keep theirs); on failure nothing changes.
    pub fn reload(&self) -> Result<(), TlsLoadError> {
        let certified = Arc::new(load_certified_key(&self.cert, &self.key)?);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = certified;
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Work a SIGHUP does besides the certificate (runs on the SIGHUP thread's runtime).
pub type SighupHook =
    Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// Reloads `cert` on every SIGHUP, on a thread of its own, for the life of
/// the process. The handler is installed before this returns, so a SIGHUP
/// right after start-up reloads instead of killing the process (SIGHUP's
/// default action).
/// Without TLS the certificate part is skipped. `also` runs after it on
/// every SIGHUP (the denylist reload).
pub fn reload_on_sighup(cert: Option<Arc<ReloadableCert>>, also: SighupHook) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the SIGHUP watcher: {e}"))?;
    let mut hangups = runtime
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) })
        .map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
    std::thread::Builder::new()
        .name("beam-edge-sighup".into())
        .spawn(move || {
            runtime.block_on(async move {
                while hangups.recv().await.is_some() {
                    match &cert {
                        None => log::info!("SIGHUP: no server.tls, no certificate to reload"),
                        Some(cert) => match cert.reload() {
                            Ok(()) => log::info!(
                                "SIGHUP: TLS certificate reloaded from {} and {}",
                                cert.cert.display(),
                                cert.key.display()
                            ),
                            Err(e) => {
                                log::error!("SIGHUP: keeping the current TLS certificate: {e}")
                            }
                        },
                    }
                    also().await;
                }
            })
        })
        .map(drop)
        .map_err(|e| format!("cannot start the SIGHUP watcher: {e}"))
}
