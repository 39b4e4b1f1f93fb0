//! What an upload costs the payer up front: FWSS's one-time fees and the
//! lockups FilecoinPay must be able to take before a provider accepts the
//! upload's transactions.
//!
//! What it is: a pure calculation over the FWSS price list
//! ([`FeeSchedule`], read from the state view's `getPriceList()` when the
//! deployment has it, otherwise the documented v1.3.0 constants) and a plan of
//! the upload ([`UploadPlan`]: the size of every piece added, the manifest
//! included, and for each copy whether it creates a data set or adds to one
//! with a known lifecycle reserve and leaf count). The
//! wallet pre-flight ([`super::WalletReport::problems`]) compares the result
//! with the payer's available funds and FWSS's lockup allowance, so an upload
//! that cannot be paid is refused before any byte is sent.
//!
//! What it is not: a bill. Storage is streamed per epoch afterwards; here
//! only what must be locked (or paid) when the pieces are added counts.
//!
//! Facts, from the contracts themselves (FilOzone/filecoin-services at
//! a16aea49d53781669711fa7deb72e820b5e56ff9, 2026-08-06: `src/lib/PriceListUSDFC.sol`,
//! `src/lib/Rails.sol`, `src/FilecoinWarmStorageService.sol`; FilOzone/pdp at
//! cc3f5eaffee7df80471b671a4e35a42b000685b8: `src/Cids.sol`, `src/PDPVerifier.sol`;
//! FilOzone/filecoin-pay at 04ded6af6c15c4b5d98545f393dc656004d4aede:
//! `src/FilecoinPayV1.sol`):
//! - CreateDataSet charges `createDataSetFee`; each AddPieces call charges
//!   `addPiecesBaseFee + n * addPiecesPerPieceFee` for its `n` pieces. The fees
//!   are paid out of the data set's lifecycle reserve, a fixed lockup on its
//!   PDP rail: creating a data set locks `lifecycleReserveTarget`; before a
//!   fee flush that would leave less than `replenishThreshold`, FWSS tops the
//!   reserve up to `target + pending` (more lockup). A fee leaves the payer's
//!   funds and lockup together, so it does not change what is available.
//! - A new `withCDN` data set also locks `cdnLockupAmount` and
//!   `cacheMissLockupAmount` on its FilBeam rails.
//! - Creating a data set first checks that the payer has
//!   `datasetFeePerMonth × defaultLockupPeriod / EPOCHS_PER_MONTH +
//!   lifecycleReserveTarget` (+ the CDN lockups) available
//!   (`Rails.validatePayerOperatorApprovalAndFunds`).
//! - The storage rate is priced from the data set's **leaf count**, not from
//!   file bytes: after PDPVerifier adds the pieces, FWSS sets the PDP rail's
//!   rate to `calculateStorageRate(getDataSetLeafCount(setId))`, where a
//!   piece counts `Cids.leafCount(padding, height)` = `2^height − ⌊⌊128 ×
//!   padding / 127⌋ / 32⌋` leaves (every 32-byte leaf holding data, the
//!   manifest piece included), and `calculateStorageRate(leaves)` is 0 for
//!   no leaves, else `⌊raw × storagePerTibPerMonth / (TiB × 86,400)⌋ +
//!   ⌊datasetFeePerMonth / 86,400⌋` with `raw = ⌊leaves × 32 × 127 / 128⌋`.
//!   FilecoinPay then moves the payer's lockup by `(newRate − oldRate) ×
//!   lockupPeriod` and reverts ("insufficient funds to cover lockup after
//!   function execution") unless the funds still cover the lockup.

use alloy::primitives::U256;

use super::abi::IFwssView;
use super::extra_data::MAX_PIECES_PER_ADD;

/// Epochs per month in FWSS's price list (2880 per day × 30).
pub const EPOCHS_PER_MONTH: u64 = 86_400;

const TIB: u64 = 1 << 40;

/// Where a [`FeeSchedule`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeSource {
    /// The state view's `getPriceList()`.
    Chain,
    /// The view has no `getPriceList()`; the documented FWSS v1.3.0 list
    /// ([`FeeSchedule::documented`]) stands in.
    Documented,
}

