//! Which storage providers to ask for a piece when Beam fails: the static
//! `upstream.providers` first, then the providers the chain says hold the
//! piece, minus any provider that is backing off after a 429.
//!
//! Chain resolution follows the reference client's chain resolver
//! (filecoin.md, "Changes in the newest public sources", "Where a piece
//! lives"; synapse-core `piece/resolve-piece-url.ts`): page the payer's data
//! sets with `getClientDataSets(payer, offset, limit)` on the FWSS state view,
//! keep the live ones (PDPVerifier `dataSetLive`, `getDataSetListener` ==
//! FWSS, `pdpEndEpoch == 0`), read each one's provider from the
//! ServiceProviderRegistry (`getProviderWithProduct(providerId, 0)`, PDP
//! product, capability `serviceURL` as hex UTF-8), then send
//! `HEAD <serviceURL>/piece/<cid>` to a few providers at once; the first 2xx
//! answers the waiting request, the others keep arriving and are kept as
//! further holders to fail over to. The chain reads are
//! [`ChainReader::client_data_sets`] and [`ChainReader::provider_by_id`],
//! shared with uploads; this module only decides what to do with them.
//!
//! Caching: the provider list read from the chain (the "directory") and each
//! piece's holders are kept for `upstream.resolve_ttl`. A stale piece answer
//! is used at once while a background task refreshes it. When the RPC fails,
//! the last directory read is kept (and the holders are re-probed from it),
//! the failure is recorded for `GET /admin/cache/<cid>`, and the chain is not
//! asked again for [`RETRY_AFTER_FAILURE`]. "No provider holds it" is kept for
//! [`NEGATIVE_TTL`] only, so a fresh upload is found soon.
//!
//! Provider faults: Curio answers 429 past 256 concurrent retrievals, with
//! no Retry-After (filecoin.md, last section). A provider that answered 429 is
//! skipped for `upstream.provider_backoff` ([`ProviderPool::mark_busy`]).
//!
//! What it is not: it fetches no piece bytes (the window cache does, through
//! [`crate::upstream::Upstream::fetch_from`]), sends no transaction, and does
//! not check on-chain piece membership (`findPieceIdsByCid`): the HEAD probe
//! asks the provider itself, as the reference resolver does.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{self, StreamExt};
use http::header;
use tokio::sync::watch;

use crate::chain::{Address, ChainError, ChainReader, Network};
use crate::metrics;

/// HEAD probes in flight at once for one piece ("a few at once", as the
/// reference resolver does).
pub const PROBE_CONCURRENCY: usize = 4;

/// How long "no provider holds this piece" is believed: short, so that a
/// piece uploaded a moment ago is found on the next request after it.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// How long the chain is left alone after a failed read (the last directory
/// read is used meanwhile).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Most pieces whose resolution is remembered (the map is cleared when full:
/// an answer is cheap to learn again).
const MAX_PIECES: usize = 100_000;

/// What chain resolution needs (from the `upstream` config section).
#[derive(Debug, Clone)]
pub struct ResolveSettings {
    /// JSON-RPC endpoint.
    pub rpc_url: String,
    /// Network whose contracts are read.
    pub network: Network,
    /// The payer whose data sets hold the pieces.
    pub payer: Address,
    /// How long an answer (directory or piece) is fresh.
    pub ttl: Duration,
    /// Timeout of one HEAD probe (connect + answer).
    pub probe_timeout: Duration,
}

/// A provider of one of the payer's live data sets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainProvider {
    /// Registry id.
    pub id: String,
    /// `serviceURL` from the registry, no trailing `/`.
    pub service_url: String,
}

/// The providers of the payer's live data sets, as last read from the chain.
#[derive(Debug, Clone)]
struct Directory {
    providers: Vec<ChainProvider>,
    read_at: SystemTime,
    fresh_until: Instant,
}

#[derive(Debug, Default)]
struct DirectoryState {
    last: Option<Directory>,
    /// The last read failed: why, and when the chain may be asked again.
    failure: Option<(String, Instant)>,
}

/// One piece's answer.
#[derive(Debug, Clone)]
struct PieceEntry {
    holders: Vec<String>,
    resolved_at: SystemTime,
    fresh_until: Instant,
    /// The directory the holders were probed from was a last known copy
    /// because the chain read failed (the error).
    chain_error: Option<String>,
    /// No provider list was ever read: nothing could be probed.
    failed: bool,
    refreshing: bool,
}

