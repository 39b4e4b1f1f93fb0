//! The admin listener (`admin.listen`): cache inspection and control.
//!
//! A separate Pingora service on its own port (public and admin routes never
//! share one). When `admin.token` is set every request needs
//! `Authorization: Bearer <token>` (401 otherwise); config validation refuses
//! a non-loopback admin address without a token.
//!
//! | route | answer |
//! |---|---|
//! | `GET /admin/cache` | tiers' budgets, sizes, entries, evictions, byte hit ratios |
//! | `GET /admin/cache/<cid>` | which windows of the piece are in memory, on disk, in flight |
//! | `DELETE /admin/cache/<cid>` | purges the piece from both tiers |
//! | `POST /admin/cache/warm/<cid>` | fills the piece (or the `Range: bytes=A-B` given) in the background: 202 |
//! | `GET /` | the player page with an upload panel (no token needed to load it) |
//! | `POST /admin/uploads` | the body is a file: published as an asset (see `upload`), 201 with the report |
//! | `GET /admin/sign?path=…&ttl=1h[&ip=…]` | a signed link to a media path (`access.signed_urls`) |

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::cache::Piece;
use crate::chain::load_signer;
use crate::config::Config;
use crate::edge::EdgeState;
use crate::http::range::{parse_range_header, plan_ranges, ByteRange, ParsedRange, RangePlan};
use crate::metrics;
use crate::piece::PieceCid;
use crate::upload::pipeline::UploadError;
use crate::upload::publish::{PublishError, PublishReport, PublishSettings, Publisher};

/// The admin app.
pub struct AdminApp {
    state: Arc<EdgeState>,
    token: Option<String>,
    config: Config,
}

impl AdminApp {
    /// An admin app over the public service's state; `config` gives the upload settings.
    pub fn new(state: Arc<EdgeState>, token: Option<String>, config: Config) -> AdminApp {
        AdminApp {
            state,
            token,
            config,
        }
    }

    /// `POST /admin/uploads`: the request body is the file, streamed to the
    /// storage provider as it arrives (`Content-Type` and `X-Filename`
    /// optional). Answers with the publish report.
    async fn upload(&self, session: &mut ServerSession) -> (u16, serde_json::Value) {
        let cfg = &self.config;
        let Some(provider_id) = cfg.upload.provider_id else {
            return (
                503,
                json!({"error": "uploads are off: set upload.provider_id in the config"}),
            );
        };
        let headers = &session.req_header().headers;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let declared = content_length(session);
        if let Some(len) = declared {
            if len > cfg.upload.max_size.0 {
                return (
                    413,
                    json!({"error": format!("the body is {len} bytes; upload.max_size is {}", cfg.upload.max_size.0)}),
                );
            }
        }
        let file_name = header("x-filename").unwrap_or_default();
        let content_type = header("content-type").filter(|t| !t.starts_with("multipart/"));
        let key = match load_signer(cfg.upload.key_file.as_deref()) {
            Ok(k) => k,
            Err(e) => return (503, json!({"error": e.to_string()})),
        };
        let mut settings =
            PublishSettings::from_config(cfg, provider_id, file_name, content_type, 1);
        // The wallet pre-flight counts the pieces of the declared size.
        settings.expected_size = declared;
        let publisher = match Publisher::connect(key, settings).await {
            Ok(p) => p,
            Err(e) => return (publish_status(&e), json!({"error": e.to_string()})),
        };
        // Every check has passed: a client that sent `Expect: 100-continue`
        // (curl does for bodies over 1 MiB) may start sending now.
        if expects_continue(session) {
            if let Err(e) = session.write_continue_response().await {
                return (400, json!({"error": format!("writing 100 Continue: {e}")}));
            }
        }
        // Warm the cache with what streams through: spool it to a file beside
        // the disk tier, cut it into windows once the pieces' CIDs are known.
        let spool = match (
            cfg.upload.warm_cache,
            self.state.cache.disk_dir_and_budget(),
        ) {
            (true, Some((dir, budget))) if declared.is_none_or(|n| n <= budget / 2) => {
                let path = dir
                    .join("uploads")
                    .join(format!("spool-{:016x}", random_u64()));
                std::fs::create_dir_all(dir.join("uploads"))
                    .and_then(|_| {
                        std::fs::File::options()
                            .read(true)
                            .write(true)
                            .create_new(true)
                            .open(&path)
                    })
                    .ok()
                    .map(|f| (path, Arc::new(std::sync::Mutex::new(Some(f)))))
            }
            _ => None,
        };
        let tee = spool.as_ref().map(|(_, f)| f.clone());
        let body = Box::pin(futures_util::stream::unfold(
            Some(session),
            |s| async move {
                let s = s?;
                match s.read_request_body().await {
                    Ok(Some(b)) => Some((Ok(b), Some(s))),
                    Ok(None) => None,
                    Err(e) => Some((
                        Err(std::io::Error::other(format!(
                            "reading the request body: {e}"
                        ))),
                        None,
                    )),
                }
            },
        ));
        let body = futures_util::StreamExt::map(body, move |item| {
            if let (Ok(bytes), Some(tee)) = (&item, &tee) {
                let mut guard = tee.lock().unwrap_or_else(|p| p.into_inner());
                // A spool that fails to write is dropped; the upload goes on.
                if guard
                    .as_mut()
                    .is_some_and(|f| std::io::Write::write_all(f, bytes).is_err())
                {
                    *guard = None;
                }
            }
            item
        });
        let result = publisher.publish(body, Arc::new(|_| {})).await;
        let result = result.map(|r| r.with_beam_links(cfg));
        let answer = match &result {
            Ok(report) => (201, json!(report)),
            Err(e) => (publish_status(e), json!({"error": e.to_string()})),
        };
        // The layers were computed as the file streamed: kept whether or not
        // the cache is warmed with the bytes (they are 32 bytes per window).
        if let Ok(report) = &result {
            let (cache, report) = (self.state.cache.clone(), report.clone());
            let _ = tokio::task::spawn_blocking(move || keep_upload_layers(&cache, &report)).await;
        }
        if let Some((path, file)) = spool {
            let file = file.lock().unwrap_or_else(|p| p.into_inner()).take();
            let cache = self.state.cache.clone();
            let report = result.ok();
            let _ = tokio::task::spawn_blocking(move || {
                if let (Some(f), Some(r)) = (file, report) {
                    warm_with_upload(&cache, &f, &r);
                }
                let _ = std::fs::remove_file(&path);
            })
            .await;
        }
        answer
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }

