//! What an upload costs the payer up front: FWSS's one-time fees and the
//! lockups FilecoinPay must be able to take before a provider accepts the
//! upload's transactions.
//!
//! What it is: a pure calculation over the FWSS price list
//! ([`FeeSchedule`], read from the state view's `getPriceList()` when the
//! deployment has it, otherwise the documented v1.3.0 constants) and a plan of
//! the upload ([`UploadPlan`]: pieces, bytes, and for each copy whether it
//! creates a data set or adds to one with a known lifecycle reserve). The
//! wallet pre-flight ([`super::WalletReport::problems`]) compares the result
//! with the payer's available funds and FWSS's lockup allowance, so an upload
//! that cannot be paid is refused before any byte is sent.
//!
//! What it is not: a bill. Storage is streamed per epoch afterwards; here
//! only what must be locked (or paid) when the pieces are added counts.
//!
//! Facts (filecoin-services, FWSS v1.3.0 of June 2026, "FWSS Pricing
//! Rationale" and `src/lib/PriceList.sol`; synapse-core
//! `warm-storage/calculate-lifecycle-reserve-funding.ts` and
//! `calculate-operation-fees.ts` of 2026-08):
//! - CreateDataSet charges `createDataSetFee`; each AddPieces call charges
//!   `addPiecesBaseFee + n * addPiecesPerPieceFee` for its `n` pieces. The fees
//!   are paid out of the data set's lifecycle reserve, a fixed lockup on its
//!   PDP rail: creating a data set locks `lifecycleReserveTarget`; before a
//!   fee flush that would leave less than `replenishThreshold`, FWSS tops the
//!   reserve up to `target + pending` (more lockup), and AddPieces fails fast
//!   when the payer's lockup cannot cover that.
//! - A new `withCDN` data set also locks `cdnLockupAmount` and
//!   `cacheMissLockupAmount` on its FilBeam rails.
//! - The storage rate (`storagePerTibPerMonth` per TiB plus
//!   `datasetFeePerMonth` per data set) is locked for `defaultLockupPeriod`
//!   epochs.

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
}

/// What is about to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    /// Pieces added to each copy's data set (file pieces and the manifest).
    pub pieces: u64,
    /// Raw bytes of those pieces.
    pub bytes: u64,
    /// Every copy, primary first.
    pub copies: Vec<CopyPlan>,
}

impl UploadPlan {
    /// The plan of a `size`-byte file cut into `piece_size` pieces plus a
    /// manifest; an unknown size counts as one piece.
    pub fn for_file(size: Option<u64>, piece_size: u64, copies: Vec<CopyPlan>) -> UploadPlan {
        let file_pieces = match size {
            Some(size) if piece_size > 0 => size.div_ceil(piece_size).max(1),
            _ => 1,
        };
        UploadPlan {
            pieces: file_pieces + 1,
            bytes: size.unwrap_or(0),
            copies,
        }
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
    /// replenishments, CDN lockups of a new CDN set, one lockup period of the
    /// storage rate.
    pub lockup: U256,
}

/// What the whole upload needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCost {
    /// Per copy, primary first.
    pub copies: Vec<CopyCost>,
    /// Sum of the copies' one-time fees.
    pub one_time_fees: U256,
    /// Sum of the copies' new lockup: what must be available in FilecoinPay.
    pub lockup: U256,
    /// The price list used.
    pub fees: FeeSchedule,
}