/// The parts of FWSS's price list an upload pays up front; token units
/// (USDFC, 18 decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeSchedule {
    /// One-time fee of a CreateDataSet.
    pub create_data_set_fee: U256,
    /// One-time fee of each AddPieces call.
    pub add_pieces_base_fee: U256,
    /// One-time fee of each piece added.
    pub add_pieces_per_piece_fee: U256,
    /// Lifecycle reserve a new data set locks.
    pub lifecycle_reserve_target: U256,
    /// The reserve is topped up before it would fall below this.
    pub replenish_threshold: U256,
    /// Fixed lockup of a new `withCDN` data set's CDN rail.
    pub cdn_lockup_amount: U256,
    /// Fixed lockup of a new `withCDN` data set's cache-miss rail.
    pub cache_miss_lockup_amount: U256,
    /// Storage price per TiB per month.
    pub storage_per_tib_per_month: U256,
    /// Proving fee per data set per month.
    pub dataset_fee_per_month: U256,
    /// Epochs of rate lockup FilecoinPay holds.
    pub default_lockup_period: U256,
    /// Read from the chain or the documented stand-in.
    pub source: FeeSource,
}

fn usdfc_fraction(numerator: u64, denominator: u64) -> U256 {
    U256::from(numerator) * U256::from(10u64).pow(U256::from(18)) / U256::from(denominator)
}

impl FeeSchedule {
    /// FWSS v1.3.0's list as documented in filecoin-services' "FWSS Pricing
    /// Rationale" (GA, June 2026): create 0.025, add 0.0005 + 0.0003 per piece,
    /// reserve 0.10 (replenish below 0.005), CDN 0.7 + cache miss 0.3,
    /// storage 2.5 per TiB-month, proving 0.024 per data set-month, lockup
    /// period 30 days. Used only when the view cannot be asked.
    pub fn documented() -> FeeSchedule {
        FeeSchedule {
            create_data_set_fee: usdfc_fraction(25, 1000),
            add_pieces_base_fee: usdfc_fraction(5, 10_000),
            add_pieces_per_piece_fee: usdfc_fraction(3, 10_000),
            lifecycle_reserve_target: usdfc_fraction(10, 100),
            replenish_threshold: usdfc_fraction(5, 1000),
            cdn_lockup_amount: usdfc_fraction(7, 10),
            cache_miss_lockup_amount: usdfc_fraction(3, 10),
            storage_per_tib_per_month: usdfc_fraction(5, 2),
            dataset_fee_per_month: usdfc_fraction(24, 1000),
            default_lockup_period: U256::from(EPOCHS_PER_MONTH),
            source: FeeSource::Documented,
        }
    }

    /// The schedule in a `getPriceList()` answer.
    pub fn from_price_list(list: &IFwssView::PriceList) -> FeeSchedule {
        FeeSchedule {
            create_data_set_fee: list.fees.createDataSetFee,
            add_pieces_base_fee: list.fees.addPiecesBaseFee,
            add_pieces_per_piece_fee: list.fees.addPiecesPerPieceFee,
            lifecycle_reserve_target: list.lockups.lifecycleReserveTarget,
            replenish_threshold: list.lockups.replenishThreshold,
            cdn_lockup_amount: list.lockups.cdnLockupAmount,
            cache_miss_lockup_amount: list.lockups.cacheMissLockupAmount,
            storage_per_tib_per_month: list.rates.storagePerTibPerMonth,
            dataset_fee_per_month: list.rates.datasetFeePerMonth,
            default_lockup_period: list.lockups.defaultLockupPeriod,
            source: FeeSource::Chain,
        }
    }
}

/// Leaves of a piece holding `payload` raw bytes, counted as PDPVerifier
/// counts them when the piece is added (`Cids.leafCount(padding, height)`):
/// every 32-byte leaf of the padded tree that holds any data. `None` for 0
/// bytes or more than a piece can hold.
pub fn piece_leaf_count(payload: u64) -> Option<u64> {
    // The smallest FRC-0069 tree holding `payload`: 2^height leaves carry
    // 127 × 2^(height − 2) raw bytes (height ≥ 2, at most 2^50 padded).
    let height = (2u32..=50).find(|h| (127u128 << (h - 2)) >= u128::from(payload))?;
    if payload == 0 {
        return None;
    }
    let padding = (127u128 << (height - 2)) - u128::from(payload);
    let padding_leaves = (128 * padding / 127) >> 5;
    u64::try_from((1u128 << height) - padding_leaves).ok()
}

