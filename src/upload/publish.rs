//! Publishing: an upload from bytes to a Filecoin data set.
//!
//! [`Publisher::connect`] does every check that can fail before a byte is
//! sent: the RPC is on the configured chain, the payer wallet can pay (USDFC
//! deposited in FilecoinPay, FWSS approved as operator; otherwise the error
//! lists what to do), the provider is in the ServiceProviderRegistry and
//! answers its ping. [`Publisher::publish`] then uploads the file as an asset
//! ([`super::pipeline`]) and adds its pieces and manifest to the payer's
//! `withCDN` data set at that provider (reused when one exists, created in
//! the same transaction otherwise), at most 40 pieces per signed call.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;

use super::chain::{
    add_pieces_extra_data, cdn_metadata, create_and_add_extra_data, create_data_set_extra_data,
    random_u256, Address, ChainError, ChainReader, ExtraDataError, Network, PayerKey, PieceToAdd,
    ProviderInfo, MAX_PIECES_PER_ADD, U256,
};
use super::manifest::Manifest;
use super::pipeline::{upload_asset, AssetOptions, UploadError};
use super::sp::{SpClient, SpError, SpTimeouts};
use crate::config::Config;
use crate::piece::PieceCid;

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// The Filecoin network.
    pub network: Network,
    /// JSON-RPC endpoint of that network.
    pub rpc_url: String,
    /// The storage provider's id in the ServiceProviderRegistry.
    pub provider_id: u64,
    /// Use this service URL instead of the one the registry lists.
    pub provider_url: Option<String>,
    /// Add to this data set (it must be the payer's, at this provider).
    pub data_set: Option<u64>,
    /// Piece splitting, limits and layers.
    pub asset: AssetOptions,
    /// Provider HTTP timeouts and polling.
    pub timeouts: SpTimeouts,
}

impl PublishSettings {
    /// The settings the `upload` config section asks for, for one file.
    pub fn from_config(
        cfg: &Config,
        provider_id: u64,
        file_name: String,
        content_type: Option<String>,
        commp_threads: usize,
    ) -> PublishSettings {
        let network = chain_network(cfg);
        PublishSettings {
            network,
            rpc_url: cfg
                .upload
                .rpc_url
                .clone()
                .unwrap_or_else(|| network.default_rpc_url().to_string()),
            provider_id,
            provider_url: cfg.upload.provider_url.clone(),
            data_set: cfg.upload.data_set,
            asset: AssetOptions {
                piece_size: cfg.upload.piece_size.0,
                max_size: cfg.upload.max_size.0,
                window_padded: cfg.cache.window.0,
                content_type,
                file_name,
                commp_threads,
            },
            timeouts: SpTimeouts::default(),
        }
    }
}

/// The chain network of a config's `upstream.network`.
pub fn chain_network(cfg: &Config) -> Network {
    match cfg.upstream.network {
        crate::config::Network::Mainnet => Network::Mainnet,
        crate::config::Network::Calibration => Network::Calibration,
    }
}

