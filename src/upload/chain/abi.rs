//! Solidity bindings: the FWSS EIP-712 types and the view functions this
//! module calls. Signatures copied from the ABIs shipped in
//! `@filoz/synapse-core` 0.5.2 (`abis/generated.ts`); only what is used.

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
            uint256 dataSetId;
        }
        function getClientDataSets(address client, uint256 offset, uint256 limit) external view returns (DataSetInfoView[] infos);
        function getAllDataSetMetadata(uint256 dataSetId) external view returns (string[] keys, string[] values);
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
        function getProviderWithProduct(uint256 providerId, uint8 productType) external view returns (ProviderWithProduct);
    }

    /// PDPVerifier (data set state).
    interface IPdpVerifier {
        function dataSetLive(uint256 setId) external view returns (bool);
        function getDataSetListener(uint256 setId) external view returns (address);
        function getActivePieceCount(uint256 setId) external view returns (uint256 activeCount);
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