/// FWSS's `calculateStorageRate(leafCount)` under `fees`: the PDP rail's
/// payment per epoch for a data set of `leaves` leaves. Zero for an empty
/// set; otherwise the storage price of the leaves' raw size plus the
/// per-data-set proving fee, each divided by [`EPOCHS_PER_MONTH`] on its own.
pub fn storage_rate(fees: &FeeSchedule, leaves: u64) -> U256 {
    if leaves == 0 {
        return U256::ZERO;
    }
    let month = U256::from(EPOCHS_PER_MONTH);
    // Cids.leafCountToRawSize: leaves × 32 × 127 / 128, rounded down.
    let raw = U256::from(leaves) * U256::from(32 * 127) / U256::from(128);
    raw * fees.storage_per_tib_per_month / (U256::from(TIB) * month)
        + fees.dataset_fee_per_month / month
}

/// One copy of an upload, as far as paying for it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// Registry id of the copy's provider.
    pub provider_id: U256,
    /// `None`: the copy creates its data set; `Some`: it adds to this one.
    pub data_set_id: Option<U256>,
    /// The data set is (or will be) `withCDN`.
    pub with_cdn: bool,
    /// The existing set's lifecycle reserve (`None`: unknown, an old view;
    /// counted as empty, which errs on the side of asking for more).
    pub reserve_balance: Option<U256>,
    /// Fees already queued on the existing set.
    pub pending_one_time_payments: Option<U256>,
    /// Leaves already in the existing set (PDPVerifier's
    /// `getDataSetLeafCount`); 0 for a new set.
    pub current_leaves: u64,
}

/// What is about to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    /// Raw size of every piece added to each copy's data set, in the order
    /// they are added: the file's pieces, then the manifest.
    pub piece_sizes: Vec<u64>,
    /// Every copy, primary first.
    pub copies: Vec<CopyPlan>,
}

impl UploadPlan {
    /// Pieces added to each copy.
    pub fn pieces(&self) -> u64 {
        self.piece_sizes.len() as u64
    }

    /// Leaves the pieces add to each copy's data set.
    pub fn leaves(&self) -> u64 {
        self.piece_sizes
            .iter()
            .map(|&size| piece_leaf_count(size).unwrap_or(0))
            .sum()
    }
}

/// What one copy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCost {
    /// Registry id of the copy's provider.
    pub provider_id: U256,
    /// The copy creates a data set.
    pub new_data_set: bool,
    /// One-time fees charged (paid out of the lockup below).
    pub one_time_fees: U256,
    /// New lockup FilecoinPay must take: lifecycle reserve and its
    /// replenishments, CDN lockups of a new CDN set, and the rise of the
    /// PDP rail's rate held for the lockup period.
    pub lockup: U256,
    /// Rise of the PDP rail's payment rate (per epoch).
    pub rate_increase: U256,
    /// What must be available when this copy's transaction starts: the
    /// larger of [`lockup`](Self::lockup) and, for a new set, FWSS's
    /// creation check.
    pub needs_available: U256,
}

/// What the whole upload needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCost {
    /// Per copy, primary first.
    pub copies: Vec<CopyCost>,
    /// Sum of the copies' one-time fees.
    pub one_time_fees: U256,
    /// Sum of the copies' new lockup.
    pub lockup: U256,
    /// Sum of the copies' rate increases.
    pub rate_increase: U256,
    /// What must be available in FilecoinPay before the first copy: the
    /// copies run one after the other, each needing its
    /// [`CopyCost::needs_available`] on top of what the earlier ones locked.
    pub required: U256,
    /// The price list used.
    pub fees: FeeSchedule,
}