/// Why publishing failed. Nothing is added to a data set unless the error
/// comes from the add step itself.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A chain read failed.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// The wallet cannot pay yet.
    #[error("the payer wallet {payer} is not ready to pay for storage: {}", problems.join("; "))]
    Wallet {
        /// The payer.
        payer: Address,
        /// What to do about it.
        problems: Vec<String>,
    },
    /// The upload failed.
    #[error("{0}")]
    Upload(#[from] UploadError),
    /// The provider failed a step.
    #[error("{0}")]
    Provider(#[from] SpError),
    /// Signing failed (bad metadata or too many pieces).
    #[error("signing: {0}")]
    Signing(#[from] ExtraDataError),
    /// The configured data set cannot be used.
    #[error("data set {0} is not a live FWSS data set of this payer at this provider")]
    DataSet(u64),
}

/// One piece in a [`PublishReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportPiece {
    /// PieceCID (v2).
    pub cid: String,
    /// Raw bytes.
    pub size: u64,
}

/// What a publish produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishReport {
    /// The asset id (the manifest's PieceCID).
    pub asset_id: String,
    /// File size.
    pub size: u64,
    /// Media type recorded in the manifest.
    pub content_type: String,
    /// File name recorded in the manifest.
    pub file_name: String,
    /// The file's pieces, in order.
    pub pieces: Vec<ReportPiece>,
    /// The data set the pieces (and the manifest) joined.
    pub data_set_id: u64,
    /// True when this publish created the data set.
    pub created_data_set: bool,
    /// Transaction hashes, in order.
    pub transactions: Vec<String>,
    /// Piece ids the chain gave, in order (file pieces, then the manifest).
    pub piece_ids: Vec<u64>,
    /// The wallet that pays for the data set (and for Beam's egress of it).
    pub payer: String,
    /// Path that serves the file from this edge, with its file name
    /// (`/asset/<id>/<name>`; billed to `upstream.payer`).
    pub asset_path: String,
    /// The same through any edge, billed to `payer`
    /// (`/beam/<network>/<payer>/asset/<id>/<name>`; filled in by the caller).
    pub beam_path: String,
    /// The storage provider that holds the pieces.
    pub provider_url: String,
    /// Beam URLs of the manifest and the pieces, at `payer`'s Beam host
    /// (filled in by the caller, which knows the Beam URL template); Beam
    /// serves them once indexed. The piece of a one-piece file carries the
    /// file name (Beam ignores path segments after the CID).
    pub beam_urls: Vec<String>,
    /// The manifest as uploaded (not in the JSON: its layers can be large).
    #[serde(skip)]
    pub manifest: Manifest,
}

impl PublishReport {
    /// Fills `beam_urls` (manifest first, then the pieces) and `beam_path`
    /// for the payer's Beam host under `cfg`'s template and network (the
    /// configured `upstream.payer`'s base when the template has no `{payer}`).
    pub fn with_beam_links(mut self, cfg: &Config) -> PublishReport {
        let network = cfg.upstream.network;
        let name = name_segment(&self.file_name);
        self.beam_path = format!(
            "/beam/{}/{}/asset/{}{name}",
            network.as_str(),
            self.payer,
            self.asset_id
        );
        let base = cfg
            .beam_base_url_for(&self.payer, network)
            .or_else(|| cfg.beam_base_url());
        if let Some(base) = base {
            let one_piece = self.pieces.len() == 1;
            self.beam_urls = std::iter::once(format!("{base}/{}", self.asset_id))
                .chain(self.pieces.iter().map(|p| {
                    let name = if one_piece { name.as_str() } else { "" };
                    format!("{base}/{}{name}", p.cid)
                }))
                .collect();
        }
        self
    }
}

/// A connected publisher: wallet checked, provider found and reachable.
pub struct Publisher {
    key: PayerKey,
    chain: ChainReader,
    chain_id: u64,
    provider: ProviderInfo,
    sp: SpClient,
    settings: PublishSettings,
}

impl Publisher {
    /// Runs every pre-flight check; fails before any upload starts.
    pub async fn connect(
        key: PayerKey,
        settings: PublishSettings,
    ) -> Result<Publisher, PublishError> {
        let chain = ChainReader::new(&settings.rpc_url, settings.network)?;
        chain.verify_chain().await?;
        let chain_id = settings.network.chain_id();
        let report = chain.wallet_report(key.address()).await?;
        if !report.is_ready() {
            return Err(PublishError::Wallet {
                payer: key.address(),
                problems: report.problems(),
            });
        }
        let provider = chain
            .provider_by_id(U256::from(settings.provider_id))
            .await?;
        let url = settings
            .provider_url
            .clone()
            .unwrap_or_else(|| provider.service_url.clone());
        let sp = SpClient::new(&url, settings.timeouts.clone())?;
        sp.ping().await?;
        Ok(Publisher {
            key,
            chain,
            chain_id,
            provider,
            sp,
            settings,
        })
    }

