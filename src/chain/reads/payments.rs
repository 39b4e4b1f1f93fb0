//! Reads of what the payer can pay with: FIL (gas), USDFC in the wallet,
//! the payer's FilecoinPay account and FWSS's operator approval on it; and
//! the [`WalletReport`] that turns them into fixes for the payer.

use alloy::primitives::utils::format_units;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;

use super::super::abi::{IErc20, IFilecoinPay};
use super::super::fees::{FeeSource, UploadCost};
use super::super::network::{Contracts, Network};
use super::{rpc_error, ChainError, ChainReader};

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

impl ChainReader {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    const VIEW: Address = address!("9BF9e67e83EC8613883FDdDec4D3b38AEE937177");

    #[test]
    fn the_wallet_asks_for_the_missing_lockup_of_a_planned_upload() {
        use super::super::super::fees::{upload_cost, CopyPlan, FeeSchedule, UploadPlan};
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