/// The cost of `plan` under `fees`, step by step as FWSS and FilecoinPay
/// take it. Add calls are batched as the publisher batches them (at most
/// [`MAX_PIECES_PER_ADD`] pieces each); the reserve and the rate are
/// simulated call by call.
pub fn upload_cost(fees: &FeeSchedule, plan: &UploadPlan) -> UploadCost {
    let batch = MAX_PIECES_PER_ADD;
    let period = fees.default_lockup_period;
    let mut copies = Vec::with_capacity(plan.copies.len());
    for copy in &plan.copies {
        let new = copy.data_set_id.is_none();
        let mut reserve = if new {
            fees.lifecycle_reserve_target
        } else {
            copy.reserve_balance.unwrap_or(U256::ZERO)
        };
        let mut lockup = if new {
            fees.lifecycle_reserve_target
        } else {
            U256::ZERO
        };
        if new && copy.with_cdn {
            lockup += fees.cdn_lockup_amount + fees.cache_miss_lockup_amount;
        }
        let mut pending = copy.pending_one_time_payments.unwrap_or(U256::ZERO);
        let mut one_time = U256::ZERO;
        if new {
            pending += fees.create_data_set_fee;
            one_time += fees.create_data_set_fee;
        }
        let leaves_before = if new { 0 } else { copy.current_leaves };
        let mut leaves = leaves_before;
        for sizes in plan.piece_sizes.chunks(batch) {
            let fee =
                fees.add_pieces_base_fee + fees.add_pieces_per_piece_fee * U256::from(sizes.len());
            one_time += fee;
            pending += fee;
            if reserve < pending + fees.replenish_threshold {
                let topped = fees.lifecycle_reserve_target + pending;
                lockup += topped.saturating_sub(reserve);
                reserve = topped;
            }
            reserve = reserve.saturating_sub(pending);
            pending = U256::ZERO;
            leaves += sizes
                .iter()
                .map(|&size| piece_leaf_count(size).unwrap_or(0))
                .sum::<u64>();
        }
        // The rail's rate follows the set's whole leaf count; the lockup
        // moves by the change of rate over the lockup period.
        let rate_before = storage_rate(fees, leaves_before);
        let rate_after = storage_rate(fees, leaves);
        let rate_increase = rate_after.saturating_sub(rate_before);
        lockup += rate_increase * period;
        let creation_check = if new {
            let mut floor = fees.dataset_fee_per_month * period / U256::from(EPOCHS_PER_MONTH)
                + fees.lifecycle_reserve_target;
            if copy.with_cdn {
                floor += fees.cdn_lockup_amount + fees.cache_miss_lockup_amount;
            }
            floor
        } else {
            U256::ZERO
        };
        copies.push(CopyCost {
            provider_id: copy.provider_id,
            new_data_set: new,
            one_time_fees: one_time,
            lockup,
            rate_increase,
            needs_available: lockup.max(creation_check),
        });
    }
    let mut locked_before = U256::ZERO;
    let mut required = U256::ZERO;
    for copy in &copies {
        required = required.max(locked_before + copy.needs_available);
        locked_before += copy.lockup;
    }
    UploadCost {
        one_time_fees: copies.iter().map(|c| c.one_time_fees).sum(),
        lockup: copies.iter().map(|c| c.lockup).sum(),
        rate_increase: copies.iter().map(|c| c.rate_increase).sum(),
        required,
        copies,
        fees: *fees,
    }
}

#[cfg(test)]
mod tests {
    //! Every expectation here is a figure worked by hand from the contracts'
    //! arithmetic (see the module header) or measured against the real
    //! contracts (filecoin.md, "Learnt against the real systems"), never the
    //! output of the functions under test fed back to them.

    use super::*;

    const WEI_PER_USDFC: u128 = 1_000_000_000_000_000_000;

    fn wei(n: u128) -> U256 {
        U256::from(n)
    }

    fn copy(new: bool, cdn: bool, reserve: Option<U256>, leaves: u64) -> CopyPlan {
        CopyPlan {
            provider_id: U256::from(7),
            data_set_id: if new { None } else { Some(U256::from(5)) },
            with_cdn: cdn,
            reserve_balance: reserve,
            pending_one_time_payments: Some(U256::ZERO),
            current_leaves: leaves,
        }
    }

    /// `⌊0.024 USDFC / 86,400⌋` = 277,777,777,777 wei per epoch.
    const PROVING_PER_EPOCH: u128 = 277_777_777_777;

