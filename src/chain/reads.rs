//! Read-only chain calls over JSON-RPC: chain id, provider lookup, the
//! payer's data sets, and the wallet's ability to pay.
//!
//! Failure semantics: an RPC or decode failure is an error naming the call;
//! "not registered" and "no PDP product" are their own errors so the CLI can
//! say what to fix. Nothing here retries: the caller decides.

use std::collections::BTreeMap;

use alloy::network::TransactionBuilder;
use alloy::primitives::utils::format_units;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;

use super::abi::{
    IErc20, IFilecoinPay, IFwss, IFwssView, IFwssViewLegacy, IPdpVerifier,
    IServiceProviderRegistry, PRODUCT_TYPE_PDP,
};
use super::extra_data::WITH_CDN_KEY;
use super::fees::{upload_cost, FeeSchedule, FeeSource, UploadCost, UploadPlan};
use super::network::{Contracts, Network};

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

/// A storage provider as the ServiceProviderRegistry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Registry id.
    pub id: U256,
    /// The provider's own address (the registered `serviceProvider`).
    pub service_provider: Address,
    /// Where payments go: the `payee` of a CreateDataSet signature.
    pub payee: Address,
    /// Registered name.
    pub name: String,
    /// Whether the provider is active in the registry.
    pub is_active: bool,
    /// Base URL of its PDP HTTP API (`serviceURL` capability), no trailing `/`.
    pub service_url: String,
    /// All PDP capabilities, raw values (e.g. `location`, `maxPieceSizeInBytes`).
    pub capabilities: BTreeMap<String, Bytes>,
}

/// One of the payer's data sets, with what reuse needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSet {
    /// On-chain data set id (PDPVerifier set id).
    pub data_set_id: U256,
    /// The `clientDataSetId` it was created with: sign AddPieces with it.
    pub client_data_set_id: U256,
    /// Registry id of its storage provider.
    pub provider_id: U256,
    /// The provider's payee.
    pub payee: Address,
    /// The provider's address.
    pub service_provider: Address,
    /// FilecoinPay rail paying for PDP storage.
    pub pdp_rail_id: U256,
    /// FilecoinPay rail paying FilBeam (0 when the CDN is off).
    pub cdn_rail_id: U256,
    /// Non-zero once the service was terminated.
    pub pdp_end_epoch: U256,
    /// Data-set metadata, sorted by key.
    pub metadata: Vec<(String, String)>,
    /// PDPVerifier says the set exists.
    pub live: bool,
    /// Its PDPVerifier listener is this network's FWSS.
    pub managed_by_fwss: bool,
    /// Pieces currently in the set.
    pub active_piece_count: U256,
    /// One-time fees (AddPieces, CreateDataSet) queued on the set and not yet
    /// paid out of its lifecycle reserve; `None` from a view older than the
    /// FWSS change of 2026-06-11.
    pub pending_one_time_payments: Option<U256>,
    /// What is left of the set's lifecycle reserve (the PDP rail's fixed
    /// lockup that pays one-time fees); `None` from an older view.
    pub lifecycle_reserve_balance: Option<U256>,
}

/// One element of `getClientDataSets`, whichever layout the view answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSetInfo {
    /// FilecoinPay rail paying for PDP storage.
    pub pdp_rail_id: U256,
    /// FilecoinPay rail paying FilBeam cache misses.
    pub cache_miss_rail_id: U256,
    /// FilecoinPay rail paying FilBeam (0 when the CDN is off).
    pub cdn_rail_id: U256,
    /// The payer.
    pub payer: Address,
    /// The provider's payee.
    pub payee: Address,
    /// The provider's address.
    pub service_provider: Address,
    /// FWSS commission in basis points.
    pub commission_bps: U256,
    /// The `clientDataSetId` the set was created with.
    pub client_data_set_id: U256,
    /// Non-zero once the service was terminated.
    pub pdp_end_epoch: U256,
    /// Registry id of the provider.
    pub provider_id: U256,
    /// Queued one-time fees (13-word layout only).
    pub pending_one_time_payments: Option<U256>,
    /// Lifecycle reserve left (13-word layout only).
    pub lifecycle_reserve_balance: Option<U256>,
    /// On-chain data set id.
    pub data_set_id: U256,
}