    /// The provider's service URL.
    pub fn provider_url(&self) -> String {
        self.sp.service_url().to_string()
    }

    /// Uploads `source` as an asset and adds its pieces to a data set.
    pub async fn publish<S>(
        &self,
        source: S,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<PublishReport, PublishError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin + Send,
    {
        let asset = upload_asset(&self.sp, source, &self.settings.asset, progress).await?;
        let mut cids: Vec<PieceCid> = asset.pieces.iter().map(|p| p.cid.clone()).collect();
        cids.push(asset.asset_id.clone());

        let metadata = cdn_metadata();
        let fwss = self.chain.contracts().fwss;
        let payer = self.key.address();
        let existing = match self.settings.data_set {
            Some(id) => {
                let sets = self.chain.client_data_sets(payer).await?;
                let found = sets.into_iter().find(|d| {
                    d.data_set_id == U256::from(id)
                        && d.provider_id == self.provider.id
                        && d.is_usable()
                });
                Some(found.ok_or(PublishError::DataSet(id))?)
            }
            None => {
                self.chain
                    .find_reusable_data_set(payer, self.provider.id, &metadata)
                    .await?
            }
        };

        let mut transactions = Vec::new();
        let mut piece_ids = Vec::new();
        let mut created = false;
        let (mut data_set_id, client_data_set_id) = match &existing {
            Some(d) => (Some(d.data_set_id.to::<u64>()), d.client_data_set_id),
            None => (None, random_u256()),
        };
        for batch in cids.chunks(MAX_PIECES_PER_ADD) {
            let pieces: Vec<PieceToAdd> =
                batch.iter().map(|c| (c.to_bytes(), Vec::new())).collect();
            let add = add_pieces_extra_data(
                &self.key,
                self.chain_id,
                fwss,
                client_data_set_id,
                random_u256(),
                &pieces,
            )?;
            let added = match data_set_id {
                Some(id) => {
                    let tx = self.sp.add_pieces(id, batch, &hex(&add)).await?;
                    transactions.push(tx.clone());
                    self.sp.wait_pieces_added(id, &tx).await?
                }
                None => {
                    let create = create_data_set_extra_data(
                        &self.key,
                        self.chain_id,
                        fwss,
                        client_data_set_id,
                        self.provider.payee,
                        &metadata,
                    )?;
                    let extra = create_and_add_extra_data(create, add);
                    let tx = self
                        .sp
                        .create_and_add(&fwss.to_string(), batch, &hex(&extra))
                        .await?;
                    transactions.push(tx.clone());
                    created = true;
                    self.sp.wait_created_and_added(&tx).await?
                }
            };
            data_set_id = Some(added.data_set_id);
            piece_ids.extend(added.piece_ids);
        }

        Ok(PublishReport {
            asset_id: asset.asset_id.to_string(),
            size: asset.manifest.size,
            content_type: asset.manifest.content_type.clone(),
            file_name: asset.manifest.file_name.clone(),
            pieces: asset
                .pieces
                .iter()
                .map(|p| ReportPiece {
                    cid: p.cid.to_string(),
                    size: p.size,
                })
                .collect(),
            data_set_id: data_set_id.unwrap_or_default(),
            created_data_set: created,
            transactions,
            piece_ids,
            payer: format!("{:#x}", self.key.address()),
            asset_path: format!(
                "/asset/{}{}",
                asset.asset_id,
                name_segment(&asset.manifest.file_name)
            ),
            beam_path: String::new(),
            provider_url: self.provider_url(),
            beam_urls: Vec::new(),
            manifest: asset.manifest.clone(),
        })
    }
}

/// `/<name>` (sanitised, escaped) for a path after a CID, or "" when the
/// file has no usable name.
fn name_segment(file_name: &str) -> String {
    crate::http::disposition::sanitize_filename(file_name)
        .map(|n| format!("/{}", crate::http::disposition::path_segment(&n)))
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
