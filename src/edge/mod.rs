//! The public listener: a Pingora [`ProxyHttp`] service that answers every
//! route itself in `request_filter`.
//!
//! Routes: `GET|HEAD|OPTIONS /piece/<PieceCID>`, `/asset/<id>` and
//! `/beam/<payer>/…` ([`route`] parses them, [`piece`] serves them), `GET|HEAD
//! /healthz` (the process is up), `GET|HEAD /readyz` (config loaded,
//! listeners bound, an upstream usable, not shutting down), anything else
//! 404. Pingora's own upstream proxying is never used for `/piece`: it would
//! forward the client's Range and relay whatever the upstream sends, and the
//! whole point is to normalise ranges and check every upstream byte (see
//! DESIGN.md decision 2). Each body write awaits the socket, which is the
//! backpressure that keeps memory flat for pieces of any size.
//!
//! Failure semantics, decided here: an error before the response header is
//! an honest status with a one-line `text/plain` body; an error after it
//! aborts the connection (never a clean end of a short body), via
//! [`ProxyHttp::fail_to_proxy`] which writes nothing once a header is out.

pub mod denylist;
pub mod limits;
pub mod piece;
pub mod player;
pub mod route;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::access::Access;
use crate::cache::meta::PieceMetaStore;
use crate::cache::{CacheSettings, WindowCache};
use crate::config::Config;
use crate::http::range::RangeLimits;
use crate::metrics;
use crate::upstream::resolve::{ChainResolver, ProviderPool, ResolveSettings};
use crate::upstream::{Upstream, UpstreamSettings};

/// Shared state of the public service.
pub struct EdgeState {
    /// The Beam client (for size probes; windows go through `cache`).
    pub upstream: Upstream,
    /// Fallback storage providers: chain resolution and 429 backoffs (the
    /// static list is in the cache settings).
    pub providers: ProviderPool,
    /// The window cache.
    pub cache: WindowCache,
    /// Sizes and content types learnt per piece.
    pub meta: PieceMetaStore,
    /// Asset manifests already read.
    pub manifests: ManifestStore,
    /// Content-type sniffs in flight, one per piece.
    pub sniffs: SniffFlights,
    /// Range caps.
    pub range_limits: RangeLimits,
    /// Keep-alive idle and send timeouts of client connections.
    pub connection_limits: limits::ConnectionLimits,
    /// Set once every listener is bound and the server runs.
    pub running: AtomicBool,
    /// Set when shutdown starts: `/readyz` then answers 503 so load balancers drain.
    pub shutting_down: AtomicBool,
    /// Why `/readyz` is 503 even while running (configuration), if it is.
    pub not_ready_reason: Option<String>,
    /// Who `/beam/<payer>/…` may bill, and each payer's Beam host.
    pub payer_routes: route::PayerRoutes,
    /// Cluster mode: the members and window ownership (`None` when off).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Pieces never served (`access.denylist`).
    pub denylist: denylist::Denylist,
    /// Signed URLs, client limits and egress budgets.
    pub access: Arc<Access>,
}