    #[test]
    fn leaf_counts_follow_pdpverifier() {
        // 5,000,000 bytes sit in a 2^18-leaf tree (8 MiB padded) with
        // 3,323,072 bytes of padding: 262,144 − ⌊⌊128 × 3,323,072 / 127⌋ / 32⌋
        // = 262,144 − 104,663 = 157,481 leaves (= ⌈4 × 5,000,000 / 127⌉).
        assert_eq!(piece_leaf_count(5_000_000), Some(157_481));
        // 127 bytes fill exactly 4 leaves; 128 bytes need a fifth.
        assert_eq!(piece_leaf_count(127), Some(4));
        assert_eq!(piece_leaf_count(128), Some(5));
        // A full 1 GiB padded piece: every one of its 2^25 leaves.
        assert_eq!(piece_leaf_count(1_065_353_216), Some(1 << 25));
        assert_eq!(piece_leaf_count(0), None);
        // Leaves holding data are ⌈4n / 127⌉ for every size (the padded tree
        // never counts).
        for n in (127..20_000u64).step_by(13) {
            assert_eq!(piece_leaf_count(n), Some((4 * n).div_ceil(127)), "{n}");
        }
    }

    #[test]
    fn five_megabytes_and_a_manifest_cost_what_the_real_contracts_took() {
        // filecoin.md: a 5,000,000-byte file plus its manifest is 157,500
        // leaves (5,000,625 bytes of rate base). A 600-byte manifest is
        // ⌈2,400 / 127⌉ = 19 leaves.
        let plan = UploadPlan {
            piece_sizes: vec![5_000_000, 600],
            copies: vec![copy(true, true, None, 0)],
        };
        assert_eq!(plan.leaves(), 157_500);
        let fees = FeeSchedule::documented();
        // ⌊5,000,625 × 2.5e18 / (2^40 × 86,400)⌋ = 131,598,435 wei of storage
        // plus 277,777,777,777 of proving per epoch.
        assert_eq!(
            storage_rate(&fees, 157_500),
            wei(131_598_435 + PROVING_PER_EPOCH)
        );
        let cost = upload_cost(&fees, &plan);
        // Reserve 0.1 + CDN 1.0 + 277,909,376,212 × 86,400: the real
        // threshold, 1.1240113701047168 USDFC.
        assert_eq!(cost.lockup, wei(1_124_011_370_104_716_800));
        assert_eq!(cost.required, cost.lockup);
        // What the file-bytes rule named, 1,421,020,800 wei short.
        assert_eq!(
            cost.lockup - wei(1_124_011_368_683_696_000),
            wei(1_421_020_800)
        );
        // create 0.025 + add (0.0005 + 2 × 0.0003) = 0.0261.
        assert_eq!(cost.one_time_fees, wei(26_100_000_000_000_000));
    }

    #[test]
    fn adding_to_a_set_locks_only_the_rise_of_its_rate() {
        // A set already holding 157,500 leaves gets the same again: the rate
        // goes from 277,909,376,212 to 278,040,974,648 (raw 10,001,250
        // bytes), 131,598,436 more per epoch: 11,370,104,870,400 wei locked.
        let fees = FeeSchedule::documented();
        let plan = UploadPlan {
            piece_sizes: vec![5_000_000, 600],
            copies: vec![copy(false, true, Some(wei(WEI_PER_USDFC / 10)), 157_500)],
        };
        let cost = upload_cost(&fees, &plan);
        assert_eq!(cost.rate_increase, wei(131_598_436));
        assert_eq!(cost.lockup, wei(11_370_104_870_400));
        // An empty existing set starts paying the proving fee too.
        let empty = UploadPlan {
            copies: vec![copy(false, true, Some(wei(WEI_PER_USDFC / 10)), 0)],
            ..plan
        };
        assert_eq!(
            upload_cost(&fees, &empty).lockup,
            wei((131_598_435 + PROVING_PER_EPOCH) * 86_400)
        );
    }

    #[test]
    fn a_new_cdn_data_set_locks_reserve_cdn_and_one_month_of_proving() {
        let fees = FeeSchedule::documented();
        let plan = UploadPlan {
            piece_sizes: vec![127, 127, 127, 127],
            copies: vec![copy(true, true, None, 0)],
        };
        let cost = upload_cost(&fees, &plan);
        // create 0.025 + add (0.0005 + 4 × 0.0003) = 0.0267
        assert_eq!(cost.one_time_fees, wei(26_700_000_000_000_000));
        // 16 leaves = 508 raw bytes: ⌊508 × 2.5e18 / (2^40 × 86,400)⌋ = 13,368
        // wei of storage per epoch. Reserve 0.1 (0.1 − 0.0267 stays over
        // 0.005: no top-up) + CDN 1.0 + (13,368 + 277,777,777,777) × 86,400.
        assert_eq!(
            cost.lockup,
            wei(1_100_000_000_000_000_000 + (13_368 + PROVING_PER_EPOCH) * 86_400)
        );
        assert!(cost.copies[0].new_data_set);
    }