/// A first resolution in flight: holders so far, and whether every probe answered.
#[derive(Debug, Clone, Default)]
struct FlightState {
    holders: Vec<String>,
    done: bool,
}

/// Chain resolution of a piece's holders, shared and cheap to clone.
#[derive(Clone)]
pub struct ChainResolver {
    inner: Arc<ResolverInner>,
}

struct ResolverInner {
    settings: ResolveSettings,
    chain: ChainReader,
    http: reqwest::Client,
    /// Held across a chain read: one read at a time, the others wait for it.
    directory: tokio::sync::Mutex<DirectoryState>,
    pieces: Mutex<HashMap<String, PieceEntry>>,
    flights: Mutex<HashMap<String, watch::Receiver<FlightState>>>,
    /// The RPC answered `eth_chainId` with `settings.network`'s id.
    network_checked: AtomicBool,
}

impl std::fmt::Debug for ChainResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainResolver")
            .field("rpc_url", &self.inner.settings.rpc_url)
            .field("payer", &self.inner.settings.payer)
            .finish()
    }
}

/// What `GET /admin/cache/<cid>` shows of a piece's chain resolution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResolutionStatus {
    /// Service URLs that answered 2xx to `HEAD /piece/<cid>`, in answer order.
    pub holders: Vec<String>,
    /// When the holders were probed (RFC 3339, UTC).
    pub resolved_at: String,
    /// `chain`: probed from a fresh chain read; `chain_cached`: the RPC
    /// failed and the last known provider list was used; `failed`: the RPC
    /// failed and no provider list was ever read (nothing was probed).
    pub source: &'static str,
    /// True once the answer is older than its TTL (a refresh is due or running).
    pub stale: bool,
    /// The last chain read failure, while the last known list is in use.
    pub chain_error: Option<String>,
}