impl EdgeState {
    /// Builds the state from a validated config.
    pub fn new(config: &Config) -> Result<EdgeState, String> {
        let upstream = Upstream::new(UpstreamSettings {
            beam_base_url: config.beam_base_url(),
            connect_timeout: config.upstream.connect_timeout.0,
            read_timeout: config.upstream.read_timeout.0,
            refusal_ttl: config.upstream.refusal_ttl.0,
        })?;
        let providers = provider_pool(config)?;
        let cluster = crate::cluster::Cluster::from_config(config)?;
        let access = Arc::new(Access::new(config)?);
        let mut settings = cache_settings(config, providers.clone());
        settings.egress = access.egress.clone();
        let cache = WindowCache::new_clustered(settings, upstream.clone(), cluster.clone())
            .map_err(|e| {
                format!(
                    "cache.disk.path: cannot open {}: {e}",
                    config.cache.disk.path.display()
                )
            })?;
        let budgets = cache.stats();
        crate::metrics::publish_cache_budgets(
            budgets.memory.budget,
            budgets.disk.map(|d| d.budget),
        );
        let meta = PieceMetaStore::new(100_000);
        for (cid, rec) in cache.persisted_meta() {
            meta.update(
                &cid,
                Some(rec.size),
                Some(crate::http::sniff::intern_content_type(&rec.content_type)),
            );
        }
        let (denylist, report) = denylist::Denylist::load(&config.access.denylist)?;
        if !denylist.is_off() {
            log::info!(
                "access.denylist: {} entries ({} lines skipped)",
                report.entries,
                report.skipped
            );
        }
        let payer_routes = route::PayerRoutes::new(config);
        // Ready while some request can reach Beam: the configured payer's
        // /piece, or /beam/<payer>/… for the payers upstream.payers allows.
        let not_ready_reason = (config.beam_base_url().is_none() && !payer_routes.any_usable())
            .then(|| {
                "not ready: upstream.payer is not set and upstream.payers allows no payer, so no request can reach Beam".to_string()
            });
        Ok(EdgeState {
            upstream,
            providers,
            cache,
            meta,
            manifests: ManifestStore::default(),
            sniffs: SniffFlights::default(),
            range_limits: RangeLimits::default(),
            connection_limits: limits::ConnectionLimits {
                keepalive_idle: config.server.keepalive_timeout.0,
                send_timeout: config.server.send_timeout.0,
            },
            running: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            not_ready_reason,
            payer_routes,
            cluster,
            denylist,
            access,
        })
    }
}

impl EdgeState {
    /// Reads `access.denylist` again (on SIGHUP) and purges the windows of
    /// newly listed pieces this process knows of (the disk tier's pieces,
    /// the pieces whose size or type it learnt, fills in flight). On an
    /// error the current list stays.
    pub async fn reload_denylist(&self) {
        if self.denylist.is_off() {
            return;
        }
        let (report, added) = match self.denylist.reload() {
            Ok(r) => r,
            Err(e) => {
                log::error!("SIGHUP: keeping the current denylist: {e}");
                return;
            }
        };
        let mut purged = 0;
        if !added.is_empty() {
            let mut known = self.cache.known_pieces();
            known.extend(self.meta.cids());
            known.sort_unstable();
            known.dedup();
            for cid in known {
                let newly = added.contains(&denylist::entry_of(&cid))
                    || crate::piece::PieceCid::parse(&cid)
                        .is_ok_and(|c| added.contains(&denylist::entry_of(&c.to_v1().to_string())));
                if newly {
                    let size = self.meta.get(&cid).size;
                    purged += self.cache.purge(&cid, size).await;
                    self.manifests.remove(&cid);
                }
            }
        }
        log::info!(
            "SIGHUP: access.denylist reloaded: {} entries ({} new, {} lines skipped), {purged} cached windows purged",
            report.entries,
            added.len(),
            report.skipped
        );
    }

    /// Records what was learnt about a piece, in memory and beside its windows.
    pub fn learn(&self, cid: &str, size: u64, content_type: &'static str) {
        self.meta.update(cid, Some(size), Some(content_type));
        self.cache.remember_meta(cid, size, content_type);
    }
}

