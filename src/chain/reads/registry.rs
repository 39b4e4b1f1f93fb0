//! Reads of the ServiceProviderRegistry: a provider by id or by address
//! (its PDP service URL, payee and capabilities), and the ids of every
//! active provider.

use std::collections::BTreeMap;

use alloy::primitives::{Address, Bytes, U256};

use super::super::abi::{IServiceProviderRegistry, PRODUCT_TYPE_PDP};
use super::{ChainError, ChainReader, DATA_SETS_PAGE};
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

impl ChainReader {
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