/// Words per `DataSetInfoView` before the FWSS change of 2026-06-11.
pub const DATA_SET_INFO_WORDS_LEGACY: usize = 11;
/// Words per `DataSetInfoView` since the FWSS change of 2026-06-11
/// (`uint96 pendingOneTimePayments, uint96 lifecycleReserveBalance` after
/// `providerId`; filecoin-services of 2026-08-06).
pub const DATA_SET_INFO_WORDS: usize = 13;

/// Decodes the answer of `getClientDataSets(address,uint256,uint256)` from
/// `contract`, choosing the layout from the data: the answer is one dynamic
/// array of static tuples (offset word, length word, then `length` elements
/// of equal width), so the width is the words after the length divided by
/// the length. 11 and 13 words decode; any other width is
/// [`ChainError::UnknownLayout`], never a misread id.
pub fn decode_client_data_sets(
    raw: &[u8],
    contract: Address,
) -> Result<Vec<DataSetInfo>, ChainError> {
    const CALL: &str = "FWSSView.getClientDataSets";
    let bad = |message: String| ChainError::Decode {
        call: CALL,
        message,
    };
    if raw.len() < 64 || !raw.len().is_multiple_of(32) {
        return Err(bad(format!(
            "{} bytes is not an ABI-encoded dynamic array",
            raw.len()
        )));
    }
    let word = |i: usize| U256::from_be_slice(&raw[i * 32..(i + 1) * 32]);
    if word(0) != U256::from(32) {
        return Err(bad(format!("array offset {} is not 32", word(0))));
    }
    let len = word(1);
    let words_after = raw.len() / 32 - 2;
    if len == U256::ZERO {
        return Ok(Vec::new());
    }
    if len > U256::from(words_after) {
        return Err(bad(format!(
            "{len} elements cannot fit in {words_after} words"
        )));
    }
    let len = len.to::<usize>();
    if !words_after.is_multiple_of(len) {
        return Err(bad(format!(
            "{words_after} words do not split into {len} equal elements"
        )));
    }
    // The two layouts are two generated types with the same field names; the
    // old one lacks the two fee fields.
    macro_rules! data_set_info {
        ($i:ident, $pending:expr, $reserve:expr) => {
            DataSetInfo {
                pdp_rail_id: $i.pdpRailId,
                cache_miss_rail_id: $i.cacheMissRailId,
                cdn_rail_id: $i.cdnRailId,
                payer: $i.payer,
                payee: $i.payee,
                service_provider: $i.serviceProvider,
                commission_bps: $i.commissionBps,
                client_data_set_id: $i.clientDataSetId,
                pdp_end_epoch: $i.pdpEndEpoch,
                provider_id: $i.providerId,
                pending_one_time_payments: $pending,
                lifecycle_reserve_balance: $reserve,
                data_set_id: $i.dataSetId,
            }
        };
    }
    let width = words_after / len;
    let known = "11 (before the FWSS change of 2026-06-11) and 13 (since)";
    match width {
        DATA_SET_INFO_WORDS => {
            let infos = <IFwssView::getClientDataSetsCall as SolCall>::abi_decode_returns(raw)
                .map_err(|e| bad(e.to_string()))?;
            Ok(infos
                .into_iter()
                .map(|i| {
                    data_set_info!(
                        i,
                        Some(U256::from(i.pendingOneTimePayments)),
                        Some(U256::from(i.lifecycleReserveBalance))
                    )
                })
                .collect())
        }
        DATA_SET_INFO_WORDS_LEGACY => {
            let infos =
                <IFwssViewLegacy::getClientDataSetsCall as SolCall>::abi_decode_returns(raw)
                    .map_err(|e| bad(e.to_string()))?;
            Ok(infos
                .into_iter()
                .map(|i| data_set_info!(i, None, None))
                .collect())
        }
        width => Err(ChainError::UnknownLayout {
            call: CALL,
            contract,
            width,
            known,
        }),
    }
}

impl DataSet {
    /// CDN on: a CDN rail and the `withCDN` metadata key, as the reference client decides.
    pub fn has_cdn(&self) -> bool {
        self.cdn_rail_id > U256::ZERO && self.metadata.iter().any(|(k, _)| k == WITH_CDN_KEY)
    }

