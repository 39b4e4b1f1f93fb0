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
//!
//! Copies (`upload.copies`, default 2, as the reference SDK's
//! `StorageManager` stores by default): after the primary provider holds the
//! pieces, each further provider is asked to pull them from the primary's
//! `/piece/<cid>` (Curio's `POST /pdp/piece/pull`) with the payer's signed
//! AddPieces or CreateDataSetAndAddPieces extraData for *its* `withCDN` data
//! set, then the same extraData commits them there (synapse-sdk
//! `storage/context.ts`: store, pull, commit). A copy that fails is reported
//! (`complete: false`) and never undoes the primary: the upload is not lost.
//! The wallet pre-flight counts every copy's data set and fees.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;

use super::pipeline::{planned_piece_sizes, upload_asset, AssetOptions, UploadError};
use super::sp::{PullSource, PullStatus, SpClient, SpError, SpTimeouts, Step};
use crate::chain::{
    add_pieces_extra_data, cdn_metadata, choose_reusable_data_set, create_and_add_extra_data,
    create_data_set_extra_data, random_u256, Address, ChainError, ChainReader, CopyPlan, DataSet,
    ExtraDataError, Network, PayerKey, PieceToAdd, ProviderInfo, UploadPlan, MAX_PIECES_PER_ADD,
    U256,
};
use crate::config::Config;
use crate::manifest::Manifest;
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
    /// Copies wanted, the primary included (`upload.copies`).
    pub copies: u32,
    /// Providers to ask for the extra copies, in order
    /// (`upload.copy_provider_ids`); empty asks the registry.
    pub copy_provider_ids: Vec<u64>,
    /// The file's size when known before it streams, for the wallet
    /// pre-flight's piece count (unknown counts as one piece).
    pub expected_size: Option<u64>,
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
        let network = cfg.upstream.network;
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
            copies: cfg.upload.copies,
            copy_provider_ids: cfg.upload.copy_provider_ids.clone(),
            expected_size: None,
        }
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

/// How one copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyStatus {
    /// The provider holds the pieces and they are in its data set.
    Complete,
    /// This copy did not happen; `error` says why.
    Failed,
}

/// One copy of a published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// `primary` (received the upload) or `secondary` (pulled from the primary).
    pub role: &'static str,
    /// Registry id of the provider; `None` when no provider could be found.
    pub provider_id: Option<u64>,
    /// The provider's service URL.
    pub provider_url: Option<String>,
    /// The data set holding this copy.
    pub data_set_id: Option<u64>,
    /// True when this copy created its data set.
    pub created_data_set: bool,
    /// Hashes of the transactions that landed on chain, in order (Curio's
    /// `confirmedTxHash` when it replaced one by fee).
    pub transactions: Vec<String>,
    /// Piece ids in this copy's data set (file pieces, then the manifest).
    pub piece_ids: Vec<u64>,
    /// How it ended.
    pub status: CopyStatus,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// Copies asked for (`upload.copies`).
    pub requested_copies: u32,
    /// Every copy, primary first.
    pub copies: Vec<CopyReport>,
    /// Every requested copy is complete. `false` is a warning: the primary
    /// holds the file (it is never reported otherwise), a further copy failed.
    pub complete: bool,
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

/// One provider a copy goes to, with the data set it will use.
struct CopyTarget {
    provider: ProviderInfo,
    sp: SpClient,
    /// The payer's usable `withCDN` set there, or `None` to create one.
    data_set: Option<DataSet>,
    /// Leaves already in that set (0 for a new one).
    leaves: u64,
}

impl CopyTarget {
    fn plan(&self) -> CopyPlan {
        CopyPlan {
            provider_id: self.provider.id,
            data_set_id: self.data_set.as_ref().map(|d| d.data_set_id),
            with_cdn: true,
            reserve_balance: self
                .data_set
                .as_ref()
                .and_then(|d| d.lifecycle_reserve_balance),
            pending_one_time_payments: self
                .data_set
                .as_ref()
                .and_then(|d| d.pending_one_time_payments),
            current_leaves: self.leaves,
        }
    }
}

