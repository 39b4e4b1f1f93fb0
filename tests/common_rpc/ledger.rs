//! The mock chain's state and the contracts' arithmetic: what FWSS,
//! PDPVerifier and FilecoinPay do when a storage provider sends the
//! transaction of a create-and-add or an add-pieces.
//!
//! What it is: test code written from the Solidity, not from beam-edge's own
//! pre-flight, so a pre-flight that gets a rule wrong is caught here. Sources
//! (read 2026-12-03): FilOzone/filecoin-services a16aea49d537 (FWSS
//! `dataSetCreated`, `piecesAdded`, `lib/Rails.sol`, `lib/PriceListUSDFC.sol`),
//! FilOzone/pdp cc3f5eaffee7 (`PDPVerifier.addPieces`, `Cids.leafCount`,
//! `Cids.leafCountToRawSize`), FilOzone/filecoin-pay 04ded6af6c15
//! (`modifyRailLockup`, `modifyRailPayment`, the "after function execution"
//! funds check). The EIP-712 types and domain are declared here again (from
//! filecoin.md) rather than taken from beam-edge, for the same reason.
//!
//! What it is not: a chain. No gas, no blocks passing, no session keys, no
//! proving periods; a transaction is all or nothing (run on a copy, kept on
//! success).

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::sol;
use alloy::sol_types::{eip712_domain, SolCall, SolStruct, SolValue};

sol! {
    struct MetadataEntry { string key; string value; }
    struct CreateDataSet { uint256 clientDataSetId; address payee; MetadataEntry[] metadata; }
    struct Cid { bytes data; }
    struct PieceMetadata { uint256 pieceIndex; MetadataEntry[] metadata; }
    struct AddPieces { uint256 clientDataSetId; uint256 nonce; Cid[] pieceData; PieceMetadata[] pieceMetadata; }

    /// PDPVerifier's entry points a provider's transaction calls.
    interface IPdpVerifierTx {
        struct PieceCid { bytes data; }
        function createDataSet(address listenerAddr, bytes extraData) external payable returns (uint256);
        function addPieces(uint256 setId, address listenerAddr, PieceCid[] pieceData, bytes extraData) external payable returns (uint256);
    }
}

/// `EPOCHS_PER_MONTH` (2880 × 30), a constant of the contracts.
pub const EPOCHS_PER_MONTH: u64 = 86_400;
const TIB: u64 = 1 << 40;

/// The deployment's price list (what `getPriceList()` serves and what the
/// contracts charge: one source, as on a real chain).
#[derive(Clone, Debug)]
pub struct Prices {
    pub storage_per_tib_per_month: U256,
    pub dataset_fee_per_month: U256,
    pub create_data_set_fee: U256,
    pub add_pieces_base_fee: U256,
    pub add_pieces_per_piece_fee: U256,
    pub lifecycle_reserve_target: U256,
    pub replenish_threshold: U256,
    pub default_lockup_period: U256,
    pub cdn_lockup_amount: U256,
    pub cache_miss_lockup_amount: U256,
    pub cdn_lockup_period: U256,
}

/// A payer's FilecoinPay account.
#[derive(Clone, Debug, Default)]
pub struct Account {
    pub funds: U256,
    pub lockup_current: U256,
    pub lockup_rate: U256,
    pub lockup_last_settled_at: U256,
}

/// FWSS's operator approval on a payer's account.
#[derive(Clone, Debug, Default)]
pub struct Approval {
    pub is_approved: bool,
    pub rate_allowance: U256,
    pub lockup_allowance: U256,
    pub rate_usage: U256,
    pub lockup_usage: U256,
    pub max_lockup_period: U256,
}

/// One data set: PDPVerifier's pieces and leaves, FWSS's info, the rails.
#[derive(Clone, Debug)]
pub struct SetState {
    pub payer: Address,
    pub provider_id: u64,
    pub client_data_set_id: U256,
    pub metadata: Vec<(String, String)>,
    pub leaves: u64,
    pub pieces: u64,
    pub reserve: U256,
    pub pending: U256,
    /// The PDP rail's payment rate.
    pub rate: U256,
    pub with_cdn: bool,
}

/// The chain's state.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub chain_id: u64,
    pub fwss: Address,
    pub usdfc: Address,
    pub prices: Prices,
    pub block: u64,
    pub accounts: HashMap<Address, Account>,
    /// FWSS's approvals, by payer.
    pub approvals: HashMap<Address, Approval>,
    /// USDFC in wallets (ERC-20 `balanceOf`).
    pub wallets: HashMap<Address, U256>,
    /// Registered providers: service-provider address → (id, payee).
    pub providers: HashMap<Address, (u64, Address)>,
    pub sets: BTreeMap<u64, SetState>,
    /// FWSS's `clientNonces`: (payer, id or nonce) already used.
    pub nonces: HashSet<(Address, U256)>,
    /// Every transaction that ran, successful or not: (set id, outcome).
    pub transactions: Vec<(u64, Result<(), String>)>,
}