    /// Can take new pieces: live, managed by FWSS, not terminated.
    pub fn is_usable(&self) -> bool {
        self.live && self.managed_by_fwss && self.pdp_end_epoch == U256::ZERO
    }
}

/// Picks the data set to add pieces to, or `None` to create one: usable, at
/// `provider_id`, with exactly the `wanted` metadata (and a CDN rail when
/// `withCDN` is wanted). Like the reference client, prefers a set that already
/// holds pieces, then the lowest id.
pub fn choose_reusable_data_set<'a>(
    data_sets: &'a [DataSet],
    provider_id: U256,
    wanted: &[(String, String)],
) -> Option<&'a DataSet> {
    let wanted_map: BTreeMap<&str, &str> = wanted
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let wants_cdn = wanted_map.contains_key(WITH_CDN_KEY);
    data_sets
        .iter()
        .filter(|ds| ds.is_usable() && ds.provider_id == provider_id)
        .filter(|ds| {
            let have: BTreeMap<&str, &str> = ds
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            have == wanted_map && (!wants_cdn || ds.has_cdn())
        })
        .min_by_key(|ds| (ds.active_piece_count == U256::ZERO, ds.data_set_id))
}

/// The payer's FilecoinPay account for USDFC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PayAccount {
    /// Deposited funds.
    pub funds: U256,
    /// Lockup at the last settlement.
    pub lockup_current: U256,
    /// Lockup added per epoch.
    pub lockup_rate: U256,
    /// Epoch of the last settlement.
    pub lockup_last_settled_at: U256,
    /// `funds` minus lockup projected to the current epoch (never below 0).
    pub available: U256,
}

/// FWSS's operator approval on the payer's FilecoinPay account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperatorApproval {
    /// FWSS may create rails for the payer.
    pub is_approved: bool,
    /// Allowed total payment rate.
    pub rate_allowance: U256,
    /// Allowed total lockup.
    pub lockup_allowance: U256,
    /// Rate in use.
    pub rate_usage: U256,
    /// Lockup in use.
    pub lockup_usage: U256,
    /// Longest lockup period allowed.
    pub max_lockup_period: U256,
}

/// Whether the payer wallet can pay for uploads, read before any upload starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletReport {
    /// The network read.
    pub network: Network,
    /// The payer wallet.
    pub payer: Address,
    /// Contracts consulted.
    pub contracts: Contracts,
    /// FIL balance (attoFIL), for gas of the payer's own transactions.
    pub fil_balance: U256,
    /// USDFC held in the wallet (not yet deposited).
    pub usdfc_balance: U256,
    /// USDFC deposited in FilecoinPay.
    pub account: PayAccount,
    /// FWSS as operator.
    pub approval: OperatorApproval,
    /// What the planned upload needs up front, when one is planned
    /// ([`WalletReport::with_upload_cost`]); `None` checks only the basics.
    pub upload: Option<UploadCost>,
}

fn tokens(amount: U256, symbol: &str) -> String {
    match format_units(amount, 18) {
        Ok(s) => {
            let s = s.trim_end_matches('0').trim_end_matches('.');
            format!("{s} {symbol}")
        }
        Err(_) => format!("{amount} atto{symbol}"),
    }
}