/// The cost of `plan` under `fees`. Add calls are batched as the publisher
/// batches them (at most [`MAX_PIECES_PER_ADD`] pieces each); the reserve is
/// simulated call by call the way FWSS replenishes it.
pub fn upload_cost(fees: &FeeSchedule, plan: &UploadPlan) -> UploadCost {
    let batch = MAX_PIECES_PER_ADD as u64;
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
        let mut pending = copy.pending_one_time_payments.unwrap_or(U256::ZERO);
        let mut one_time = U256::ZERO;
        if new {
            pending += fees.create_data_set_fee;
            one_time += fees.create_data_set_fee;
        }
        let mut left = plan.pieces;
        while left > 0 {
            let n = left.min(batch);
            left -= n;
            let fee = fees.add_pieces_base_fee + fees.add_pieces_per_piece_fee * U256::from(n);
            one_time += fee;
            pending += fee;
            if reserve < pending + fees.replenish_threshold {
                let topped = fees.lifecycle_reserve_target + pending;
                lockup += topped.saturating_sub(reserve);
                reserve = topped;
            }
            reserve = reserve.saturating_sub(pending);
            pending = U256::ZERO;
        }
        if new && copy.with_cdn {
            lockup += fees.cdn_lockup_amount + fees.cache_miss_lockup_amount;
        }
        // Rate lockup: (bytes × price / (TiB × month) + proving / month) per
        // epoch, held for the lockup period.
        let period = fees.default_lockup_period;
        let month = U256::from(EPOCHS_PER_MONTH);
        let storage_rate =
            U256::from(plan.bytes) * fees.storage_per_tib_per_month / (U256::from(TIB) * month);
        let proving_rate = if new {
            fees.dataset_fee_per_month / month
        } else {
            U256::ZERO
        };
        lockup += (storage_rate + proving_rate) * period;
        copies.push(CopyCost {
            provider_id: copy.provider_id,
            new_data_set: new,
            one_time_fees: one_time,
            lockup,
        });
    }
    UploadCost {
        one_time_fees: copies.iter().map(|c| c.one_time_fees).sum(),
        lockup: copies.iter().map(|c| c.lockup).sum(),
        copies,
        fees: *fees,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(n: u64) -> U256 {
        usdfc_fraction(n, 1000)
    }

    fn copy(new: bool, cdn: bool, reserve: Option<U256>) -> CopyPlan {
        CopyPlan {
            provider_id: U256::from(7),
            data_set_id: if new { None } else { Some(U256::from(5)) },
            with_cdn: cdn,
            reserve_balance: reserve,
            pending_one_time_payments: Some(U256::ZERO),
        }
    }

    #[test]
    fn a_new_cdn_data_set_locks_reserve_cdn_and_one_month_of_proving() {
        let fees = FeeSchedule::documented();
        let plan = UploadPlan {
            pieces: 4,
            bytes: 0,
            copies: vec![copy(true, true, None)],
        };
        let cost = upload_cost(&fees, &plan);
        // create 0.025 + add (0.0005 + 4 × 0.0003) = 0.0267
        assert_eq!(cost.one_time_fees, usdfc_fraction(267, 10_000));
        // reserve 0.1 (0.1 - 0.0267 stays over 0.005: no top-up) + CDN 1.0
        // + proving 0.024 / 86400 per epoch × 86400 (integer division).
        let proving = fees.dataset_fee_per_month / U256::from(EPOCHS_PER_MONTH)
            * U256::from(EPOCHS_PER_MONTH);
        assert_eq!(cost.lockup, milli(100) + milli(1000) + proving);
        assert!(cost.copies[0].new_data_set);
    }

    #[test]
    fn an_exhausted_reserve_is_topped_up_to_target_plus_pending() {
        let fees = FeeSchedule::documented();
        let plan = UploadPlan {
            pieces: 1,
            bytes: 0,
            copies: vec![copy(false, true, Some(milli(1)))],
        };
        let cost = upload_cost(&fees, &plan);
        let fee = usdfc_fraction(8, 10_000);
        assert_eq!(cost.one_time_fees, fee);
        // 0.001 left < 0.0008 + 0.005: top up to 0.1 + 0.0008.
        assert_eq!(cost.lockup, milli(100) + fee - milli(1));
    }

    #[test]
    fn two_copies_cost_twice_and_batches_follow_the_40_piece_limit() {
        let fees = FeeSchedule::documented();
        let plan = UploadPlan::for_file(
            Some(81 * 1000),
            1000,
            vec![copy(true, true, None), copy(true, true, None)],
        );
        assert_eq!(plan.pieces, 82);
        let cost = upload_cost(&fees, &plan);
        // 3 add calls per copy (40 + 40 + 2 pieces).
        let per_copy = fees.create_data_set_fee
            + fees.add_pieces_base_fee * U256::from(3)
            + fees.add_pieces_per_piece_fee * U256::from(82);
        assert_eq!(cost.copies[0].one_time_fees, per_copy);
        assert_eq!(cost.one_time_fees, per_copy * U256::from(2));
        assert_eq!(cost.lockup, cost.copies[0].lockup * U256::from(2));
    }

    #[test]
    fn storage_is_locked_for_the_lockup_period() {
        let fees = FeeSchedule::documented();
        let plan = UploadPlan {
            pieces: 1,
            bytes: TIB,
            copies: vec![copy(false, false, Some(milli(100)))],
        };
        let cost = upload_cost(&fees, &plan);
        // One TiB for a month: 2.5 USDFC (to integer division per epoch).
        let rate = fees.storage_per_tib_per_month / U256::from(EPOCHS_PER_MONTH);
        assert_eq!(cost.lockup, rate * U256::from(EPOCHS_PER_MONTH));
    }
}
