//! FWSS `extraData`: EIP-712 signatures ABI-encoded the way the contract and
//! Curio expect (filecoin.md, "Signatures"; synapse-core `typed-data/*.ts`).
//!
//! Metadata is sorted by key (byte order) and validated against the deployed
//! contract's limits before anything is signed, so a bad request fails here
//! with a clear message instead of as an opaque on-chain revert.

use std::collections::BTreeMap;

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::sol_types::{Eip712Domain, SolStruct, SolValue};

use super::abi::{AddPieces, Cid, CreateDataSet, MetadataEntry, PieceMetadata};
use super::key::PayerKey;

/// Data-set metadata key that turns on the FilBeam CDN (value `""`).
pub const WITH_CDN_KEY: &str = "withCDN";
/// At most this many metadata keys per data set.
pub const MAX_DATA_SET_METADATA_KEYS: usize = 10;
/// Longest data-set metadata value in bytes (the SDK's contract table).
pub const MAX_DATA_SET_METADATA_VALUE_BYTES: usize = 128;
/// At most this many metadata keys per piece (deployed contract; the SDK still says 5).
pub const MAX_PIECE_METADATA_KEYS: usize = 3;
/// Longest piece metadata value in bytes (deployed contract; the SDK still says 128).
pub const MAX_PIECE_METADATA_VALUE_BYTES: usize = 96;
/// Longest metadata key in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 32;
/// At most this many pieces per add-pieces call.
pub const MAX_PIECES_PER_ADD: usize = 40;

/// One piece to sign into AddPieces: its binary CID bytes
/// (`PieceCid::to_bytes()`) and its metadata (sorted and validated here).
pub type PieceToAdd = (Vec<u8>, Vec<(String, String)>);

/// Why `extraData` could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtraDataError {
    /// Too many data-set metadata keys.
    #[error(
        "data set metadata has {count} keys; at most {MAX_DATA_SET_METADATA_KEYS} are allowed"
    )]
    TooManyDataSetKeys { count: usize },
    /// Too many metadata keys on one piece.
    #[error(
        "piece {piece} has {count} metadata keys; at most {MAX_PIECE_METADATA_KEYS} are allowed"
    )]
    TooManyPieceKeys { piece: usize, count: usize },
    /// A key is longer than [`MAX_METADATA_KEY_BYTES`].
    #[error("metadata key {key:?} is {len} bytes; at most {MAX_METADATA_KEY_BYTES} are allowed")]
    KeyTooLong { key: String, len: usize },
    /// A value is too long.
    #[error("metadata value of key {key:?} is {len} bytes; at most {max} are allowed")]
    ValueTooLong { key: String, len: usize, max: usize },
    /// The same key twice in one metadata list.
    #[error("metadata key {key:?} appears more than once")]
    DuplicateKey { key: String },
    /// An empty metadata key.
    #[error("metadata key must not be empty")]
    EmptyKey,
    /// No pieces in an add-pieces call.
    #[error("an add-pieces call needs at least one piece")]
    NoPieces,
    /// More than [`MAX_PIECES_PER_ADD`] pieces.
    #[error("{count} pieces in one add-pieces call; at most {MAX_PIECES_PER_ADD} are allowed")]
    TooManyPieces { count: usize },
    /// A piece with empty CID bytes.
    #[error("piece {piece} has empty CID bytes")]
    EmptyCid { piece: usize },
    /// The signer failed (not expected for a local key).
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The metadata of a CDN data set: `[("withCDN", "")]`.
pub fn cdn_metadata() -> Vec<(String, String)> {
    vec![(WITH_CDN_KEY.to_string(), String::new())]
}

/// The FWSS EIP-712 domain: name `FilecoinWarmStorageService`, version `1`.
pub fn fwss_domain(chain_id: u64, fwss: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some("FilecoinWarmStorageService".into()),
        Some("1".into()),
        Some(U256::from(chain_id)),
        Some(fwss),
        None,
    )
}

/// A uniformly random uint256 from the OS CSPRNG, for `clientDataSetId` and
/// the AddPieces `nonce` (one replay-protection space per payer: never reuse).
pub fn random_u256() -> U256 {
    let mut bytes = [0u8; 32];
    // The OS RNG failing is unrecoverable: a predictable nonce must never be signed.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("OS random number generator unavailable");
    U256::from_be_bytes(bytes)
}