impl WalletReport {
    /// What the payer must do before a provider accepts a data set, as
    /// human-readable fixes; empty when the wallet is ready.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let pay = self.contracts.filecoin_pay;
        if self.account.available == U256::ZERO {
            if self.usdfc_balance == U256::ZERO {
                problems.push(format!(
                    "the wallet {} holds no USDFC and has none available in FilecoinPay: acquire USDFC ({}), then deposit USDFC into FilecoinPay ({pay})",
                    self.payer, self.contracts.usdfc
                ));
            } else {
                problems.push(format!(
                    "deposit USDFC into FilecoinPay ({pay}): {} available there, {} in the wallet",
                    tokens(self.account.available, "USDFC"),
                    tokens(self.usdfc_balance, "USDFC")
                ));
            }
        }
        if !self.approval.is_approved {
            problems.push(format!(
                "approve FWSS ({}) as operator in FilecoinPay ({pay}) for USDFC (setOperatorApproval)",
                self.contracts.fwss
            ));
        } else if self.approval.rate_allowance <= self.approval.rate_usage
            || self.approval.lockup_allowance <= self.approval.lockup_usage
        {
            problems.push(format!(
                "raise FWSS's operator allowances in FilecoinPay ({pay}): rate or lockup allowance is used up"
            ));
        }
        if let Some(cost) = &self.upload {
            let what = || {
                let copies = cost.copies.len();
                let created = cost.copies.iter().filter(|c| c.new_data_set).count();
                let source = match cost.fees.source {
                    FeeSource::Chain => "FWSS's price list",
                    FeeSource::Documented => "FWSS v1.3.0's documented price list",
                };
                format!(
                    "this upload ({copies} cop{}, {created} new data set{}) needs {} of new lockup in FilecoinPay, \
                     out of which {} of one-time FWSS fees are paid ({source})",
                    if copies == 1 { "y" } else { "ies" },
                    if created == 1 { "" } else { "s" },
                    tokens(cost.required, "USDFC"),
                    tokens(cost.one_time_fees, "USDFC"),
                )
            };
            if self.account.available < cost.required {
                problems.push(format!(
                    "{}; {} is available: deposit {} more USDFC into FilecoinPay ({pay})",
                    what(),
                    tokens(self.account.available, "USDFC"),
                    tokens(cost.required - self.account.available, "USDFC")
                        .trim_end_matches(" USDFC"),
                ));
            }
            let allowance_left = self
                .approval
                .lockup_allowance
                .saturating_sub(self.approval.lockup_usage);
            if self.approval.is_approved && allowance_left < cost.required {
                problems.push(format!(
                    "{}; FWSS's lockup allowance has {} left: raise it by {} in FilecoinPay ({pay})",
                    what(),
                    tokens(allowance_left, "USDFC"),
                    tokens(cost.required - allowance_left, "USDFC"),
                ));
            }
            let rate_left = self
                .approval
                .rate_allowance
                .saturating_sub(self.approval.rate_usage);
            if self.approval.is_approved && rate_left < cost.rate_increase {
                problems.push(format!(
                    "{}; its storage raises FWSS's payment rate by {} per epoch and FWSS's rate allowance has {} left: raise it by {} in FilecoinPay ({pay})",
                    what(),
                    tokens(cost.rate_increase, "USDFC"),
                    tokens(rate_left, "USDFC"),
                    tokens(cost.rate_increase - rate_left, "USDFC"),
                ));
            }
        }
        if !problems.is_empty() && self.fil_balance == U256::ZERO {
            problems.push(format!(
                "send FIL to {} to pay gas for those transactions (balance is 0)",
                self.payer
            ));
        }
        problems
    }

    /// No problems: uploads may start.
    pub fn is_ready(&self) -> bool {
        self.problems().is_empty()
    }

    /// This report, also checking that the funds and FWSS's lockup allowance
    /// cover `cost` (see [`super::fees`]).
    pub fn with_upload_cost(mut self, cost: UploadCost) -> WalletReport {
        self.upload = Some(cost);
        self
    }
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

    /// The provider registered under `id`, with its PDP service URL and payee.
    pub async fn provider_by_id(&self, id: U256) -> Result<ProviderInfo, ChainError> {
        let call = IServiceProviderRegistry::getProviderWithProductCall {
            providerId: id,
            productType: PRODUCT_TYPE_PDP,
        };
        let answer = match self
            .call(
                "ServiceProviderRegistry.getProviderWithProduct",
                self.contracts.sp_registry,
                call,
            )
            .await
        {
            Ok(answer) => answer,
            // The registry reverts for unknown ids ("Provider does not exist").
            Err(ChainError::Reverted { .. }) => {
                return Err(ChainError::ProviderNotFound(format!("id {id}")))
            }
            Err(e) => return Err(e),
        };
        let product = &answer.product;
        if !product.isActive || product.capabilityKeys.is_empty() {
            return Err(ChainError::NoPdpProduct(id));
        }
        let capabilities: BTreeMap<String, Bytes> = product
            .capabilityKeys
            .iter()
            .cloned()
            .zip(answer.productCapabilityValues.iter().cloned())
            .collect();
        let service_url = capabilities
            .get("serviceURL")
            .and_then(|raw| String::from_utf8(raw.to_vec()).ok())
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .ok_or(ChainError::NoServiceUrl(id))?;
        let info = answer.providerInfo;
        Ok(ProviderInfo {
            id: answer.providerId,
            service_provider: info.serviceProvider,
            payee: info.payee,
            name: info.name,
            is_active: info.isActive,
            service_url,
            capabilities,
        })
    }

    /// The provider registered with `address` as its service-provider address.
    pub async fn provider_by_address(&self, address: Address) -> Result<ProviderInfo, ChainError> {
        let call = IServiceProviderRegistry::getProviderIdByAddressCall {
            providerAddress: address,
        };
        let id = self
            .call(
                "ServiceProviderRegistry.getProviderIdByAddress",
                self.contracts.sp_registry,
                call,
            )
            .await?;
        if id == U256::ZERO {
            return Err(ChainError::ProviderNotFound(format!("address {address}")));
        }
        self.provider_by_id(id).await
    }

    /// Every data set `payer` created through FWSS, with metadata and PDPVerifier state.
    pub async fn client_data_sets(&self, payer: Address) -> Result<Vec<DataSet>, ChainError> {
        let view = self.fwss_view_address().await?;
        let mut infos = Vec::new();
        let mut offset = 0u64;
        loop {
            let call = IFwssView::getClientDataSetsCall {
                client: payer,
                offset: U256::from(offset),
                limit: U256::from(DATA_SETS_PAGE),
            };
            let raw = self
                .call_raw("FWSSView.getClientDataSets", view, call)
                .await?;
            let page = decode_client_data_sets(&raw, view)?;
            let len = page.len() as u64;
            infos.extend(page);
            if len < DATA_SETS_PAGE {
                break;
            }
            offset += len;
        }
        let mut data_sets = Vec::with_capacity(infos.len());
        for info in infos {
            data_sets.push(self.data_set_details(view, info).await?);
        }
        Ok(data_sets)
    }

    async fn data_set_details(
        &self,
        view: Address,
        info: DataSetInfo,
    ) -> Result<DataSet, ChainError> {
        let id = info.data_set_id;
        let meta = self
            .call(
                "FWSSView.getAllDataSetMetadata",
                view,
                IFwssView::getAllDataSetMetadataCall { dataSetId: id },
            )
            .await?;
        let mut metadata: Vec<(String, String)> = meta.keys.into_iter().zip(meta.values).collect();
        metadata.sort();
        let pdp = self.contracts.pdp_verifier;
        let live = self
            .call(
                "PDPVerifier.dataSetLive",
                pdp,
                IPdpVerifier::dataSetLiveCall { setId: id },
            )
            .await?;
        // A deleted set has no listener or pieces to ask about.
        let (managed_by_fwss, active_piece_count) = if live {
            let listener = self
                .call(
                    "PDPVerifier.getDataSetListener",
                    pdp,
                    IPdpVerifier::getDataSetListenerCall { setId: id },
                )
                .await?;
            let count = self
                .call(
                    "PDPVerifier.getActivePieceCount",
                    pdp,
                    IPdpVerifier::getActivePieceCountCall { setId: id },
                )
                .await?;
            (listener == self.contracts.fwss, count)
        } else {
            (false, U256::ZERO)
        };
        Ok(DataSet {
            data_set_id: id,
            client_data_set_id: info.client_data_set_id,
            provider_id: info.provider_id,
            payee: info.payee,
            service_provider: info.service_provider,
            pdp_rail_id: info.pdp_rail_id,
            cdn_rail_id: info.cdn_rail_id,
            pdp_end_epoch: info.pdp_end_epoch,
            metadata,
            live,
            managed_by_fwss,
            active_piece_count,
            pending_one_time_payments: info.pending_one_time_payments,
            lifecycle_reserve_balance: info.lifecycle_reserve_balance,
        })
    }

    /// The 32-byte leaves holding data in live data set `data_set_id`
    /// (PDPVerifier `getDataSetLeafCount`): what FWSS prices its storage
    /// from, so what an upload into it adds to.
    pub async fn data_set_leaf_count(&self, data_set_id: U256) -> Result<U256, ChainError> {
        self.call(
            "PDPVerifier.getDataSetLeafCount",
            self.contracts.pdp_verifier,
            IPdpVerifier::getDataSetLeafCountCall { setId: data_set_id },
        )
        .await
    }

    /// The data set to reuse for `payer` at `provider_id` with `wanted`
    /// metadata (see [`choose_reusable_data_set`]), or `None` to create one.
    pub async fn find_reusable_data_set(
        &self,
        payer: Address,
        provider_id: U256,
        wanted: &[(String, String)],
    ) -> Result<Option<DataSet>, ChainError> {
        let data_sets = self.client_data_sets(payer).await?;
        Ok(choose_reusable_data_set(&data_sets, provider_id, wanted).cloned())
    }

    /// FIL balance in attoFIL (`eth_getBalance`).
    pub async fn fil_balance(&self, address: Address) -> Result<U256, ChainError> {
        self.provider
            .get_balance(address)
            .await
            .map_err(|e| rpc_error("eth_getBalance", e))
    }

    /// USDFC held by `address` (ERC-20 `balanceOf`).
    pub async fn usdfc_balance(&self, address: Address) -> Result<U256, ChainError> {
        self.call(
            "USDFC.balanceOf",
            self.contracts.usdfc,
            IErc20::balanceOfCall { owner: address },
        )
        .await
    }

    /// `address`'s USDFC account in FilecoinPay, available funds projected to the current epoch.
    pub async fn pay_account(&self, address: Address) -> Result<PayAccount, ChainError> {
        let epoch = self
            .provider
            .get_block_number()
            .await
            .map_err(|e| rpc_error("eth_blockNumber", e))?;
        let call = IFilecoinPay::accountsCall {
            token: self.contracts.usdfc,
            owner: address,
        };
        let a = self
            .call("FilecoinPay.accounts", self.contracts.filecoin_pay, call)
            .await?;
        let since = U256::from(epoch).saturating_sub(a.lockupLastSettledAt);
        let lockup = a
            .lockupCurrent
            .saturating_add(since.saturating_mul(a.lockupRate));
        Ok(PayAccount {
            funds: a.funds,
            lockup_current: a.lockupCurrent,
            lockup_rate: a.lockupRate,
            lockup_last_settled_at: a.lockupLastSettledAt,
            available: a.funds.saturating_sub(lockup),
        })
    }

    /// FWSS's operator approval on `client`'s USDFC account in FilecoinPay.
    pub async fn fwss_operator_approval(
        &self,
        client: Address,
    ) -> Result<OperatorApproval, ChainError> {
        let call = IFilecoinPay::operatorApprovalsCall {
            token: self.contracts.usdfc,
            client,
            operator: self.contracts.fwss,
        };
        let a = self
            .call(
                "FilecoinPay.operatorApprovals",
                self.contracts.filecoin_pay,
                call,
            )
            .await?;
        Ok(OperatorApproval {
            is_approved: a.isApproved,
            rate_allowance: a.rateAllowance,
            lockup_allowance: a.lockupAllowance,
            rate_usage: a.rateUsage,
            lockup_usage: a.lockupUsage,
            max_lockup_period: a.maxLockupPeriod,
        })
    }

    /// Everything [`WalletReport::problems`] needs, after checking the chain id.
    pub async fn wallet_report(&self, payer: Address) -> Result<WalletReport, ChainError> {
        self.verify_chain().await?;
        Ok(WalletReport {
            network: self.network,
            payer,
            contracts: self.contracts,
            fil_balance: self.fil_balance(payer).await?,
            usdfc_balance: self.usdfc_balance(payer).await?,
            account: self.pay_account(payer).await?,
            approval: self.fwss_operator_approval(payer).await?,
            upload: None,
        })
    }

    /// FWSS's price list from the state view's `getPriceList()`; a view
    /// without it (a revert: deployments before filecoin-services PR 501)
    /// gives [`FeeSchedule::documented`].
    pub async fn fee_schedule(&self) -> Result<FeeSchedule, ChainError> {
        let view = self.fwss_view_address().await?;
        match self
            .call(
                "FWSSView.getPriceList",
                view,
                IFwssView::getPriceListCall {},
            )
            .await
        {
            Ok(list) => Ok(FeeSchedule::from_price_list(&list)),
            Err(ChainError::Reverted { message, .. }) => {
                log::warn!(
                    "FWSSView.getPriceList reverted ({message}); using FWSS v1.3.0's documented fees"
                );
                Ok(FeeSchedule::documented())
            }
            Err(e) => Err(e),
        }
    }

    /// What `plan` needs up front under the chain's price list.
    pub async fn upload_cost(&self, plan: &UploadPlan) -> Result<UploadCost, ChainError> {
        Ok(upload_cost(&self.fee_schedule().await?, plan))
    }

    /// Ids of every active provider in the ServiceProviderRegistry
    /// (`getAllActiveProviders`, paged).
    pub async fn active_provider_ids(&self) -> Result<Vec<U256>, ChainError> {
        let mut ids = Vec::new();
        let mut offset = 0u64;
        loop {
            let call = IServiceProviderRegistry::getAllActiveProvidersCall {
                offset: U256::from(offset),
                limit: U256::from(DATA_SETS_PAGE),
            };
            let page = self
                .call(
                    "ServiceProviderRegistry.getAllActiveProviders",
                    self.contracts.sp_registry,
                    call,
                )
                .await?;
            offset += page.providerIds.len() as u64;
            let more = page.hasMore && !page.providerIds.is_empty();
            ids.extend(page.providerIds);
            if !more {
                return Ok(ids);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    const VIEW: Address = address!("9BF9e67e83EC8613883FDdDec4D3b38AEE937177");

    /// An ABI answer built word by word: offset 32, the length, then `rows`.
    fn raw_array(rows: &[Vec<u64>]) -> Vec<u8> {
        let mut words = vec![32u64, rows.len() as u64];
        for row in rows {
            words.extend(row);
        }
        words
            .iter()
            .flat_map(|w| U256::from(*w).to_be_bytes::<32>())
            .collect()
    }

    /// Word `i` of a row holds `base + i`, so every field is tell-tale.
    fn row(width: u64, base: u64) -> Vec<u64> {
        (1..=width).map(|i| base + i).collect()
    }

    #[test]
    fn the_13_word_layout_reads_the_lifecycle_fields_and_the_last_word_as_id() {
        let raw = raw_array(&[row(13, 0), row(13, 100)]);
        let infos = decode_client_data_sets(&raw, VIEW).unwrap();
        assert_eq!(infos.len(), 2);
        let first = &infos[0];
        assert_eq!(first.pdp_rail_id, U256::from(1));
        assert_eq!(first.client_data_set_id, U256::from(8));
        assert_eq!(first.pdp_end_epoch, U256::from(9));
        assert_eq!(first.provider_id, U256::from(10));
        assert_eq!(first.pending_one_time_payments, Some(U256::from(11)));
        assert_eq!(first.lifecycle_reserve_balance, Some(U256::from(12)));
        assert_eq!(first.data_set_id, U256::from(13));
        assert_eq!(infos[1].data_set_id, U256::from(113));
    }

    #[test]
    fn the_11_word_layout_still_reads_with_no_lifecycle_fields() {
        let raw = raw_array(&[row(11, 0)]);
        let infos = decode_client_data_sets(&raw, VIEW).unwrap();
        assert_eq!(infos[0].provider_id, U256::from(10));
        assert_eq!(infos[0].data_set_id, U256::from(11));
        assert_eq!(infos[0].pending_one_time_payments, None);
        assert_eq!(infos[0].lifecycle_reserve_balance, None);
    }

    #[test]
    fn typed_encodings_of_both_layouts_round_trip() {
        let current = IFwssView::DataSetInfoView {
            pdpRailId: U256::from(1),
            cacheMissRailId: U256::from(2),
            cdnRailId: U256::from(3),
            payer: VIEW,
            payee: VIEW,
            serviceProvider: VIEW,
            commissionBps: U256::ZERO,
            clientDataSetId: U256::from(77),
            pdpEndEpoch: U256::ZERO,
            providerId: U256::from(7),
            pendingOneTimePayments: alloy::primitives::Uint::from(5u64),
            lifecycleReserveBalance: alloy::primitives::Uint::from(6u64),
            dataSetId: U256::from(42),
        };
        let raw = IFwssView::getClientDataSetsCall::abi_encode_returns(&vec![current]);
        assert_eq!(raw.len(), 32 * (2 + 13));
        let got = decode_client_data_sets(&raw, VIEW).unwrap();
        assert_eq!(
            (got[0].data_set_id, got[0].client_data_set_id),
            (U256::from(42), U256::from(77))
        );
        assert_eq!(got[0].lifecycle_reserve_balance, Some(U256::from(6)));
        let legacy = IFwssViewLegacy::DataSetInfoView {
            pdpRailId: U256::from(1),
            cacheMissRailId: U256::from(2),
            cdnRailId: U256::from(3),
            payer: VIEW,
            payee: VIEW,
            serviceProvider: VIEW,
            commissionBps: U256::ZERO,
            clientDataSetId: U256::from(77),
            pdpEndEpoch: U256::ZERO,
            providerId: U256::from(7),
            dataSetId: U256::from(42),
        };
        let raw = IFwssViewLegacy::getClientDataSetsCall::abi_encode_returns(&vec![legacy]);
        let got = decode_client_data_sets(&raw, VIEW).unwrap();
        assert_eq!(got[0].data_set_id, U256::from(42));
    }

    #[test]
    fn an_unknown_width_is_an_error_naming_contract_function_and_width() {
        for width in [12u64, 14, 15] {
            let raw = raw_array(&[row(width, 0), row(width, 50)]);
            let err = decode_client_data_sets(&raw, VIEW).unwrap_err();
            assert!(
                matches!(err, ChainError::UnknownLayout { width: w, contract, .. }
                    if w == width as usize && contract == VIEW),
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains("FWSSView.getClientDataSets"), "{text}");
            assert!(text.contains(&format!("answered {width} words")), "{text}");
            assert!(text.contains(&VIEW.to_string()), "{text}");
        }
    }

    #[test]
    fn empty_and_malformed_answers() {
        assert!(decode_client_data_sets(&raw_array(&[]), VIEW)
            .unwrap()
            .is_empty());
        let mut ragged = raw_array(&[row(13, 0), row(13, 0)]);
        ragged.truncate(ragged.len() - 32);
        assert!(matches!(
            decode_client_data_sets(&ragged, VIEW),
            Err(ChainError::Decode { .. })
        ));
        assert!(matches!(
            decode_client_data_sets(&[0u8; 31], VIEW),
            Err(ChainError::Decode { .. })
        ));
        let mut bad_offset = raw_array(&[row(13, 0)]);
        bad_offset[31] = 64;
        assert!(matches!(
            decode_client_data_sets(&bad_offset, VIEW),
            Err(ChainError::Decode { .. })
        ));
    }

    #[test]
    fn the_wallet_asks_for_the_missing_lockup_of_a_planned_upload() {
        use super::super::fees::{CopyPlan, FeeSchedule};
        let fees = FeeSchedule::documented();
        let plan = UploadPlan {
            piece_sizes: vec![1000, 300],
            copies: (0..2)
                .map(|i| CopyPlan {
                    provider_id: U256::from(i),
                    data_set_id: None,
                    with_cdn: true,
                    reserve_balance: None,
                    pending_one_time_payments: None,
                    current_leaves: 0,
                })
                .collect(),
        };
        let cost = upload_cost(&fees, &plan);
        let half = U256::from(5) * U256::from(10u64).pow(U256::from(17));
        let report = WalletReport {
            network: Network::Calibration,
            payer: VIEW,
            contracts: Network::Calibration.contracts(),
            fil_balance: U256::from(1),
            usdfc_balance: U256::ZERO,
            account: PayAccount {
                funds: half,
                available: half,
                ..PayAccount::default()
            },
            approval: OperatorApproval {
                is_approved: true,
                rate_allowance: U256::MAX,
                lockup_allowance: U256::MAX,
                ..OperatorApproval::default()
            },
            upload: None,
        };
        assert!(report.is_ready(), "without a plan only the basics count");
        let report = report.with_upload_cost(cost.clone());
        let problems = report.problems();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let missing = tokens(cost.required - half, "USDFC");
        let missing = missing.trim_end_matches(" USDFC");
        assert!(
            problems[0].contains(&format!("deposit {missing} more USDFC")),
            "{problems:#?}"
        );
        assert!(
            problems[0].contains("2 copies, 2 new data sets"),
            "{problems:#?}"
        );
    }
}
