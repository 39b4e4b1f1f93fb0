//! Read-only chain calls over JSON-RPC: chain id, provider lookup, the
//! payer's data sets, and the wallet's ability to pay.
//!
//! Failure semantics: an RPC or decode failure is an error naming the call;
//! "not registered" and "no PDP product" are their own errors so the CLI can
//! say what to fix. Nothing here retries: the caller decides.
//!
//! This file holds the shared plumbing: [`ChainReader`] (one network's
//! contracts behind one JSON-RPC endpoint), the chain-id check, the typed
//! `eth_call` every read goes through, [`ChainError`], and the FWSS state
//! view's address. The reads themselves are split by contract: `registry`
//! (ServiceProviderRegistry: providers), `data_sets` (the FWSS state view and
//! PDPVerifier: the payer's data sets), `payments` (FilecoinPay, USDFC and
//! FIL: whether the wallet can pay), `price_list` (the FWSS state view's
//! price list).

mod data_sets;
mod payments;
mod price_list;
mod registry;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;

use super::abi::IFwss;
#[cfg(doc)]
use super::fees;
use super::network::{Contracts, Network};

pub use data_sets::{
    choose_reusable_data_set, decode_client_data_sets, DataSet, DataSetInfo, DATA_SET_INFO_WORDS,
    DATA_SET_INFO_WORDS_LEGACY,
};
pub use payments::{OperatorApproval, PayAccount, WalletReport};
pub use registry::ProviderInfo;

/// Page size of `getClientDataSets`, as the reference client uses.
const DATA_SETS_PAGE: u64 = 100;

/// Why a chain read failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC URL does not parse.
    #[error("invalid RPC URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// Transport or JSON-RPC error.
    #[error("RPC call {call} failed: {message}")]
    Rpc { call: &'static str, message: String },
    /// The contract reverted.
    #[error("contract call {call} reverted: {message}")]
    Reverted { call: &'static str, message: String },
    /// The answer did not ABI-decode.
    #[error("cannot decode the answer of {call}: {message}")]
    Decode { call: &'static str, message: String },
    /// The RPC endpoint serves another chain than configured.
    #[error("RPC endpoint is on chain {got}{}, expected {expected}", Network::from_chain_id(*got).map_or_else(String::new, |n| format!(" ({})", n.name())))]
    WrongChain { expected: Network, got: u64 },
    /// No provider is registered under this address or id.
    #[error("no storage provider registered as {0}")]
    ProviderNotFound(String),
    /// The provider exists but offers no active PDP product.
    #[error("storage provider {0} has no active PDP product")]
    NoPdpProduct(U256),
    /// The provider's PDP product lacks a usable `serviceURL`.
    #[error("storage provider {0} has no valid serviceURL capability")]
    NoServiceUrl(U256),
    /// A view answered an array whose elements have a width this reader does
    /// not know: the contract changed again. Ids are never guessed.
    #[error(
        "{call} at {contract} answered {width} words per element; this reader knows {known}: \
         the contract's layout changed, refusing to guess data set ids"
    )]
    UnknownLayout {
        /// The function, as `Contract.function`.
        call: &'static str,
        /// The contract asked.
        contract: Address,
        /// Words (32 bytes) per array element in the answer.
        width: usize,
        /// The widths this reader decodes.
        known: &'static str,
    },
}

/// Read-only access to one network's contracts through a JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub struct ChainReader {
    provider: RootProvider,
    network: Network,
    contracts: Contracts,
}

impl ChainReader {
    /// A reader for `network`'s contracts at `rpc_url` (http or https).
    /// Connects lazily; call [`ChainReader::verify_chain`] to check the endpoint.
    pub fn new(rpc_url: &str, network: Network) -> Result<ChainReader, ChainError> {
        ChainReader::with_contracts(rpc_url, network, network.contracts())
    }

    /// As [`ChainReader::new`] with explicit contract addresses (devnets, tests).
    pub fn with_contracts(
        rpc_url: &str,
        network: Network,
        contracts: Contracts,
    ) -> Result<ChainReader, ChainError> {
        let url = alloy::transports::http::reqwest::Url::parse(rpc_url).map_err(|e| {
            ChainError::BadUrl {
                url: rpc_url.to_string(),
                reason: e.to_string(),
            }
        })?;
        // reqwest 0.13 is built without a bundled crypto provider; use ring,
        // as the rest of the binary does. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = ProviderBuilder::default().connect_http(url);
        Ok(ChainReader {
            provider,
            network,
            contracts,
        })
    }

    /// The configured network.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The configured contract addresses.
    pub fn contracts(&self) -> &Contracts {
        &self.contracts
    }

    /// `eth_chainId` of the endpoint.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.provider
            .get_chain_id()
            .await
            .map_err(|e| rpc_error("eth_chainId", e))
    }

    /// Fails with [`ChainError::WrongChain`] unless the endpoint serves the configured network.
    pub async fn verify_chain(&self) -> Result<(), ChainError> {
        let got = self.chain_id().await?;
        if got == self.network.chain_id() {
            Ok(())
        } else {
            Err(ChainError::WrongChain {
                expected: self.network,
                got,
            })
        }
    }

    /// `eth_call` of `call` to `to`, the answer undecoded.
    async fn call_raw<C: SolCall>(
        &self,
        call_name: &'static str,
        to: Address,
        call: C,
    ) -> Result<Bytes, ChainError> {
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(call.abi_encode());
        self.provider
            .call(tx)
            .await
            .map_err(|e| rpc_error(call_name, e))
    }

    async fn call<C: SolCall>(
        &self,
        call_name: &'static str,
        to: Address,
        call: C,
    ) -> Result<C::Return, ChainError> {
        let out = self.call_raw(call_name, to, call).await?;
        C::abi_decode_returns(&out).map_err(|e| ChainError::Decode {
            call: call_name,
            message: e.to_string(),
        })
    }

    /// The FWSS state view contract, read from FWSS (it moves with upgrades).
    pub async fn fwss_view_address(&self) -> Result<Address, ChainError> {
        self.call(
            "FWSS.viewContractAddress",
            self.contracts.fwss,
            IFwss::viewContractAddressCall {},
        )
        .await
    }
}

fn rpc_error(call: &'static str, error: alloy::transports::TransportError) -> ChainError {
    if let Some(payload) = error.as_error_resp() {
        if payload.message.contains("revert") || payload.as_revert_data().is_some() {
            return ChainError::Reverted {
                call,
                message: payload.message.to_string(),
            };
        }
    }
    ChainError::Rpc {
        call,
        message: error.to_string(),
    }
}