/// Two service URLs name the same provider (a trailing `/` aside).
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl ChainResolver {
    /// A resolver reading `settings.network`'s contracts through `settings.rpc_url`.
    pub fn new(settings: ResolveSettings) -> Result<ChainResolver, String> {
        let chain = ChainReader::new(&settings.rpc_url, settings.network)
            .map_err(|e| format!("upstream.rpc_url: {e}"))?;
        ChainResolver::with_reader(settings, chain)
    }

    /// As [`ChainResolver::new`] with a reader built elsewhere (other contract addresses).
    pub fn with_reader(
        settings: ResolveSettings,
        chain: ChainReader,
    ) -> Result<ChainResolver, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.probe_timeout)
            .timeout(settings.probe_timeout)
            .user_agent(concat!("beam-edge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the provider probe HTTP client: {e}"))?;
        Ok(ChainResolver {
            inner: Arc::new(ResolverInner {
                settings,
                chain,
                http,
                directory: tokio::sync::Mutex::new(DirectoryState::default()),
                pieces: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                network_checked: AtomicBool::new(false),
            }),
        })
    }

    /// Start-up check: asks the RPC's `eth_chainId` (within `timeout`).
    /// A chain other than `upstream.network` is an error naming both; an
    /// RPC that cannot be asked now is not (Beam serves without it): the
    /// check is then made before the first chain read, which fails the same
    /// way on a mismatch.
    pub async fn verify_network(&self, timeout: Duration) -> Result<(), String> {
        let inner = &self.inner;
        let expected = inner.settings.network;
        match tokio::time::timeout(timeout, inner.chain.chain_id()).await {
            Ok(Ok(id)) if id == expected.chain_id() => {
                inner.network_checked.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Ok(id)) => Err(format!(
                "upstream.network is {expected} but upstream.rpc_url ({}) serves {}: set upstream.network to match the RPC, or point upstream.rpc_url at a {} endpoint",
                inner.settings.rpc_url,
                Network::from_chain_id(id)
                    .map_or_else(|| format!("chain {id}"), |n| n.to_string()),
                expected.name(),
            )),
            Ok(Err(e)) => {
                log::warn!("upstream.rpc_url: cannot check its chain id now ({e}); checked again before the first chain read");
                Ok(())
            }
            Err(_) => {
                log::warn!("upstream.rpc_url: no eth_chainId answer within {timeout:?}; checked again before the first chain read");
                Ok(())
            }
        }
    }

    /// The providers known to hold `cid`, best first. A fresh answer is
    /// returned as is; a stale one too, while a background task refreshes
    /// it; with no answer yet, waits for the first provider to answer 2xx
    /// (or for every probe to fail). Never fails: an empty list means no
    /// provider is known to hold the piece.
    pub async fn holders(&self, cid: &str) -> Vec<String> {
        self.holders_besides(cid, &[]).await
    }

    /// [`ChainResolver::holders`], but while the first resolution of `cid`
    /// is still probing, waits for a holder not in `skip` (or for the end):
    /// a caller that tried the first holders to answer, and saw them fail,
    /// hears of the next one as soon as it answers its probe.
    pub async fn holders_besides(&self, cid: &str, skip: &[String]) -> Vec<String> {
        let now = Instant::now();
        {
            let mut pieces = lock(&self.inner.pieces);
            if let Some(entry) = pieces.get_mut(cid) {
                if entry.fresh_until <= now && !entry.refreshing {
                    entry.refreshing = true;
                    let inner = self.inner.clone();
                    let cid = cid.to_string();
                    tokio::spawn(async move { inner.resolve(cid, None).await });
                }
                return entry.holders.clone();
            }
        }
        let mut rx = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(cid) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(FlightState::default());
                    flights.insert(cid.to_string(), rx.clone());
                    let inner = self.inner.clone();
                    let cid = cid.to_string();
                    // Spawned: the resolution completes (and is remembered)
                    // even when the request that started it goes away.
                    tokio::spawn(async move { inner.resolve(cid, Some(tx)).await });
                    rx
                }
            }
        };
        let new = |h: &String| !skip.iter().any(|s| same_url(s, h));
        let holders = match rx.wait_for(|s| s.done || s.holders.iter().any(new)).await {
            Ok(state) => state.holders.clone(),
            // The task ended without a word (it panicked): nothing is known.
            Err(_) => Vec::new(),
        };
        holders
    }

    /// The resolution of `cid`, if one was made.
    pub fn status(&self, cid: &str) -> Option<ResolutionStatus> {
        let pieces = lock(&self.inner.pieces);
        let entry = pieces.get(cid)?;
        Some(ResolutionStatus {
            holders: entry.holders.clone(),
            resolved_at: rfc3339(entry.resolved_at),
            source: match (entry.failed, &entry.chain_error) {
                (true, _) => "failed",
                (false, Some(_)) => "chain_cached",
                (false, None) => "chain",
            },
            stale: entry.fresh_until <= Instant::now(),
            chain_error: entry.chain_error.clone(),
        })
    }
}

impl ResolverInner {
    /// Resolves `cid` and stores the answer. `flight` (a first resolution)
    /// hears of each holder as it answers.
    async fn resolve(self: Arc<Self>, cid: String, flight: Option<watch::Sender<FlightState>>) {
        let (providers, chain_error) = match self.directory().await {
            Ok(d) => d,
            Err(e) => {
                log::warn!("cannot resolve the providers of {cid}: {e}");
                metrics::PROVIDER_RESOLUTIONS
                    .with_label_values(&["failed"])
                    .inc();
                // Nothing known: remember that briefly, so that requests do
                // not each wait on a dead RPC.
                self.store(&cid, Vec::new(), Some(e), NEGATIVE_TTL, true);
                if let Some(tx) = flight {
                    tx.send_modify(|s| s.done = true);
                }
                lock(&self.flights).remove(&cid);
                return;
            }
        };
        let mut holders = Vec::new();
        // Owned values in the probe futures: spawned tasks need them `'static`.
        let urls: Vec<String> = providers.iter().map(|p| p.service_url.clone()).collect();
        let probes = urls.into_iter().map(|url| {
            let this = self.clone();
            let cid = cid.clone();
            async move { this.probe(&url, &cid).await }
        });
        let mut answers = stream::iter(probes).buffer_unordered(PROBE_CONCURRENCY);
        while let Some((url, holds)) = answers.next().await {
            if holds {
                holders.push(url.clone());
                if let Some(tx) = &flight {
                    tx.send_modify(|s| s.holders.push(url));
                }
            }
        }
        drop(answers);
        let outcome = match (&chain_error, holders.is_empty()) {
            (Some(_), _) => "stale",
            (None, false) => "found",
            (None, true) => "none",
        };
        metrics::PROVIDER_RESOLUTIONS
            .with_label_values(&[outcome])
            .inc();
        let ttl = if holders.is_empty() {
            NEGATIVE_TTL.min(self.settings.ttl)
        } else {
            self.settings.ttl
        };
        log::info!(
            "providers holding {cid}: {} (of {} on chain{})",
            if holders.is_empty() {
                "none".to_string()
            } else {
                holders.join(", ")
            },
            providers.len(),
            chain_error
                .as_ref()
                .map(|e| format!("; last known list, the RPC failed: {e}"))
                .unwrap_or_default()
        );
        self.store(&cid, holders, chain_error, ttl, false);
        if let Some(tx) = flight {
            tx.send_modify(|s| s.done = true);
        }
        lock(&self.flights).remove(&cid);
    }