/// The provider pool a config asks for: with `upstream.resolve_providers`,
/// chain resolution for `upstream.payer` (when set) and for each payer a
/// `/beam/<payer>/…` request names (when such requests can reach Beam);
/// and the backoff.
pub fn provider_pool(config: &Config) -> Result<ProviderPool, String> {
    let u = &config.upstream;
    if !u.resolve_providers {
        return Ok(ProviderPool::new(None, u.provider_backoff.0));
    }
    let template = ResolveSettings {
        rpc_url: crate::config::resolve_rpc_url(config),
        network: config.upstream.network,
        payer: crate::chain::Address::ZERO,
        ttl: u.resolve_ttl.0,
        probe_timeout: u.connect_timeout.0 + u.read_timeout.0,
    };
    let payer = config.payer();
    let per_payer = route::PayerRoutes::new(config).any_usable();
    let configured = match &payer {
        Some(p) => {
            let payer = p
                .parse::<crate::chain::Address>()
                .map_err(|e| format!("upstream.payer: {e}"))?;
            Some(ChainResolver::new(ResolveSettings {
                payer,
                ..template.clone()
            })?)
        }
        None => None,
    };
    let whose = match (payer, per_payer) {
        (Some(p), true) => format!("upstream.payer {p} and the payers /beam/ requests name"),
        (Some(p), false) => format!("upstream.payer {p}"),
        (None, true) => "the payers /beam/ requests name".to_string(),
        (None, false) => "nobody: no payer is known (set upstream.payer)".to_string(),
    };
    log::info!(
        "chain resolution of a piece's storage providers when Beam fails: for {whose}, through {}",
        template.rpc_url
    );
    if !per_payer {
        return Ok(ProviderPool::new(configured, u.provider_backoff.0));
    }
    ProviderPool::per_payer(configured, template, u.provider_backoff.0)
}

/// The storage providers to try first when Beam fails: `upstream.providers`,
/// then `upload.provider_url` (the provider uploads go to serves fresh pieces
/// until Beam indexes them).
pub fn static_providers(config: &Config) -> Vec<String> {
    config
        .upstream
        .providers
        .iter()
        .cloned()
        .chain(
            config
                .upload
                .provider_url
                .clone()
                .filter(|u| !config.upstream.providers.contains(u)),
        )
        .collect()
}

/// The cache settings a config asks for, with `pool` for provider fallback.
pub fn cache_settings(config: &Config, pool: ProviderPool) -> CacheSettings {
    let c = &config.cache;
    CacheSettings {
        window_padded: c.window.0,
        memory_budget: c.memory.0,
        inflight_budget: c.inflight.0,
        inflight_queue: c.inflight_queue,
        disk: (c.disk.size.0 > 0).then(|| (c.disk.path.clone(), c.disk.size.0)),
        prefetch: c.prefetch,
        prefetch_concurrency: c.prefetch_concurrency,
        run_windows: c.run_windows,
        check_windows: c.check_windows,
        index_prefetch: c.index_prefetch.0,
        tail_guess: c.tail_guess && c.index_prefetch.0 > 0,
        critical_first: c.critical_first.0,
        max_skip: config.upstream.max_skip.0,
        retries: config.upstream.retries,
        providers: static_providers(config),
        pool,
        prefetch_linger: std::time::Duration::from_secs(2),
        beam_retry_delay: std::time::Duration::from_millis(500),
        verify: crate::cache::build::VerifySettings {
            mode: config.verify.mode,
            build_max: config.verify.build_max.0,
            build_concurrency: config.verify.build_concurrency,
            build_budget_per_hour: config.verify.build_budget_per_hour.0,
            strict_wait: config.verify.strict_wait.0,
            build_delay: config.verify.build_delay.0,
            holder_backoff: config.upstream.provider_backoff.0,
        },
        beam_warm: config.upstream.beam_warm,
        beam_warm_max: config.upstream.beam_warm_max.0,
        beam_assume_warm: config.upstream.beam_assume_warm,
        quota_fallback: config.upstream.on_quota_exhausted
            == crate::config::OnQuotaExhausted::Providers,
        hedge_after: config.upstream.hedge_after,
        hedge_budget: config.upstream.hedge_budget.0,
        egress: None,
    }
}

/// The outcome of sniffing a piece's content type: the type, or what to
/// answer the client with.
pub type SniffResult = std::result::Result<&'static str, piece::SelfReadError>;

/// Single-flight content-type sniffs: concurrent requests for a piece whose
/// type is unknown share one read of its first bytes.
#[derive(Default)]
pub struct SniffFlights {
    map: std::sync::Mutex<
        std::collections::HashMap<String, Arc<tokio::sync::OnceCell<SniffResult>>>,
    >,
}