    async fn route(&self, session: &mut ServerSession) -> (u16, serde_json::Value) {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        if path == "/admin/cache" && method == http::Method::GET {
            return (200, self.cache_stats());
        }
        if path == "/admin/cluster" && method == http::Method::GET {
            return match &self.state.cluster {
                Some(c) => (200, json!(c.status())),
                None => (
                    404,
                    json!({"error": "cluster mode is off (cluster.enabled)"}),
                ),
            };
        }
        if path == "/admin/sign" {
            if method != http::Method::GET {
                return (
                    405,
                    json!({"error": "use GET /admin/sign?path=<media path>&ttl=1h[&ip=<client>]"}),
                );
            }
            return self.sign(session.req_header().uri.query());
        }
        if path == "/admin/uploads" {
            if method != http::Method::POST {
                return (405, json!({"error": "use POST with the file as the body"}));
            }
            return self.upload(session).await;
        }
        if let Some(cid) = path.strip_prefix("/admin/cache/warm/") {
            if method != http::Method::POST {
                return (405, json!({"error": "use POST to warm a piece"}));
            }
            let range = session
                .req_header()
                .headers
                .get(http::header::RANGE)
                .map(|v| v.as_bytes().to_vec());
            return self.warm(cid, range).await;
        }
        if let Some(cid) = path.strip_prefix("/admin/cache/") {
            let cid = match PieceCid::parse(cid) {
                Ok(c) => c,
                Err(e) => return (400, json!({"error": format!("invalid PieceCID: {e}")})),
            };
            let cid_str = cid.to_string();
            let size = cid.payload_size().or(self.state.meta.get(&cid_str).size);
            return match method {
                http::Method::GET => {
                    let mut status = json!(self.state.cache.piece_status(&cid_str, size));
                    status["providers"] = json!(self
                        .state
                        .providers
                        .status(&crate::edge::static_providers(&self.config), &cid_str));
                    (200, status)
                }
                http::Method::DELETE => {
                    let removed = self.state.cache.purge(&cid_str, size).await;
                    (200, json!({"cid": cid_str, "removed_windows": removed}))
                }
                _ => (405, json!({"error": "use GET or DELETE"})),
            };
        }
        (
            404,
            json!({"error": "not found: see /admin/cache, /admin/cache/<cid>, /admin/cache/warm/<cid>"}),
        )
    }

