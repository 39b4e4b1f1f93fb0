//! Filecoin chain access: the networks and their contracts, EIP-712
//! `extraData` signing, the payer key, fees, and the read-only contract calls
//! that uploads ([`crate::upload`]) and provider resolution
//! ([`crate::upstream`]) build on. Nothing here knows about either.
//!
//! What it is: everything between "I have a wallet key and an RPC URL" and
//! "I can POST `extraData` to a storage provider's PDP API". It signs the
//! FilecoinWarmStorageService (FWSS) typed data exactly as the reference client
//! (`@filoz/synapse-core` 0.5.2) does, looks up a provider's service URL and
//! payee in the ServiceProviderRegistry, lists the payer's data sets so a
//! `withCDN` one at the chosen provider can be reused (decoding the FWSS
//! view's `DataSetInfoView` by the width of the answer), and summarises
//! whether the wallet can pay ([`WalletReport::problems`]), FWSS's one-time
//! fees and lockups of a planned upload included ([`fees`]).
//!
//! What it is not: it sends no transaction. Depositing USDFC into FilecoinPay
//! and approving FWSS as operator are the payer's own on-chain actions; this
//! module only reports that they are missing. It does not talk to the storage
//! provider's HTTP API either.
//!
//! Use: [`load_signer`] once at start-up, [`ChainReader::new`] with an RPC URL,
//! [`ChainReader::wallet_report`] before any upload, then
//! [`create_data_set_extra_data`] / [`add_pieces_extra_data`] per request with
//! fresh [`random_u256`] ids.

pub mod abi;
mod extra_data;
pub mod fees;
mod key;
mod network;
mod reads;

pub use extra_data::{
    add_pieces_extra_data, cdn_metadata, create_and_add_extra_data, create_data_set_extra_data,
    fwss_domain, random_u256, ExtraDataError, PieceToAdd, MAX_DATA_SET_METADATA_KEYS,
    MAX_DATA_SET_METADATA_VALUE_BYTES, MAX_METADATA_KEY_BYTES, MAX_PIECES_PER_ADD,
    MAX_PIECE_METADATA_KEYS, MAX_PIECE_METADATA_VALUE_BYTES, WITH_CDN_KEY,
};
pub use fees::{CopyPlan, FeeSchedule, FeeSource, UploadCost, UploadPlan};
pub use key::{load_signer, parse_private_key, KeyError, PayerKey, PRIVATE_KEY_ENV};
pub use network::{Contracts, Network};
pub use reads::{
    choose_reusable_data_set, decode_client_data_sets, ChainError, ChainReader, DataSet,
    DataSetInfo, OperatorApproval, PayAccount, ProviderInfo, WalletReport, DATA_SET_INFO_WORDS,
    DATA_SET_INFO_WORDS_LEGACY,
};

/// Re-exported so callers need no direct alloy dependency for the common types.
pub use alloy::primitives::{Address, Bytes, U256};