/// Validates and sorts one metadata list.
fn sorted_metadata(
    metadata: &[(String, String)],
    max_keys: usize,
    max_value: usize,
    too_many: impl FnOnce(usize) -> ExtraDataError,
) -> Result<Vec<MetadataEntry>, ExtraDataError> {
    if metadata.len() > max_keys {
        return Err(too_many(metadata.len()));
    }
    let mut sorted = BTreeMap::new();
    for (key, value) in metadata {
        if key.is_empty() {
            return Err(ExtraDataError::EmptyKey);
        }
        if key.len() > MAX_METADATA_KEY_BYTES {
            return Err(ExtraDataError::KeyTooLong {
                key: key.clone(),
                len: key.len(),
            });
        }
        if value.len() > max_value {
            return Err(ExtraDataError::ValueTooLong {
                key: key.clone(),
                len: value.len(),
                max: max_value,
            });
        }
        if sorted.insert(key.as_str(), value.as_str()).is_some() {
            return Err(ExtraDataError::DuplicateKey { key: key.clone() });
        }
    }
    Ok(sorted
        .into_iter()
        .map(|(k, v)| MetadataEntry {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect())
}

fn sign(signer: &PayerKey, hash: &alloy::primitives::B256) -> Result<Bytes, ExtraDataError> {
    let signature = signer
        .signer()
        .sign_hash_sync(hash)
        .map_err(|e| ExtraDataError::Signing(e.to_string()))?;
    // r || s || v with v = 27 / 28, as viem encodes it.
    Ok(Bytes::from(signature.as_bytes().to_vec()))
}

fn split(entries: &[MetadataEntry]) -> (Vec<String>, Vec<String>) {
    entries
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .unzip()
}

/// `extraData` for creating a data set: ABI `(address payer, uint256
/// clientDataSetId, string[] keys, string[] values, bytes signature)` over an
/// EIP-712 `CreateDataSet` signed by `signer` (the payer).
pub fn create_data_set_extra_data(
    signer: &PayerKey,
    chain_id: u64,
    fwss: Address,
    client_data_set_id: U256,
    payee: Address,
    metadata: &[(String, String)],
) -> Result<Bytes, ExtraDataError> {
    let entries = sorted_metadata(
        metadata,
        MAX_DATA_SET_METADATA_KEYS,
        MAX_DATA_SET_METADATA_VALUE_BYTES,
        |count| ExtraDataError::TooManyDataSetKeys { count },
    )?;
    let (keys, values) = split(&entries);
    let message = CreateDataSet {
        clientDataSetId: client_data_set_id,
        payee,
        metadata: entries,
    };
    let signature = sign(
        signer,
        &message.eip712_signing_hash(&fwss_domain(chain_id, fwss)),
    )?;
    let encoded = (
        signer.address(),
        client_data_set_id,
        keys,
        values,
        signature,
    )
        .abi_encode_params();
    Ok(Bytes::from(encoded))
}

/// `extraData` for adding pieces: ABI `(uint256 nonce, string[][] keys,
/// string[][] values, bytes signature)` over an EIP-712 `AddPieces`.
/// `pieces` holds each piece's binary CID bytes and its metadata.
pub fn add_pieces_extra_data(
    signer: &PayerKey,
    chain_id: u64,
    fwss: Address,
    client_data_set_id: U256,
    nonce: U256,
    pieces: &[PieceToAdd],
) -> Result<Bytes, ExtraDataError> {
    if pieces.is_empty() {
        return Err(ExtraDataError::NoPieces);
    }
    if pieces.len() > MAX_PIECES_PER_ADD {
        return Err(ExtraDataError::TooManyPieces {
            count: pieces.len(),
        });
    }
    let mut piece_data = Vec::with_capacity(pieces.len());
    let mut piece_metadata = Vec::with_capacity(pieces.len());
    let mut keys = Vec::with_capacity(pieces.len());
    let mut values = Vec::with_capacity(pieces.len());
    for (index, (cid, metadata)) in pieces.iter().enumerate() {
        if cid.is_empty() {
            return Err(ExtraDataError::EmptyCid { piece: index });
        }
        let entries = sorted_metadata(
            metadata,
            MAX_PIECE_METADATA_KEYS,
            MAX_PIECE_METADATA_VALUE_BYTES,
            |count| ExtraDataError::TooManyPieceKeys {
                piece: index,
                count,
            },
        )?;
        let (k, v) = split(&entries);
        keys.push(k);
        values.push(v);
        piece_data.push(Cid {
            data: Bytes::from(cid.clone()),
        });
        piece_metadata.push(PieceMetadata {
            pieceIndex: U256::from(index),
            metadata: entries,
        });
    }
    let message = AddPieces {
        clientDataSetId: client_data_set_id,
        nonce,
        pieceData: piece_data,
        pieceMetadata: piece_metadata,
    };
    let signature = sign(
        signer,
        &message.eip712_signing_hash(&fwss_domain(chain_id, fwss)),
    )?;
    Ok(Bytes::from(
        (nonce, keys, values, signature).abi_encode_params(),
    ))
}

/// `extraData` for `POST /pdp/data-sets/create-and-add`: ABI `(bytes, bytes)`.
/// Both parts must be signed with the same `clientDataSetId`.
pub fn create_and_add_extra_data(create: Bytes, add: Bytes) -> Bytes {
    Bytes::from((create, add).abi_encode_params())
}