/// `Cids.leafCount(padding, height)` of a v2 PieceCID's bytes:
/// `2^height − ⌊⌊128 × padding / 127⌋ / 32⌋`.
pub fn leaf_count_of_cid(cid: &[u8]) -> Result<u64, String> {
    // CIDv1, raw, multihash 0x1011 (varint 0x91 0x20), length varint, then
    // padding varint | height | root.
    let rest = cid
        .strip_prefix(&[0x01, 0x55, 0x91, 0x20])
        .ok_or("not a v2 PieceCID")?;
    let (_, rest) = read_varint(rest)?;
    let (padding, rest) = read_varint(rest)?;
    let height = *rest.first().ok_or("no height")?;
    if rest.len() != 33 || height > 50 {
        return Err("bad PieceCID digest".into());
    }
    let padding_leaves = (128 * u128::from(padding) / 127) >> 5;
    let total = 1u128 << height;
    if padding_leaves >= total {
        return Err("Padding is too large".into());
    }
    Ok((total - padding_leaves) as u64)
}

fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), String> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err("bad varint".into())
}

fn revert<T>(reason: impl Into<String>) -> Result<T, String> {
    Err(reason.into())
}

impl Ledger {
    /// `calculateStorageRate(leafCount)`.
    pub fn storage_rate(&self, leaves: u64) -> U256 {
        if leaves == 0 {
            return U256::ZERO;
        }
        let raw = U256::from(leaves) * U256::from(32u64) * U256::from(127u64) / U256::from(128u64);
        let month = U256::from(EPOCHS_PER_MONTH);
        raw * self.prices.storage_per_tib_per_month / (U256::from(TIB) * month)
            + self.prices.dataset_fee_per_month / month
    }

    /// Funds minus lockup, settled to the current block
    /// (`getAccountInfoIfSettled`'s `availableFunds`).
    pub fn available(&self, payer: Address) -> U256 {
        let a = self.accounts.get(&payer).cloned().unwrap_or_default();
        let since = U256::from(self.block).saturating_sub(a.lockup_last_settled_at);
        a.funds
            .saturating_sub(a.lockup_current + a.lockup_rate * since)
    }

    /// Runs a transaction `from` a provider to PDPVerifier; `new_set_id` is
    /// the id PDPVerifier gives a new data set. All or nothing.
    pub fn execute(
        &mut self,
        from: Address,
        to: Address,
        input: &[u8],
        new_set_id: u64,
    ) -> Result<(), String> {
        let mut next = self.clone();
        let outcome = next.run(from, to, input, new_set_id);
        if outcome.is_ok() {
            *self = next;
        }
        self.transactions.push((new_set_id, outcome.clone()));
        outcome
    }

    fn run(
        &mut self,
        from: Address,
        _to: Address,
        input: &[u8],
        new_set_id: u64,
    ) -> Result<(), String> {
        if let Ok(call) = IPdpVerifierTx::createDataSetCall::abi_decode(input) {
            if call.listenerAddr != self.fwss {
                return revert("mock chain: only FWSS is simulated as a listener");
            }
            return self.data_set_created(new_set_id, from, &call.extraData);
        }
        let call = IPdpVerifierTx::addPiecesCall::abi_decode(input)
            .map_err(|e| format!("mock chain: not a PDPVerifier call: {e}"))?;
        let cids: Vec<Vec<u8>> = call.pieceData.iter().map(|p| p.data.to_vec()).collect();
        if call.setId == U256::ZERO {
            let (create, add) = <(Bytes, Bytes)>::abi_decode_params(&call.extraData)
                .map_err(|e| format!("abi decode of (bytes, bytes): {e}"))?;
            if call.listenerAddr == Address::ZERO {
                return revert("listener required for new dataset");
            }
            if call.listenerAddr != self.fwss {
                return revert("mock chain: only FWSS is simulated as a listener");
            }
            self.data_set_created(new_set_id, from, &create)?;
            if !cids.is_empty() {
                self.add_pieces(new_set_id, &cids, &add)?;
            }
            Ok(())
        } else {
            if call.listenerAddr != Address::ZERO {
                return revert("listener must be zero for existing dataset");
            }
            let id = call.setId.saturating_to::<u64>();
            if !self.sets.contains_key(&id) {
                return revert("DataSetNotLive()");
            }
            self.add_pieces(id, &cids, &call.extraData)
        }
    }

