//! The FWSS state view's price list (`getPriceList()`), with the documented
//! fees as the fallback for views that lack it, and the up-front cost of a
//! planned upload under it. The fee arithmetic is in [`super::super::fees`].

use super::super::abi::IFwssView;
use super::super::fees::{upload_cost, FeeSchedule, UploadCost, UploadPlan};
use super::{ChainError, ChainReader};
impl ChainReader {
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
}