    /// `GET /admin/sign?path=…&ttl=1h[&ip=…]`: a signed link to a media
    /// path (`access.signed_urls`), as `beam-edge sign` prints it.
    fn sign(&self, query: Option<&str>) -> (u16, serde_json::Value) {
        let (mut path, mut ttl, mut ip) = (None, None, None);
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "path" => path = Some(v.into_owned()),
                "ttl" => ttl = Some(v.into_owned()),
                "ip" => ip = Some(v.into_owned()),
                other => {
                    return (
                        400,
                        json!({"error": format!("unknown parameter {other:?}: use path, ttl and ip")}),
                    )
                }
            }
        }
        let Some(path) = path else {
            return (
                400,
                json!({"error": "missing path: GET /admin/sign?path=/piece/<cid>&ttl=1h"}),
            );
        };
        let ttl = match humantime::parse_duration(ttl.as_deref().unwrap_or("1h")) {
            Ok(t) => t,
            Err(e) => {
                return (
                    400,
                    json!({"error": format!("invalid ttl: {e} (use e.g. 30m, 1h)")}),
                )
            }
        };
        let ip = match ip.map(|t| t.parse::<std::net::IpAddr>()) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => return (400, json!({"error": "invalid ip: expected an IP address"})),
        };
        let signer = self.state.access.signer.as_ref();
        if signer.is_none() {
            return (
                404,
                json!({"error": "signed URLs are off: no key under access.signed_urls.keys"}),
            );
        }
        match crate::access::mint(signer, &path, ttl, ip) {
            Ok(link) => (200, json!(link)),
            Err(e) => (400, json!({"error": e})),
        }
    }

    fn cache_stats(&self) -> serde_json::Value {
        let stats = self.state.cache.stats();
        let served = |s: &str| metrics::SERVED_BYTES.with_label_values(&[s]).get();
        let (mem, disk, up) = (served("memory"), served("disk"), served("upstream"));
        // Cluster mode: bytes from the owning replica are misses here.
        let peer = served("peer");
        let total = mem + disk + up + peer;
        let ratio = |n: u64| {
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        };
        json!({
            "window_bytes": stats.window_bytes,
            "memory": stats.memory,
            "disk": stats.disk,
            "fills_in_flight": stats.fills_in_flight,
            "layers": stats.layers,
            "served_bytes": {"memory": mem, "disk": disk, "upstream": up, "peer": peer},
            "hit_ratio": {"memory": ratio(mem), "disk": ratio(disk), "total": ratio(mem + disk)},
        })
    }

    async fn warm(&self, cid_text: &str, range: Option<Vec<u8>>) -> (u16, serde_json::Value) {
        let cid = match PieceCid::parse(cid_text) {
            Ok(c) => c,
            Err(e) => return (400, json!({"error": format!("invalid PieceCID: {e}")})),
        };
        let cid_str = cid.to_string();
        if self.state.denylist.denies(&cid) {
            return (
                451,
                json!({"error": format!("{cid_str} is on access.denylist: not warmed")}),
            );
        }
        let size = match cid.payload_size().or(self.state.meta.get(&cid_str).size) {
            Some(s) => s,
            None => match self.state.upstream.probe(&cid_str, None, 512).await {
                Ok((size, head)) => {
                    self.state.learn(
                        &cid_str,
                        size,
                        crate::http::sniff::sniff_content_type(&head),
                    );
                    size
                }
                Err(e) => return (e.client_status(), json!({"error": e.to_string()})),
            },
        };
        if size == 0 {
            return (200, json!({"cid": cid_str, "size": 0, "range": null}));
        }
        let limits = self.state.range_limits;
        let wanted = match range.as_deref().map(|r| parse_range_header(r, &limits)) {
            None => ByteRange::new(0, size - 1),
            Some(ParsedRange::Specs(specs)) => match plan_ranges(&specs, size, &limits) {
                RangePlan::Single(r) => r,
                RangePlan::Full => ByteRange::new(0, size - 1),
                _ => {
                    return (
                        416,
                        json!({"error": "warm takes one satisfiable range", "size": size}),
                    )
                }
            },
            Some(_) => return (400, json!({"error": "invalid Range header: use bytes=A-B"})),
        };
        let piece = Piece {
            cid: Arc::from(cid_str.as_str()),
            size,
            beam_url: None,
            chain_payer: Default::default(),
        };
        self.state.cache.warm(&piece, wanted);
        let g = self.state.cache.geometry();
        (
            202,
            json!({
                "cid": cid_str,
                "size": size,
                "range": {"start": wanted.start, "end": wanted.end},
                "windows": {"first": g.index_of(wanted.start), "last": g.index_of(wanted.end)},
            }),
        )
    }
}