impl SniffFlights {
    /// The shared cell for `cid` (created when none is in flight).
    pub fn cell(&self, cid: &str) -> Arc<tokio::sync::OnceCell<SniffResult>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(cid.to_string()).or_default().clone()
    }

    /// Forgets `cell` once it holds a result (the type is in the metadata
    /// store by then; an error is not remembered).
    pub fn done(&self, cid: &str, cell: &Arc<tokio::sync::OnceCell<SniffResult>>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(cid).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            map.remove(cid);
        }
    }
}

/// Parsed asset manifests by id, bounded (cleared when full: a manifest is
/// cheap to read again from the cache).
#[derive(Default)]
pub struct ManifestStore {
    map: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::manifest::Manifest>>>,
}

impl ManifestStore {
    const MAX: usize = 1024;

    /// A manifest read before.
    pub fn get(&self, cid: &str) -> Option<Arc<crate::manifest::Manifest>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cid)
            .cloned()
    }

    /// Forgets a manifest.
    pub fn remove(&self, cid: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(cid);
    }

    /// Remembers a manifest.
    pub fn insert(&self, cid: &str, m: Arc<crate::manifest::Manifest>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(cid.to_string(), m);
    }
}

/// The route a request took (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// `/piece/...`
    Piece,
    /// `/asset/...`
    Asset,
    /// `/` and `/player/*`
    Player,
    /// `/healthz`
    Health,
    /// `/readyz`
    Ready,
    /// Anything else.
    Other,
}