/// A committed copy.
struct Committed {
    data_set_id: u64,
    created: bool,
    transactions: Vec<String>,
    piece_ids: Vec<u64>,
}

/// A connected publisher: wallet checked, providers found and reachable,
/// data sets chosen.
pub struct Publisher {
    key: PayerKey,
    chain: ChainReader,
    chain_id: u64,
    primary: CopyTarget,
    secondaries: Vec<CopyTarget>,
    /// Why each copy without a provider has none.
    unplaced: Vec<String>,
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
        let payer = key.address();
        let report = chain.wallet_report(payer).await?;
        if !report.is_ready() {
            return Err(PublishError::Wallet {
                payer,
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

        let data_sets = chain.client_data_sets(payer).await?;
        let metadata = cdn_metadata();
        let primary_set = match settings.data_set {
            Some(id) => Some(
                data_sets
                    .iter()
                    .find(|d| {
                        d.data_set_id == U256::from(id)
                            && d.provider_id == provider.id
                            && d.is_usable()
                    })
                    .cloned()
                    .ok_or(PublishError::DataSet(id))?,
            ),
            None => choose_reusable_data_set(&data_sets, provider.id, &metadata).cloned(),
        };
        let mut primary = CopyTarget {
            provider,
            sp,
            data_set: primary_set,
            leaves: 0,
        };
        let (mut secondaries, unplaced) =
            copy_targets(&chain, &settings, &primary.provider, &data_sets).await;
        for target in std::iter::once(&mut primary).chain(secondaries.iter_mut()) {
            if let Some(set) = &target.data_set {
                target.leaves = chain
                    .data_set_leaf_count(set.data_set_id)
                    .await?
                    .saturating_to::<u64>();
            }
        }

        // The fees and lockups of every copy that will be attempted.
        let plans = std::iter::once(&primary)
            .chain(&secondaries)
            .map(CopyTarget::plan)
            .collect();
        // Every piece it adds, the manifest included: FWSS prices storage
        // from the data set's leaf count (see `chain::fees`).
        let plan = UploadPlan {
            piece_sizes: planned_piece_sizes(settings.expected_size, &settings.asset),
            copies: plans,
        };
        let cost = chain.upload_cost(&plan).await?;
        let report = report.with_upload_cost(cost);
        if !report.is_ready() {
            return Err(PublishError::Wallet {
                payer,
                problems: report.problems(),
            });
        }
        Ok(Publisher {
            key,
            chain,
            chain_id,
            primary,
            secondaries,
            unplaced,
            settings,
        })
    }

    /// The provider's service URL.
    pub fn provider_url(&self) -> String {
        self.primary.sp.service_url().to_string()
    }

    /// Service URLs of the providers asked for extra copies.
    pub fn copy_provider_urls(&self) -> Vec<String> {
        self.secondaries
            .iter()
            .map(|t| t.sp.service_url().to_string())
            .collect()
    }

    /// Uploads `source` as an asset and adds its pieces to a data set, then
    /// has the other providers copy them.
    pub async fn publish<S>(
        &self,
        source: S,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<PublishReport, PublishError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin + Send,
    {
        let asset = upload_asset(&self.primary.sp, source, &self.settings.asset, progress).await?;
        let mut cids: Vec<PieceCid> = asset.pieces.iter().map(|p| p.cid.clone()).collect();
        cids.push(asset.asset_id.clone());

        let primary = self.commit(&self.primary, &cids, None).await?;
        let mut copies = vec![CopyReport {
            role: "primary",
            provider_id: Some(self.primary.provider.id.to::<u64>()),
            provider_url: Some(self.provider_url()),
            data_set_id: Some(primary.data_set_id),
            created_data_set: primary.created,
            transactions: primary.transactions.clone(),
            piece_ids: primary.piece_ids.clone(),
            status: CopyStatus::Complete,
            error: None,
        }];
        // The registry's service URL, not `upload.provider_url`: that one may
        // be a LAN address only this edge can reach; the puller is elsewhere.
        let source = format!(
            "{}/",
            self.primary.provider.service_url.trim_end_matches('/')
        );
        for target in &self.secondaries {
            let copy = self.commit(target, &cids, Some(source.as_str())).await;
            let provider_id = Some(target.provider.id.to::<u64>());
            let provider_url = Some(target.sp.service_url().to_string());
            copies.push(match copy {
                Ok(c) => CopyReport {
                    role: "secondary",
                    provider_id,
                    provider_url,
                    data_set_id: Some(c.data_set_id),
                    created_data_set: c.created,
                    transactions: c.transactions,
                    piece_ids: c.piece_ids,
                    status: CopyStatus::Complete,
                    error: None,
                },
                Err(e) => {
                    log::warn!(
                        "copy at provider {} failed (the primary copy is safe): {e}",
                        target.provider.id
                    );
                    CopyReport {
                        role: "secondary",
                        provider_id,
                        provider_url,
                        data_set_id: target.data_set.as_ref().map(|d| d.data_set_id.to::<u64>()),
                        created_data_set: false,
                        transactions: Vec::new(),
                        piece_ids: Vec::new(),
                        status: CopyStatus::Failed,
                        error: Some(e.to_string()),
                    }
                }
            });
        }
        for why in &self.unplaced {
            copies.push(CopyReport {
                role: "secondary",
                provider_id: None,
                provider_url: None,
                data_set_id: None,
                created_data_set: false,
                transactions: Vec::new(),
                piece_ids: Vec::new(),
                status: CopyStatus::Failed,
                error: Some(why.clone()),
            });
        }
        let complete = copies.iter().all(|c| c.status == CopyStatus::Complete);

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
            data_set_id: primary.data_set_id,
            created_data_set: primary.created,
            transactions: primary.transactions,
            piece_ids: primary.piece_ids,
            payer: format!("{:#x}", self.key.address()),
            asset_path: format!(
                "/asset/{}{}",
                asset.asset_id,
                name_segment(&asset.manifest.file_name)
            ),
            beam_path: String::new(),
            provider_url: self.provider_url(),
            requested_copies: self.settings.copies,
            copies,
            complete,
            beam_urls: Vec::new(),
            manifest: asset.manifest.clone(),
        })
    }

    /// Adds `cids` to `target`'s data set (creating it with the first batch
    /// when it has none), at most 40 per signed call. With `pull_from` (a
    /// provider's service URL, ending in `/`), each batch is first pulled by
    /// `target` from that provider's `/piece/<cid>` with the very extraData
    /// that then commits it.
    async fn commit(
        &self,
        target: &CopyTarget,
        cids: &[PieceCid],
        pull_from: Option<&str>,
    ) -> Result<Committed, PublishError> {
        let metadata = cdn_metadata();
        let fwss = self.chain.contracts().fwss;
        let record_keeper = fwss.to_string();
        let (mut data_set_id, client_data_set_id) = match &target.data_set {
            Some(d) => (Some(d.data_set_id.to::<u64>()), d.client_data_set_id),
            None => (None, random_u256()),
        };
        let mut transactions = Vec::new();
        let mut piece_ids = Vec::new();
        let mut created = false;
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
            let extra = match data_set_id {
                Some(_) => hex(&add),
                None => {
                    let create = create_data_set_extra_data(
                        &self.key,
                        self.chain_id,
                        fwss,
                        client_data_set_id,
                        target.provider.payee,
                        &metadata,
                    )?;
                    hex(&create_and_add_extra_data(create, add))
                }
            };
            if let Some(source) = pull_from {
                let sources: Vec<PullSource> = batch
                    .iter()
                    .map(|c| PullSource {
                        piece_cid: c.clone(),
                        source_url: format!("{source}piece/{c}"),
                    })
                    .collect();
                // The puller downloads the whole batch first (Curio: 10 min
                // per attempt); give it the poll deadline plus 1 s per MB.
                let batch_bytes: u64 = batch.iter().filter_map(PieceCid::payload_size).sum();
                let mut timeouts = target.sp.timeouts().clone();
                timeouts.poll_deadline += Duration::from_secs(batch_bytes / 1_000_000);
                let answer = target
                    .sp
                    .with_timeouts(timeouts)
                    .wait_pulled(&record_keeper, &extra, &sources, data_set_id)
                    .await?;
                if answer.status != PullStatus::Complete {
                    let failed: Vec<&str> = answer
                        .pieces
                        .iter()
                        .filter(|(_, s)| *s != PullStatus::Complete)
                        .map(|(cid, _)| cid.as_str())
                        .collect();
                    return Err(PublishError::Provider(SpError::BadResponse {
                        step: Step::PullPieces,
                        reason: format!(
                            "the pull from {source} ended {}; pieces not copied: {}",
                            answer.status.as_str(),
                            failed.join(", ")
                        ),
                    }));
                }
            }
            // Curio is polled with the hash it answered; the report names
            // the transaction that landed (a replace-by-fee changes it).
            let added = match data_set_id {
                Some(id) => {
                    let tx = target.sp.add_pieces(id, batch, &extra).await?;
                    target.sp.wait_pieces_added(id, &tx).await?
                }
                None => {
                    let tx = target
                        .sp
                        .create_and_add(&record_keeper, batch, &extra)
                        .await?;
                    created = true;
                    target.sp.wait_created_and_added(&tx).await?
                }
            };
            transactions.push(added.tx_hash.clone());
            data_set_id = Some(added.data_set_id);
            piece_ids.extend(added.piece_ids);
        }
        Ok(Committed {
            data_set_id: data_set_id.unwrap_or_default(),
            created,
            transactions,
            piece_ids,
        })
    }
}