/// Keeps the layer of each uploaded piece, computed as it was uploaded:
/// from now on `/piece/<cid>` of it is checked from the first byte, on
/// every replica that reads this disk, even after its windows are evicted.
fn keep_upload_layers(cache: &crate::cache::WindowCache, report: &PublishReport) {
    for mp in &report.manifest.pieces {
        let layer = mp.layer_nodes().and_then(|layer| match layer {
            Some((c, nodes)) => cache
                .add_layer(
                    &c,
                    report.manifest.window,
                    &nodes,
                    crate::cache::layers::LayerSource::Upload,
                )
                .map_err(|e| e.to_string()),
            None => Ok(()),
        });
        if let Err(e) = layer {
            log::warn!("uploaded piece {}: its layer was not kept: {e}", mp.cid);
        }
    }
}

/// Cuts a spooled upload into windows of its pieces, and its manifest too.
fn warm_with_upload(
    cache: &crate::cache::WindowCache,
    file: &std::fs::File,
    report: &PublishReport,
) {
    let mut offset = 0;
    for p in &report.pieces {
        if let Err(e) = cache.warm_from_file(&p.cid, p.size, &report.content_type, file, offset) {
            log::warn!(
                "warming the cache with uploaded piece {} failed: {e}",
                p.cid
            );
            return;
        }
        offset += p.size;
    }
    if let Err(e) = cache.warm_from_bytes(
        &report.asset_id,
        "application/json",
        &report.manifest.to_bytes(),
    ) {
        log::warn!(
            "warming the cache with manifest {} failed: {e}",
            report.asset_id
        );
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The status of a failed upload.
fn publish_status(e: &PublishError) -> u16 {
    match e {
        PublishError::Upload(UploadError::TooLarge { .. }) => 413,
        PublishError::Upload(
            UploadError::TooSmall(_) | UploadError::Source { .. } | UploadError::Invalid(_),
        ) => 400,
        PublishError::Wallet { .. } => 402,
        PublishError::DataSet(_) | PublishError::Signing(_) => 409,
        PublishError::Chain(_)
        | PublishError::Provider(_)
        | PublishError::Upload(UploadError::Provider(_)) => 502,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(status: u16, body: &serde_json::Value) -> http::Response<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut b = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, bytes.len())
        .header(http::header::CACHE_CONTROL, "no-store");
    if status == 401 {
        b = b.header(
            http::header::WWW_AUTHENTICATE,
            "Bearer realm=\"beam-edge admin\"",
        );
    }
    b.body(bytes).unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        // The player page with its upload panel; the token is typed into it.
        let path = session.req_header().uri.path().to_string();
        if session.req_header().method == http::Method::GET {
            if let Some(asset) = crate::edge::player::asset(&path) {
                let mut body = asset.body.to_vec();
                if asset.content_type.starts_with("text/html") {
                    let marker = format!(
                        "<body data-admin=\"1\" data-public-port=\"{}\">",
                        self.config.server.listen.port()
                    );
                    body = String::from_utf8_lossy(&body)
                        .replacen("<body>", &marker, 1)
                        .into_bytes();
                }
                return http::Response::builder()
                    .status(200)
                    .header(http::header::CONTENT_TYPE, asset.content_type)
                    .header(http::header::CONTENT_LENGTH, body.len())
                    .header(http::header::CACHE_CONTROL, "no-cache")
                    .body(body)
                    .unwrap_or_default();
            }
        }
        let (status, body) = if self.authorized(session) {
            self.route(session).await
        } else {
            (
                401,
                json!({"error": "missing or wrong bearer token (admin.token)"}),
            )
        };
        finish_unread_body(session).await;
        json_response(status, &body)
    }
}

/// The most of a refused request body that is read and dropped so that the
/// client, still sending, reads the answer instead of a connection reset.
const DRAIN_LIMIT: usize = 16 << 20;
/// How long that reading may take.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

fn content_length(session: &ServerSession) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn expects_continue(session: &ServerSession) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Called before an answer is written. A body left unread (a 401, a 413, a
/// failed upload) closes the connection after the answer; a client that is
/// still sending it gets up to [`DRAIN_LIMIT`] bytes read first, so the
/// answer reaches it. A client that sent `Expect: 100-continue` and never got
/// the 100 has sent no body, so nothing is read.
async fn finish_unread_body(session: &mut ServerSession) {
    if session.is_body_done() {
        return;
    }
    session.set_keepalive(None);
    let continued = session
        .response_written()
        .is_some_and(|r| r.status.as_u16() == 100);
    if expects_continue(session) && !continued {
        return;
    }
    if content_length(session).is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0;
        while let Ok(Some(b)) = session.read_request_body().await {
            read += b.len();
            if read > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
