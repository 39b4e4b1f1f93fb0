//! The payer's private key: loading, parsing, and keeping it out of logs.
//!
//! Failure semantics: every error names where the key came from and what was
//! wrong with its shape, never the key text itself; `Debug` of [`PayerKey`]
//! shows the address only.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use zeroize::Zeroizing;

/// Environment variable holding the payer key as 0x-prefixed hex.
pub const PRIVATE_KEY_ENV: &str = "BEAM_EDGE_PRIVATE_KEY";

/// Why the payer key could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither a key file nor the environment variable was given.
    #[error("no payer key: set {PRIVATE_KEY_ENV} or give a key file")]
    Missing,
    /// The key file could not be read.
    #[error("cannot read key file {path}: {kind}")]
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// The I/O error kind (the message of an I/O error never holds file contents).
        kind: std::io::ErrorKind,
    },
    /// The text is not a 32-byte hex secp256k1 key.
    #[error("payer key from {origin} is not valid: {reason}")]
    Malformed {
        /// `env BEAM_EDGE_PRIVATE_KEY` or `file <path>`.
        origin: String,
        /// What is wrong, without the key text.
        reason: &'static str,
    },
}

/// The payer wallet's signing key. Cheap to clone; zeroised on drop by k256.
#[derive(Clone)]
pub struct PayerKey {
    signer: PrivateKeySigner,
}

impl PayerKey {
    /// The payer's 0x address (the `payer` in CreateDataSet extraData).
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The alloy signer, for signing typed data.
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }
}

impl std::fmt::Debug for PayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayerKey")
            .field("address", &self.signer.address())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Parses `0x`-prefixed (or bare) hex, surrounding whitespace trimmed.
/// `origin` only labels errors.
pub fn parse_private_key(text: &str, origin: &str) -> Result<PayerKey, KeyError> {
    let malformed = |reason| KeyError::Malformed {
        origin: origin.to_string(),
        reason,
    };
    let trimmed = text.trim();
    let hex = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    if hex.is_empty() {
        return Err(malformed("it is empty"));
    }
    if hex.len() != 64 {
        return Err(malformed("expected 64 hex digits (32 bytes)"));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let hi = hex_digit(pair[0]).ok_or_else(|| malformed("it contains a non-hex character"))?;
        let lo = hex_digit(pair[1]).ok_or_else(|| malformed("it contains a non-hex character"))?;
        bytes[i] = (hi << 4) | lo;
    }
    let signer = PrivateKeySigner::from_slice(bytes.as_slice()).map_err(|_| {
        malformed("it is not a valid secp256k1 secret (zero or above the curve order)")
    })?;
    Ok(PayerKey { signer })
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Loads the payer key: from `key_file` when given (the file holds the hex
/// key, whitespace trimmed), otherwise from [`PRIVATE_KEY_ENV`].
pub fn load_signer(key_file: Option<&Path>) -> Result<PayerKey, KeyError> {
    match key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .map_err(|e| KeyError::Unreadable {
                    path: path.to_path_buf(),
                    kind: e.kind(),
                })?;
            parse_private_key(&text, &format!("file {}", path.display()))
        }
        None => match std::env::var(PRIVATE_KEY_ENV) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                parse_private_key(&text, &format!("env {PRIVATE_KEY_ENV}"))
            }
            Err(std::env::VarError::NotPresent) => Err(KeyError::Missing),
            Err(std::env::VarError::NotUnicode(_)) => Err(KeyError::Malformed {
                origin: format!("env {PRIVATE_KEY_ENV}"),
                reason: "it is not valid UTF-8",
            }),
        },
    }
}