/// The providers for the copies after the primary: `copy_provider_ids` in
/// order, else the registry's active providers (`getAllActiveProviders`),
/// never the primary, each with an active PDP product (as `provider_by_id`
/// reads it) and answering its ping. Returns them with the reason for every
/// copy that found none.
async fn copy_targets(
    chain: &ChainReader,
    settings: &PublishSettings,
    primary: &ProviderInfo,
    data_sets: &[DataSet],
) -> (Vec<CopyTarget>, Vec<String>) {
    let wanted = settings.copies.saturating_sub(1) as usize;
    if wanted == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut skipped = Vec::new();
    let candidates: Vec<U256> = if settings.copy_provider_ids.is_empty() {
        match chain.active_provider_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                skipped.push(format!("listing the registry's providers: {e}"));
                Vec::new()
            }
        }
    } else {
        settings
            .copy_provider_ids
            .iter()
            .map(|id| U256::from(*id))
            .collect()
    };
    let mut targets: Vec<CopyTarget> = Vec::new();
    for id in candidates {
        if targets.len() == wanted {
            break;
        }
        if id == primary.id || targets.iter().any(|t| t.provider.id == id) {
            continue;
        }
        let provider = match chain.provider_by_id(id).await {
            Ok(p) if p.is_active => p,
            Ok(_) => {
                skipped.push(format!("provider {id} is not active"));
                continue;
            }
            Err(e) => {
                skipped.push(format!("provider {id}: {e}"));
                continue;
            }
        };
        let sp = match SpClient::new(&provider.service_url, settings.timeouts.clone()) {
            Ok(sp) => sp,
            Err(e) => {
                skipped.push(format!("provider {id}: {e}"));
                continue;
            }
        };
        if let Err(e) = sp.ping().await {
            skipped.push(format!("provider {id}: {e}"));
            continue;
        }
        let data_set = choose_reusable_data_set(data_sets, provider.id, &cdn_metadata()).cloned();
        targets.push(CopyTarget {
            provider,
            sp,
            data_set,
            leaves: 0,
        });
    }
    let missing = wanted - targets.len();
    let why = if skipped.is_empty() {
        "no other active storage provider with a PDP product was found".to_string()
    } else {
        format!("no other usable storage provider: {}", skipped.join("; "))
    };
    if missing > 0 {
        log::warn!("{missing} of {wanted} extra copies have no provider: {why}");
    }
    (targets, vec![why; missing])
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
