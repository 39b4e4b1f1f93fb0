//! Solidity bindings: the FWSS EIP-712 types and the view functions this
//! module calls. Signatures from the ABIs shipped in `@filoz/synapse-core`
//! 0.5.2 (`abis/generated.ts`), updated to the FWSS state view of
//! filecoin-services 2026-08 (`DataSetInfoView` with the two lifecycle fields
//! of the FWSS change of 2026-06-11, `getPriceList()`); only what is used.
//!
//! `getClientDataSets` is declared twice: [`IFwssView`] with today's 13-word
//! element and [`IFwssViewLegacy`] with the 11-word element of before
//! 2026-06-11. Both have the same selector; the reader picks the decoder from
//! the width of the answer (see `reads::decode_client_data_sets`).

#![allow(missing_docs)]

use alloy::sol;

sol! {
    /// EIP-712 `MetadataEntry(string key,string value)`.
    #[derive(Debug, PartialEq, Eq)]
    struct MetadataEntry { string key; string value; }

    /// EIP-712 `CreateDataSet(uint256 clientDataSetId,address payee,MetadataEntry[] metadata)`.
    #[derive(Debug, PartialEq, Eq)]
    struct CreateDataSet { uint256 clientDataSetId; address payee; MetadataEntry[] metadata; }

    /// EIP-712 `Cid(bytes data)`: binary CID bytes.
    #[derive(Debug, PartialEq, Eq)]
    struct Cid { bytes data; }

    /// EIP-712 `PieceMetadata(uint256 pieceIndex,MetadataEntry[] metadata)`.
    #[derive(Debug, PartialEq, Eq)]
    struct PieceMetadata { uint256 pieceIndex; MetadataEntry[] metadata; }

    /// EIP-712 `AddPieces(uint256 clientDataSetId,uint256 nonce,Cid[] pieceData,PieceMetadata[] pieceMetadata)`.
    #[derive(Debug, PartialEq, Eq)]
    struct AddPieces { uint256 clientDataSetId; uint256 nonce; Cid[] pieceData; PieceMetadata[] pieceMetadata; }
}

sol! {
    /// FilecoinWarmStorageService (only the address getter used here).
    interface IFwss {
        function viewContractAddress() external view returns (address);
    }

    /// FilecoinWarmStorageServiceStateView.
    interface IFwssView {
        #[derive(Debug, PartialEq, Eq)]
        struct DataSetInfoView {
            uint256 pdpRailId;
            uint256 cacheMissRailId;
            uint256 cdnRailId;
            address payer;
            address payee;
            address serviceProvider;
            uint256 commissionBps;
            uint256 clientDataSetId;
            uint256 pdpEndEpoch;
            uint256 providerId;
            uint96 pendingOneTimePayments;
            uint96 lifecycleReserveBalance;
            uint256 dataSetId;
        }
        /// `PriceList` of filecoin-services `src/lib/PriceList.sol`: amounts in
        /// the token's smallest unit, rates per month.
        #[derive(Debug, PartialEq, Eq)]
        struct PriceListRates {
            uint256 storagePerTibPerMonth;
            uint256 datasetFeePerMonth;
            uint256 cdnEgressPerTib;
            uint256 cacheMissEgressPerTib;
        }
        #[derive(Debug, PartialEq, Eq)]
        struct PriceListFees {
            uint256 createDataSetFee;
            uint256 addPiecesBaseFee;
            uint256 addPiecesPerPieceFee;
            uint256 schedulePieceRemovalsFee;
            uint256 terminateFee;
        }
        #[derive(Debug, PartialEq, Eq)]
        struct PriceListLockups {
            uint256 lifecycleReserveTarget;
            uint256 replenishThreshold;
            uint256 defaultLockupPeriod;
            uint256 cdnLockupAmount;
            uint256 cacheMissLockupAmount;
            uint256 cdnLockupPeriod;
        }
        #[derive(Debug, PartialEq, Eq)]
        struct PriceList {
            address token;
            PriceListRates rates;
            PriceListFees fees;
            PriceListLockups lockups;
        }
        function getClientDataSets(address client, uint256 offset, uint256 limit) external view returns (DataSetInfoView[] infos);
        function getAllDataSetMetadata(uint256 dataSetId) external view returns (string[] keys, string[] values);
        function getPriceList() external view returns (PriceList);
    }

    /// The state view before the FWSS change of 2026-06-11: an 11-word
    /// `DataSetInfoView` without the lifecycle-reserve fields.
    interface IFwssViewLegacy {
        #[derive(Debug, PartialEq, Eq)]
        struct DataSetInfoView {
            uint256 pdpRailId;
            uint256 cacheMissRailId;
            uint256 cdnRailId;
            address payer;
            address payee;
            address serviceProvider;
            uint256 commissionBps;
            uint256 clientDataSetId;
            uint256 pdpEndEpoch;
            uint256 providerId;
            uint256 dataSetId;
        }
        function getClientDataSets(address client, uint256 offset, uint256 limit) external view returns (DataSetInfoView[] infos);
    }

    /// ServiceProviderRegistry.
    interface IServiceProviderRegistry {
        #[derive(Debug, PartialEq, Eq)]
        struct ServiceProviderInfoView {
            address serviceProvider;
            address payee;
            string name;
            string description;
            bool isActive;
        }
        #[derive(Debug, PartialEq, Eq)]
        struct ServiceProduct {
            uint8 productType;
            string[] capabilityKeys;
            bool isActive;
        }
        #[derive(Debug, PartialEq, Eq)]
        struct ProviderWithProduct {
            uint256 providerId;
            ServiceProviderInfoView providerInfo;
            ServiceProduct product;
            bytes[] productCapabilityValues;
        }
        function getProviderIdByAddress(address providerAddress) external view returns (uint256);
        function getAllActiveProviders(uint256 offset, uint256 limit) external view returns (uint256[] providerIds, bool hasMore);
        function getProviderWithProduct(uint256 providerId, uint8 productType) external view returns (ProviderWithProduct);
    }

    /// PDPVerifier (data set state).
    interface IPdpVerifier {
        function dataSetLive(uint256 setId) external view returns (bool);
        function getDataSetListener(uint256 setId) external view returns (address);
        function getActivePieceCount(uint256 setId) external view returns (uint256 activeCount);
        function getDataSetLeafCount(uint256 setId) external view returns (uint256);
    }

    /// FilecoinPay (deposits and operator approvals).
    interface IFilecoinPay {
        function accounts(address token, address owner) external view returns (uint256 funds, uint256 lockupCurrent, uint256 lockupRate, uint256 lockupLastSettledAt);
        function operatorApprovals(address token, address client, address operator) external view returns (bool isApproved, uint256 rateAllowance, uint256 lockupAllowance, uint256 rateUsage, uint256 lockupUsage, uint256 maxLockupPeriod);
    }

    /// ERC-20 (USDFC balance).
    interface IErc20 {
        function balanceOf(address owner) external view returns (uint256);
    }
}

/// ServiceProviderRegistry product type of PDP storage.
pub const PRODUCT_TYPE_PDP: u8 = 0;