    fn store(
        &self,
        cid: &str,
        holders: Vec<String>,
        chain_error: Option<String>,
        ttl: Duration,
        failed: bool,
    ) {
        let mut pieces = lock(&self.pieces);
        if pieces.len() >= MAX_PIECES && !pieces.contains_key(cid) {
            pieces.clear();
        }
        // A refresh that could probe nothing keeps the holders it cannot replace.
        let (holders, failed) = match pieces.get(cid) {
            Some(old) if failed => (old.holders.clone(), old.failed),
            _ => (holders, failed),
        };
        pieces.insert(
            cid.to_string(),
            PieceEntry {
                holders,
                resolved_at: SystemTime::now(),
                fresh_until: Instant::now() + ttl,
                chain_error,
                failed,
                refreshing: false,
            },
        );
    }

    /// `HEAD <service_url>/piece/<cid>`: true on a 2xx.
    async fn probe(&self, service_url: &str, cid: &str) -> (String, bool) {
        let url = format!("{service_url}/piece/{cid}");
        let answer = self
            .http
            .head(&url)
            .header(header::ACCEPT_ENCODING, "identity")
            .send()
            .await;
        let holds = match answer {
            Ok(resp) => {
                let status = resp.status();
                if !status.is_success() {
                    log::debug!("{url}: {status}");
                }
                status.is_success()
            }
            Err(e) => {
                log::info!("probe {url} failed: {e}");
                false
            }
        };
        (service_url.to_string(), holds)
    }