impl RouteLabel {
    fn as_str(self) -> &'static str {
        match self {
            RouteLabel::Piece => "piece",
            RouteLabel::Asset => "asset",
            RouteLabel::Player => "player",
            RouteLabel::Health => "health",
            RouteLabel::Ready => "ready",
            RouteLabel::Other => "other",
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    route: RouteLabel,
    started: Instant,
    status: u16,
    header_sent: bool,
    body_bytes: u64,
    /// How the piece bytes of this response are checked (a metric label).
    checked: Option<&'static str>,
    /// The client's address (after `server.trusted_proxies`), once known.
    client_ip: Option<std::net::IpAddr>,
    /// Set when `access.limits.bytes_per_second` paces this client's writes.
    pacer: Option<(Arc<Access>, std::net::IpAddr)>,
}

impl RequestCtx {
    /// Records that a response header went out.
    pub(crate) fn header_written(&mut self, status: u16) {
        self.status = status;
        self.header_sent = true;
        metrics::TTFB
            .with_label_values(&[self.route.as_str()])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The public `ProxyHttp` service (also behind the cluster's peer listener).
pub struct EdgeService {
    state: Arc<EdgeState>,
    /// True on `cluster.peer_listen`: every request comes from a peer.
    peer_listener: bool,
}

impl EdgeService {
    /// A service over shared state.
    pub fn new(state: Arc<EdgeState>) -> EdgeService {
        EdgeService {
            state,
            peer_listener: false,
        }
    }

    /// The service of the cluster's peer listener: pieces are served from
    /// this replica's tiers or Beam, never forwarded to another peer.
    pub fn for_peers(state: Arc<EdgeState>) -> EdgeService {
        EdgeService {
            state,
            peer_listener: true,
        }
    }
}

/// Writes a complete small response: status, extra headers, a text body.
pub(crate) async fn respond_text(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    extra: &[(&'static str, String)],
    body: &str,
) -> Result<()> {
    let body = Bytes::copy_from_slice(body.as_bytes());
    respond_body(
        session,
        ctx,
        status,
        "text/plain; charset=utf-8",
        extra,
        body,
    )
    .await
}

/// Writes a whole response: `body` (nothing for a HEAD) of `content_type`
/// with `extra` headers.
async fn respond_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &str,
    extra: &[(&'static str, String)],
    body: Bytes,
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(4 + extra.len()))?;
    h.insert_header("Content-Type", content_type)?;
    h.insert_header("Content-Length", body.len().to_string())?;
    for (k, v) in extra {
        h.insert_header(*k, v.as_str())?;
    }
    let is_head = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), is_head || body.is_empty())
        .await?;
    ctx.header_written(status);
    if !is_head && !body.is_empty() {
        ctx.body_bytes += body.len() as u64;
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// `GET /layer/<cid>` on the peer listener: the piece's layer for another
/// replica (which checks it against the PieceCID before using it), or 404.
async fn respond_layer(
    state: &EdgeState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    cid: &str,
) -> Result<()> {
    let cid = match crate::piece::PieceCid::parse(cid) {
        Ok(c) => c.to_string(),
        Err(e) => {
            return respond_text(session, ctx, 400, &[], &format!("invalid PieceCID: {e}\n")).await
        }
    };
    let cache = state.cache.clone();
    let key = cid.clone();
    let layer = tokio::task::spawn_blocking(move || cache.layer_of(&key))
        .await
        .ok()
        .flatten();
    let Some((window, roots)) = layer else {
        return respond_text(session, ctx, 404, &[], &format!("no layer of {cid} here\n")).await;
    };
    let extra = [
        (crate::upstream::LAYER_WINDOW_HEADER, window.to_string()),
        ("Cache-Control", "no-store".to_string()),
    ];
    respond_body(session, ctx, 200, "application/octet-stream", &extra, roots).await
}

/// Writes one embedded player file. Revalidated on each load (`no-cache`)
/// with a weak ETag of the build version, so an upgrade is picked up at once.
async fn respond_asset(
    session: &mut Session,
    ctx: &mut RequestCtx,
    asset: &player::Asset,
) -> Result<()> {
    let etag = concat!("W/\"", env!("CARGO_PKG_VERSION"), "\"");
    let inm = session
        .req_header()
        .headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if inm.is_some_and(|v| crate::http::conditional::if_none_match(v, etag)) {
        let mut h = ResponseHeader::build(304, Some(2))?;
        h.insert_header("ETag", etag)?;
        session.write_response_header(Box::new(h), true).await?;
        ctx.header_written(304);
        return Ok(());
    }
    let mut h = ResponseHeader::build(200, Some(6))?;
    h.insert_header("Content-Type", asset.content_type)?;
    h.insert_header("Content-Length", asset.body.len().to_string())?;
    h.insert_header("Cache-Control", "no-cache")?;
    h.insert_header("ETag", etag)?;
    h.insert_header("X-Content-Type-Options", "nosniff")?;
    let is_head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(h), is_head).await?;
    ctx.header_written(200);
    if !is_head {
        ctx.body_bytes += asset.body.len() as u64;
        session
            .write_response_body(Some(Bytes::from_static(asset.body)), true)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl ProxyHttp for EdgeService {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            route: RouteLabel::Other,
            started: Instant::now(),
            status: 0,
            header_sent: false,
            body_bytes: 0,
            checked: None,
            client_ip: None,
            pacer: None,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // request_filter answers every request; reaching here is a bug.
        Error::e_explain(
            InternalError,
            "no upstream peer: every route is answered in request_filter",
        )
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.state.connection_limits.apply(session);
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        let get_or_head = method == http::Method::GET || method == http::Method::HEAD;
        if let Some(media) = route::parse_media_path(&path) {
            match media {
                Ok(m) => {
                    ctx.route = match m.kind {
                        route::MediaKind::Piece => RouteLabel::Piece,
                        route::MediaKind::Asset => RouteLabel::Asset,
                    };
                    // Peers on the peer listener are replicas of this edge:
                    // they checked their own clients already.
                    if !self.peer_listener && !self.admit(session, ctx).await? {
                        return Ok(true);
                    }
                    let from_peer = self.peer_listener
                        || session
                            .req_header()
                            .headers
                            .contains_key(crate::upstream::PEER_HEADER);
                    if from_peer {
                        crate::cluster::serve_for_peer(piece::serve_media(
                            &self.state,
                            session,
                            ctx,
                            &m,
                        ))
                        .await?;
                    } else {
                        piece::serve_media(&self.state, session, ctx, &m).await?;
                    }
                }
                Err(reason) => {
                    ctx.route = RouteLabel::Piece;
                    let mut extra = piece::cors_headers();
                    extra.push(("Cache-Control", "no-store".into()));
                    respond_text(session, ctx, 400, &extra, &format!("{reason}\n")).await?;
                }
            }
        } else if path == "/piece" {
            ctx.route = RouteLabel::Piece;
            respond_text(
                session,
                ctx,
                400,
                &piece::cors_headers(),
                "missing PieceCID: request /piece/<PieceCID>\n",
            )
            .await?;
        } else if let Some(asset) = player::asset(&path).filter(|_| get_or_head) {
            ctx.route = RouteLabel::Player;
            respond_asset(session, ctx, &asset).await?;
        } else if let Some(cid) = path.strip_prefix("/layer/").filter(|_| self.peer_listener) {
            ctx.route = RouteLabel::Other;
            respond_layer(&self.state, session, ctx, cid).await?;
        } else if path == "/healthz" && get_or_head {
            ctx.route = RouteLabel::Health;
            respond_text(
                session,
                ctx,
                200,
                &[("Cache-Control", "no-store".into())],
                "ok\n",
            )
            .await?;
        } else if path == "/readyz" && get_or_head {
            ctx.route = RouteLabel::Ready;
            let (status, body) = self.readiness();
            respond_text(
                session,
                ctx,
                status,
                &[("Cache-Control", "no-store".into())],
                &body,
            )
            .await?;
        } else {
            respond_text(session, ctx, 404, &[], "not found: beam-edge serves /piece/<PieceCID>, /asset/<id>, /beam/<payer>/<PieceCID>, the player at /, /healthz and /readyz\n")
                .await?;
        }
        Ok(true)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if ctx.header_sent {
            // Mid-body failure: write nothing more; the connection is closed
            // so the client sees a truncated transfer, never a clean short one.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let code = match e.etype() {
            HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Downstream => 0,
                _ => 500,
            },
        };
        if code > 0 {
            let _ = respond_text(session, ctx, code, &[], "internal error\n").await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = if ctx.status == 0 {
            "aborted".to_string()
        } else {
            ctx.status.to_string()
        };
        metrics::REQUESTS
            .with_label_values(&[ctx.route.as_str(), status.as_str()])
            .inc();
        metrics::RESPONSE_BYTES
            .with_label_values(&[ctx.route.as_str()])
            .inc_by(ctx.body_bytes);
    }
}

impl EdgeService {
    /// The access checks of a media request, before any upstream I/O: the
    /// client's request rate (429), then the link's signature (403).
    /// `false` when the request was refused (and answered).
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let access = &self.state.access;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let client = access.client_address.resolve(
            peer,
            session
                .req_header()
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        ctx.client_ip = client;
        if let Some(ip) = client {
            if let Err(wait) = access.limits.admit_request(ip) {
                crate::access::count_refusal("client_request_rate");
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                let mut extra = piece::cors_headers();
                extra.push(("Retry-After", secs.to_string()));
                extra.push(("Cache-Control", "no-store".into()));
                let body = format!(
                    "too many requests from {ip}: over access.limits.requests_per_second; retry in {secs} s\n"
                );
                respond_text(session, ctx, 429, &extra, &body).await?;
                return Ok(false);
            }
            if access.limits.paces() {
                ctx.pacer = Some((access.clone(), ip));
            }
        }
        // A CORS preflight serves nothing and may not carry the link's query.
        if session.req_header().method != http::Method::OPTIONS {
            let uri = &session.req_header().uri;
            if let Err(refusal) = access.check_signature(uri.path(), uri.query(), client) {
                crate::access::count_refusal(refusal.label());
                let mut extra = piece::cors_headers();
                extra.push(("Cache-Control", "no-store".into()));
                respond_text(session, ctx, 403, &extra, &format!("{refusal}\n")).await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn readiness(&self) -> (u16, String) {
        let s = &self.state;
        if s.shutting_down.load(Ordering::Relaxed) {
            return (503, "not ready: shutting down\n".into());
        }
        if !s.running.load(Ordering::Relaxed) {
            return (503, "not ready: starting\n".into());
        }
        if let Some(reason) = &s.not_ready_reason {
            return (503, format!("{reason}\n"));
        }
        (200, "ready\n".into())
    }
}