    #[test]
    fn an_exhausted_reserve_is_topped_up_to_target_plus_pending() {
        let fees = FeeSchedule::documented();
        let plan = UploadPlan {
            piece_sizes: vec![127],
            copies: vec![copy(false, true, Some(wei(WEI_PER_USDFC / 1000)), 4)],
        };
        let cost = upload_cost(&fees, &plan);
        // One piece: 0.0005 + 0.0003 = 0.0008.
        assert_eq!(cost.one_time_fees, wei(800_000_000_000_000));
        // 0.001 left < 0.0008 + 0.005: top up to 0.1 + 0.0008, 0.0998 more.
        // 4 → 8 leaves: raw 127 → 254 bytes, storage 3,342 → 6,684 wei per
        // epoch: 3,342 × 86,400 more.
        assert_eq!(cost.lockup, wei(99_800_000_000_000_000 + 3_342 * 86_400));
    }

    #[test]
    fn two_copies_cost_twice_and_batches_follow_the_40_piece_limit() {
        let fees = FeeSchedule::documented();
        let plan = UploadPlan {
            piece_sizes: vec![1000; 82],
            copies: vec![copy(true, true, None, 0), copy(true, true, None, 0)],
        };
        let cost = upload_cost(&fees, &plan);
        // 3 add calls per copy (40 + 40 + 2 pieces): 0.025 + 3 × 0.0005 +
        // 82 × 0.0003 = 0.0511.
        assert_eq!(cost.copies[0].one_time_fees, wei(51_100_000_000_000_000));
        assert_eq!(cost.one_time_fees, wei(102_200_000_000_000_000));
        // 0.0511 of fees out of a 0.1 reserve leaves 0.0489, above 0.005:
        // no top-up. 82 × 32 = 2,624 leaves (raw 83,312 bytes): 2,192,471
        // wei of storage per epoch.
        let one = 1_100_000_000_000_000_000 + (2_192_471 + PROVING_PER_EPOCH) * 86_400;
        assert_eq!(cost.copies[0].lockup, wei(one));
        assert_eq!(cost.lockup, wei(2 * one));
        assert_eq!(cost.required, wei(2 * one));
    }

    #[test]
    fn a_new_set_needs_at_least_what_fwss_checks_at_creation() {
        // FWSS's creation check takes the monthly proving fee whole
        // (0.1 + 1.0 + 0.024), the rail only ⌊0.024 / 86,400⌋ per epoch: with
        // free storage the rail locks 67,200 wei less than the check asks.
        let fees = FeeSchedule {
            storage_per_tib_per_month: U256::ZERO,
            ..FeeSchedule::documented()
        };
        let plan = UploadPlan {
            piece_sizes: vec![127],
            copies: vec![copy(true, true, None, 0), copy(true, true, None, 0)],
        };
        let cost = upload_cost(&fees, &plan);
        let one = 1_100_000_000_000_000_000 + PROVING_PER_EPOCH * 86_400;
        assert_eq!(cost.copies[0].lockup, wei(one));
        assert_eq!(
            cost.copies[0].needs_available,
            wei(1_124_000_000_000_000_000)
        );
        // The second copy's check comes after the first copy's lockup.
        assert_eq!(cost.required, wei(one + 1_124_000_000_000_000_000));
        // Priced storage of 4 leaves (3,342 wei per epoch) outweighs it.
        let cost = upload_cost(&FeeSchedule::documented(), &plan);
        assert_eq!(cost.required, cost.lockup);
    }

    #[test]
    fn a_tib_is_priced_at_the_documented_monthly_rate() {
        // 2^35 leaves (1 TiB padded, 1,090,921,693,184 raw bytes):
        // ⌊1,090,921,693,184 × 2.5e18 / (2^40 × 86,400)⌋ = 28,709,129,050,925
        // wei per epoch of storage, plus the proving fee.
        let fees = FeeSchedule::documented();
        assert_eq!(
            storage_rate(&fees, 1 << 35),
            wei(28_709_129_050_925 + PROVING_PER_EPOCH)
        );
        assert_eq!(storage_rate(&fees, 0), U256::ZERO);
    }
}