    /// The provider list, fresh or last known, and the chain error when it is
    /// the last known one; an error when the chain never answered.
    async fn directory(&self) -> Result<(Vec<ChainProvider>, Option<String>), String> {
        let mut state = self.directory.lock().await;
        let now = Instant::now();
        if let Some(d) = &state.last {
            if d.fresh_until > now {
                return Ok((d.providers.clone(), None));
            }
        }
        if let Some((e, retry_at)) = &state.failure {
            if *retry_at > now {
                return match &state.last {
                    Some(d) => Ok((d.providers.clone(), Some(e.clone()))),
                    None => Err(e.clone()),
                };
            }
        }
        match self.read_directory().await {
            Ok(providers) => {
                state.last = Some(Directory {
                    providers: providers.clone(),
                    read_at: SystemTime::now(),
                    fresh_until: Instant::now() + self.settings.ttl,
                });
                state.failure = None;
                Ok((providers, None))
            }
            Err(e) => {
                let e = e.to_string();
                log::warn!(
                    "chain read for provider resolution failed (retrying in {}s): {e}",
                    RETRY_AFTER_FAILURE.as_secs()
                );
                state.failure = Some((e.clone(), Instant::now() + RETRY_AFTER_FAILURE));
                match &state.last {
                    Some(d) => {
                        log::info!("using the provider list read at {}", rfc3339(d.read_at));
                        Ok((d.providers.clone(), Some(e)))
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Reads the providers of the payer's live data sets from the chain.
    /// The endpoint's chain id is checked first, until once it matched: a
    /// directory read from another network would name providers that hold
    /// none of this network's pieces.
    async fn read_directory(&self) -> Result<Vec<ChainProvider>, ChainError> {
        if !self.network_checked.load(Ordering::Relaxed) {
            self.chain.verify_chain().await?;
            self.network_checked.store(true, Ordering::Relaxed);
        }
        let data_sets = self.chain.client_data_sets(self.settings.payer).await?;
        // Live, managed by FWSS, not terminated (pdpEndEpoch == 0).
        let ids: BTreeSet<_> = data_sets
            .iter()
            .filter(|d| d.is_usable())
            .map(|d| d.provider_id)
            .collect();
        let mut providers = Vec::with_capacity(ids.len());
        for id in ids {
            match self.chain.provider_by_id(id).await {
                Ok(p) => {
                    if !providers
                        .iter()
                        .any(|q: &ChainProvider| q.service_url == p.service_url)
                    {
                        providers.push(ChainProvider {
                            id: id.to_string(),
                            service_url: p.service_url,
                        });
                    }
                }
                // A provider that left the registry or lost its PDP product
                // cannot be asked; the others still can.
                Err(
                    e @ (ChainError::ProviderNotFound(_)
                    | ChainError::NoPdpProduct(_)
                    | ChainError::NoServiceUrl(_)),
                ) => log::info!("provider {id} skipped: {e}"),
                Err(e) => return Err(e),
            }
        }
        Ok(providers)
    }
}

/// Whose data sets say which providers hold a piece.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ChainPayer {
    /// `upstream.payer`'s (a `/piece/…` request).
    #[default]
    Configured,
    /// The payer a `/beam/<payer>/…` request named (lowercase 0x address).
    Named(Arc<str>),
    /// Nobody's: a `/beam/…` request on another network than
    /// `upstream.network`, whose chain this edge does not read.
    Nobody,
}

/// Most payers with a resolver of their own (`/beam/<payer>/…`); past it
/// the one used least recently is dropped (a resolver in use lives on; its
/// payer's directory is read again on its next failover).
pub const MAX_PAYER_RESOLVERS: usize = 256;

/// The chain resolvers: `upstream.payer`'s, and one per payer named by a
/// `/beam/<payer>/…` request, made on first use.
struct Resolvers {
    /// `upstream.payer`'s.
    configured: Option<ChainResolver>,
    /// How another payer's resolver is made (`None`: only `configured`).
    template: Option<ResolveSettings>,
    /// Each payer's resolver, and when it was last asked for.
    by_payer: Mutex<HashMap<Address, (ChainResolver, Instant)>>,
}

impl Resolvers {
    /// `upstream.payer`'s resolver, when `payer` is that payer.
    fn configured_for(&self, payer: Address) -> Option<&ChainResolver> {
        self.configured
            .as_ref()
            .filter(|c| c.inner.settings.payer == payer)
    }
}

/// The providers to fail over to, shared by the window cache and the admin
/// API: the static list, the chain resolvers (when on), and the backoffs.
#[derive(Clone, Default)]
pub struct ProviderPool {
    chain: Option<Arc<Resolvers>>,
    busy: Arc<Mutex<HashMap<String, Instant>>>,
    backoff: Duration,
}

impl std::fmt::Debug for ProviderPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderPool")
            .field(
                "configured",
                &self.chain.as_ref().and_then(|c| c.configured.as_ref()),
            )
            .field(
                "per_payer",
                &self.chain.as_ref().is_some_and(|c| c.template.is_some()),
            )
            .finish()
    }
}

/// What `GET /admin/cache/<cid>` shows under `providers`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    /// `upstream.providers` (and `upload.provider_url`), tried first.
    #[serde(rename = "static")]
    pub static_providers: Vec<String>,
    /// Chain resolution of this piece (`null` when off or not resolved yet).
    pub resolved: Option<ResolutionStatus>,
    /// Providers skipped now because they answered 429.
    pub backing_off: Vec<String>,
}

impl ProviderPool {
    /// A pool with an optional resolver (`upstream.payer`'s only); a
    /// provider that answers 429 is skipped for `backoff`.
    pub fn new(resolver: Option<ChainResolver>, backoff: Duration) -> ProviderPool {
        ProviderPool {
            chain: resolver.map(|r| {
                Arc::new(Resolvers {
                    configured: Some(r),
                    template: None,
                    by_payer: Mutex::new(HashMap::new()),
                })
            }),
            busy: Arc::default(),
            backoff,
        }
    }

