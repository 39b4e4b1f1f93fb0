//! Networks and their contract addresses (filecoin.md, "Chains").

use alloy::primitives::{address, Address};
use serde::{Deserialize, Serialize};

/// A Filecoin network with a deployed Filecoin Onchain Cloud stack: the one
/// type for `upstream.network`, Beam's domain, chain ids and contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Filecoin mainnet, chain id 314: Beam at `filbeam.io`.
    Mainnet,
    /// The calibration test network, chain id 314159: Beam at
    /// `calibration.filbeam.io`.
    #[default]
    Calibration,
}

/// Contract addresses that are fixed per network. The FWSS state view is not
/// here on purpose: it changes with FWSS upgrades, so it is read from FWSS at
/// run time ([`crate::chain::ChainReader::fwss_view_address`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contracts {
    /// FilecoinWarmStorageService: EIP-712 verifying contract, `recordKeeper`, payment operator.
    pub fwss: Address,
    /// PDPVerifier: data set liveness, listener and piece counts.
    pub pdp_verifier: Address,
    /// FilecoinPay: deposits and operator approvals.
    pub filecoin_pay: Address,
    /// ServiceProviderRegistry: provider service URL and payee.
    pub sp_registry: Address,
    /// USDFC ERC-20 token, the payment token.
    pub usdfc: Address,
}

const MAINNET: Contracts = Contracts {
    fwss: address!("8408502033C418E1bbC97cE9ac48E5528F371A9f"),
    pdp_verifier: address!("BADd0B92C1c71d02E7d520f64c0876538fa2557F"),
    filecoin_pay: address!("23b1e018F08BB982348b15a86ee926eEBf7F4DAa"),
    sp_registry: address!("f55dDbf63F1b55c3F1D4FA7e339a68AB7b64A5eB"),
    usdfc: address!("80B98d3aa09ffff255c3ba4A241111Ff1262F045"),
};

const CALIBRATION: Contracts = Contracts {
    fwss: address!("02925630df557F957f70E112bA06e50965417CA0"),
    pdp_verifier: address!("85e366Cf9DD2c0aE37E963d9556F5f4718d6417C"),
    filecoin_pay: address!("09a0fDc2723fAd1A7b8e3e00eE5DF73841df55a0"),
    sp_registry: address!("839e5c9988e4e9977d40708d0094103c0839Ac9D"),
    usdfc: address!("b3042734b608a1B16e9e86B374A3f3e389B4cDf0"),
};

impl Network {
    /// Every supported network.
    pub const ALL: [Network; 2] = [Network::Mainnet, Network::Calibration];

    /// The EIP-155 chain id.
    pub const fn chain_id(self) -> u64 {
        match self {
            Network::Mainnet => 314,
            Network::Calibration => 314_159,
        }
    }

    /// The network with this chain id, if supported.
    pub fn from_chain_id(chain_id: u64) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.chain_id() == chain_id)
    }

    /// Lower-case name as used in config files: `mainnet` or `calibration`.
    pub const fn name(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Calibration => "calibration",
        }
    }

    /// The name used in config and in Beam's `{network}` placeholder
    /// (the same as [`Network::name`]).
    pub const fn as_str(self) -> &'static str {
        self.name()
    }

    /// Beam's retrieval domain on this network.
    pub const fn beam_domain(self) -> &'static str {
        match self {
            Network::Mainnet => "filbeam.io",
            Network::Calibration => "calibration.filbeam.io",
        }
    }

    /// Parses exactly `mainnet` or `calibration`, as config files and URL
    /// paths spell them; the error says what is accepted.
    pub fn parse(s: &str) -> Result<Network, String> {
        match s {
            "mainnet" => Ok(Network::Mainnet),
            "calibration" => Ok(Network::Calibration),
            other => Err(format!(
                "unknown network {other:?}: use mainnet or calibration"
            )),
        }
    }

    /// Parses [`Network::name`] (also accepts `calibnet`).
    pub fn from_name(name: &str) -> Option<Network> {
        match name.to_ascii_lowercase().as_str() {
            "mainnet" => Some(Network::Mainnet),
            "calibration" | "calibnet" => Some(Network::Calibration),
            _ => None,
        }
    }

    /// Public Glif JSON-RPC endpoint for this network.
    pub const fn default_rpc_url(self) -> &'static str {
        match self {
            Network::Mainnet => "https://api.node.glif.io/rpc/v1",
            Network::Calibration => "https://api.calibration.node.glif.io/rpc/v1",
        }
    }

    /// The fixed contract addresses of this network.
    pub const fn contracts(self) -> Contracts {
        match self {
            Network::Mainnet => MAINNET,
            Network::Calibration => CALIBRATION,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.chain_id())
    }
}