    fn domain(&self) -> alloy::sol_types::Eip712Domain {
        eip712_domain! {
            name: "FilecoinWarmStorageService",
            version: "1",
            chain_id: self.chain_id,
            verifying_contract: self.fwss,
        }
    }

    fn recover(signature: &[u8], digest: B256) -> Result<Address, String> {
        let sig = alloy::primitives::Signature::try_from(signature)
            .map_err(|_| format!("InvalidSignatureLength(65, {})", signature.len()))?;
        sig.recover_address_from_prehash(&digest)
            .map_err(|e| format!("ECDSAInvalidSignature: {e}"))
    }

    /// FWSS `dataSetCreated` (with `Rails.createRails`).
    fn data_set_created(&mut self, id: u64, provider: Address, extra: &[u8]) -> Result<(), String> {
        let (payer, client_data_set_id, keys, values, signature) =
            <(Address, U256, Vec<String>, Vec<String>, Bytes)>::abi_decode_params(extra)
                .map_err(|e| format!("create extraData does not decode: {e}"))?;
        if payer == Address::ZERO {
            return revert("ZeroAddress(Payer)");
        }
        let Some(&(provider_id, payee)) = self.providers.get(&provider) else {
            return revert(format!("ProviderNotRegistered({provider})"));
        };
        if !self.nonces.insert((payer, client_data_set_id)) {
            return revert(format!(
                "ClientDataSetAlreadyRegistered({client_data_set_id})"
            ));
        }
        if keys.len() != values.len() {
            return revert("MetadataKeyAndValueLengthMismatch");
        }
        let message = CreateDataSet {
            clientDataSetId: client_data_set_id,
            payee,
            metadata: keys
                .iter()
                .zip(&values)
                .map(|(k, v)| MetadataEntry {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        let signer = Self::recover(&signature, message.eip712_signing_hash(&self.domain()))?;
        if signer != payer {
            return revert(format!(
                "InvalidSignature(expected {payer}, actual {signer})"
            ));
        }
        let with_cdn = keys.iter().any(|k| k == "withCDN");
        // Rails.validatePayerOperatorApprovalAndFunds.
        let p = self.prices.clone();
        let mut required = p.dataset_fee_per_month * p.default_lockup_period
            / U256::from(EPOCHS_PER_MONTH)
            + p.lifecycle_reserve_target;
        if with_cdn {
            required += p.cache_miss_lockup_amount + p.cdn_lockup_amount;
        }
        let available = self.available(payer);
        if available < required {
            return revert(format!(
                "InsufficientLockupFunds({payer}, {required}, {available})"
            ));
        }
        let approval = self.approvals.get(&payer).cloned().unwrap_or_default();
        if !approval.is_approved {
            return revert(format!("OperatorNotApproved({payer}, {})", self.fwss));
        }
        let fee_per_epoch = p.dataset_fee_per_month / U256::from(EPOCHS_PER_MONTH);
        if approval.rate_allowance < approval.rate_usage + fee_per_epoch {
            return revert("InsufficientRateAllowance");
        }
        if approval.lockup_allowance < approval.lockup_usage + required {
            return revert("InsufficientLockupAllowance");
        }
        if approval.max_lockup_period < p.default_lockup_period {
            return revert("InsufficientMaxLockupPeriod");
        }
        // createRails: the PDP rail's reserve, then the two CDN rails.
        self.lock_fixed(payer, p.lifecycle_reserve_target)?;
        if with_cdn {
            self.lock_fixed(payer, p.cache_miss_lockup_amount)?;
            self.lock_fixed(payer, p.cdn_lockup_amount)?;
        }
        self.sets.insert(
            id,
            SetState {
                payer,
                provider_id,
                client_data_set_id,
                metadata: keys.into_iter().zip(values).collect(),
                leaves: 0,
                pieces: 0,
                reserve: p.lifecycle_reserve_target,
                pending: p.create_data_set_fee,
                rate: U256::ZERO,
                with_cdn,
            },
        );
        Ok(())
    }

    /// FilecoinPay `modifyRailLockup` raising a rail's fixed lockup by
    /// `amount` (rate unchanged), with its funds check after execution.
    fn lock_fixed(&mut self, payer: Address, amount: U256) -> Result<(), String> {
        self.settle(payer);
        let account = self.accounts.entry(payer).or_default();
        account.lockup_current += amount;
        let approval = self.approvals.entry(payer).or_default();
        approval.lockup_usage += amount;
        if approval.lockup_usage > approval.lockup_allowance {
            return revert("OperatorLockupAllowanceExceeded");
        }
        self.funds_cover_lockup(payer)
    }

    fn settle(&mut self, payer: Address) {
        let block = U256::from(self.block);
        let account = self.accounts.entry(payer).or_default();
        let since = block.saturating_sub(account.lockup_last_settled_at);
        account.lockup_current += account.lockup_rate * since;
        account.lockup_last_settled_at = block;
    }

    fn funds_cover_lockup(&self, payer: Address) -> Result<(), String> {
        let account = self.accounts.get(&payer).cloned().unwrap_or_default();
        if account.funds < account.lockup_current {
            return revert(
                "invariant failure: insufficient funds to cover lockup after function execution",
            );
        }
        Ok(())
    }

    /// PDPVerifier `_addPiecesToDataSet` then FWSS `piecesAdded`
    /// (`updatePaymentRates` → `Rails.updateStorageRates`).
    fn add_pieces(&mut self, id: u64, cids: &[Vec<u8>], extra: &[u8]) -> Result<(), String> {
        if cids.is_empty() {
            return revert("Must add at least one piece");
        }
        let mut added = 0u64;
        for (i, cid) in cids.iter().enumerate() {
            added += leaf_count_of_cid(cid).map_err(|e| format!("IndexedError({i}, {e})"))?;
        }
        let p = self.prices.clone();
        let set = self.sets.get(&id).cloned().ok_or("DataSetNotRegistered")?;
        let payer = set.payer;
        let (nonce, keys, values, signature) =
            <(U256, Vec<Vec<String>>, Vec<Vec<String>>, Bytes)>::abi_decode_params(extra)
                .map_err(|e| format!("add extraData does not decode: {e}"))?;
        if !self.nonces.insert((payer, nonce)) {
            return revert(format!("ClientDataSetAlreadyRegistered({nonce})"));
        }
        if keys.len() != cids.len() || values.len() != cids.len() {
            return revert("MetadataArrayCountMismatch");
        }
        let message = AddPieces {
            clientDataSetId: set.client_data_set_id,
            nonce,
            pieceData: cids
                .iter()
                .map(|c| Cid {
                    data: c.clone().into(),
                })
                .collect(),
            pieceMetadata: keys
                .iter()
                .zip(&values)
                .enumerate()
                .map(|(i, (k, v))| PieceMetadata {
                    pieceIndex: U256::from(i),
                    metadata: k
                        .iter()
                        .zip(v)
                        .map(|(k, v)| MetadataEntry {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                })
                .collect(),
        };
        let signer = Self::recover(&signature, message.eip712_signing_hash(&self.domain()))?;
        if signer != payer {
            return revert(format!(
                "InvalidSignature(expected {payer}, actual {signer})"
            ));
        }
        let leaves = set.leaves + added;
        let mut pending = set.pending
            + p.add_pieces_base_fee
            + p.add_pieces_per_piece_fee * U256::from(cids.len());
        let new_rate = self.storage_rate(leaves);
        // replenishReserveIfNeeded: modifyRailLockup(target + pending).
        let mut reserve = set.reserve;
        if reserve < pending + p.replenish_threshold {
            let topped = p.lifecycle_reserve_target + pending;
            self.lock_fixed(payer, topped - reserve)?;
            reserve = topped;
        }
        if reserve < pending {
            pending = reserve;
        }
        // modifyRailPayment(newRate, pending): the rate's lockup for the
        // period moves, the one-time payment leaves funds and lockup.
        self.settle(payer);
        let period = p.default_lockup_period;
        let old_rate = set.rate;
        {
            let account = self.accounts.entry(payer).or_default();
            account.lockup_rate = account.lockup_rate - old_rate + new_rate;
            account.lockup_current =
                account.lockup_current - old_rate * period + new_rate * period - pending;
            account.funds = account
                .funds
                .checked_sub(pending)
                .ok_or("funds below the payment")?;
        }
        {
            // updateOperatorRateUsage, updateOperatorLockupUsage (checked
            // before the payment), then updateOperatorAllowanceForOneTimePayment.
            let approval = self.approvals.entry(payer).or_default();
            approval.rate_usage = approval.rate_usage - old_rate + new_rate;
            if approval.rate_usage > approval.rate_allowance {
                return revert("OperatorRateAllowanceExceeded");
            }
            approval.lockup_usage = approval.lockup_usage - old_rate * period + new_rate * period;
            if approval.lockup_usage > approval.lockup_allowance {
                return revert("OperatorLockupAllowanceExceeded");
            }
            approval.lockup_usage -= pending;
            approval.lockup_allowance = approval.lockup_allowance.saturating_sub(pending);
        }
        self.funds_cover_lockup(payer)?;
        let set = self.sets.get_mut(&id).ok_or("DataSetNotRegistered")?;
        set.leaves = leaves;
        set.pieces += cids.len() as u64;
        set.rate = new_rate;
        set.reserve = reserve - pending;
        set.pending = U256::ZERO;
        Ok(())
    }
}