    /// A pool resolving every payer's pieces from the chain: `configured`
    /// (`upstream.payer`'s resolver, if any), and for each payer a
    /// `/beam/<payer>/…` request names, a resolver made from `template`
    /// with that payer, on first use. The template's RPC URL is checked
    /// here.
    pub fn per_payer(
        configured: Option<ChainResolver>,
        template: ResolveSettings,
        backoff: Duration,
    ) -> Result<ProviderPool, String> {
        ChainReader::new(&template.rpc_url, template.network)
            .map_err(|e| format!("upstream.rpc_url: {e}"))?;
        Ok(ProviderPool {
            chain: Some(Arc::new(Resolvers {
                configured,
                template: Some(template),
                by_payer: Mutex::new(HashMap::new()),
            })),
            busy: Arc::default(),
            backoff,
        })
    }

    /// `upstream.payer`'s chain resolver, when resolution is on and that
    /// payer is set.
    pub fn resolver(&self) -> Option<&ChainResolver> {
        self.chain.as_ref()?.configured.as_ref()
    }

    /// Whether the chain may name holders of a piece read for `payer`.
    pub fn resolves_for(&self, payer: &ChainPayer) -> bool {
        let Some(chain) = &self.chain else {
            return false;
        };
        match payer {
            ChainPayer::Configured => chain.configured.is_some(),
            ChainPayer::Named(p) => {
                chain.template.is_some()
                    || p.parse::<Address>()
                        .is_ok_and(|a| chain.configured_for(a).is_some())
            }
            ChainPayer::Nobody => false,
        }
    }

    /// The resolver of `payer`'s data sets (made on first use).
    fn resolver_for(&self, payer: &ChainPayer) -> Option<ChainResolver> {
        let chain = self.chain.as_ref()?;
        let named = match payer {
            ChainPayer::Configured => return chain.configured.clone(),
            ChainPayer::Nobody => return None,
            ChainPayer::Named(p) => p.parse::<Address>().ok()?,
        };
        if let Some(c) = chain.configured_for(named) {
            return Some(c.clone());
        }
        let template = chain.template.as_ref()?;
        let now = Instant::now();
        let mut map = lock(&chain.by_payer);
        if let Some((r, used)) = map.get_mut(&named) {
            *used = now;
            return Some(r.clone());
        }
        if map.len() >= MAX_PAYER_RESOLVERS {
            let oldest = map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                map.remove(&p);
            }
        }
        let settings = ResolveSettings {
            payer: named,
            ..template.clone()
        };
        match ChainResolver::new(settings) {
            Ok(r) => {
                log::info!("chain resolution: reading the data sets of payer {named}");
                map.insert(named, (r.clone(), now));
                Some(r)
            }
            Err(e) => {
                log::warn!("chain resolution for payer {named}: {e}");
                None
            }
        }
    }

    /// `static_providers` without duplicates and without providers backing
    /// off: what to try first.
    pub fn usable(&self, static_providers: &[String]) -> Vec<String> {
        self.usable_at(static_providers, Instant::now())
    }

    /// [`ProviderPool::usable`] at the instant `now`.
    fn usable_at(&self, static_providers: &[String], now: Instant) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in static_providers {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        self.drop_busy(out, now)
    }

    /// The chain-resolved holders of `cid` (read for `payer`) not in
    /// `tried` and not backing off: what to try once the static providers
    /// failed. Empty when resolution is off. The chain is asked only when
    /// this is called, so a static provider that serves costs no RPC.
    pub async fn resolved(&self, payer: &ChainPayer, cid: &str, tried: &[String]) -> Vec<String> {
        let Some(r) = self.resolver_for(payer) else {
            return Vec::new();
        };
        // Those backing off are not waited for either.
        let mut skip = tried.to_vec();
        skip.extend(self.backing_off(Instant::now()));
        let holders: Vec<String> = r
            .holders_besides(cid, &skip)
            .await
            .into_iter()
            .filter(|p| !tried.iter().any(|t| same_url(t, p)))
            .collect();
        self.drop_busy(holders, Instant::now())
    }

    /// Providers backing off at `now`.
    fn backing_off(&self, now: Instant) -> Vec<String> {
        lock(&self.busy)
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `providers` without those still backing off at `now`.
    fn drop_busy(&self, mut providers: Vec<String>, now: Instant) -> Vec<String> {
        let mut busy = lock(&self.busy);
        busy.retain(|_, until| *until > now);
        providers.retain(|p| !busy.contains_key(p));
        providers
    }

    /// Skips `provider` for the backoff period (it answered 429).
    pub fn mark_busy(&self, provider: &str) {
        self.mark_busy_at(provider, Instant::now());
    }

    /// [`ProviderPool::mark_busy`] for a 429 received at `now`.
    fn mark_busy_at(&self, provider: &str, now: Instant) {
        log::warn!(
            "provider {provider} answered 429 (busy): skipped for {}",
            humantime::format_duration(self.backoff)
        );
        metrics::PROVIDER_BACKOFFS.inc();
        lock(&self.busy).insert(provider.to_string(), now + self.backoff);
    }

    /// Skips `provider` for the backoff period because it failed (`why`:
    /// a failed GET, wrong bytes), so other holders are asked first.
    pub fn back_off(&self, provider: &str, why: &str) {
        log::warn!(
            "provider {provider} {why}: skipped for {}",
            humantime::format_duration(self.backoff)
        );
        metrics::PROVIDER_BACKOFFS.inc();
        lock(&self.busy).insert(provider.to_string(), Instant::now() + self.backoff);
    }

    /// The chain resolution of `cid`: `upstream.payer`'s, else the first
    /// other payer's that resolved it.
    fn resolution_status(&self, cid: &str) -> Option<ResolutionStatus> {
        let chain = self.chain.as_ref()?;
        if let Some(st) = chain.configured.as_ref().and_then(|r| r.status(cid)) {
            return Some(st);
        }
        let others: Vec<ChainResolver> = lock(&chain.by_payer)
            .values()
            .map(|(r, _)| r.clone())
            .collect();
        others.iter().find_map(|r| r.status(cid))
    }

    /// For the admin API.
    pub fn status(&self, static_providers: &[String], cid: &str) -> PoolStatus {
        let now = Instant::now();
        let mut backing_off: Vec<String> = lock(&self.busy)
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(p, _)| p.clone())
            .collect();
        backing_off.sort();
        PoolStatus {
            static_providers: static_providers.to_vec(),
            resolved: self.resolution_status(cid),
            backing_off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_providers_first_and_busy_ones_skipped() {
        let pool = ProviderPool::new(None, Duration::from_secs(60));
        let statics = vec!["http://a".to_string(), "http://b".to_string()];
        assert_eq!(pool.usable(&statics), statics);
        assert!(pool
            .resolved(&ChainPayer::Configured, "cid", &[])
            .await
            .is_empty());
        pool.mark_busy("http://a");
        assert_eq!(pool.usable(&statics), vec!["http://b"]);
        assert_eq!(pool.status(&statics, "cid").backing_off, vec!["http://a"]);
    }

    /// The clock is passed in, so the backoff is checked at chosen instants
    /// instead of by sleeping through it.
    #[test]
    fn a_busy_provider_is_skipped_for_its_whole_backoff_and_no_longer() {
        let backoff = Duration::from_secs(30);
        let pool = ProviderPool::new(None, backoff);
        let statics = vec!["http://a".to_string(), "http://b".to_string()];
        let t0 = Instant::now();
        pool.mark_busy_at("http://a", t0);
        for after in [
            Duration::ZERO,
            Duration::from_secs(1),
            backoff - Duration::from_millis(1),
        ] {
            assert_eq!(
                pool.usable_at(&statics, t0 + after),
                vec!["http://b"],
                "{after:?} after the 429"
            );
        }
        assert_eq!(pool.usable_at(&statics, t0 + backoff), statics);
        // A second 429 starts a new backoff from its own instant.
        let t1 = t0 + backoff + Duration::from_secs(5);
        pool.mark_busy_at("http://a", t1);
        assert_eq!(
            pool.usable_at(&statics, t1 + backoff - Duration::from_millis(1)),
            vec!["http://b"]
        );
        assert_eq!(pool.usable_at(&statics, t1 + backoff), statics);
    }
}
